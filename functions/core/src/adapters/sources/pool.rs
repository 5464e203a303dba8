//! A small pool of connections to one source, shared by the `exists` queries of POSTs and by
//! builds, and kept across requests (on AWS, across the invocations of a function instance).
//!
//! It bounds the connections a source holds at once (each lease holds a permit; waiting for
//! one is bounded by the caller, so an unreachable or saturated source only holds its own
//! requests), keeps the connections given back for reuse, and closes one that has sat unused
//! longer than the idle time (on the next lease, and by a task that runs while any are idle).
//! Connecting and checking a kept connection before use are the source's: see
//! [`Lease::reuse`].

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::mapping::SourceSpec;
use crate::config::SourcePool;
use crate::ports::SourceError;

/// A kept connection unused for less than this is reused without a check.
pub const FRESH: Duration = Duration::from_secs(1);

/// The connections of one source.
pub struct Pool<C> {
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<(C, Instant)>>,
    settings: SourcePool,
    reaping: Mutex<bool>,
}

impl<C> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The right to hold one of a source's connections, and the connection once it has one.
/// Dropped without [`Lease::give_back`], the connection is closed.
pub struct Lease<C: Send + 'static> {
    pool: Arc<Pool<C>>,
    _permit: OwnedSemaphorePermit,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<C: Send + 'static> Pool<C> {
    /// An empty pool.
    #[must_use]
    pub fn new(settings: SourcePool) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(settings.size)),
            idle: Mutex::new(Vec::new()),
            settings,
            reaping: Mutex::new(false),
        })
    }

    /// A lease, waiting at most `wait` for one of the source's connections to be free; `None`
    /// when none was.
    pub async fn lease(self: &Arc<Self>, wait: Duration) -> Option<Lease<C>> {
        let permit = tokio::time::timeout(wait, Arc::clone(&self.permits).acquire_owned()).await.ok()?.ok()?;
        Some(Lease { pool: Arc::clone(self), _permit: permit })
    }

    /// A lease for `spec`'s source, waiting at most its `connect_timeout_secs`.
    ///
    /// # Errors
    /// When every connection stayed busy that long.
    pub async fn lease_for(self: &Arc<Self>, spec: &SourceSpec) -> Result<Lease<C>, SourceError> {
        self.lease(spec.connect_timeout).await.ok_or_else(|| {
            spec.error(None, None, "could not connect: every connection of the source stayed busy".into())
        })
    }

    /// How many connections are kept unused now.
    #[must_use]
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Closes the connections unused for longer than the idle time.
    fn prune(&self) {
        let idle = self.settings.idle;
        lock(&self.idle).retain(|(_, since)| since.elapsed() < idle);
    }

    /// Runs [`Self::prune`] while connections are kept, so none stays open unused much longer
    /// than the idle time.
    fn reap(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        {
            let mut reaping = lock(&self.reaping);
            if *reaping {
                return;
            }
            *reaping = true;
        }
        let pool: Weak<Self> = Arc::downgrade(self);
        let every = (self.settings.idle / 4).max(Duration::from_millis(250));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else { return };
                pool.prune();
                if pool.idle() == 0 {
                    *lock(&pool.reaping) = false;
                    return;
                }
            }
        });
    }
}

impl<C: Send + 'static> Lease<C> {
    /// The connection kept most recently and how long it has been unused, if one is kept
    /// (connections unused for longer than the idle time are closed first). The caller checks
    /// it before use when it has been unused for [`FRESH`] or more.
    #[must_use]
    pub fn reuse(&self) -> Option<(C, Duration)> {
        self.pool.prune();
        lock(&self.pool.idle).pop().map(|(connection, since)| (connection, since.elapsed()))
    }

    /// Keeps a connection for reuse (only one left as it was found: no transaction open, no
    /// result pending) and ends the lease.
    pub fn give_back(self, connection: C) {
        lock(&self.pool.idle).push((connection, Instant::now()));
        self.pool.reap();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn settings(size: usize, idle_ms: u64) -> SourcePool {
        SourcePool { size, idle: Duration::from_millis(idle_ms) }
    }

    #[tokio::test]
    async fn a_lease_waits_for_a_free_connection_no_longer_than_told() {
        let pool = Pool::<u32>::new(settings(1, 60_000));
        let first = pool.lease(Duration::from_millis(10)).await.expect("free");
        assert!(pool.lease(Duration::from_millis(20)).await.is_none(), "the only one is leased");
        first.give_back(7);
        let second = pool.lease(Duration::from_millis(10)).await.expect("free again");
        assert_eq!(second.reuse().map(|(c, _)| c), Some(7), "the connection given back is reused");
        assert!(second.reuse().is_none());
    }

    #[tokio::test]
    async fn a_connection_unused_longer_than_the_idle_time_is_closed() {
        let pool = Pool::<u32>::new(settings(2, 300));
        pool.lease(Duration::from_millis(10)).await.expect("free").give_back(1);
        assert_eq!(pool.idle(), 1);
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(pool.idle(), 0, "closed by the reaper without another lease");
        let lease = pool.lease(Duration::from_millis(10)).await.expect("free");
        assert!(lease.reuse().is_none());
    }
}
