//! The operator's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the process
//! answers) and `/readyz` (the caches are synced, or this replica is a standby).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Whether this replica should receive traffic and be counted as available; can be awaited.
pub struct Readiness(tokio::sync::watch::Sender<bool>);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(tokio::sync::watch::Sender::new(false))
    }
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.send_replace(ready);
    }

    pub fn get(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once ready.
    pub async fn wait(&self) {
        let _ = self.0.subscribe().wait_for(|ready| *ready).await;
    }
}

/// Something that can refresh the gauges just before a scrape.
pub trait Gauges: Send + Sync + 'static {
    fn refresh(&self, metrics: &Metrics);
}

pub fn metrics_router(metrics: Arc<Metrics>, gauges: Arc<dyn Gauges>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            let gauges = gauges.clone();
            async move {
                gauges.refresh(&metrics);
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    )
}

pub fn health_router(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = readiness.get();
                async move {
                    if ready {
                        (StatusCode::OK, "ok").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced").into_response()
                    }
                }
            }),
        )
}

/// Serves `router` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "listening");
    axum::serve(listener, router).await
}
