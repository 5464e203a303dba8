//! The local server's accept loop: the router on hyper's HTTP/1, held against floods.
//!
//! - At most [`ServerLimits::max_connections`] connections are served at once. A new connection
//!   past the bound takes the place of the connection that has waited longest for a request
//!   (one that sent nothing yet, a partial head, or is idle between requests): that one is
//!   closed (at once, or after [`CLOSING_GRACE`] when it sent part of a head). So idle and slow
//!   connections, however many, cannot keep a client that sends its request out. Only when
//!   every connection is in the middle of a request do new ones wait in the kernel's backlog
//!   until one ends or goes idle.
//! - A connection has [`ServerLimits::header_timeout`] to send a request head, whether it is new
//!   or idle between two requests (hyper's `header_read_timeout`); then it is closed.
//! - A request body that sends nothing for [`ServerLimits::body_idle_timeout`] ends with an
//!   error to the handler reading it.
//!
//! The peer's address is in every request's extensions as `ConnectInfo<SocketAddr>`, as
//! `into_make_service_with_connect_info` puts it. On shutdown no connection is accepted any
//! more, idle ones are closed, and requests under way finish.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::config::ServerLimits;

/// File descriptors kept free of connections (the database, export files, the listener).
const SPARE_FILES: usize = 64;
/// How long a connection told to close may go on without a request under way (a partial head
/// that hyper's graceful shutdown would wait for up to the header timeout) before it is dropped.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets the
/// requests under way finish.
///
/// # Errors
/// Never yet: a failed accept is logged and retried; the result leaves room for a listener that
/// cannot go on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bound = connection_bound(limits.max_connections, open_file_limit());
    if bound < limits.max_connections {
        tracing::warn!(bound, "fewer connections than configured: the open-file limit is lower");
    }
    let registry = Arc::new(Registry::new(bound));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let http = Arc::new(http);
    let (stop, stopping) = watch::channel(false);
    let (done, _) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = async { registry.room().await; listener.accept().await } => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if !is_connection_error(&error) {
                    // Out of file descriptors, say: wait for some to be closed.
                    tracing::error!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let ticket = registry.admit();
        let connection = Connection {
            ticket,
            http: http.clone(),
            router: router.clone(),
            peer,
            body_idle: limits.body_idle_timeout,
            stopping: stopping.clone(),
        };
        let held = done.subscribe();
        tokio::spawn(async move {
            connection.run(stream).await;
            drop(held);
        });
    }
    let _ = stop.send(true);
    // Every connection holds a receiver until it ends.
    done.closed().await;
    Ok(())
}

/// `configured`, or fewer when the process may not open that many files.
fn connection_bound(configured: usize, open_files: Option<u64>) -> usize {
    match open_files.and_then(|limit| usize::try_from(limit).ok()) {
        Some(limit) => configured.min(limit.saturating_sub(SPARE_FILES).max(1)),
        None => configured,
    }
}

/// The soft limit of open files, where the system tells it (`/proc/self/limits`).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// Errors of one connection that came and went, not of the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(error.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// One accepted connection and what serving it needs.
struct Connection {
    ticket: Ticket,
    http: Arc<hyper::server::conn::http1::Builder>,
    router: Router,
    peer: SocketAddr,
    body_idle: Duration,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    /// Serves the connection until it ends, closing it early (after the request under way)
    /// when it is evicted or the server stops.
    async fn run(mut self, stream: TcpStream) {
        let (registry, id, peer, body_idle) = (self.ticket.registry.clone(), self.ticket.id, self.peer, self.body_idle);
        let router = self.router.clone();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let requests = in_flight.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = registry.busy(id, &requests);
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let request = axum::http::Request::from_parts(parts, Body::new(IdleBody::new(body, body_idle)));
            let router = router.clone();
            async move {
                let Ok(response) = router.oneshot(request).await;
                // The connection counts as busy until its answer is sent whole.
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &busy;
                        frame
                    }))
                }))
            }
        });
        let connection = self.http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let evicted = self.ticket.evict.clone();
        let mut closing = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(error = %error, "connection ended with an error");
                    }
                    break;
                }
                () = evicted.notified(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = self.stopping.changed(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep(CLOSING_GRACE), if closing => {
                    // No request under way: nothing is cut by dropping it.
                    if in_flight.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                }
            }
        }
    }
}

/// The connections being served: how many, and which wait for a request, oldest first.
struct Registry {
    bound: usize,
    state: Mutex<State>,
    /// Told when a connection ends or starts waiting for a request.
    changed: Notify,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Connections counted against the bound (not evicted).
    slots: HashMap<u64, Slot>,
    /// Connections waiting for a request, by when they started waiting.
    waiting: BTreeMap<u64, u64>,
}

