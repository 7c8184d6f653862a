//! Prometheus metrics. Every label is bounded: reasons, S3 operations and outcomes come from
//! closed sets; no object names, no error strings.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::reason::Reason;
use crate::s3::{Operation, S3Error};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftLabel {
    /// `removed` or `changed`.
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
    pub drift_corrections: Family<DriftLabel, Counter>,
    pub unkept_writes: Counter,
    pub watch_refused: Counter,
    pub pass_panics: Counter,
    pub managed_objects: Gauge,
    pub ready_objects: Gauge,
    pub objects: Family<ReasonLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("bucketcors");
        let r = &mut registry;
        let drift_corrections = Family::<DriftLabel, Counter>::default();
        // Both series exist from the start, at 0, for the alert and the dashboard.
        for reason in ["removed", "changed"] {
            drop(drift_corrections.get_or_create(&DriftLabel { reason }));
        }
        Metrics {
            reconciliations: registered(
                r,
                "reconciliations",
                "Passes over an object, by the reason they ended with",
                Family::default(),
            ),
            failures: registered(
                r,
                "failures",
                "Passes that left an object not Ready, by reason",
                Family::default(),
            ),
            reconcile_duration: registered(
                r,
                "reconcile_duration_seconds",
                "Time one pass over an object took",
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            ),
            s3_requests: registered(
                r,
                "s3_requests",
                "S3 calls by operation and outcome (ok, or the failure's reason)",
                Family::default(),
            ),
            drift_corrections: registered(
                r,
                "drift_corrections",
                "Writes that put back a configuration changed outside Kubernetes, by what was done to it (removed: the bucket had none; changed: it held other rules)",
                drift_corrections,
            ),
            unkept_writes: registered(
                r,
                "unkept_writes",
                "Writes the store accepted that the bucket did not keep (counted once, when found out)",
                Counter::default(),
            ),
            watch_refused: registered(
                r,
                "watch_refused",
                "Initial lists of a watched namespace that the API server refused (403); objects there are not reconciled",
                Counter::default(),
            ),
            pass_panics: registered(
                r,
                "pass_panics",
                "Passes that ended in a panic (a defect): each is logged with its object, which is retried on a backoff",
                Counter::default(),
            ),
            managed_objects: registered(
                r,
                "managed_objects",
                "BucketCors objects the operator watches",
                Gauge::default(),
            ),
            ready_objects: registered(
                r,
                "ready_objects",
                "BucketCors objects whose Ready condition is True",
                Gauge::default(),
            ),
            objects: registered(
                r,
                "objects",
                "BucketCors objects the operator watches, by the reason of their Ready condition (Unknown: none yet)",
                Family::default(),
            ),
            registry,
        }
    }
}

/// `metric`, registered as `name` with `help`.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// A write that put back a configuration that was `how` (`removed` or `changed`) outside
    /// Kubernetes.
    pub fn drift_corrected(&self, how: &'static str) {
        self.drift_corrections
            .get_or_create(&DriftLabel { reason: how })
            .inc();
    }

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

    /// Sets the gauges of watched objects from each one's Ready condition: its reason (`None`:
    /// the object has none yet) and whether it is True. Every reason is set, to 0 when no
    /// object has it, so that each series exists from the first scrape.
    pub fn set_objects<'a>(&self, ready: impl IntoIterator<Item = (Option<&'a str>, bool)>) {
        let mut counts = [0i64; Reason::ALL.len() + 1];
        let (mut managed, mut ready_count) = (0i64, 0i64);
        for (reason, is_ready) in ready {
            managed += 1;
            ready_count += i64::from(is_ready);
            let known = reason.and_then(|r| Reason::ALL.iter().position(|k| k.as_str() == r));
            counts[known.unwrap_or(Reason::ALL.len())] += 1;
        }
        let names = Reason::ALL
            .iter()
            .map(|r| r.as_str())
            .chain([UNKNOWN_REASON]);
        for (reason, count) in names.zip(counts) {
            self.objects
                .get_or_create(&ReasonLabel { reason })
                .set(count);
        }
        self.managed_objects.set(managed);
        self.ready_objects.set(ready_count);
    }

    /// The Prometheus text exposition of every metric, in OpenMetrics 1.0 (what Prometheus asks
    /// for).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }

    /// The same samples in the Prometheus text format 0.0.4, for scrapers that do not ask for
    /// OpenMetrics (curl, `promtool check metrics`): a counter's HELP and TYPE name its `_total`
    /// series, and there are no UNIT and EOF lines. (Counters, gauges and histograms are all
    /// this registry holds; the other OpenMetrics types would need more than this.)
    pub fn encode_text(&self) -> String {
        let open_metrics = self.encode();
        let mut counters = std::collections::HashSet::new();
        for line in open_metrics.lines() {
            if let Some(name) = line
                .strip_prefix("# TYPE ")
                .and_then(|rest| rest.strip_suffix(" counter"))
            {
                counters.insert(name.to_owned());
            }
        }
        let mut text = String::with_capacity(open_metrics.len());
        for line in open_metrics.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let meta = ["# HELP ", "# TYPE "]
                .into_iter()
                .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
            match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(n, r)| (p, n, r))) {
                Some((prefix, name, rest)) if counters.contains(name) => {
                    text.push_str(&format!("{prefix}{name}_total {rest}\n"));
                }
                _ => {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }
}

/// The `reason` label of objects without a Ready condition this version knows.
pub const UNKNOWN_REASON: &str = "Unknown";

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

    #[test]
    fn objects_are_counted_by_ready_reason_with_every_reason_present() {
        let metrics = Metrics::default();
        metrics.set_objects([
            (Some("InSync"), true),
            (Some("Applied"), true),
            (Some("InvalidSpec"), false),
            (Some("InvalidSpec"), false),
            (None, false),
            (Some("SomethingNew"), false),
        ]);
        let text = metrics.encode();
        for line in [
            r#"bucketcors_objects{reason="InSync"} 1"#,
            r#"bucketcors_objects{reason="InvalidSpec"} 2"#,
            r#"bucketcors_objects{reason="Conflict"} 0"#,
            r#"bucketcors_objects{reason="Unknown"} 2"#,
            "bucketcors_managed_objects 6",
            "bucketcors_ready_objects 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        metrics.set_objects([]);
        assert!(
            metrics
                .encode()
                .contains(r#"bucketcors_objects{reason="InvalidSpec"} 0"#)
        );
    }

    #[test]
    fn the_text_format_names_counters_by_their_total_series() {
        let metrics = Metrics::default();
        metrics.pass(Reason::Applied, 0.02);
        metrics.drift_corrected("removed");
        let text = metrics.encode_text();
        for line in [
            r#"bucketcors_drift_corrections_total{reason="removed"} 1"#,
            "# TYPE bucketcors_reconciliations_total counter",
            "# HELP bucketcors_drift_corrections_total Writes that put back",
            r#"bucketcors_reconciliations_total{reason="Applied"} 1"#,
            "# TYPE bucketcors_reconcile_duration_seconds histogram",
            "# TYPE bucketcors_managed_objects gauge",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(!text.contains("# TYPE bucketcors_reconciliations counter"));
        assert!(metrics.encode().ends_with("# EOF\n"));
    }
}
