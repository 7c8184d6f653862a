#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bucketcors::controller::{self, Context, Settings, Tenancy};
use bucketcors::http;
use bucketcors::s3::{Budget, Checksum, SdkStore};
use bucketcors::telemetry::{self, LogFormat};
use bucketcors::tenancy::{Cidr, EndpointPolicy};
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use futures::FutureExt;
use kube_lease_manager::LeaseManagerBuilder;

/// Keeps the CORS configuration of S3 buckets equal to BucketCors resources.
#[derive(Parser)]
#[command(name = "bucketcors", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (kube config: in-cluster, then KUBECONFIG / ~/.kube/config).
    Run(Box<RunArgs>),
    /// Print a BucketCors manifest for a live bucket's CORS configuration, or for a cors.json
    /// (the aws CLI's JSON) or S3 XML document.
    Import(Box<bucketcors::cli::ImportArgs>),
    /// Write the rules of BucketCors manifests as the aws CLI's JSON or S3's XML.
    Export(bucketcors::cli::ExportArgs),
    /// Check manifests offline as the API server and the operator would.
    Validate(bucketcors::cli::ValidateArgs),
    /// Say what a browser's preflight gets from a bucket's rules, and with --live what the
    /// store answers.
    Explain(Box<bucketcors::cli::ExplainArgs>),
    /// Print a CustomResourceDefinition as YAML.
    Crd {
        /// Which one: `bucketcors` (the default, as crds/bucketcors.yaml holds it) or
        /// `clusterbucketstore` (crds/clusterbucketstore.yaml).
        #[arg(value_parser = ["bucketcors", "clusterbucketstore"], default_value = "bucketcors")]
        which: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespace to watch; repeat for several. All namespaces when absent.
    #[arg(
        long = "namespace",
        env = "BUCKETCORS_NAMESPACE",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// How often each bucket is checked for changes made outside Kubernetes.
    #[arg(long, env = "BUCKETCORS_RESYNC_INTERVAL", default_value = "5m", value_parser = resync_interval)]
    resync_interval: Duration,
    /// Objects reconciled at the same time.
    #[arg(long, env = "BUCKETCORS_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Slots of `--concurrency` that namespaces already running a pass may fill together (so
    /// at most this many passes of one namespace at once); the rest are kept for namespaces
    /// running none, so that namespaces whose stores hang cannot take every slot. Default:
    /// three quarters of `--concurrency`; equal to it: none kept.
    #[arg(long, env = "BUCKETCORS_NAMESPACE_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..))]
    namespace_concurrency: Option<u16>,
    /// Region for objects that name none (before the AWS SDK's region chain).
    #[arg(long, env = "BUCKETCORS_DEFAULT_REGION")]
    default_region: Option<String>,
    /// S3 endpoint URL for objects that name none (AWS S3 when absent).
    #[arg(long, env = "BUCKETCORS_DEFAULT_ENDPOINT")]
    default_endpoint: Option<String>,
    /// Integrity check for PutBucketCors when an object does not choose one: `crc32` (the AWS
    /// SDK's default) or `content-md5` (for stores that refuse x-amz-checksum-* headers).
    #[arg(
        long,
        env = "BUCKETCORS_PUT_CHECKSUM",
        value_enum,
        default_value = "crc32"
    )]
    put_checksum: PutChecksumArg,
    /// Requests per second sent to one store (an endpoint with one identity) at most, retries
    /// included, for stores that set no `requestBudget`; 0: no limit.
    #[arg(
        long,
        env = "BUCKETCORS_STORE_REQUESTS_PER_SECOND",
        default_value_t = 200
    )]
    store_requests_per_second: u32,
    /// Requests that may go to one store at once after a quiet time (default: the rate).
    #[arg(long, env = "BUCKETCORS_STORE_REQUEST_BURST")]
    store_request_burst: Option<u32>,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "BUCKETCORS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Address of the /healthz and /readyz endpoints.
    #[arg(long, env = "BUCKETCORS_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    health_addr: SocketAddr,
    /// Run only while holding a coordination.k8s.io Lease, so that several replicas can run
    /// and exactly one reconciles.
    #[arg(long, env = "BUCKETCORS_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else "default").
    #[arg(long, env = "BUCKETCORS_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        env = "BUCKETCORS_LEADER_ELECTION_LEASE",
        default_value = "bucketcors"
    )]
    leader_election_lease: String,
    /// How long a leader's Lease stays valid without renewal; a standby takes over after it.
    #[arg(long, env = "BUCKETCORS_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    leader_election_lease_duration: Duration,
    /// Lend the operator's own AWS identity to every object that names neither a store nor a
    /// Secret, and send requests to any endpoint: for a cluster of one team. Off by default:
    /// the operator's identity serves only what a ClusterBucketStore grants.
    #[arg(long, env = "BUCKETCORS_SINGLE_TENANT")]
    single_tenant: bool,
    /// Let objects with their own credentials name plain `http://` endpoints.
    #[arg(long, env = "BUCKETCORS_ALLOW_HTTP_ENDPOINTS")]
    allow_http_endpoints: bool,
    /// Address range (CIDR) that objects with their own credentials may reach although it is
    /// loopback, link-local or private, e.g. `10.20.0.0/16` for an in-cluster store; repeat
    /// for several.
    #[arg(
        long = "allow-endpoint-range",
        env = "BUCKETCORS_ALLOW_ENDPOINT_RANGES",
        value_delimiter = ','
    )]
    allow_endpoint_ranges: Vec<Cidr>,
    /// Namespace of the Secrets that ClusterBucketStores name: the operator's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    store_secrets_namespace: String,
    /// Log line format.
    #[arg(
        long,
        env = "BUCKETCORS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PutChecksumArg {
    Crc32,
    ContentMd5,
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let status = match Cli::parse().command {
        Command::Import(args) => bucketcors::cli::import(*args).await,
        Command::Export(args) => bucketcors::cli::export(args),
        Command::Validate(args) => bucketcors::cli::validate(args),
        Command::Explain(args) => bucketcors::cli::explain(*args).await,
        other => run_or_print(other).await.map(|()| bucketcors::cli::OK),
    };
    match status {
        Ok(code) => Ok(std::process::ExitCode::from(code)),
        Err(err) => {
            eprintln!("error: {err:#}");
            Ok(std::process::ExitCode::from(2))
        }
    }
}