struct Slot {
    evict: Arc<Notify>,
    requests: usize,
    waiting_since: Option<u64>,
}

impl Registry {
    fn new(bound: usize) -> Self {
        Self { bound: bound.max(1), state: Mutex::new(State::default()), changed: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns when a new connection can be served: under the bound, or with a connection that
    /// waits for a request to give way.
    async fn room(&self) {
        loop {
            let changed = self.changed.notified();
            {
                let state = self.lock();
                if state.slots.len() < self.bound || !state.waiting.is_empty() {
                    return;
                }
            }
            changed.await;
        }
    }

    /// Counts a new connection, evicting the one that has waited longest for a request when the
    /// bound is reached.
    fn admit(self: &Arc<Self>) -> Ticket {
        let mut state = self.lock();
        if state.slots.len() >= self.bound
            && let Some((_, victim)) = state.waiting.pop_first()
            && let Some(slot) = state.slots.remove(&victim)
        {
            slot.evict.notify_one();
        }
        state.next += 1;
        let (id, since) = (state.next, state.next);
        let evict = Arc::new(Notify::new());
        state.slots.insert(id, Slot { evict: evict.clone(), requests: 0, waiting_since: Some(since) });
        state.waiting.insert(since, id);
        Ticket { registry: self.clone(), id, evict }
    }

    /// Marks a connection busy with a request until the guard is dropped.
    fn busy(self: &Arc<Self>, id: u64, in_flight: &Arc<AtomicUsize>) -> Busy {
        in_flight.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock();
        let waited = state.slots.get_mut(&id).and_then(|slot| {
            slot.requests += 1;
            slot.waiting_since.take()
        });
        if let Some(since) = waited {
            state.waiting.remove(&since);
        }
        Busy { registry: self.clone(), id, in_flight: in_flight.clone() }
    }

    fn idle(&self, id: u64) {
        let mut state = self.lock();
        state.next += 1;
        let since = state.next;
        let Some(slot) = state.slots.get_mut(&id) else { return };
        slot.requests = slot.requests.saturating_sub(1);
        if slot.requests == 0 && slot.waiting_since.is_none() {
            slot.waiting_since = Some(since);
            state.waiting.insert(since, id);
            drop(state);
            self.changed.notify_waiters();
        }
    }

    fn leave(&self, id: u64) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.remove(&id)
            && let Some(since) = slot.waiting_since
        {
            state.waiting.remove(&since);
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

/// A connection's place in the registry, given up when dropped.
struct Ticket {
    registry: Arc<Registry>,
    id: u64,
    evict: Arc<Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.leave(self.id);
    }
}

/// A request under way on a connection.
struct Busy {
    registry: Arc<Registry>,
    id: u64,
    /// The requests under way on the connection.
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.registry.idle(self.id);
    }
}

/// The error of a body that sent nothing for too long.
#[derive(Debug, thiserror::Error)]
#[error("the body sent nothing for {0:?}")]
pub struct BodyIdle(Duration);

/// A request body that fails when it sends nothing for `idle` while it is read.
struct IdleBody {
    inner: Incoming,
    idle: Duration,
    /// Set while waiting for the next frame.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleBody {
    fn new(inner: Incoming, idle: Duration) -> Self {
        Self { inner, idle, timer: None }
    }
}

impl hyper::body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let idle = this.idle;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyIdle(idle).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_leaves_files_for_the_database_and_exports() {
        assert_eq!(connection_bound(1024, None), 1024);
        assert_eq!(connection_bound(1024, Some(20_000)), 1024);
        assert_eq!(connection_bound(1024, Some(1024)), 960);
        assert_eq!(connection_bound(1024, Some(10)), 1);
    }

    #[tokio::test]
    async fn a_new_connection_past_the_bound_evicts_the_one_that_waited_longest_for_a_request() {
        let registry = Arc::new(Registry::new(2));
        let first = registry.admit();
        let second = registry.admit();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let busy = registry.busy(first.id, &in_flight);
        // The second has waited longest among those waiting (the first is busy).
        let third = registry.admit();
        assert!(tokio::time::timeout(Duration::from_millis(10), second.evict.notified()).await.is_ok());
        assert!(tokio::time::timeout(Duration::from_millis(10), first.evict.notified()).await.is_err());
        // Both counted ones are busy: no room until one goes idle.
        let also_busy = registry.busy(third.id, &in_flight);
        assert!(tokio::time::timeout(Duration::from_millis(10), registry.room()).await.is_err());
        drop(busy);
        assert!(tokio::time::timeout(Duration::from_millis(10), registry.room()).await.is_ok());
        drop(also_busy);
        assert_eq!(in_flight.load(Ordering::SeqCst), 0);
        drop((first, second, third));
        assert!(registry.lock().slots.is_empty() && registry.lock().waiting.is_empty());
    }
}
