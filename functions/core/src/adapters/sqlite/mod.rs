//! Local mode's embedded storage: one SQLite database (bundled, WAL mode) holding accounts and
//! hashed tokens, data requests, the durable build queue and the subject data. Calls run in
//! turn on one database thread; a conditional update reads, checks and writes inside one
//! immediate transaction, so it is atomic even against another process on the same file.
//! One file per port: `requests`, `queue`, `accounts`, `subjects`, `audit`.

mod accounts;
mod audit;
mod queue;
mod requests;
mod schema;
mod subjects;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::Connection;
use tokio::sync::Notify;

/// Work for the database thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The local database: one connection, owned by one thread that runs the store's work in
/// turn. One thread rather than a pool: every row is allocated by the same thread (and its
/// allocator arena), which keeps the memory of a large build flat. Large MIME bodies are the
/// exception: each is streamed on a read-only connection of its own (see `subjects`), so that
/// a slow export never holds up the database thread.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: std::sync::mpsc::Sender<Job>,
    queued: Arc<Notify>,
    path: Arc<Path>,
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl SqliteStore {
    /// Opens (and creates, or brings up to date) the database file.
    ///
    /// # Errors
    /// When the file cannot be opened or the schema not created.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut connection = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        connection.busy_timeout(Duration::from_secs(10))?;
        // What is deleted is overwritten with zeros, so an erased subject leaves nothing in
        // the database file's free space (the write-ahead log is truncated by `scrub`).
        connection.pragma_update(None, "secure_delete", "ON")?;
        schema::create(&mut connection).context("creating the schema")?;
        let (jobs, receiver) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new().name("datarequest-sqlite".into()).spawn(move || {
            let mut connection = connection;
            // Ends when the last clone of the store is dropped.
            for job in receiver {
                job(&mut connection);
            }
        })?;
        Ok(Self { jobs, queued: Arc::new(Notify::new()), path: path.into() })
    }

    async fn run<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    {
        self.start(work)?.await.context("the database thread has stopped")?
    }

    /// Queues `work` for the database thread now, and returns where its outcome will come:
    /// the caller can go on with other work meanwhile ([`SqliteStore::run`] awaits at once).
    fn start<T, F>(&self, work: F) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |connection| {
            // A panic fails this call only, as a panic in a blocking task would; the thread
            // and its connection go on serving the others.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(connection)))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a database task panicked")));
            // The caller may have gone away (a dropped request); nothing then waits for this.
            let _ = reply.send(outcome);
        });
        self.jobs.send(job).map_err(|_| anyhow::anyhow!("the database thread has stopped"))?;
        Ok(result)
    }

    /// Whether the database holds no account yet.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn is_empty(&self) -> anyhow::Result<bool> {
        self.run(|c| Ok(c.query_row("SELECT COUNT(*) FROM accounts", [], |row| row.get::<_, i64>(0))? == 0)).await
    }
}
