#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bucketcors::controller::{self, Context, Settings};
use bucketcors::s3::{Checksum, SdkStore};
use bucketcors::telemetry::{self, LogFormat};
use clap::{Parser, Subcommand};

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
    Run(RunArgs),
    /// Print the CustomResourceDefinition as YAML.
    Crd,
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
    #[arg(long, env = "BUCKETCORS_RESYNC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    resync_interval: Duration,
    /// Objects reconciled at the same time.
    #[arg(long, env = "BUCKETCORS_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
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
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", bucketcors::crd_yaml());
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration found (in-cluster or KUBECONFIG)")?;
    let store = SdkStore::from_env(args.default_region).await;
    let settings = Settings {
        namespaces: args.namespaces,
        resync_interval: args.resync_interval,
        concurrency: args.concurrency,
        default_endpoint: args.default_endpoint,
        put_checksum: match args.put_checksum {
            PutChecksumArg::Crc32 => Checksum::Crc32,
            PutChecksumArg::ContentMd5 => Checksum::ContentMd5,
        },
    };
    tracing::info!(?settings, "starting controller");
    let ctx = Arc::new(Context::new(client, store, settings));
    controller::run(ctx, shutdown_signal()).await;
    tracing::info!("controller stopped");
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
