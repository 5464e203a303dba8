//! The worker: takes one queued request id, builds its export and delivers it. Messages arrive
//! at least once, so every step is a conditional write on the state before it: a duplicate or
//! late message finds nothing to do, and a delivery is claimed before it is sent, so it is
//! never sent twice.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tracing::instrument;

use crate::app::App;
use crate::domain::lifecycle::{BUILD_LEASE, BUILD_RENEW_EVERY, CLAIM_MARGIN};
use crate::domain::{
    AuditEvent, DataRequest, DeliveryStatus, DownloadToken, Report, RequestId, RetryPolicy, State, Timestamp,
    Transition, WebhookSecret,
};
use crate::export::{self, Checkpoints};
use crate::mail::{Content, Html, compose};
use crate::metrics::BuildFigures;
use crate::ports::{ExportFormat, OutgoingMail, SourceError, WebhookHeaders};

/// What to do with the queue message after handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing more to do: delete the message.
    Done,
    /// Deliver the message again after this long: a delivery to retry, or a build or delivery
    /// another worker holds.
    RetryAfter(Duration),
    /// The run stopped before its deadline, the build at a checkpoint: queue the message again
    /// at once (a continuation), as a new message that has not failed.
    Continue,
}

/// The slowest average rate a delivery may take its export at: with the delivery timeout, it
/// bounds how long one attempt may run, and so how long its claim lasts.
const SLOWEST_RATE: u64 = 1024 * 1024;

/// Handles one queue message for a request. `receives` is how often the queue has handed this
/// message out, this time included.
///
/// # Errors
/// When a step failed in a way worth retrying; the queue delivers the message again after
/// [`RetryPolicy::after_error`]. On the last allowed receive a failed build marks the request
/// failed instead.
pub async fn handle(app: &App, id: RequestId, receives: u32) -> anyhow::Result<Outcome> {
    handle_until(app, id, receives, None).await
}

/// Same as [`handle`] for a run that must end by `stop_at` (a Lambda invocation's deadline
/// less a margin): a build still running then stops at a checkpoint, and a delivery does not
/// start after it; both answer [`Outcome::Continue`].
///
/// # Errors
/// As [`handle`].
#[instrument(skip_all, fields(request_id = %id, receives))]
pub async fn handle_until(
    app: &App,
    id: RequestId,
    receives: u32,
    stop_at: Option<std::time::Instant>,
) -> anyhow::Result<Outcome> {
    let Some(request) = app.requests.get(id).await? else {
        tracing::warn!("queued request does not exist");
        return Ok(Outcome::Done);
    };
    let request = match request.state {
        State::Accepted | State::Building => match build(app, &request, stop_at).await {
            Ok(Build::Held(until)) => return Ok(Outcome::RetryAfter(RetryPolicy::while_held(app.now(), until))),
            Ok(Build::Lost) => return Ok(Outcome::Done),
            Ok(Build::Suspended) => return Ok(Outcome::Continue),
            Ok(Build::Done) => match app.requests.get(id).await? {
                Some(request) => request,
                None => return Ok(Outcome::Done),
            },
            Err(error) if receives >= app.settings.build_attempts => {
                tracing::error!(error = format!("{error:#}"), receives, "build failed for the last time");
                let reason = build_failure(&error);
                if app.requests.update(id, &Transition::Fail { reason: reason.clone() }).await? {
                    app.record(request.account, id, AuditEvent::Failed { reason }).await;
                    let (bytes, records, duration) = (0, 0, std::time::Duration::ZERO);
                    let figures = BuildFigures { outcome: "failed", bytes, records, duration, invocations: receives };
                    crate::metrics::emit(&figures);
                }
                return Ok(Outcome::Done);
            }
            Err(error) => return Err(error),
        },
        _ => request,
    };
    if request.effective_state(app.now()) != State::Built {
        return Ok(Outcome::Done);
    }
    // A delivery started this late could be cut off by the end of the run; the next run has
    // the time it needs.
    if matches!(request.delivery.status, DeliveryStatus::Pending | DeliveryStatus::Sending)
        && export::time_is_up(stop_at)
    {
        return Ok(Outcome::Continue);
    }
    deliver(app, &request).await
}

