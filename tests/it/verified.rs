//! Live verification against Garage, whose CORS depends on something besides the rules: it
//! applies them to preflights only for a bucket with a global alias. The operator writes the
//! same rules to both kinds of bucket; only the live preflights can tell them apart.

use bucketcors::api::{BucketCors, Verify};
use bucketcors::cors::{CorsRule, Expectation};
use kube::api::{Patch, PatchParams};

use crate::support::harness::{Harness, PROMPTLY, RESYNC, bucket_cors};
use crate::support::stores::garage;
use crate::support::unique_name;

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.com";

fn verified(obj: &BucketCors) -> Option<(String, String, String)> {
    obj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Verified")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tells_a_bucket_that_applies_its_rules_from_one_that_does_not() {
    let garage = garage("verified_tells_a_bucket_that_applies_its_rules");
    let h = Harness::start_with(&garage.endpoint).await;
    h.create_credentials_secret("garage", &garage.access_key, &garage.secret_key)
        .await;
    let rules = vec![CorsRule::new([APP], ["GET"])];
    let spec = |bucket: &str| {
        let mut spec = h.spec_with_secret(bucket, rules.clone(), "garage");
        spec.expectations = vec![
            Expectation::new(APP, "GET", true).name("app"),
            Expectation::new(EVIL, "GET", false).name("others"),
        ];
        spec.verify = Some(Verify {
            live: true,
            key: None,
        });
        spec
    };

    // S3's CreateBucket: a key-local alias only.
    let local = unique_name("verify-local");
    garage
        .client()
        .create_bucket()
        .bucket(&local)
        .send()
        .await
        .unwrap();
    // `garage bucket create`: a global alias.
    let global = unique_name("verify-global");
    garage.create_bucket(&global).await;
    h.create("local", spec(&local)).await;
    h.create("global", spec(&global)).await;

    let is = |want: &'static str| move |o: &BucketCors| verified(o).is_some_and(|v| v.0 == want);
    let obj = h
        .wait_for("local", "Verified=False", PROMPTLY, is("False"))
        .await;
    assert!(obj.is_ready(), "Ready is not affected: {:?}", obj.status);
    let (_, reason, message) = verified(&obj).unwrap();
    assert_eq!(reason, "StoreDiffers");
    assert!(
        message.contains(&format!(
            "spec.expectations[1] \"others\" (GET from {EVIL}): declared refused, the store answered 200"
        )),
        "{message}"
    );
    let obj = h
        .wait_for("global", "Verified=True", PROMPTLY, is("True"))
        .await;
    assert!(obj.is_ready());
    // Both buckets hold the very same rules: the difference is only in what the store does.
    let s3 = garage.client();
    assert_eq!(bucket_cors(&s3, &local).await, rules);
    assert_eq!(bucket_cors(&s3, &global).await, rules);

    // A pass that ends without verifying (here Drifted: ObserveOnly, and the bucket changed by
    // hand) leaves no verdict standing: it goes Unknown, Stale.
    let observe = serde_json::json!({"spec": {"managementPolicy": "ObserveOnly"}});
    h.api
        .patch("local", &PatchParams::default(), &Patch::Merge(&observe))
        .await
        .unwrap();
    crate::support::harness::put_behind_the_back(&s3, &local, "https://by-hand.example.com").await;
    let obj = h
        .wait_for("local", "Verified=Unknown, Stale", PROMPTLY, |o| {
            verified(o).is_some_and(|v| v.0 == "Unknown" && v.1 == "Stale")
        })
        .await;
    assert_eq!(obj.ready_condition().unwrap().reason, "Drifted");

    // Take the global alias away (the operator's key keeps a local one, so its S3 calls still
    // reach the bucket): the next resync sees the store stop applying the rules.
    let info = garage.garage_cli(&["bucket", "info", &global]).await;
    let id = info
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 64)
        .unwrap_or_else(|| panic!("no bucket id in: {info}"))
        .to_owned();
    garage
        .garage_cli(&[
            "bucket",
            "alias",
            "--local",
            &garage.access_key,
            &id,
            &global,
        ])
        .await;
    garage.garage_cli(&["bucket", "unalias", &global]).await;
    let changed = std::time::Instant::now();
    let obj = h
        .wait_for("global", "Verified=False", RESYNC * 5, is("False"))
        .await;
    eprintln!(
        "Verified turned False {:?} after the change (resync {RESYNC:?})",
        changed.elapsed()
    );
    assert!(obj.is_ready());
    assert_eq!(bucket_cors(&s3, &global).await, rules);

    // Turning verification off removes the condition.
    let off = serde_json::json!({"spec": {"verify": null}});
    h.api
        .patch("global", &PatchParams::default(), &Patch::Merge(&off))
        .await
        .unwrap();
    h.wait_for("global", "without Verified", PROMPTLY, |o| {
        o.metadata.generation == o.status.as_ref().and_then(|s| s.observed_generation)
            && verified(o).is_none()
    })
    .await;
}
