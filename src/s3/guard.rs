//! The HTTP client of objects that name their own endpoint: every address a host name
//! resolves to passes the endpoint policy at connection time, so that a name that points
//! inside the cluster (now or after a DNS change) is caught where the connection is made.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use aws_smithy_http_client::Builder;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

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

/// An HTTPS (and HTTP) client whose every connection passes `policy`.
pub fn client(policy: Arc<EndpointPolicy>) -> SharedHttpClient {
    Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_with_resolver(Resolver { policy })
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
}
