//! `spec.expectations` against the real controller, API server and S3 server: a spec whose
//! rules break one of its expectations is reported and never written; once fixed, it is.

use bucketcors::api::Expectation;
use bucketcors::cors::CorsRule;

use crate::support::harness::{Harness, PROMPTLY, bucket_cors, put_behind_the_back};
use crate::support::moto::Moto;

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example";

fn expectations() -> Vec<Expectation> {
    vec![
        Expectation::new(APP, "GET", true).name("the app reads"),
        Expectation::new(EVIL, "PUT", false).name("no uploads from elsewhere"),
        Expectation::new(APP, "PUT", true)
            .headers(["content-type"])
            .name("the app uploads"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_that_breaks_its_expectations_leaves_the_bucket_alone_until_fixed() {
    let h = Harness::start().await;
    let moto = Moto::shared();
    let s3 = moto.client();
    let bucket = moto.new_bucket("expect").await;
    put_behind_the_back(&s3, &bucket, "https://other.example.com").await;
    let before = bucket_cors(&s3, &bucket).await;
    assert_eq!(before.len(), 1);
    let writes_before = moto.cors_writes(&bucket);

    // Too open: anyone may PUT, and the app's upload asks for a header no rule allows.
    let mut spec = h.spec(
        &bucket,
        vec![CorsRule::new(["*"], ["GET", "PUT"]).id("anyone")],
    );
    spec.expectations = expectations();
    h.create("web", spec.clone()).await;

    let failed = h.wait_reason("web", "ExpectationFailed").await;
    let ready = failed.ready_condition().unwrap();
    assert_eq!(ready.status, "False");
    let message = &ready.message;
    assert!(
        message.contains(r#"2 of 3 expectation(s) failed; the rules were not written"#),
        "{message}"
    );
    assert!(
        message.contains(concat!(
            r#"spec.expectations[1] "no uploads from elsewhere" (preflight PUT from "https://evil.example") "#,
            r#"is expected to be refused, but rule 1 (id "anyone") allows it"#
        )),
        "{message}"
    );
    assert!(
        message.contains(concat!(
            r#"spec.expectations[2] "the app uploads" (preflight PUT from "https://app.example.com" with headers [content-type]) "#,
            r#"is expected to be allowed, but no rule matches it: rule 1 (id "anyone"): header content-type is not allowed: the rule has no allowedHeaders"#
        )),
        "{message}"
    );
    let conditions = &failed.status.as_ref().unwrap().conditions;
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "ExpectationFailed"),
        "{conditions:?}"
    );
    h.wait_event("web", |(t, r, _)| {
        t == "Warning" && r == "ExpectationFailed"
    })
    .await;
    // Nothing was written: the bucket holds what it held, read back from the server.
    assert_eq!(bucket_cors(&s3, &bucket).await, before);
    assert_eq!(moto.cors_writes(&bucket), writes_before);

    // Fixed: the app only, with the header it sends.
    let fixed = vec![
        CorsRule::new([APP], ["GET", "PUT"])
            .id("app")
            .allowed_headers(["content-type"]),
    ];
    spec.rules = fixed.clone();
    h.update("web", &spec).await;
    let applied = h
        .wait_for("web", "Applied or InSync", PROMPTLY, |obj| {
            let current =
                obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
            current
                && obj
                    .ready_condition()
                    .is_some_and(|c| c.reason == "Applied" || c.reason == "InSync")
        })
        .await;
    let ready = applied.ready_condition().unwrap();
    assert_eq!(ready.status, "True", "{ready:?}");
    assert_eq!(bucket_cors(&s3, &bucket).await, fixed);
    let conditions = &applied.status.as_ref().unwrap().conditions;
    assert!(
        conditions.iter().all(|c| c.type_ != "Stalled"),
        "{conditions:?}"
    );
}
