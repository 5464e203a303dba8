//! Building: what one build queue message asks for. The export is built (or a build held
//! elsewhere is waited for) and then handed to [`super::deliver`]. Messages arrive at least
//! once, so every step is a conditional write on the state before it: a duplicate or late
//! message finds nothing to do.

use std::sync::atomic::{AtomicI64, Ordering};

use tracing::instrument;

use super::deliver::deliver;
use super::{ACCOUNT_DELETED, App, QueueOutcome};
use crate::domain::lifecycle::{BUILD_LEASE, BUILD_RENEW_EVERY};
use crate::domain::{AuditEvent, DataRequest, DeliveryStatus, RequestId, RetryPolicy, State, Timestamp, Transition};
use crate::export::{self, BuildError, Checkpoints};
use crate::metrics::BuildFigures;

impl App {
    /// Handles one queue message for a request. `receives` is how often the queue has handed this
    /// message out, this time included.
    ///
    /// # Errors
    /// When a step failed in a way worth retrying; the queue delivers the message again after
    /// [`RetryPolicy::after_error`]. On the last allowed receive a failed build marks the request
    /// failed instead.
    pub async fn handle_message(&self, id: RequestId, receives: u32) -> anyhow::Result<QueueOutcome> {
        self.handle_message_until(id, receives, None).await
    }

    /// Same as [`App::handle_message`] for a run that must end by `stop_at` (a Lambda invocation's deadline
    /// less a margin): a build still running then stops at a checkpoint, and a delivery does not
    /// start after it; both answer [`QueueOutcome::Continue`].
    ///
    /// # Errors
    /// As [`App::handle_message`].
    #[instrument(skip_all, fields(request_id = %id, receives))]
    pub async fn handle_message_until(
        &self,
        id: RequestId,
        receives: u32,
        stop_at: Option<std::time::Instant>,
    ) -> anyhow::Result<QueueOutcome> {
        let app = self;
        let Some(request) = app.requests.get(id).await? else {
            tracing::warn!("queued request does not exist");
            return Ok(QueueOutcome::Done);
        };
        if matches!(request.state, State::Accepted | State::Building) && !app.account_exists(request.account).await? {
            // Nothing is built, or delivered, for an account that is gone.
            let reason = ACCOUNT_DELETED.to_owned();
            if app.requests.update(id, &Transition::Fail { reason: reason.clone() }).await? {
                tracing::warn!("the request's account was deleted; it fails");
                app.record(request.account, id, AuditEvent::Failed { reason }).await;
            }
            return Ok(QueueOutcome::Done);
        }
        let request = match request.state {
            State::Accepted | State::Building => match build(app, &request, receives, stop_at).await {
                Ok(BuildStep::Held(until)) => {
                    return Ok(QueueOutcome::RetryAfter(RetryPolicy::while_held(app.now(), until)));
                }
                Ok(BuildStep::Lost) => return Ok(QueueOutcome::Done),
                Ok(BuildStep::Suspended) => return Ok(QueueOutcome::Continue),
                Ok(BuildStep::Done) => match app.requests.get(id).await? {
                    Some(request) => request,
                    None => return Ok(QueueOutcome::Done),
                },
                // A query the source refuses (a permission, an unknown table) fails the same way
                // every time: the request fails at once with that reason.
                Err(error) if receives >= app.settings.build_attempts || error.is_permanent() => {
                    tracing::error!(error = format!("{error:#}"), receives, "build failed for the last time");
                    let reason = build_failure(&error);
                    if app.requests.update(id, &Transition::Fail { reason: reason.clone() }).await? {
                        app.record(request.account, id, AuditEvent::Failed { reason }).await;
                        let (bytes, records, duration) = (0, 0, std::time::Duration::ZERO);
                        let figures =
                            BuildFigures { outcome: "failed", bytes, records, duration, invocations: receives };
                        crate::metrics::emit(&figures);
                    }
                    return Ok(QueueOutcome::Done);
                }
                Err(error) => return Err(error.into_anyhow()),
            },
            _ => request,
        };
        if request.effective_state(app.now()) != State::Built {
            return Ok(QueueOutcome::Done);
        }
        // A delivery started this late could be cut off by the end of the run; the next run has
        // the time it needs.
        if matches!(request.delivery.status, DeliveryStatus::Pending | DeliveryStatus::Sending)
            && export::time_is_up(stop_at)
        {
            return Ok(QueueOutcome::Continue);
        }
        deliver(app, &request).await
    }

