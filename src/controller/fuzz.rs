//! Random specs, Secrets and store answers, with arbitrary Unicode in every field, through
//! all the operator does with them: admission (the CRD's CEL and the operator's own checks),
//! `decide`, the reading of a Secret, and the building and sending of every request the
//! operator can send (Get, Put, Delete, live preflight) to a listener on loopback that answers
//! what the case says. Zero panics. `make test` runs [`DEFAULT_CASES`];
//! `BUCKETCORS_FUZZ_CASES=50000 cargo test --lib fuzz` runs longer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::target::{self, Access};
use super::{Context, Settings};
use crate::api::{BucketCors, BucketCorsSpec, DeletionPolicy, ManagementPolicy, SecretRef, Verify};
use crate::cors::{CorsRule, Expectation};
use crate::decide::{self, Ownership};
use crate::s3::{CorsStore, SdkStore};
use crate::{admission, profiles, verify};

const DEFAULT_CASES: u32 = 1000;

/// Text of every kind: what a valid spec holds, near misses, and any Unicode at all.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "https://app.example.com", "GET", "PUT", "*", "content-type", "ETag", "x-amz-*",
            "index.html", "a/b.txt", "eu-west-1", "s3-credentials", "123456789012",
        ]).prop_map(str::to_owned),
        2 => "[ -~]{0,24}",
        2 => any::<String>(),
        1 => "[a./\\r\\n\\t\u{0}\u{1}\u{7f}\u{85}\u{2028}é*-]{0,12}",
    ]
    .boxed()
}

/// Text that admission takes in every field it can stand in, Unicode included.
fn tame() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(vec![
            "https://app.example.com",
            "content-type",
            "x-amz-*",
            "*"
        ])
        .prop_map(str::to_owned),
        "[a-z0-9][a-z0-9é\u{a0}ü.-]{0,12}",
    ]
    .boxed()
}

fn list_of(text: BoxedStrategy<String>) -> BoxedStrategy<Vec<String>> {
    prop::collection::vec(text, 0..4).boxed()
}

fn rule(text: BoxedStrategy<String>) -> impl Strategy<Value = CorsRule> {
    (
        prop::option::of(text.clone()),
        prop::collection::vec(text.clone(), 1..3),
        prop::collection::vec(
            prop_oneof![
                8 => prop::sample::select(vec!["GET", "PUT", "HEAD", "POST", "DELETE"])
                    .prop_map(str::to_owned),
                1 => text.clone()
            ],
            1..3,
        ),
        list_of(text),
        prop::collection::vec("[a-zA-Z0-9-]{1,10}", 0..2),
        prop::option::of(prop_oneof![0..100_000i32, any::<i32>()]),
    )
        .prop_map(
            |(id, origins, methods, headers, expose, max_age)| CorsRule {
                id,
                allowed_origins: origins,
                allowed_methods: methods,
                allowed_headers: headers,
                expose_headers: expose,
                max_age_seconds: max_age,
            },
        )
}

fn expectation(text: BoxedStrategy<String>) -> impl Strategy<Value = Expectation> {
    (
        prop::option::of(text.clone()),
        text.clone(),
        prop_oneof![3 => Just("GET".to_owned()), 1 => text.clone()],
        list_of(text),
        any::<bool>(),
    )
        .prop_map(|(name, origin, method, headers, allowed)| Expectation {
            name,
            origin,
            method,
            headers,
            allowed,
        })
}

/// Specs whose strings are all tame (most pass admission and are sent) or all wild.
fn spec() -> impl Strategy<Value = BucketCorsSpec> {
    prop_oneof![spec_of(tame()), spec_of(text())]
}

