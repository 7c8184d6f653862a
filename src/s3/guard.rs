//! The operator's HTTP clients. Every answer is read up to [`MAX_ANSWER`] bytes: a store (or
//! anything an endpoint points at) cannot make the operator hold more. The client of objects
//! that name their own endpoint also checks every address a host name resolves to against the
//! endpoint policy at connection time, so that a name that points inside the cluster (now or
//! after a DNS change) is caught where the connection is made.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use aws_smithy_http_client::Builder;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;

/// The largest answer read from a store. A CORS configuration is at most 64 KB of XML and an
/// error a few hundred bytes; 1 MiB leaves room and bounds what a hostile endpoint can send.
pub const MAX_ANSWER: usize = 1024 * 1024;

/// An answer longer than [`MAX_ANSWER`]; found in an SDK error's causes.
#[derive(Debug)]
pub struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the store's answer is larger than {} KiB; the operator reads no more",
            MAX_ANSWER / 1024
        )
    }
}

impl StdError for TooLarge {}

use crate::tenancy::EndpointPolicy;

/// A connection the endpoint policy refused; found in an SDK error's causes.
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Refused {}

#[derive(Clone, Debug)]
struct Resolver {
    policy: Arc<EndpointPolicy>,
}

impl ResolveDns for Resolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        DnsFuture::new(async move {
            let found: Vec<IpAddr> = tokio::net::lookup_host((name, 0))
                .await
                .map_err(ResolveDnsError::new)?
                .map(|a| a.ip())
                .collect();
            // One refused address refuses the name: a mixed answer must not let a retry reach
            // the refused one.
            for ip in &found {
                if let Err(why) = self.policy.check_ip(*ip) {
                    return Err(ResolveDnsError::new(Refused(format!(
                        "host {name:?} resolves to an address that {why}"
                    ))));
                }
            }
            Ok(found)
        })
    }
}

/// An HTTPS (and HTTP) client whose every connection passes `policy`, reading answers up to
/// [`MAX_ANSWER`].
pub fn guarded(policy: Arc<EndpointPolicy>) -> SharedHttpClient {
    capped(
        Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_with_resolver(Resolver { policy }),
    )
}

/// An HTTPS (and HTTP) client reading answers up to [`MAX_ANSWER`].
pub fn plain() -> SharedHttpClient {
    capped(
        Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_https(),
    )
}

fn capped(inner: SharedHttpClient) -> SharedHttpClient {
    SharedHttpClient::new(Capped { inner })
}

#[derive(Debug)]
struct Capped {
    inner: SharedHttpClient,
}

impl HttpClient for Capped {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CappedConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct CappedConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for CappedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let answer = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let response = answer.await?;
            Ok(response.map(|body| {
                let limited = http_body_util::Limited::new(body, MAX_ANSWER).map_err(|err| {
                    if err.is::<http_body_util::LengthLimitError>() {
                        Box::new(TooLarge) as Box<dyn StdError + Send + Sync>
                    } else {
                        err
                    }
                });
                SdkBody::from_body_1_x(limited)
            }))
        })
    }
}

/// The policy's refusal among an error's causes, if it is one.
pub fn refusal(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.0.clone());
        }
        next = e.source();
    }
    None
}

/// Whether an error's causes include an answer over the cap.
pub fn too_large(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<TooLarge>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_and_says_where() {
        let resolver = Resolver {
            policy: Arc::new(EndpointPolicy::default()),
        };
        let err = resolver.resolve_dns("localhost").await.unwrap_err();
        let why = refusal(&err).expect("the refusal is among the causes");
        assert!(why.contains("\"localhost\""), "{why}");
        assert!(why.contains("loopback"), "{why}");

        let allowed = Resolver {
            policy: Arc::new(EndpointPolicy {
                allow_http: false,
                allowed: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            }),
        };
        let found = allowed.resolve_dns("localhost").await.unwrap();
        assert!(found.iter().all(IpAddr::is_loopback), "{found:?}");
    }

    /// The URL check reads these spellings as 127.0.0.1 before any connection; should one
    /// still reach the resolver as a name, the system's resolver reads it as an address too
    /// and the answer is refused.
    #[tokio::test]
    async fn numeric_spellings_that_reach_the_resolver_are_refused_by_their_answer() {
        let resolver = Resolver {
            policy: Arc::new(EndpointPolicy::default()),
        };
        for name in ["2130706433", "0x7f000001", "0177.0.0.1", "127.1"] {
            let err = resolver.resolve_dns(name).await.unwrap_err();
            let why = refusal(&err).expect("the refusal is among the causes");
            assert!(why.contains("loopback range (127.0.0.1)"), "{name}: {why}");
        }
    }
}