/// The reason a build that failed for the last time shows: a source's failure names the source,
/// the kind and the section (its text holds no subject data); any other cause is logged only.
fn build_failure(error: &anyhow::Error) -> String {
    match error.chain().find_map(|e| e.downcast_ref::<SourceError>()) {
        Some(source) => format!("the export could not be built: {source}"),
        None => "the export could not be built".to_owned(),
    }
}

/// Same as [`handle`], for the end of the queue's patience: the message is about to go to the
/// dead-letter queue, so a request still waiting is marked failed with the reason.
///
/// # Errors
/// When the request store cannot be reached.
pub async fn give_up(app: &App, id: RequestId, reason: &str) -> anyhow::Result<()> {
    if app.requests.update(id, &Transition::Fail { reason: reason.to_owned() }).await?
        && let Some(request) = app.requests.get(id).await?
    {
        app.record(request.account, id, AuditEvent::Failed { reason: reason.to_owned() }).await;
    }
    Ok(())
}

/// How a build attempt ended.
enum Build {
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

async fn build(app: &App, request: &DataRequest, stop_at: Option<std::time::Instant>) -> anyhow::Result<Build> {
    let now = app.now();
    let lease = lease_from(now);
    if !app.requests.update(request.id, &Transition::StartBuild { now, lease_until: lease }).await? {
        return Ok(match app.requests.get(request.id).await? {
            Some(stored) if stored.state == State::Building => stored.lease_until.map_or(Build::Done, Build::Held),
            _ => Build::Done,
        });
    }
    // Read again: the checkpoint to go on from is the one the last holder left.
    let Some(request) = app.requests.get(request.id).await? else { return Ok(Build::Done) };
    if request.checkpoint.is_none() {
        app.record(request.account, request.id, AuditEvent::BuildStarted).await;
    }
    let held = AtomicI64::new(lease.unix());
    let result = tokio::select! {
        built = write(app, &request, &held, stop_at) => built,
        () = renew(app, request.id, &held) => {
            tracing::warn!("the build was taken over by another builder; this one stops");
            return Ok(Build::Lost);
        }
    };
    if !matches!(result, Ok(Build::Done)) {
        // The next receive (or the continuation) may start at once rather than wait for the
        // lease to run out.
        let held = Timestamp::from_unix(held.load(Ordering::Relaxed));
        if let Err(error) = app.requests.update(request.id, &Transition::Release { held }).await {
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
) -> anyhow::Result<Build> {
    let started = std::time::Instant::now();
    let build = export::Build {
        subjects: &*app.subjects,
        sources: &*app.sources,
        requests: &*app.requests,
        exports: &*app.exports,
        clock: &*app.clock,
        ttl: app.settings.export_ttl,
        not_before: app.settings.retained_since(app.now()),
    };
    let checkpoints = Checkpoints { every: app.settings.checkpoint_every, stop_at, lease };
    let (written, report) = match export::build(&build, request, checkpoints).await.context("writing the export")? {
        export::Outcome::Complete(written, Some(report)) => (written, report),
        export::Outcome::Complete(_, None) => anyhow::bail!("the HTML report was not written"),
        export::Outcome::Suspended => {
            tracing::info!("the build stopped at a checkpoint; a continuation goes on");
            return Ok(Build::Suspended);
        }
    };
    let size = written.bytes;
    // The expiry the report states, so the page and the status agree.
    let built = Transition::Built { bytes: size, completed: app.now(), expires: report.expires };
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
    }
    Ok(Build::Done)
}

/// How long one delivery attempt of `bytes` may run: the delivery timeout, plus the time the
/// export takes at the slowest rate allowed.
fn delivery_deadline(app: &App, bytes: u64) -> Duration {
    app.settings.webhook_timeout + Duration::from_secs(bytes / SLOWEST_RATE)
}

async fn deliver(app: &App, request: &DataRequest) -> anyhow::Result<Outcome> {
    let Some(report) = &request.report else { return Ok(Outcome::Done) };
    let now = app.now();
    let deadline = delivery_deadline(app, request.available);
    let until = now.plus_seconds(i64::try_from((deadline + CLAIM_MARGIN).as_secs()).unwrap_or(i64::MAX));
    if !app.requests.update(request.id, &Transition::ClaimDelivery { now, until }).await? {
        // A worker that crashed mid-delivery left its claim: try again once it runs out.
        return Ok(match app.requests.get(request.id).await? {
            Some(stored) if stored.state == State::Built && stored.delivery.status == DeliveryStatus::Sending => {
                let held = stored.delivery.claimed_until.unwrap_or(now);
                Outcome::RetryAfter(RetryPolicy::while_held(now, held))
            }
            _ => Outcome::Done,
        });
    }
    let attempts = request.delivery.attempts + 1;
    let attempt = async {
        match report {
            Report::Email(to) => send_mail(app, request, to).await,
            Report::Web(target) => post_web(app, request, target).await,
        }
    };
    let method = match report {
        Report::Email(_) => mail_method(app, request.available),
        Report::Web(_) => "web",
    };
    let result = tokio::time::timeout(deadline, attempt)
        .await
        .unwrap_or_else(|_| Err(failure(method, "the delivery did not finish in time")));
    match result {
        Ok(method) => {
            let done = Transition::Delivered { attempts, method: method.into() };
            app.requests.update(request.id, &done).await?;
            tracing::info!(attempts, method, "export delivered");
            let event = AuditEvent::Delivery { attempt: attempts, method: method.into(), outcome: "sent".into() };
            app.record(request.account, request.id, event).await;
            Ok(Outcome::Done)
        }
        Err(failure) => {
            let last = attempts >= app.settings.delivery_attempts;
            tracing::warn!(attempts, last, error = %failure.message, "delivery failed");
            let failed =
                Transition::DeliveryFailed { attempts, method: failure.method.into(), error: failure.message, last };
            app.requests.update(request.id, &failed).await?;
            let outcome = if last { "given_up" } else { "failed" };
            let event =
                AuditEvent::Delivery { attempt: attempts, method: failure.method.into(), outcome: outcome.into() };
            app.record(request.account, request.id, event).await;
            if last {
                return Ok(Outcome::Done);
            }
            let policy = RetryPolicy { delivery_backoff: app.settings.delivery_backoff };
            Ok(Outcome::RetryAfter(policy.after_delivery_failure(attempts)))
        }
    }
}

/// A failed delivery attempt, described without personal data.
struct Failure {
    method: &'static str,
    message: String,
}

fn failure(method: &'static str, message: impl Into<String>) -> Failure {
    Failure { method, message: message.into() }
}

async fn read_export(app: &App, id: RequestId) -> Result<Vec<u8>, String> {
    let file = app.exports.open(id, ExportFormat::Json).await.map_err(|e| format!("{e:#}"))?;
    read_file(file.ok_or("the export is missing")?).await
}

async fn read_file(mut file: crate::ports::ExportFile) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(usize::try_from(file.len).unwrap_or(0));
    file.reader.read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// How an export of `size` bytes goes by mail: attached while it fits, otherwise linked.
fn mail_method(app: &App, size: u64) -> &'static str {
    if size <= app.settings.attachment_limit { "attachment" } else { "link" }
}

async fn send_mail(
    app: &App,
    request: &DataRequest,
    to: &crate::domain::EmailAddress,
) -> Result<&'static str, Failure> {
    let size = request.available;
    let limit = app.settings.attachment_limit;
    let method = mail_method(app, size);
    let expires = request.expires.unwrap_or_else(|| app.now());
    // The download link of the export (`…&format=html` for the report), signed until it expires.
    let link = |suffix: &str| {
        let token = DownloadToken::sign(&app.settings.link_secret, request.id, expires);
        let base =
            app.settings.public_url.as_deref().ok_or_else(|| failure(method, "DATAREQUEST_PUBLIC_URL is not set"))?;
        Ok::<_, Failure>(format!("{base}/v1/datarequest/{}/download?token={}{suffix}", request.id, token.as_str()))
    };
    // The HTML report goes beside the JSON while both fit the limit together; otherwise it is
    // linked. An export built before reports existed has none.
    let report =
        app.exports.open(request.id, ExportFormat::Html).await.map_err(|e| failure(method, format!("{e:#}")))?;
    let html = match report {
        Some(file) if size <= limit && file.len <= limit - size => {
            Html::Attached(read_file(file).await.map_err(|e| failure(method, e))?)
        }
        // Without a public URL the attached JSON still goes; only the report's link is left out.
        Some(_) if size <= limit => link("&format=html").map_or(Html::Missing, Html::Link),
        Some(_) => Html::Link(link("&format=html")?),
        None => Html::Missing,
    };
    let content = if size <= limit {
        let json = read_export(app, request.id).await.map_err(|e| failure(method, e))?;
        Content::Attachment { json, html, expires: expires.to_string() }
    } else {
        Content::Link { url: link("")?, html, expires: expires.to_string(), size }
    };
    let raw = compose(&app.settings, request, to, content).map_err(|e| failure(method, format!("{e:#}")))?;
    let mail = OutgoingMail { request: request.id, from: app.settings.sender.email.to_string(), to: to.clone(), raw };
    app.mailer.send(&mail).await.map_err(|e| failure(method, format!("{e:#}")))?;
    Ok(method)
}

