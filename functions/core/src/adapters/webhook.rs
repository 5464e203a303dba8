//! Web delivery over HTTPS with Standard Webhooks headers. SSRF-safe: names are resolved by a
//! resolver that drops every address the policy refuses, so the check holds for the address
//! actually connected to (no time-of-check/time-of-use gap); IP literals are checked before
//! connecting; redirects are not followed and no proxy is used.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio_util::io::ReaderStream;
use url::Host;

use crate::domain::{WebAddress, WebPolicy};
use crate::ports::{ExportFile, WebDelivery, WebhookHeaders};

struct PolicyResolver {
    policy: WebPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = resolved.filter(|addr| policy.permits(addr.ip())).collect();
            if allowed.is_empty() {
                return Err("the web address does not resolve to a public IP address".into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Delivers exports to web addresses with `reqwest`.
pub struct HttpWebDelivery {
    client: reqwest::Client,
    policy: WebPolicy,
}

impl HttpWebDelivery {
    /// A client for this policy and per-delivery timeout.
    ///
    /// # Errors
    /// When the TLS stack cannot be set up.
    pub fn new(policy: WebPolicy, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .dns_resolver(Arc::new(PolicyResolver { policy }))
            .user_agent(concat!("Datarequest/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the web delivery client")?;
        Ok(Self { client, policy })
    }

    fn check_target(&self, target: &WebAddress) -> anyhow::Result<()> {
        let url = target.url();
        if url.scheme() != "https" && self.policy == WebPolicy::PublicOnly {
            anyhow::bail!("only https:// web addresses are allowed");
        }
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !self.policy.permits(ip)) {
            anyhow::bail!("the web address is not a public IP address");
        }
        Ok(())
    }
}

#[async_trait]
impl WebDelivery for HttpWebDelivery {
    async fn post(&self, target: &WebAddress, headers: &WebhookHeaders, body: ExportFile) -> anyhow::Result<u16> {
        self.check_target(target)?;
        let response = self
            .client
            .post(target.url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_LENGTH, body.len)
            .header("webhook-id", &headers.id)
            .header("webhook-timestamp", headers.timestamp.to_string())
            .header("webhook-signature", &headers.signature)
            .body(reqwest::Body::wrap_stream(ReaderStream::new(body.reader)))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        Ok(response.status().as_u16())
    }
}

/// A delivery error in words for the account, without the URL (it may hold secrets).
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error;
    let mut cause: Option<&dyn Error> = error.source();
    while let Some(inner) = cause {
        if inner.to_string().contains("public IP address") {
            return "the web address does not resolve to a public IP address".into();
        }
        cause = inner.source();
    }
    if error.is_timeout() {
        "the web address did not answer in time".into()
    } else if error.is_connect() {
        "could not connect to the web address".into()
    } else {
        "the web delivery failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> ExportFile {
        ExportFile { len: 2, reader: Box::pin(std::io::Cursor::new(b"{}".to_vec())) }
    }

    fn headers() -> WebhookHeaders {
        WebhookHeaders { id: "1".into(), timestamp: 1, signature: "v1,x".into() }
    }

    #[tokio::test]
    async fn loopback_and_private_targets_are_refused_in_production_before_any_connection() {
        let delivery = HttpWebDelivery::new(WebPolicy::PublicOnly, Duration::from_secs(2));
        let Ok(delivery) = delivery else { panic!("client builds") };
        for target in ["https://127.0.0.1:9/x", "https://[::1]:9/x", "https://localhost:9/x", "http://127.0.0.1:9/x"] {
            let address = WebAddress::parse(target, WebPolicy::AllowPrivate);
            let Ok(address) = address else { panic!("{target} parses when private is allowed") };
            let error = delivery.post(&address, &headers(), file()).await.err().map(|e| e.to_string());
            let error = error.unwrap_or_default();
            assert!(
                error.contains("public IP") || error.contains("https://"),
                "{target} should be refused by policy, got {error:?}"
            );
        }
    }
}
