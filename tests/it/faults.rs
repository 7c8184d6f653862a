//! The real controller against a store that fails: a fault proxy stands between the operator
//! and moto. Buckets are created and read back on moto directly, never through the proxy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bucketcors::api::BucketCors;
use bucketcors::controller::{self, Context, Settings};
use bucketcors::cors::CorsRule;
use bucketcors::s3::{CorsStore, SdkStore};

use crate::support::fault_proxy::{Failure, Fault, FaultProxy};
use crate::support::harness::{Harness, PROMPTLY, RESYNC, bucket_cors, eventually};
use crate::support::moto::Moto;

/// The SDK's configuration for an ambient identity in us-east-1, 3 attempts a call, with
/// `timeouts` or the SDK's.
fn sdk_config(timeouts: Option<TimeoutConfig>) -> aws_config::SdkConfig {
    let mut config = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "ambient", "ambient", None, None, "tests",
        )))
        .retry_config(RetryConfig::standard().with_max_attempts(3));
    config.set_timeout_config(timeouts);
    config.build()
}

fn rules_a() -> Vec<CorsRule> {
    vec![
        CorsRule::new(["https://app.example.com"], ["GET", "PUT"])
            .id("app")
            .allowed_headers(["*"])
            .max_age(3000),
    ]
}

fn rules_b() -> Vec<CorsRule> {
    vec![
        CorsRule::new(["https://app.example.com"], ["GET"]).id("app"),
        CorsRule::new(["*"], ["HEAD"]).id("public"),
    ]
}

