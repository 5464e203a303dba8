//! Web delivery over HTTPS with a signing profile's headers (Standard Webhooks' or Copernica's,
//! made by the delivering use case). SSRF-safe: names are resolved by a
//! resolver that drops every address the policy refuses, so the check holds for the address
//! actually connected to (no time-of-check/time-of-use gap); IP literals are checked before
//! connecting; redirects are not followed and no proxy is used. Exports of any size stream out
//! under an idle timeout rather than one deadline for the whole POST, so a large export reaches
//! a receiver that reads slowly but steadily, and a receiver that stops reading or never answers
//! is given up on after the timeout.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use futures_util::Stream;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::time::Instant;
use tokio_util::io::ReaderStream;
use url::Host;

use crate::domain::{WebAddress, WebPolicy};
use crate::ports::{ExportFile, WEB_CONTENT_TYPE, WebDelivery, WebhookHeaders};

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

/// The words of a delivery given up for want of progress; the same for a connection that could
/// not be made in time.
const TIMED_OUT: &str = "the web address did not answer in time";

/// Bytes handed to the connection at a time: small enough that progress is seen often, large
/// enough that a fast receiver is not slowed down.
const CHUNK: usize = 64 * 1024;

/// The longest a connection may take to open, whatever the idle timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers exports to web addresses with `reqwest`.
pub struct HttpWebDelivery {
    client: reqwest::Client,
    policy: WebPolicy,
    idle_timeout: Duration,
}

impl HttpWebDelivery {
    /// A client for this policy and idle timeout. A POST has no deadline as a whole: it fails
    /// when the connection takes no bytes of the body for `idle_timeout`, or when no answer
    /// comes within `idle_timeout` of the connection taking the last byte. Opening the
    /// connection may take at most `idle_timeout` (and never more than 10 s). Bytes the
    /// connection has taken may still wait in the operating system's send buffer (at most a few
    /// MB), so the timeout must also cover a receiver's reading that much.
    ///
    /// # Errors
    /// When the TLS stack cannot be set up.
    pub fn new(policy: WebPolicy, idle_timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(idle_timeout.min(CONNECT_TIMEOUT))
            .dns_resolver(Arc::new(PolicyResolver { policy }))
            .user_agent(concat!("Datarequest/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the web delivery client")?;
        Ok(Self { client, policy, idle_timeout })
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
        let progress = Arc::new(Progress::new());
        let stream =
            Watched { inner: ReaderStream::with_capacity(body.reader, CHUNK), progress: Arc::clone(&progress) };
        let mut post = self
            .client
            .post(target.url().clone())
            .header(reqwest::header::CONTENT_TYPE, WEB_CONTENT_TYPE)
            .header(reqwest::header::CONTENT_LENGTH, body.len);
        // A `Host` among them (Copernica's profile signs it) replaces the one the client makes.
        for (name, value) in headers.iter() {
            post = post.header(name, value);
        }
        let send = post.body(reqwest::Body::wrap_stream(stream)).send();
        let response = unless_idle(send, &progress, self.idle_timeout)
            .await
            .ok_or_else(|| anyhow::anyhow!(TIMED_OUT))?
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        // Only the status matters; the answer's body is never read.
        Ok(response.status().as_u16())
    }
}

/// When the body last moved: shared between the body stream, which the connection polls for
/// more only once it has taken the previous chunk, and the watchdog in [`unless_idle`].
struct Progress {
    start: Instant,
    /// Microseconds from `start` to the last progress.
    last: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self { start: Instant::now(), last: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last.fetch_max(micros, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_micros(self.last.load(Ordering::Relaxed))
    }
}

/// A body stream that records progress each time it hands the connection a chunk; after the
/// last one, the answer is due within the timeout.
struct Watched<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S: Stream + Unpin> Stream for Watched<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if polled.is_ready() {
            self.progress.touch();
        }
        polled
    }
}

/// Runs `work` while it makes progress: `None` once `idle` has passed since the last progress
/// (or since the start) without `work` finishing. The watchdog sleeps until the moment the
/// timeout would fall and looks again, so it wakes at most once per `idle` of steady progress.
async fn unless_idle<F: Future>(work: F, progress: &Progress, idle: Duration) -> Option<F::Output> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return Some(output),
            () = tokio::time::sleep_until(progress.last() + idle) => {
                if progress.last() + idle <= Instant::now() {
                    return None;
                }
            }
        }
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
        TIMED_OUT.into()
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
        WebhookHeaders::standard("1".into(), 1, "v1,x".into())
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_keeps_progressing_is_waited_for_however_long_it_takes_in_all() {
        let progress = Progress::new();
        let work = async {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                progress.touch();
            }
            "done"
        };
        let start = Instant::now();

        let outcome = unless_idle(work, &progress, Duration::from_secs(30)).await;

        assert_eq!(outcome, Some("done"));
        assert_eq!(start.elapsed(), Duration::from_secs(200), "far past the timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn work_is_given_up_once_the_idle_timeout_has_passed_since_its_last_progress() {
        let progress = Progress::new();
        let work = async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            progress.touch();
            std::future::pending::<()>().await;
        };
        let start = Instant::now();

        let outcome = unless_idle(work, &progress, Duration::from_secs(30)).await;

        assert_eq!(outcome, None);
        assert_eq!(start.elapsed(), Duration::from_secs(50), "30 s after the last progress, at 20 s");
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
