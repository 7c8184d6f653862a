//! The store as the controller sees it: every call counted once, by operation and outcome, and
//! every write refused once this replica may no longer write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cors::CorsRule;
use crate::metrics::Metrics;
use crate::s3::{BucketTarget, CorsStore, Operation, PreflightAnswer, S3Error};

pub struct Gated<S> {
    inner: S,
    metrics: Arc<Metrics>,
    // False once this replica lost the leader-election Lease: another one may be writing.
    may_write: AtomicBool,
}

impl<S> Gated<S> {
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        Gated {
            inner,
            metrics,
            may_write: AtomicBool::new(true),
        }
    }

    /// From now on every write is refused.
    pub fn stop_writes(&self) {
        self.may_write.store(false, Ordering::SeqCst);
    }

    fn write_allowed(&self, operation: Operation, target: &BucketTarget) -> Result<(), S3Error> {
        if self.may_write.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(S3Error::Unavailable {
                operation,
                bucket: target.bucket.clone(),
                message: "this replica no longer holds the leader-election Lease".into(),
            })
        }
    }
}

impl<S: CorsStore> CorsStore for Gated<S> {
    async fn get_cors(&self, target: &BucketTarget) -> Result<Vec<CorsRule>, S3Error> {
        let result = self.inner.get_cors(target).await;
        self.metrics.s3(Operation::GetBucketCors, &result);
        result
    }

    async fn put_cors(&self, target: &BucketTarget, rules: &[CorsRule]) -> Result<(), S3Error> {
        // Checked right before the call: a refused write is not counted as a call.
        self.write_allowed(Operation::PutBucketCors, target)?;
        let result = self.inner.put_cors(target, rules).await;
        self.metrics.s3(Operation::PutBucketCors, &result);
        result
    }

    async fn delete_cors(&self, target: &BucketTarget) -> Result<(), S3Error> {
        self.write_allowed(Operation::DeleteBucketCors, target)?;
        let result = self.inner.delete_cors(target).await;
        self.metrics.s3(Operation::DeleteBucketCors, &result);
        result
    }

    async fn preflight(
        &self,
        target: &BucketTarget,
        key: &str,
        origin: &str,
        method: &str,
        request_headers: &[&str],
    ) -> Result<PreflightAnswer, S3Error> {
        let result = self
            .inner
            .preflight(target, key, origin, method, request_headers)
            .await;
        self.metrics.s3(Operation::Preflight, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Counting {
        writes: AtomicUsize,
    }

    impl CorsStore for Counting {
        async fn get_cors(&self, _: &BucketTarget) -> Result<Vec<CorsRule>, S3Error> {
            Ok(Vec::new())
        }
        async fn put_cors(&self, _: &BucketTarget, _: &[CorsRule]) -> Result<(), S3Error> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn delete_cors(&self, _: &BucketTarget) -> Result<(), S3Error> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn calls_are_counted_once_and_writes_stop_when_told() {
        let metrics = Arc::new(Metrics::default());
        let store = Gated::new(Counting::default(), metrics.clone());
        let target = BucketTarget::new("b");
        store.get_cors(&target).await.unwrap();
        store.put_cors(&target, &[]).await.unwrap();
        store.stop_writes();
        let refused = store.put_cors(&target, &[]).await.unwrap_err();
        assert!(refused.to_string().contains("Lease"), "{refused}");
        assert!(store.delete_cors(&target).await.is_err());
        assert_eq!(store.inner.writes.load(Ordering::SeqCst), 1);
        let text = metrics.encode();
        for line in [
            r#"bucketcors_s3_requests_total{operation="GetBucketCors",outcome="ok"} 1"#,
            r#"bucketcors_s3_requests_total{operation="PutBucketCors",outcome="ok"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("DeleteBucketCors"), "{text}");
    }
}