async fn run_or_print(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Crd { which } => {
            match which.as_str() {
                "clusterbucketstore" => print!("{}", bucketcors::store_crd_yaml()),
                _ => print!("{}", bucketcors::crd_yaml()),
            }
            Ok(())
        }
        Command::Run(args) => run(*args).await,
        _ => unreachable!("handled by main"),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration found (in-cluster or KUBECONFIG)")?;
    let tenancy = Tenancy {
        single_tenant: args.single_tenant,
        endpoint_policy: EndpointPolicy {
            allow_http: args.allow_http_endpoints,
            allowed: args.allow_endpoint_ranges.clone(),
        },
        secrets_namespace: args.store_secrets_namespace.clone(),
    };
    if tenancy.single_tenant {
        tracing::warn!(
            "single-tenant mode: every object without a store acts with the operator's own AWS identity and may name any endpoint; never use it in a cluster shared by teams"
        );
    }
    let store =
        SdkStore::from_env(args.default_region.clone(), tenancy.endpoint_policy.clone()).await;
    let settings = Settings {
        namespaces: args.namespaces.clone(),
        resync_interval: args.resync_interval,
        concurrency: args.concurrency,
        namespace_concurrency: args.namespace_concurrency.unwrap_or(0),
        default_endpoint: args.default_endpoint.clone(),
        put_checksum: match args.put_checksum {
            PutChecksumArg::Crc32 => Checksum::Crc32,
            PutChecksumArg::ContentMd5 => Checksum::ContentMd5,
        },
        store_budget: (args.store_requests_per_second > 0).then(|| Budget {
            per_second: args.store_requests_per_second,
            burst: args
                .store_request_burst
                .unwrap_or(args.store_requests_per_second)
                .max(1),
        }),
        tenancy,
    };
    tracing::info!(?settings, "starting");
    let ctx = Arc::new(Context::new(client.clone(), store, settings));

    let metrics = http::metrics_router(ctx.metrics.clone(), ctx.clone());
    let health = http::health_router(ctx.readiness.clone());
    let servers = futures::future::try_join(
        http::serve(args.metrics_addr, metrics),
        http::serve(args.health_addr, health),
    );
    let shutdown = shutdown_signal().shared();
    let operator = async {
        if args.leader_election {
            lead_then_run(client, ctx, &args, shutdown).await
        } else {
            controller::run(ctx, shutdown).await;
            Ok(())
        }
    };
    tokio::select! {
        served = servers => served.map(drop).context("an HTTP endpoint failed"),
        ran = operator => ran,
    }?;
    tracing::info!("stopped");
    Ok(())
}

