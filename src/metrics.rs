//! Prometheus metrics. Every label is bounded: reasons, S3 operations and outcomes come from
//! closed sets; no object names, no error strings.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::reason::Reason;
use crate::s3::{Operation, S3Error};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct S3Labels {
    pub operation: &'static str,
    /// `ok`, or the reason the call failed.
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reconciliations: Family<ReasonLabel, Counter>,
    pub failures: Family<ReasonLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub s3_requests: Family<S3Labels, Counter>,
    pub drift_corrections: Counter,
    pub unkept_writes: Counter,
    pub watch_refused: Counter,
    pub managed_objects: Gauge,
    pub ready_objects: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("bucketcors");
        let reconciliations = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reconciliations",
            "Passes over an object, by the reason they ended with",
            reconciliations.clone(),
        );
        let failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "failures",
            "Passes that left an object not Ready, by reason",
            failures.clone(),
        );
        let reconcile_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one pass over an object took",
            reconcile_duration.clone(),
        );
        let s3_requests = Family::<S3Labels, Counter>::default();
        registry.register(
            "s3_requests",
            "S3 calls by operation and outcome (ok, or the failure's reason)",
            s3_requests.clone(),
        );
        let drift_corrections = Counter::default();
        registry.register(
            "drift_corrections",
            "Writes that put back a configuration changed outside Kubernetes",
            drift_corrections.clone(),
        );
        let unkept_writes = Counter::default();
        registry.register(
            "unkept_writes",
            "Writes the store accepted that the bucket did not keep (counted once, when found out)",
            unkept_writes.clone(),
        );
        let watch_refused = Counter::default();
        registry.register(
            "watch_refused",
            "Initial lists of a watched namespace that the API server refused (403); objects there are not reconciled",
            watch_refused.clone(),
        );
        let managed_objects = Gauge::default();
        registry.register(
            "managed_objects",
            "BucketCors objects the operator watches",
            managed_objects.clone(),
        );
        let ready_objects = Gauge::default();
        registry.register(
            "ready_objects",
            "BucketCors objects whose Ready condition is True",
            ready_objects.clone(),
        );
        Metrics {
            registry,
            reconciliations,
            failures,
            reconcile_duration,
            s3_requests,
            drift_corrections,
            unkept_writes,
            watch_refused,
            managed_objects,
            ready_objects,
        }
    }
}

impl Metrics {
    pub fn pass(&self, reason: Reason, seconds: f64) {
        let label = ReasonLabel {
            reason: reason.as_str(),
        };
        self.reconciliations.get_or_create(&label).inc();
        if !reason.is_ready() {
            self.failures.get_or_create(&label).inc();
        }
        self.reconcile_duration.observe(seconds);
    }

    pub fn s3<T>(&self, operation: Operation, result: &Result<T, S3Error>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(err) => err.reason().as_str(),
        };
        self.s3_requests
            .get_or_create(&S3Labels {
                operation: operation.as_str(),
                outcome,
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_up_with_bounded_labels() {
        let metrics = Metrics::default();
        metrics.pass(Reason::Applied, 0.02);
        metrics.pass(Reason::Unavailable, 0.5);
        metrics.s3::<()>(Operation::PutBucketCors, &Ok(()));
        metrics.s3::<()>(
            Operation::GetBucketCors,
            &Err(S3Error::BucketNotFound { bucket: "b".into() }),
        );
        let text = metrics.encode();
        for line in [
            r#"bucketcors_reconciliations_total{reason="Applied"} 1"#,
            r#"bucketcors_failures_total{reason="Unavailable"} 1"#,
            r#"bucketcors_s3_requests_total{operation="PutBucketCors",outcome="ok"} 1"#,
            r#"bucketcors_s3_requests_total{operation="GetBucketCors",outcome="BucketNotFound"} 1"#,
            "bucketcors_reconcile_duration_seconds_count 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(r#"bucketcors_failures_total{reason="Applied"}"#));
    }
}
