//! The same end-to-end scenarios against every S3 implementation that runs here. Calls are
//! counted at the store's side by a pass-through proxy in front of it; what each store holds
//! is read back with a client of the tests' own. Each run writes its results to
//! target/compat/<store>.json, from which scripts/compat-table.py makes the README's table.

use std::time::Duration;

use bucketcors::api::{BucketCorsSpec, DeletionPolicy};
use bucketcors::cors::{self, CorsRule};
use bucketcors::s3::{BucketTarget, Checksum, CorsStore, Credentials};
use serde_json::json;

use crate::support::fault_proxy::FaultProxy;
use crate::support::harness::{Harness, PROMPTLY, RESYNC, ambient_store, bucket_cors, over_64_kb};
use crate::support::process::repo_root;
use crate::support::stores::{S3Server, garage};
use crate::support::unique_name;

fn rich() -> Vec<CorsRule> {
    vec![
        CorsRule::new(
            ["https://b.example.com", "https://a.example.com"],
            ["PUT", "POST", "DELETE", "GET"],
        )
        .id("uploads")
        .allowed_headers(["x-amz-*", "Content-Type", "Authorization"])
        .expose_headers(["ETag", "x-amz-request-id"])
        .max_age(3000),
        CorsRule::new(["*"], ["GET", "HEAD"]).id("public"),
        CorsRule::new(["https://*.example.org"], ["GET"]).max_age(0),
    ]
}

struct Suite<'a> {
    store: &'a S3Server,
    h: Harness,
    proxy: FaultProxy,
    results: Vec<serde_json::Value>,
    quirks: Vec<String>,
}

