//! The doors of local mode: the HTTP server, the build workers that take messages from the
//! embedded queue, and the sweeper, all in one process on the app [`crate::compose::local`]
//! puts together. Requests accepted before a crash are built after the restart.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::adapters::folder::FolderExports;
use crate::compose::Local;
use crate::config::ServerLimits;
use crate::inbound::http::{Routes, router};
use crate::inbound::server;
use crate::ports::{QueueConsumer, RequestStore};

/// How long a received queue message stays hidden from other workers of this process without
/// a heartbeat; the worker handling it renews this every third of it.
const VISIBILITY: Duration = Duration::from_secs(60);

/// Serves the API of `local` within `limits` with `workers` build workers and the expiry
/// sweeper, until `shutdown` resolves.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    local: Local,
    listener: TcpListener,
    limits: &ServerLimits,
    workers: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if local.app.settings().subject_retention.is_some() {
        local.store.index_for_retention().await?;
    }
    let requeued = local.store.recover().await?;
    if requeued > 0 {
        tracing::info!(requeued, "requeued unfinished requests");
    }
    // Export files of builds that died before a checkpoint will never be finished.
    let mut kept = Vec::new();
    for id in local.store.unfinished().await? {
        if let Some(checkpoint) = local.store.get(id).await?.and_then(|request| request.checkpoint) {
            kept.extend(crate::export::writer_checkpoints(&checkpoint));
        }
    }
    let removed = FolderExports::new(local.data_dir.join("exports"))?.remove_abandoned(&kept)?;
    if removed > 0 {
        tracing::info!(removed, "removed the files of builds that died before a checkpoint");
    }
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        tasks.push(tokio::spawn(run_worker(local.clone(), stopped.clone())));
    }
    tasks.push(tokio::spawn(run_sweeper(local.clone(), stopped.clone())));
    // The peer's address goes (truncated) into the audit log of downloads: the accept loop puts
    // it into every request.
    let served = server::serve(listener, router(local.app.clone(), Routes::All), limits, shutdown).await;
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    served.context("serving HTTP")
}

/// Takes queue messages and hands them to the worker until stopped.
async fn run_worker(local: Local, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        match local.store.receive(VISIBILITY).await {
            Ok(Some(message)) => {
                // A heartbeat keeps the message hidden while it is handled, however long that
                // takes, so no second worker receives it; after a crash it shows again soon.
                let (store, held) = (local.store.clone(), message.clone());
                let heartbeat = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(VISIBILITY / 3).await;
                        if let Err(error) = store.retry_after(&held, VISIBILITY).await {
                            tracing::warn!(error = format!("{error:#}"), "queue heartbeat failed");
                        }
                    }
                });
                local.app.consume(&local.store, &message, None).await;
                heartbeat.abort();
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

/// Expires exports whose time has come and erases the data of deleted accounts, every few
/// seconds, and every minute queues stuck
/// requests again (as the sweeper function does on AWS) and deletes audit entries past the
/// audit retention and (with a subject-data retention) messages and events past that.
async fn run_sweeper(local: Local, mut stopped: watch::Receiver<bool>) {
    let mut last_forget: Option<std::time::Instant> = None;
    while !*stopped.borrow() {
        if let Err(error) = local.app.sweep_expired().await {
            tracing::error!(error = format!("{error:#}"), "expiry sweep failed");
        }
        match local.app.erase_deleted_accounts().await {
            Ok(0) => {}
            Ok(accounts) => tracing::info!(accounts, "deleted accounts' data erased"),
            Err(error) => tracing::error!(error = format!("{error:#}"), "erasing deleted accounts failed"),
        }
        if last_forget.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            last_forget = Some(std::time::Instant::now());
            if let Err(error) = local.app.requeue_stuck().await {
                tracing::error!(error = format!("{error:#}"), "requeueing stuck requests failed");
            }
            match local.app.forget_past_retention().await {
                Ok((0, _)) => {}
                Ok((gone, _)) => tracing::info!(records = gone, "records past the retention deleted"),
                Err(error) => tracing::error!(error = format!("{error:#}"), "retention sweep failed"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stopped.changed() => {}
        }
    }
}