fn spec_of(text: BoxedStrategy<String>) -> impl Strategy<Value = BucketCorsSpec> {
    (
        prop_oneof![3 => "[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]", 1 => text.clone()],
        (
            prop::option::of(prop_oneof![
                3 => "http://127\\.0\\.0\\.1:1(/[ -~]{0,8})?",
                1 => text.clone()
            ]),
            prop::option::of(prop_oneof![3 => "[a-z]{2}-[a-z]{4}-[0-9]", 1 => text.clone()]),
            prop::option::of(prop_oneof![3 => "[a-z0-9]{1,8}", 1 => text.clone()]),
            prop::option::of(text.clone()),
        ),
        prop::collection::vec(rule(text.clone()), 0..4),
        prop::collection::vec(expectation(text.clone()), 0..3),
        prop::option::of((any::<bool>(), prop::option::of(text))),
        any::<bool>(),
    )
        .prop_map(
            |(bucket, (endpoint, region, secret, owner), rules, expectations, verify, style)| {
                BucketCorsSpec {
                    bucket,
                    region,
                    store_ref: None,
                    endpoint,
                    force_path_style: Some(style),
                    credentials_secret_ref: secret.map(|name| SecretRef { name }),
                    expected_bucket_owner: owner,
                    deletion_policy: DeletionPolicy::Delete,
                    put_checksum: None,
                    store_profile: None,
                    management_policy: ManagementPolicy::Full,
                    rules,
                    expectations,
                    verify: verify.map(|(live, key)| Verify { live, key }),
                }
            },
        )
}

/// What a Secret may hold: the keys the operator reads, with any bytes.
fn secret_data() -> impl Strategy<Value = BTreeMap<String, ByteString>> {
    let value = prop_oneof![
        3 => "[A-Za-z0-9/+=]{1,40}".prop_map(String::into_bytes),
        1 => text().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ];
    prop::collection::btree_map(
        prop::sample::select(vec![
            target::ACCESS_KEY_ID,
            target::SECRET_ACCESS_KEY,
            target::SESSION_TOKEN,
        ])
        .prop_map(str::to_owned),
        value.prop_map(ByteString),
        0..4,
    )
}

/// One answer of the store, as raw HTTP/1.1: any status, a CORS configuration of random
/// rules, random text or an error document, and headers that a preflight reads.
fn answer() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![200u16, 204, 301, 307, 400, 403, 404, 500, 503]),
        prop_oneof![
            prop::collection::vec(rule(text()), 0..3).prop_map(|r| cors_xml(&r)),
            text(),
            (text(), text()).prop_map(|(code, message)| format!(
                "<Error><Code>{}</Code><Message>{}</Message></Error>",
                escape(&code),
                escape(&message)
            )),
        ],
        "[ -~\u{80}-\u{ff}]{0,20}",
    )
        .prop_map(|(status, body, header)| {
            let mut raw = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\
                 x-amz-bucket-region: {header}\r\naccess-control-allow-origin: {header}\r\n\
                 server: {header}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(body.as_bytes());
            raw
        })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cors_xml(rules: &[CorsRule]) -> String {
    let element = |tag: &str, v: &str| format!("<{tag}>{}</{tag}>", escape(v));
    let mut xml = String::from("<CORSConfiguration>");
    for r in rules {
        xml.push_str("<CORSRule>");
        r.id.iter().for_each(|id| xml.push_str(&element("ID", id)));
        for (tag, values) in [
            ("AllowedOrigin", &r.allowed_origins),
            ("AllowedMethod", &r.allowed_methods),
            ("AllowedHeader", &r.allowed_headers),
            ("ExposeHeader", &r.expose_headers),
        ] {
            values.iter().for_each(|v| xml.push_str(&element(tag, v)));
        }
        if let Some(age) = r.max_age_seconds {
            xml.push_str(&element("MaxAgeSeconds", &age.to_string()));
        }
        xml.push_str("</CORSRule>");
    }
    xml + "</CORSConfiguration>"
}