    /// Whether the account still exists (a deleted account's requests are neither built nor
    /// delivered).
    pub(super) async fn account_exists(&self, account: crate::domain::AccountId) -> anyhow::Result<bool> {
        Ok(self.accounts.webhook_secret(account).await?.is_some())
    }

    /// Same as [`App::handle_message`], for the end of the queue's patience: the message is about to go to the
    /// dead-letter queue, so a request still waiting is marked failed with the reason.
    ///
    /// # Errors
    /// When the request store cannot be reached.
    pub async fn give_up(&self, id: RequestId, reason: &str) -> anyhow::Result<()> {
        let app = self;
        if app.requests.update(id, &Transition::Fail { reason: reason.to_owned() }).await?
            && let Some(request) = app.requests.get(id).await?
        {
            app.record(request.account, id, AuditEvent::Failed { reason: reason.to_owned() }).await;
        }
        Ok(())
    }
}

/// The reason a build that failed for the last time shows: a source's failure names the source,
/// the kind and the section (its text holds no subject data); any other cause is logged only.
fn build_failure(error: &BuildError) -> String {
    match error {
        BuildError::Source(source) => format!("the export could not be built: {source}"),
        BuildError::CheckpointGone | BuildError::LeaseLost | BuildError::Withdrawn | BuildError::Unexpected(_) => {
            "the export could not be built".to_owned()
        }
    }
}

/// What a request shows while its build waits to be tried again after `error` on its
/// `receives`-th attempt: `None` when it will not be (the request fails instead) or the error
/// is not a failure.
fn retry_reason(error: &BuildError, receives: u32, attempts: u32) -> Option<String> {
    if error.is_permanent() || receives >= attempts {
        return None;
    }
    let attempt = format!("the export could not be built yet; attempt {receives} of {attempts} failed, trying again");
    match error {
        BuildError::Source(source) => Some(format!("{attempt}: {source}")),
        BuildError::CheckpointGone | BuildError::Unexpected(_) => Some(attempt),
        BuildError::LeaseLost | BuildError::Withdrawn => None,
    }
}

/// How a build attempt ended.
enum BuildStep {
    /// Built, or there was nothing to build any more.
    Done,
    /// Another builder holds the build until then.
    Held(Timestamp),
    /// Another builder took the build over while this one ran (its lease ran out).
    Lost,
    /// The run's time was up: the build stopped at a checkpoint, for a continuation.
    Suspended,
}

fn lease_from(now: Timestamp) -> Timestamp {
    now.plus_seconds(i64::try_from(BUILD_LEASE.as_secs()).unwrap_or(i64::MAX))
}

async fn build(
    app: &App,
    request: &DataRequest,
    receives: u32,
    stop_at: Option<std::time::Instant>,
) -> Result<BuildStep, BuildError> {
    let now = app.now();
    let lease = lease_from(now);
    if !app.requests.update(request.id, &Transition::StartBuild { now, lease_until: lease }).await? {
        return Ok(match app.requests.get(request.id).await? {
            Some(stored) if stored.state == State::Building => {
                stored.lease_until.map_or(BuildStep::Done, BuildStep::Held)
            }
            _ => BuildStep::Done,
        });
    }
    // Read again: the checkpoint to go on from is the one the last holder left.
    let Some(request) = app.requests.get(request.id).await? else { return Ok(BuildStep::Done) };
    if request.checkpoint.is_none() {
        app.record(request.account, request.id, AuditEvent::BuildStarted).await;
    }
    let held = AtomicI64::new(lease.unix());
    let result = tokio::select! {
        built = write(app, &request, &held, stop_at) => built,
        () = renew(app, request.id, &held) => {
            tracing::warn!("the build was taken over by another builder; this one stops");
            return Ok(BuildStep::Lost);
        }
    };
    if matches!(result, Err(BuildError::Withdrawn)) {
        // Cancelled or erased while it built: the unfinished files were discarded; a file
        // completed meanwhile goes too.
        tracing::info!("the request was withdrawn while it built; the build stopped");
        app.exports.delete(request.id).await?;
        return Ok(BuildStep::Done);
    }
    if !matches!(result, Ok(BuildStep::Done)) {
        // The next receive (or the continuation) may start at once rather than wait for the
        // lease to run out.
        let held = Timestamp::from_unix(held.load(Ordering::Relaxed));
        let retrying =
            result.as_ref().err().and_then(|error| retry_reason(error, receives, app.settings.build_attempts));
        if let Err(error) = app.requests.update(request.id, &Transition::Release { held, retrying }).await {
            tracing::warn!(error = format!("{error:#}"), "releasing the build lease failed");
        }
    }
    result
}