impl<'a> Suite<'a> {
    async fn start(store: &'a S3Server) -> Suite<'a> {
        let proxy = FaultProxy::start(&store.endpoint).await;
        let h = Harness::start_with(&proxy.endpoint()).await;
        h.create_credentials_secret("store", &store.access_key, &store.secret_key)
            .await;
        Suite {
            store,
            h,
            proxy,
            results: Vec::new(),
            quirks: Vec::new(),
        }
    }

    fn spec(&self, bucket: &str, rules: Vec<CorsRule>) -> BucketCorsSpec {
        self.h.spec_with_secret(bucket, rules, "store")
    }

    async fn bucket(&self) -> String {
        let bucket = unique_name("compat");
        self.store.create_bucket(&bucket).await;
        bucket
    }

    async fn held(&self, bucket: &str) -> Vec<CorsRule> {
        bucket_cors(&self.store.client(), bucket).await
    }

    /// Runs one scenario, recording whether it held (and why not) instead of stopping.
    async fn scenario(
        &mut self,
        name: &str,
        run: impl AsyncFnOnce(&Suite<'a>) -> Result<String, String>,
    ) {
        let outcome = tokio::time::timeout(Duration::from_secs(90), run(&*self))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        eprintln!("{} / {name}: {outcome:?}", self.store.name);
        let (passed, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        self.results
            .push(json!({"scenario": name, "passed": passed, "detail": detail}));
    }

    fn write_report(&self) {
        let dir = repo_root().join("target/compat");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!(
            "{}.json",
            self.store.name.to_lowercase().replace(' ', "-")
        ));
        let report = json!({
            "store": self.store.name,
            "version": self.store.version,
            "results": self.results,
            "quirks": self.quirks,
        });
        std::fs::write(file, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }

    fn assert_all_passed(&self) {
        let failed: Vec<_> = self
            .results
            .iter()
            .filter(|r| r["passed"] == false)
            .collect();
        assert!(failed.is_empty(), "{}: {failed:#?}", self.store.name);
    }
}

fn check(condition: bool, failure: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(failure()) }
}

async fn wait(what: &str, check: impl AsyncFn() -> bool) -> Result<(), String> {
    let start = std::time::Instant::now();
    while !check().await {
        if start.elapsed() > PROMPTLY {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn reason_is(s: &Suite<'_>, name: &str, reason: &str) -> Result<(), String> {
    wait(&format!("{name} to be {reason}"), async || {
        s.h.api.get(name).await.ok().is_some_and(|o| {
            o.status.as_ref().and_then(|st| st.observed_generation) == o.metadata.generation
                && o.ready_condition().is_some_and(|c| c.reason == reason)
        })
    })
    .await
}

/// The scenarios every store that implements bucket CORS must pass.
async fn full_suite(store: &S3Server) {
    let mut suite = Suite::start(store).await;

    suite
        .scenario(
            "apply: three rules with ids, wildcards, expose headers and max age",
            async |s| {
                let bucket = s.bucket().await;
                s.h.create("apply", s.spec(&bucket, rich())).await;
                reason_is(s, "apply", "Applied").await?;
                let held = s.held(&bucket).await;
                check(!cors::diff(&rich(), &held).writes(), || {
                    format!("the store holds {held:?}")
                })?;
                Ok(if held == rich() {
                    "held verbatim".into()
                } else {
                    format!("held reordered: {held:?}")
                })
            },
        )
        .await;
    // What the store did to the rules it was given, found by the scenario above.
    if let Some(detail) = suite.results[0]["detail"].as_str()
        && detail.starts_with("held reordered")
    {
        suite.quirks.push("returns origins, methods and headers in its own order inside a rule: compared as sets, so no writes".into());
    }

    suite
        .scenario("steady state: no writes over three resyncs", async |s| {
            let bucket = s.bucket().await;
            s.h.create("steady", s.spec(&bucket, rich())).await;
            reason_is(s, "steady", "InSync").await?;
            let gets = s.proxy.cors_calls(&bucket).len();
            wait("three more resyncs", async || {
                s.proxy.cors_calls(&bucket).len() >= gets + 3
            })
            .await?;
            let writes = s.proxy.cors_writes(&bucket);
            check(writes == 1, || {
                format!("{writes} writes for one configuration")
            })?;
            Ok(format!(
                "{} GetBucketCors, 1 PutBucketCors",
                s.proxy.cors_calls(&bucket).len() - 1
            ))
        })
        .await;

    suite
        .scenario("update, then reorder rules: one write each", async |s| {
            let bucket = s.bucket().await;
            s.h.create("update", s.spec(&bucket, rich())).await;
            reason_is(s, "update", "InSync").await?;
            let mut rules = rich();
            rules[1].allowed_methods = vec!["GET".into()];
            s.h.update("update", &s.spec(&bucket, rules.clone())).await;
            wait("the update on the bucket", async || {
                !cors::diff(&rules, &s.held(&bucket).await).writes()
            })
            .await?;
            rules.swap(0, 2);
            s.h.update("update", &s.spec(&bucket, rules.clone())).await;
            wait("the new order on the bucket", async || {
                !cors::diff(&rules, &s.held(&bucket).await).writes()
            })
            .await?;
            reason_is(s, "update", "InSync").await?;
            let writes = s.proxy.cors_writes(&bucket);
            check(writes == 3, || {
                format!("{writes} writes for three configurations")
            })?;
            Ok("3 writes for 3 configurations".into())
        })
        .await;

    suite
        .scenario(
            "drift: a change made behind the operator's back is reverted",
            async |s| {
                let bucket = s.bucket().await;
                s.h.create("drift", s.spec(&bucket, rich())).await;
                reason_is(s, "drift", "InSync").await?;
                let other = vec![CorsRule::new(["https://evil.example.com"], ["DELETE"])];
                let store = store_target(s.store, &bucket);
                ambient_store()
                    .put_cors(&store, &other)
                    .await
                    .map_err(|e| e.to_string())?;
                wait("the rules to be restored", async || {
                    !cors::diff(&rich(), &s.held(&bucket).await).writes()
                })
                .await?;
                Ok("restored".into())
            },
        )
        .await;

    suite
        .scenario(
            "delete with deletionPolicy Delete removes the configuration",
            async |s| {
                let bucket = s.bucket().await;
                s.h.create("delete", s.spec(&bucket, rich())).await;
                reason_is(s, "delete", "InSync").await?;
                s.h.delete("delete").await;
                wait("the object to go", async || {
                    s.h.api.get_opt("delete").await.ok().flatten().is_none()
                })
                .await?;
                let held = s.held(&bucket).await;
                check(held.is_empty(), || {
                    format!("the store still holds {held:?}")
                })?;
                Ok("removed".into())
            },
        )
        .await;

    suite
        .scenario(
            "delete with deletionPolicy Retain keeps the rules",
            async |s| {
                let bucket = s.bucket().await;
                let mut spec = s.spec(&bucket, rich());
                spec.deletion_policy = DeletionPolicy::Retain;
                s.h.create("retain", spec).await;
                reason_is(s, "retain", "InSync").await?;
                s.h.delete("retain").await;
                wait("the object to go", async || {
                    s.h.api.get_opt("retain").await.ok().flatten().is_none()
                })
                .await?;
                let held = s.held(&bucket).await;
                check(!cors::diff(&rich(), &held).writes(), || {
                    format!("the store holds {held:?}")
                })?;
                Ok("kept".into())
            },
        )
        .await;

    suite
        .scenario(
            "invalid input is refused before any call to the store",
            async |s| {
                let bucket = s.bucket().await;
                // What the API server's CEL rules let through: S3's 64 KB limit.
                s.h.create("invalid", s.spec(&bucket, over_64_kb())).await;
                reason_is(s, "invalid", "InvalidSpec").await?;
                let calls = s.proxy.cors_calls(&bucket).len();
                check(calls == 0, || format!("{calls} calls reached the store"))?;
                Ok("InvalidSpec, no call".into())
            },
        )
        .await;

    // What the store itself says to a configuration S3 refuses, sent past validation.
    suite
        .scenario("the store's own answer to a method S3 refuses", async |s| {
            let bucket = s.bucket().await;
            let target = store_target(s.store, &bucket);
            match ambient_store()
                .put_cors(&target, &[CorsRule::new(["*"], ["PATCH"])])
                .await
            {
                Ok(()) => Ok("accepted PATCH".into()),
                Err(bucketcors::s3::S3Error::Rejected { code, message, .. })
                    if message.is_empty() =>
                {
                    Ok(format!("Rejected {code} (no message)"))
                }
                Err(bucketcors::s3::S3Error::Rejected { code, message, .. }) => {
                    Ok(format!("Rejected {code}: {message}"))
                }
                Err(err) => Ok(format!("{}: {err}", err.reason())),
            }
        })
        .await;
    if let Some(detail) = suite.results.last().and_then(|r| r["detail"].as_str()) {
        if detail == "accepted PATCH" {
            suite.quirks.push(
                "accepts methods S3 refuses (PATCH): validation before the store matters".into(),
            );
        } else if !detail.contains("InvalidRequest") {
            suite.quirks.push(format!("answers a method S3 refuses with {detail} (AWS: InvalidRequest); kept verbatim in the status"));
        }
    }

    suite
        .scenario(
            "PutBucketCors with the SDK's CRC32 and with Content-MD5",
            async |s| {
                let mut accepted = Vec::new();
                for (name, checksum) in [
                    ("CRC32", Checksum::Crc32),
                    ("Content-MD5", Checksum::ContentMd5),
                ] {
                    let bucket = s.bucket().await;
                    let mut target = store_target(s.store, &bucket);
                    target.checksum = checksum;
                    match ambient_store().put_cors(&target, &rich()).await {
                        Ok(()) => {
                            let held = s.held(&bucket).await;
                            check(!cors::diff(&rich(), &held).writes(), || {
                                format!("{name}: the store holds {held:?}")
                            })?;
                            accepted.push(format!("{name} accepted"));
                        }
                        Err(err) => accepted.push(format!("{name} refused ({})", err.reason())),
                    }
                }
                // A store that takes neither cannot be written by any client of the SDK.
                check(accepted.iter().any(|a| a.ends_with("accepted")), || {
                    format!("the store refuses both: {}", accepted.join(", "))
                })?;
                Ok(accepted.join(", "))
            },
        )
        .await;
    if let Some(detail) = suite.results.last().and_then(|r| r["detail"].as_str())
        && detail.contains("refused")
    {
        suite.quirks.push(format!("checksums: {detail}"));
    }

    suite.write_report();
    suite.h.stop_controller_quietly();
    suite.assert_all_passed();
}

fn store_target(store: &S3Server, bucket: &str) -> BucketTarget {
    let mut target = BucketTarget::new(bucket);
    target.endpoint = Some(store.endpoint.clone());
    target.credentials = Some(Credentials {
        access_key_id: store.access_key.clone(),
        secret_access_key: store.secret_key.clone(),
        session_token: None,
    });
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatibility_with_moto() {
    full_suite(S3Server::moto()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatibility_with_ceph_rgw() {
    full_suite(S3Server::ceph_rgw()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatibility_with_garage() {
    full_suite(garage("compatibility_with_garage")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_bucket_cors_is_reported_unsupported_without_a_retry_storm() {
    let store = S3Server::s3s_fs();
    let mut suite = Suite::start(store).await;
    suite
        .scenario(
            "a store answering 501 is reported Unsupported, checked once per resync",
            async |s| {
                let bucket = s.bucket().await;
                s.h.create("unsupported", s.spec(&bucket, rich())).await;
                reason_is(s, "unsupported", "Unsupported").await?;
                let first = s.proxy.cors_calls(&bucket).len();
                let window = RESYNC * 3;
                tokio::time::sleep(window).await;
                let calls = s.proxy.cors_calls(&bucket).len() - first;
                // One GetBucketCors per resync (±10% jitter), never a burst of retries.
                check(calls <= 4, || format!("{calls} calls in {window:?}"))?;
                Ok(format!("{calls} calls in {window:?}"))
            },
        )
        .await;
    suite
        .quirks
        .push("answers 501 NotImplemented to every bucket CORS operation".into());
    suite.write_report();
    suite.h.stop_controller_quietly();
    suite.assert_all_passed();
}
