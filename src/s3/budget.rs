//! A request budget per store: every HTTP attempt to a store (retries included) takes a token
//! from that store's bucket, which refills at the budget's rate up to its burst. A pass whose
//! store is spent waits for its token instead of sending, so that many objects on one store
//! never ask more of it than the budget, whatever the concurrency.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// Requests per second a store is sent, and how many may go at once after a quiet time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Budget {
    /// At least 1.
    pub per_second: u32,
    /// At least 1.
    pub burst: u32,
}

/// One store's tokens.
#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    budget: Budget,
    /// May go below zero: each waiting request holds its place in line.
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(budget: Budget) -> Self {
        TokenBucket {
            state: Mutex::new(State {
                budget,
                tokens: f64::from(budget.burst.max(1)),
                at: Instant::now(),
            }),
        }
    }

    /// Changes the budget (a store's spec changed); the tokens left stay, capped at the new
    /// burst.
    pub fn set_budget(&self, budget: Budget) {
        let mut state = self.state.lock().expect("budget poisoned");
        if state.budget != budget {
            state.budget = budget;
            state.tokens = state.tokens.min(f64::from(budget.burst.max(1)));
        }
    }

    /// Takes a token at `now`; how long the request must wait before it may go.
    pub fn take_at(&self, now: Instant) -> Duration {
        let mut state = self.state.lock().expect("budget poisoned");
        let rate = f64::from(state.budget.per_second.max(1));
        let burst = f64::from(state.budget.burst.max(1));
        let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
        state.tokens = (state.tokens + elapsed * rate).min(burst);
        state.at = now.max(state.at);
        state.tokens -= 1.0;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / rate)
        }
    }

    /// Waits until a request may go.
    pub async fn acquire(&self) {
        let wait = self.take_at(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// `inner`, with every request first taking a token from `bucket`.
pub fn budgeted(inner: SharedHttpClient, bucket: std::sync::Arc<TokenBucket>) -> SharedHttpClient {
    SharedHttpClient::new(Budgeted { inner, bucket })
}

#[derive(Debug)]
struct Budgeted {
    inner: SharedHttpClient,
    bucket: std::sync::Arc<TokenBucket>,
}

impl HttpClient for Budgeted {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(BudgetedConnector {
            inner: self.inner.http_connector(settings, components),
            bucket: self.bucket.clone(),
        })
    }
}

#[derive(Debug)]
struct BudgetedConnector {
    inner: SharedHttpConnector,
    bucket: std::sync::Arc<TokenBucket>,
}

impl HttpConnector for BudgetedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, bucket) = (self.inner.clone(), self.bucket.clone());
        HttpConnectorFuture::new(async move {
            bucket.acquire().await;
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_requests_are_spaced_at_the_rate() {
        let bucket = TokenBucket::new(Budget {
            per_second: 4,
            burst: 3,
        });
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..6).map(|_| bucket.take_at(t0)).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 0, 0, 250, 500, 750]);
        // A second later the debt is paid and the bucket holds what one second refills, less
        // what was owed.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(bucket.take_at(later).as_millis(), 0);
        // Over any long run, no more than the rate (plus the burst) goes.
        let bucket = TokenBucket::new(Budget {
            per_second: 50,
            burst: 10,
        });
        let sent_by = |seconds: f64, requests: usize| {
            (0..requests)
                .map(|_| bucket.take_at(t0))
                .filter(|w| w.as_secs_f64() <= seconds)
                .count()
        };
        assert_eq!(sent_by(2.0, 1000), 10 + 100);
    }

    #[test]
    fn a_changed_budget_applies_to_the_next_request() {
        let bucket = TokenBucket::new(Budget {
            per_second: 1,
            burst: 100,
        });
        let t0 = Instant::now();
        bucket.set_budget(Budget {
            per_second: 1,
            burst: 1,
        });
        assert_eq!(bucket.take_at(t0), Duration::ZERO);
        assert_eq!(bucket.take_at(t0), Duration::from_secs(1));
    }
}
