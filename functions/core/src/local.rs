//! Local mode: the whole service in one process on embedded storage (SQLite, a folder of
//! exports, an outbox folder or SMTP), with the worker and the expiry sweeper running beside
//! the HTTP server. Requests accepted before a crash are built after the restart.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::adapters::folder::FolderExports;
use crate::adapters::outbox::{OutboxMailer, SmtpMailer};
use crate::adapters::sqlite::SqliteStore;
use crate::adapters::webhook::HttpWebDelivery;
use crate::app::App;
use crate::config::{self, ConfigError, Fallbacks, Settings};
use crate::domain::{LinkSecret, RetryPolicy};
use crate::http::{Part, router};
use crate::ports::{Mailer, RequestStore, SystemClock};
use crate::sources::Sources;
use crate::worker::{self, Outcome};

/// Address to listen on (`serve --listen`).
pub const LISTEN: &str = "DATAREQUEST_LISTEN";
/// Folder of the database, exports and outbox (`--data-dir`).
pub const DATA_DIR: &str = "DATAREQUEST_DATA_DIR";
/// SMTP server for delivery mails; without it they go to `<data dir>/outbox`.
pub const SMTP_URL: &str = "DATAREQUEST_SMTP_URL";
/// Concurrent build workers.
pub const WORKERS: &str = "DATAREQUEST_WORKERS";

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data dir.
pub const DEFAULT_DATA_DIR: &str = "./.datarequest";

/// How long a received queue message stays hidden from other workers of this process without
/// a heartbeat; the worker handling it renews this every third of it.
const VISIBILITY: Duration = Duration::from_secs(60);

/// The service on a data dir.
#[derive(Clone)]
pub struct Local {
    /// The application.
    pub app: App,
    /// The database (also the queue).
    pub store: SqliteStore,
    /// The sources of subject data beside the store (see [`crate::sources`]).
    pub sources: Sources,
    /// The data dir.
    pub data_dir: PathBuf,
}