/// Waits to hold the Lease, runs the controller while holding it, and lets it go on the way
/// out. A standby is ready (it can take over); losing the Lease ends the process so that it
/// starts over as a standby.
async fn lead_then_run(
    client: kube::Client,
    ctx: Arc<Context<SdkStore>>,
    args: &RunArgs,
    shutdown: futures::future::Shared<impl std::future::Future<Output = ()> + Send + 'static>,
) -> anyhow::Result<()> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        format!(
            "bucketcors-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        )
    });
    let duration = args.leader_election_lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, &args.leader_election_lease)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await
        .context("cannot set up the leader-election Lease")?;
    let (mut leading, lease_task) = manager.watch().await;
    ctx.readiness.set(true);
    tracing::info!(%identity, lease = %args.leader_election_lease, %namespace, "waiting to lead");
    let won = loop {
        if *leading.borrow_and_update() {
            break true;
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { break false },
            () = shutdown.clone() => break false,
        }
    };
    let mut lost_lease = false;
    if won {
        tracing::info!(%identity, "leading");
        ctx.readiness.set(false);
        let mut watch = leading.clone();
        let gate = ctx.clone();
        let lost = async move {
            while watch.changed().await.is_ok() {
                if !*watch.borrow() {
                    break;
                }
            }
            gate.stop_writes();
        };
        // A lost Lease stops everything at once: another replica may already be writing, so
        // in-flight passes get no grace (they are dropped, their SDK calls with them), and any
        // write still about to start is refused by the gate above.
        tokio::select! {
            () = controller::run(ctx, shutdown.clone()) => {}
            () = lost => {
                tracing::error!(%identity, "lost the leader-election Lease; stopping at once");
                lost_lease = true;
            }
        }
    }
    // Dropping every receiver makes the Lease task release the Lease and end.
    drop(leading);
    match lease_task.await {
        Ok(Ok(_)) => tracing::info!(%identity, "released the Lease"),
        Ok(Err(err)) => tracing::warn!(%identity, error = %err, "could not release the Lease"),
        Err(err) => tracing::warn!(%identity, error = %err, "the Lease task failed"),
    }
    if lost_lease {
        anyhow::bail!("lost the leader-election Lease");
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The shortest resync interval accepted: below it the operator would re-read every bucket in
/// a loop.
const MIN_RESYNC_INTERVAL: Duration = Duration::from_secs(2);

fn resync_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < MIN_RESYNC_INTERVAL {
        return Err(format!(
            "{text} is shorter than {}: every bucket would be re-read in a loop",
            humantime::format_duration(MIN_RESYNC_INTERVAL)
        ));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["bucketcors", "run"].iter().chain(args))
    }

    #[test]
    fn a_resync_interval_under_two_seconds_is_refused_with_the_value() {
        for short in ["0", "0s", "500ms", "1s"] {
            let err = run_args(&["--resync-interval", short])
                .err()
                .unwrap_or_else(|| panic!("{short} was accepted"))
                .to_string();
            assert!(
                err.contains("--resync-interval")
                    && err.contains(&format!("{short} is shorter than 2s")),
                "{err}"
            );
        }
        for fine in ["2s", "30s", "5m"] {
            assert!(run_args(&["--resync-interval", fine]).is_ok(), "{fine}");
        }
    }
}
