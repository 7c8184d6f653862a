//! The operator's HTTP endpoints: `/metrics` (OpenMetrics when asked for, as Prometheus does;
//! the Prometheus text format otherwise), `/healthz` (the process
//! answers) and `/readyz` (the caches are synced, or this replica is a standby).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
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

const OPEN_METRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the scraper asks for OpenMetrics (Prometheus does); others get the text format.
fn accepts_open_metrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let mut params = media.split(';').map(str::trim);
            let open = params
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"));
            // A quality of 0 means "not acceptable".
            let refused = params.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            open && !refused
        })
}

pub fn metrics_router(metrics: Arc<Metrics>, gauges: Arc<dyn Gauges>) -> Router {
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let metrics = metrics.clone();
            let gauges = gauges.clone();
            async move {
                gauges.refresh(&metrics);
                if accepts_open_metrics(&headers) {
                    ([(header::CONTENT_TYPE, OPEN_METRICS)], metrics.encode())
                } else {
                    ([(header::CONTENT_TYPE, TEXT_FORMAT)], metrics.encode_text())
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, value.parse().unwrap());
        headers
    }

    #[test]
    fn open_metrics_only_when_asked_for() {
        // What Prometheus 2.x sends.
        assert!(accepts_open_metrics(&accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!accepts_open_metrics(&accept("text/plain;version=0.0.4")));
        assert!(!accepts_open_metrics(&accept("*/*")));
        assert!(!accepts_open_metrics(&accept(
            "application/openmetrics-text; q=0"
        )));
        assert!(!accepts_open_metrics(&accept(
            "application/openmetrics-text;q=0.0"
        )));
        assert!(accepts_open_metrics(&accept(
            "Application/OpenMetrics-Text; q=0.5"
        )));
        assert!(!accepts_open_metrics(&HeaderMap::new()));
    }
}