/// The link secret: configured, or made once and kept in the data dir so links survive a
/// restart.
fn link_secret(data_dir: &Path) -> anyhow::Result<LinkSecret> {
    let path = data_dir.join("link-secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return LinkSecret::new(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let secret = LinkSecret::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options
        .open(&path)
        .and_then(|mut f| f.write_all(secret.expose().as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

impl Local {
    /// Opens the service on a data dir with settings from `lookup`. `public_url` is the
    /// fallback for `DATAREQUEST_PUBLIC_URL` (the listen address).
    ///
    /// # Errors
    /// When a setting is bad (named) or the data dir cannot be used.
    pub fn open(
        data_dir: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
        public_url: Option<String>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        let fallbacks = Fallbacks { public_url, link_secret: Some(link_secret(data_dir)?) };
        let settings = Settings::from_lookup(lookup, fallbacks)?;
        let sources = Sources::from_lookup(lookup)?;
        let store = SqliteStore::open(&data_dir.join("datarequest.sqlite3"))?;
        let mailer: Arc<dyn Mailer> = match config::optional(lookup, SMTP_URL) {
            Some(url) => Arc::new(SmtpMailer::new(&url).map_err(|e| ConfigError::new(SMTP_URL, format!("{e:#}")))?),
            None => Arc::new(OutboxMailer::new(data_dir.join("outbox"))?),
        };
        let app = App {
            requests: Arc::new(store.clone()),
            queue: Arc::new(store.clone()),
            exports: Arc::new(FolderExports::new(data_dir.join("exports"))?),
            subjects: Arc::new(store.clone()),
            sources: Arc::new(sources.clone()),
            accounts: crate::adapters::token_cache::TokenCache::wrap(store.clone()),
            mailer,
            web: Arc::new(HttpWebDelivery::new(settings.web_policy, settings.webhook_timeout)?),
            clock: Arc::new(SystemClock),
            audit: Arc::new(store.clone()),
            limiter: Arc::new(crate::app::RateLimiter::new(settings.rate_limit_per_minute)),
            settings: Arc::new(settings),
        };
        Ok(Self { app, store, sources, data_dir: data_dir.to_owned() })
    }

    /// Serves the API on `listener` with `workers` build workers and the expiry sweeper, until
    /// `shutdown` resolves.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        workers: usize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if self.app.settings.subject_retention.is_some() {
            self.store.index_for_retention().await?;
        }
        let requeued = self.store.recover().await?;
        if requeued > 0 {
            tracing::info!(requeued, "requeued unfinished requests");
        }
        // Export files of builds that died before a checkpoint will never be finished.
        let mut kept = Vec::new();
        for id in self.store.unfinished().await? {
            if let Some(checkpoint) = self.store.get(id).await?.and_then(|request| request.checkpoint) {
                kept.extend(crate::export::writer_checkpoints(&checkpoint));
            }
        }
        let removed = FolderExports::new(self.data_dir.join("exports"))?.remove_abandoned(&kept)?;
        if removed > 0 {
            tracing::info!(removed, "removed the files of builds that died before a checkpoint");
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            tasks.push(tokio::spawn(run_worker(self.clone(), stopped.clone())));
        }
        tasks.push(tokio::spawn(run_sweeper(self.clone(), stopped.clone())));
        // The peer's address goes (truncated) into the audit log of downloads.
        let service = router(self.app.clone(), Part::All).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, service).with_graceful_shutdown(shutdown).await;
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        served.context("serving HTTP")
    }
}

/// Takes queue messages and hands them to the worker until stopped.
async fn run_worker(local: Local, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        match local.store.receive(VISIBILITY).await {
            Ok(Some(message)) => {
                // A heartbeat keeps the message hidden while it is handled, however long that
                // takes, so no second worker receives it; after a crash it shows again soon.
                let store = local.store.clone();
                let heartbeat = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(VISIBILITY / 3).await;
                        if let Err(error) = store.retry_after(message.id, VISIBILITY).await {
                            tracing::warn!(error = format!("{error:#}"), "queue heartbeat failed");
                        }
                    }
                });
                let result = worker::handle(&local.app, message.id, message.receives).await;
                heartbeat.abort();
                let settled = match result {
                    Ok(Outcome::Done) => local.store.acknowledge(message.id).await,
                    Ok(Outcome::RetryAfter(delay)) => local.store.retry_after(message.id, delay).await,
                    Ok(Outcome::Continue) => local.store.retry_after(message.id, Duration::ZERO).await,
                    Err(error) => {
                        tracing::error!(request_id = %message.id, receives = message.receives, error = format!("{error:#}"), "build failed; will retry");
                        let delay = RetryPolicy::after_error(message.receives);
                        local.store.retry_after(message.id, delay).await
                    }
                };
                if let Err(error) = settled {
                    tracing::error!(error = format!("{error:#}"), "queue update failed");
                }
            }
            Ok(None) => {
                let wait = match local.store.next_visible_in().await {
                    Ok(Some(due)) => due.min(Duration::from_millis(500)),
                    _ => Duration::from_millis(500),
                };
                tokio::select! {
                    () = local.store.queued() => {}
                    () = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => {}
                }
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "queue receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Expires exports whose time has come, every few seconds, and every minute queues stuck
/// requests again (as the sweeper function does on AWS) and deletes audit entries past the
/// audit retention and (with a subject-data retention) messages and events past that.
async fn run_sweeper(local: Local, mut stopped: watch::Receiver<bool>) {
    let mut last_forget: Option<std::time::Instant> = None;
    while !*stopped.borrow() {
        if let Err(error) = local.app.sweep_expired().await {
            tracing::error!(error = format!("{error:#}"), "expiry sweep failed");
        }
        if last_forget.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            last_forget = Some(std::time::Instant::now());
            if let Err(error) = local.app.requeue_stuck().await {
                tracing::error!(error = format!("{error:#}"), "requeueing stuck requests failed");
            }
            let now = local.app.now();
            if let Some(cutoff) = local.app.settings.retained_since(now) {
                match local.store.forget_before(cutoff).await {
                    Ok(0) => {}
                    Ok(gone) => tracing::info!(records = gone, "records past the retention deleted"),
                    Err(error) => tracing::error!(error = format!("{error:#}"), "retention sweep failed"),
                }
            }
            let keep = i64::try_from(local.app.settings.audit_retention.as_secs()).unwrap_or(i64::MAX);
            if let Err(error) = local.store.forget_audit_before(now.plus_seconds(-keep)).await {
                tracing::error!(error = format!("{error:#}"), "audit retention sweep failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stopped.changed() => {}
        }
    }
}