/// Renews the build's lease (whose end `held` holds) while it runs; resolves when another
/// builder took the build over.
async fn renew(app: &App, id: RequestId, held: &AtomicI64) {
    loop {
        tokio::time::sleep(BUILD_RENEW_EVERY).await;
        let current = Timestamp::from_unix(held.load(Ordering::Relaxed));
        let lease_until = lease_from(app.now()).max(current.plus_seconds(1));
        match app.requests.update(id, &Transition::Renew { held: current, lease_until }).await {
            Ok(true) => held.store(lease_until.unix(), Ordering::Relaxed),
            Ok(false) => return,
            Err(error) => tracing::warn!(error = format!("{error:#}"), "renewing the build lease failed"),
        }
    }
}

async fn write(
    app: &App,
    request: &DataRequest,
    lease: &AtomicI64,
    stop_at: Option<std::time::Instant>,
) -> Result<BuildStep, BuildError> {
    let started = std::time::Instant::now();
    let build = export::BuildInputs {
        subjects: &*app.subjects,
        sources: &*app.sources,
        requests: &*app.requests,
        exports: &*app.exports,
        clock: &*app.clock,
        ttl: app.settings.export_ttl,
        not_before: app.settings.retained_since(app.now()),
    };
    let checkpoints = Checkpoints { every: app.settings.checkpoint_every, stop_at, lease };
    let outcome = export::build(&build, request, checkpoints).await.map_err(|error| match error {
        BuildError::Unexpected(error) => BuildError::Unexpected(error.context("writing the export")),
        typed => typed,
    })?;
    let (written, report) = match outcome {
        export::BuildOutcome::Complete(written, Some(report)) => (written, report),
        export::BuildOutcome::Complete(_, None) => {
            return Err(anyhow::anyhow!("the HTML report was not written").into());
        }
        export::BuildOutcome::Suspended => {
            tracing::info!("the build stopped at a checkpoint; a continuation goes on");
            return Ok(BuildStep::Suspended);
        }
    };
    let size = written.bytes;
    // The expiry the report states, so the page and the status agree.
    let records = written.sections.iter().map(|(name, count)| ((*name).to_owned(), *count)).collect();
    let built = Transition::Built { bytes: size, completed: app.now(), expires: report.expires, records };
    if app.requests.update(request.id, &built).await? {
        tracing::info!(bytes = size, runs = written.runs, "export built");
        crate::metrics::emit(&BuildFigures {
            outcome: "built",
            bytes: size,
            records: written.sections.iter().map(|(_, count)| count).sum(),
            duration: started.elapsed(),
            invocations: written.runs,
        });
        let records = written.sections.into_iter().map(|(name, count)| (name.to_owned(), count)).collect();
        app.record(request.account, request.id, AuditEvent::Built { bytes: size, records }).await;
    } else if app
        .requests
        .get(request.id)
        .await?
        .is_none_or(|stored| matches!(stored.state, State::Failed | State::Expired | State::Cancelled))
    {
        // Erased, cancelled (or its account deleted) while this run wrote: what it wrote goes
        // too.
        app.exports.delete(request.id).await?;
    }
    Ok(BuildStep::Done)
}