/// A listener that answers every request with the current answer and closes.
async fn listener(answer: Arc<Mutex<Vec<u8>>>) -> u16 {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = socket.accept().await {
            let answer = answer.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as it announces.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(&answer).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    port
}

fn crd_schema() -> Value {
    let crd = serde_json::to_value(admission::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

struct World {
    ctx: Context<SdkStore>,
    schema: Value,
    answer: Arc<Mutex<Vec<u8>>>,
    port: u16,
}

async fn world() -> World {
    use aws_config::BehaviorVersion;
    use aws_sdk_s3::config::Region;
    use aws_smithy_types::retry::RetryConfig;
    use aws_smithy_types::timeout::TimeoutConfig;
    let answer = Arc::new(Mutex::new(Vec::new()));
    let port = listener(answer.clone()).await;
    let shared = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("ambient", "ambient", None, None, "fuzz"),
            ),
        )
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(std::time::Duration::from_secs(5))
                .build(),
        )
        .build();
    // A client of an API server that is never called: the requests go to the store.
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let settings = Settings {
        store_budget: None,
        ..Settings::default()
    };
    World {
        ctx: Context::new(client, SdkStore::new(shared, None), settings),
        schema: crd_schema(),
        answer,
        port,
    }
}

/// Everything the operator does with one spec, a Secret and the store's answer.
async fn one_case(
    w: &World,
    spec: BucketCorsSpec,
    data: BTreeMap<String, ByteString>,
    observed: Vec<CorsRule>,
    answer: Vec<u8>,
) {
    let obj = BucketCors::new("fuzzed", spec);
    let mut json = serde_json::to_value(&obj).unwrap();
    json["metadata"]["namespace"] = "ns".into();
    let _ = kube::core::cel::Validator::new().validate(&w.schema, &json, None);
    let spec = &obj.spec;
    let accepted = admission::validate(spec).is_ok();
    let profile = profiles::resolve(spec.store_profile, spec.endpoint.as_deref());
    for ownership in [Ownership::Holds, Ownership::Unknown] {
        decide::decide_on(
            profile,
            spec,
            Some(1),
            &observed,
            None,
            &ownership,
            None,
            "now",
        );
    }
    let credentials = target::credentials_in(Some(&data));
    if !accepted {
        // The operator sends nothing for a spec its own checks refuse.
        return;
    }
    *w.answer.lock().unwrap() = answer;
    let mut target = target::bucket_of(&obj, &w.ctx, &Access::Own { guarded: false });
    let path = spec
        .endpoint
        .as_deref()
        .and_then(|e| e.split_once("://"))
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()));
    target.endpoint = Some(format!(
        "http://127.0.0.1:{}{}",
        w.port,
        path.unwrap_or_default()
    ));
    target.credentials = credentials.ok();
    let store = &w.ctx.store;
    let _ = store.get_cors(&target).await;
    let _ = store.put_cors(&target, &spec.rules).await;
    let _ = store.delete_cors(&target).await;
    if let Some((key, sent)) = verify::plan(spec) {
        for e in sent {
            let headers: Vec<&str> = e.headers.iter().map(String::as_str).collect();
            let _ = store
                .preflight(&target, key, &e.origin, &e.method, &headers)
                .await;
        }
    }
}

#[test]
fn nothing_a_tenant_or_a_store_sends_makes_the_operator_panic() {
    let cases = std::env::var("BUCKETCORS_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let w = runtime.block_on(world());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let strategy = (
        spec(),
        secret_data(),
        prop::collection::vec(rule(text()), 0..3),
        answer(),
    );
    runner
        .run(&strategy, |(spec, data, observed, answer)| {
            if admission::validate(&spec).is_ok() {
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            runtime.block_on(one_case(&w, spec, data, observed, answer));
            Ok(())
        })
        .unwrap();
    // Enough cases went all the way to the requests for the run to prove something.
    let sent = sent.into_inner();
    println!("{cases} cases, {sent} sent to the store");
    assert!(
        sent * 10 >= cases as usize,
        "only {sent} of {cases} cases were sent to the store"
    );
}