fn ready(obj: &BucketCors) -> Option<(String, String, String)> {
    obj.ready_condition()
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Ready=True claimed for the object's current generation.
fn claims_ready_for(obj: &BucketCors, generation: Option<i64>) -> bool {
    let status_generation = obj.status.as_ref().and_then(|s| s.observed_generation);
    obj.ready_condition().is_some_and(|c| {
        c.status == "True"
            && (status_generation == generation || c.observed_generation == generation)
    })
}

/// Every request fails with `failure` until the object is Unavailable; then the store recovers
/// and the rules reach the bucket with a single write.
async fn unavailable_then_recovers(failure: Failure, expected_in_message: &[&str]) {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("faults").await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.set(Fault::All(failure));
    let h = Harness::start_with(&proxy.endpoint()).await;
    h.create("web", h.spec(&bucket, rules_a())).await;

    let down = h.wait_reason("web", "Unavailable").await;
    let (status, _, message) = ready(&down).unwrap();
    assert_eq!(status, "False");
    println!("{failure:?}: {message}");
    assert!(message.contains("GetBucketCors"), "{message}");
    for expected in expected_in_message {
        assert!(message.contains(expected), "{failure:?}: {message}");
    }
    assert!(proxy.faulted() > 0);
    assert_eq!(
        moto.cors_calls(&bucket).len(),
        0,
        "nothing reached the store"
    );

    proxy.set(Fault::Pass);
    h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_a());
    assert_eq!(moto.cors_writes(&bucket), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_unavailable_retried_at_a_bounded_rate_then_recovers() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("faults").await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.set(Fault::All(Failure::SlowDown));
    let h = Harness::start_with(&proxy.endpoint()).await;
    h.create("web", h.spec(&bucket, rules_a())).await;

    let down = h.wait_reason("web", "Unavailable").await;
    let (status, _, message) = ready(&down).unwrap();
    assert_eq!(status, "False");
    println!("SlowDown: {message}");
    assert!(
        message.contains("Please reduce your request rate."),
        "{message}"
    );

    // At most 3 attempts per pass (the SDK's retries), and passes spaced by the controller's
    // backoff: 1 s, then 2 s (the resync interval caps it), each times 0.5 to 1.0. So passes
    // are at least 0.5 s apart, then at least 1 s: in 10 s at most about 11 passes, 33 requests,
    // even if every SDK backoff were zero. A controller that spins would send hundreds.
    const WINDOW: Duration = Duration::from_secs(10);
    let before = proxy.requests_seen();
    let version = down.metadata.resource_version.clone();
    let start = Instant::now();
    while start.elapsed() < WINDOW {
        let obj = h.api.get("web").await.unwrap();
        assert_eq!(
            ready(&obj).map(|r| (r.0, r.1)),
            Some(("False".into(), "Unavailable".into())),
            "while the store throttles"
        );
        // The same failure again is no news: the status is not rewritten.
        assert_eq!(
            obj.metadata.resource_version, version,
            "status rewritten: {:?}",
            obj.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = proxy.requests_seen() - before;
    println!("throttled: {seen} requests in {:?}", start.elapsed());
    assert!(
        seen < 40,
        "{seen} requests in {WINDOW:?}: the operator spins"
    );
    assert!(
        seen >= 2,
        "{seen} requests in {WINDOW:?}: the operator gave up"
    );

    proxy.set(Fault::Pass);
    let applied = h.wait_reason("web", "Applied").await;
    assert_eq!(ready(&applied).unwrap().0, "True");
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_a());
    assert_eq!(moto.cors_writes(&bucket), 1);

    // The store's error code is what operators search for and alert on.
    assert!(
        message.contains("SlowDown"),
        "the Unavailable message does not name the store's error code: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_are_unavailable_then_recover() {
    unavailable_then_recovers(
        Failure::InternalError,
        &["We encountered an internal error"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_unavailable_then_recover() {
    unavailable_then_recovers(
        Failure::Drop,
        &["connection closed before message completed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_are_unavailable_then_recover() {
    unavailable_then_recovers(Failure::Reset, &["Connection reset by peer"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_never_leaves_the_object_claiming_ready() {
    let moto = Moto::shared();
    let s3 = moto.client();
    let bucket = moto.new_bucket("faults").await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let mut h = Harness::start_with(&proxy.endpoint()).await;
    h.create("web", h.spec(&bucket, rules_a())).await;
    h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&s3, &bucket).await, rules_a());

    // Reads pass, writes fail: the pass sees the difference and its Put fails.
    proxy.set(Fault::Writes(Failure::InternalError));
    let updated = h.update("web", &h.spec(&bucket, rules_b())).await;
    let generation = updated.metadata.generation;
    let down = h.wait_reason("web", "Unavailable").await;
    let (status, _, message) = ready(&down).unwrap();
    assert_eq!(status, "False");
    assert!(message.contains("PutBucketCors"), "{message}");

    // Several resyncs' worth of failed passes: never Ready for the new generation, and the
    // bucket keeps the old rules whole.
    let faulted = proxy.faulted();
    let start = Instant::now();
    loop {
        let obj = h.api.get("web").await.unwrap();
        assert!(
            !claims_ready_for(&obj, generation),
            "Ready while its Put fails: {:?}",
            obj.status
        );
        assert_eq!(bucket_cors(&s3, &bucket).await, rules_a());
        if start.elapsed() >= RESYNC * 4 && proxy.faulted() >= faulted + 3 {
            break;
        }
        assert!(
            start.elapsed() < PROMPTLY,
            "the operator stopped retrying: {} failed writes",
            proxy.faulted() - faulted
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        moto.cors_writes(&bucket),
        1,
        "a failed Put reached the store"
    );

    proxy.set(Fault::Pass);
    let applied = h.wait_reason("web", "Applied").await;
    assert!(claims_ready_for(&applied, generation));
    assert_eq!(bucket_cors(&s3, &bucket).await, rules_b());
    assert_eq!(moto.cors_writes(&bucket), 2);
    eventually("a later pass to find it in sync", PROMPTLY, || async {
        h.api
            .get("web")
            .await
            .unwrap()
            .ready_condition()
            .is_some_and(|c| c.reason == "InSync")
    })
    .await;
    assert_eq!(moto.cors_writes(&bucket), 2);
    // Through all of it the controller kept running, and it still shuts down cleanly.
    h.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_never_answers_times_out_as_unavailable_then_recovers() {
    let moto = Moto::shared();
    let bucket = moto.new_bucket("faults").await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.set(Fault::All(Failure::Hang));
    // The harness's store has the SDK's default timeouts (none for a request in flight); the
    // operator sets its own. Run the controller with those, shortened from 20 s per attempt
    // and 60 s per operation so that the test stays short.
    let mut h = Harness::start_with(&proxy.endpoint()).await;
    // Stopped once it is running (see the test of a stop during startup): an invalid spec is
    // reported without any S3 call.
    h.create(
        "probe",
        h.spec(&bucket, crate::support::harness::over_64_kb()),
    )
    .await;
    h.wait_reason("probe", "InvalidSpec").await;
    h.stop_controller().await;
    let shared = sdk_config(Some(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(6))
            .build(),
    ));
    let mut settings = Settings {
        namespaces: vec![h.namespace.clone()],
        resync_interval: RESYNC,
        concurrency: 4,
        ..Settings::default()
    };
    settings.tenancy.single_tenant = true;
    let ctx = Arc::new(Context::new(
        h.client.clone(),
        SdkStore::new(shared, None),
        settings,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run(ctx, async {
        let _ = stopped.await;
    }));

    h.create("web", h.spec(&bucket, rules_a())).await;
    let down = h.wait_reason("web", "Unavailable").await;
    let (status, _, message) = ready(&down).unwrap();
    println!("Hang: {message}");
    assert_eq!(status, "False");
    assert!(message.contains("GetBucketCors"), "{message}");
    assert!(message.contains("timeout"), "{message}");

    proxy.set(Fault::Pass);
    h.wait_reason("web", "Applied").await;
    assert_eq!(bucket_cors(&moto.client(), &bucket).await, rules_a());
    assert_eq!(moto.cors_writes(&bucket), 1);

    let _ = stop.send(());
    tokio::time::timeout(PROMPTLY, running)
        .await
        .expect("the controller stops in time")
        .expect("the controller did not panic");
}

/// A stop (SIGTERM) that comes while the controller is still starting, before its first list
/// of objects is in, must end it like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_stops_when_stopped_during_startup() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // An API server that takes connections and never answers: no first list ever lands, so
    // the stop comes during startup, whatever the machine's speed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let silent = tokio::spawn({
        let connections = connections.clone();
        async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                open.push(stream);
            }
        }
    });
    let config = kube::Config::new(format!("http://{address}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let settings = Settings {
        namespaces: vec!["starting".to_owned()],
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(
        client,
        crate::support::harness::ambient_store(),
        settings,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run(ctx.clone(), async {
        let _ = stopped.await;
    }));
    eventually(
        "the controller to ask for its first lists",
        PROMPTLY,
        || async { connections.load(Ordering::SeqCst) >= 1 },
    )
    .await;
    assert!(!ctx.readiness.get(), "no list has landed: still starting");

    let _ = stop.send(());
    tokio::time::timeout(PROMPTLY, running)
        .await
        .expect("the controller stops in time")
        .expect("the controller did not panic");
    assert!(!ctx.readiness.get());
    silent.abort();
}

/// A harness over `proxy` whose controller gives each store `budget` (none: no limit), and `n`
/// objects, each with a bucket of its own.
async fn objects_through(
    proxy: &FaultProxy,
    budget: Option<bucketcors::s3::Budget>,
    n: usize,
) -> (Harness, Vec<String>) {
    let h = Harness::start_configured(&proxy.endpoint(), |settings| {
        settings.store_budget = budget;
        settings.concurrency = 16;
    })
    .await;
    let moto = Moto::shared();
    let mut names = Vec::new();
    for i in 0..n {
        let bucket = moto.new_bucket("budget").await;
        let name = format!("web-{i}");
        h.create(&name, h.spec(&bucket, rules_a())).await;
        names.push(name);
    }
    (h, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stores_request_budget_keeps_many_objects_under_the_rate_it_throttles_above() {
    const OBJECTS: usize = 20;
    // Without a budget, 20 objects at once ask more than 25 requests a second of this store,
    // which throttles above that.
    let unlimited = FaultProxy::start(&Moto::shared().endpoint()).await;
    unlimited.set(Fault::ThrottleAbove(25));
    let (h, _) = objects_through(&unlimited, None, OBJECTS).await;
    eventually("the store throttles", Duration::from_secs(30), || async {
        unlimited.faulted() > 0
    })
    .await;
    drop(h);

    // With 15 a second (5 at once), the same objects converge without one 503, and keep
    // resyncing (every 2 s: 10 reads a second) within it.
    let proxy = FaultProxy::start(&Moto::shared().endpoint()).await;
    proxy.set(Fault::ThrottleAbove(25));
    let started = Instant::now();
    let budget = bucketcors::s3::Budget {
        per_second: 15,
        burst: 5,
    };
    let (h, names) = objects_through(&proxy, Some(budget), OBJECTS).await;
    for name in &names {
        h.wait_for(name, "Ready", Duration::from_secs(60), |o| {
            o.ready_condition().is_some_and(|c| c.status == "True")
        })
        .await;
    }
    let converged = started.elapsed();
    let at_convergence = proxy.requests_seen();
    // Three resyncs of every object more.
    eventually("three more resyncs", Duration::from_secs(30), || async {
        proxy.requests_seen() >= at_convergence + 3 * OBJECTS
    })
    .await;
    let took = started.elapsed();
    let sent = proxy.requests_seen();
    println!(
        "{OBJECTS} objects, budget 15/s: converged in {converged:?} ({at_convergence} requests); {sent} requests in {took:?}, {} throttled; unlimited: {} throttled",
        proxy.faulted(),
        unlimited.faulted()
    );
    assert_eq!(proxy.faulted(), 0, "no request was throttled");
    assert!(
        at_convergence >= 2 * OBJECTS,
        "a Get and a Put each: {at_convergence}"
    );
    // The budget held: over the whole run, no more than its rate plus its burst.
    assert!(
        (sent as f64) <= 5.0 + 15.0 * took.as_secs_f64() + 1.0,
        "{sent} requests in {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_throttles_spends_its_own_retries_not_another_stores() {
    let moto = Moto::shared();
    let throttling = FaultProxy::start(&moto.endpoint()).await;
    throttling.set(Fault::All(Failure::SlowDown));
    let flaky = FaultProxy::start(&moto.endpoint()).await;
    let shared = sdk_config(None);
    let store = SdkStore::new(shared, None);
    let target = |endpoint: String, bucket: &str| {
        let mut target = bucketcors::s3::BucketTarget::new(bucket);
        target.endpoint = Some(endpoint);
        target
    };

    // 120 calls, 2 retries each: more than the SDK's retry quota (500 tokens, 5 a retry).
    let spent = target(throttling.endpoint(), "spent");
    let calls = (0..120).map(|_| store.get_cors(&spent));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(Result::is_err));
    let seen = throttling.requests_seen();
    println!("the throttling store was sent {seen} requests for 120 calls");
    assert!(
        seen < 360,
        "the quota ran out: not every call was retried twice ({seen})"
    );

    // Another store fails every other request: its calls are retried, from its own quota.
    let bucket = moto.new_bucket("retried").await;
    flaky.set(Fault::EveryOther(Failure::InternalError));
    let flaky_target = target(flaky.endpoint(), &bucket);
    for _ in 0..5 {
        store.get_cors(&flaky_target).await.unwrap();
    }
    assert_eq!(
        flaky.faulted(),
        5,
        "each call's first attempt failed and was retried"
    );
}