async fn post_web(
    app: &App,
    request: &DataRequest,
    target: &crate::domain::WebAddress,
) -> Result<&'static str, Failure> {
    let secret = app
        .accounts
        .webhook_secret(request.account)
        .await
        .map_err(|e| failure("web", format!("{e:#}")))?
        .ok_or_else(|| failure("web", "the account has no webhook secret"))?;
    let timestamp = app.now().unix();
    let signature = sign_export(app, request.id, &secret, timestamp).await.map_err(|e| failure("web", e))?;
    let headers = WebhookHeaders { id: request.id.to_string(), timestamp, signature };
    let body = app
        .exports
        .open(request.id, ExportFormat::Json)
        .await
        .map_err(|e| failure("web", format!("{e:#}")))?
        .ok_or_else(|| failure("web", "the export is missing"))?;
    match app.web.post(target, &headers, body).await {
        Ok(status) if (200..300).contains(&status) => Ok("web"),
        Ok(status) => Err(failure("web", format!("the web address answered HTTP {status}"))),
        Err(e) => Err(failure("web", format!("{e:#}"))),
    }
}

/// Signs the export as Standard Webhooks do, reading it once as a stream.
async fn sign_export(app: &App, id: RequestId, secret: &WebhookSecret, timestamp: i64) -> Result<String, String> {
    use hmac::Mac;
    let mut file =
        app.exports.open(id, ExportFormat::Json).await.map_err(|e| format!("{e:#}"))?.ok_or("the export is missing")?;
    let mut mac = secret.signer(&id.to_string(), timestamp);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file.reader.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        mac.update(&chunk[..n]);
    }
    Ok(WebhookSecret::signature(mac))
}

/// The body of a build queue message: `{"request":"<id>"}` (the id as a string, so no JSON
/// reader rounds it).
#[must_use]
pub fn message_body(id: RequestId) -> String {
    serde_json::json!({"request": id.to_string()}).to_string()
}

/// Reads the request id from a build queue message body.
///
/// # Errors
/// When the body is not a build message.
pub fn parse_message(body: &str) -> Result<RequestId, crate::domain::Invalid> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        request: String,
    }
    let body: Body =
        serde_json::from_str(body).map_err(|_| crate::domain::Invalid("not a build queue message".into()))?;
    RequestId::parse(&body.request)
}
