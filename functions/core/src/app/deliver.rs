//! Delivering: a built export goes to its report address, by mail (attached, or linked when
//! too large) or by a signed POST to a web address. A delivery is claimed before it is sent, so
//! it is never sent twice; a failed attempt is retried with back-off until the attempts run out.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::App;
use super::QueueOutcome;
use crate::app::mail::{Content, Html, compose};
use crate::domain::lifecycle::CLAIM_MARGIN;
use crate::domain::signing::{CopernicaPost, sign_copernica};
use crate::domain::{
    AuditEvent, DataRequest, DeliveryStatus, DownloadToken, Report, RequestId, RetryPolicy, SigningProfile, State,
    Transition, WebhookSecret,
};
use crate::ports::{ExportFormat, OutgoingMail, WEB_CONTENT_TYPE, WebhookHeaders};

/// The slowest average rate a delivery may take its export at: with the delivery timeout, it
/// bounds how long one attempt may run, and so how long its claim lasts.
const SLOWEST_RATE: u64 = 1024 * 1024;

/// How long one delivery attempt of `bytes` may run: the delivery timeout, plus the time the
/// export takes at the slowest rate allowed.
fn delivery_deadline(app: &App, bytes: u64) -> Duration {
    app.settings.webhook_timeout + Duration::from_secs(bytes / SLOWEST_RATE)
}

/// Delivers a built export, once: the attempt is claimed first.
///
/// # Errors
/// When the request store cannot be reached.
pub(super) async fn deliver(app: &App, request: &DataRequest) -> anyhow::Result<QueueOutcome> {
    let Some(report) = &request.report else { return Ok(QueueOutcome::Done) };
    let now = app.now();
    let deadline = delivery_deadline(app, request.available);
    let until = now.plus_seconds(i64::try_from((deadline + CLAIM_MARGIN).as_secs()).unwrap_or(i64::MAX));
    if !app.requests.update(request.id, &Transition::ClaimDelivery { now, until }).await? {
        // A worker that crashed mid-delivery left its claim: try again once it runs out.
        return Ok(match app.requests.get(request.id).await? {
            Some(stored) if stored.state == State::Built && stored.delivery.status == DeliveryStatus::Sending => {
                let held = stored.delivery.claimed_until.unwrap_or(now);
                QueueOutcome::RetryAfter(RetryPolicy::while_held(now, held))
            }
            _ => QueueOutcome::Done,
        });
    }
    let attempts = request.delivery.attempts + 1;
    let method = match report {
        Report::Email(_) => mail_method(app, request.available),
        Report::Web(_) => "web",
    };
    if !app.account_exists(request.account).await? {
        // Claimed, so no other worker sends it either: the delivery is given up.
        let error = super::ACCOUNT_DELETED.to_owned();
        let failed = Transition::DeliveryFailed {
            attempts: request.delivery.attempts,
            method: method.into(),
            error,
            last: true,
        };
        app.requests.update(request.id, &failed).await?;
        tracing::warn!("the request's account was deleted; its delivery is given up");
        return Ok(QueueOutcome::Done);
    }
    let attempt = async {
        match report {
            Report::Email(to) => send_mail(app, request, to).await,
            Report::Web(target) => post_web(app, request, target).await,
        }
    };
    let result = tokio::time::timeout(deadline, attempt).await.unwrap_or(Err(DeliveryError::TimedOut));
    match result {
        Ok(method) => {
            let done = Transition::Delivered { attempts, method: method.into() };
            if !app.requests.update(request.id, &done).await?
                && app
                    .requests
                    .get(request.id)
                    .await?
                    .is_none_or(|r| matches!(r.state, State::Cancelled | State::Expired))
            {
                // Cancelled or erased while it was sent: the copy of the mail kept goes too.
                app.mailer.forget(request.id).await?;
            }
            tracing::info!(attempts, method, "export delivered");
            let event = AuditEvent::Delivery { attempt: attempts, method: method.into(), outcome: "sent".into() };
            app.record(request.account, request.id, event).await;
            Ok(QueueOutcome::Done)
        }
        Err(error) => {
            let last = attempts >= app.settings.delivery_attempts;
            tracing::warn!(attempts, last, error = %error, "delivery failed");
            let failed = Transition::DeliveryFailed { attempts, method: method.into(), error: error.to_string(), last };
            app.requests.update(request.id, &failed).await?;
            let outcome = if last { "given_up" } else { "failed" };
            let event = AuditEvent::Delivery { attempt: attempts, method: method.into(), outcome: outcome.into() };
            app.record(request.account, request.id, event).await;
            if last {
                return Ok(QueueOutcome::Done);
            }
            let policy = RetryPolicy { delivery_backoff: app.settings.delivery_backoff };
            Ok(QueueOutcome::RetryAfter(policy.after_delivery_failure(attempts)))
        }
    }
}

/// Why a delivery attempt failed, described without personal data: the text goes into the
/// request's status and the log.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The export file is not in the store.
    #[error("the export is missing")]
    ExportMissing,
    /// A link is needed and the service does not know its public address.
    #[error("DATAREQUEST_PUBLIC_URL is not set")]
    NoPublicUrl,
    /// The account has no secret to sign a web delivery with.
    #[error("the account has no webhook secret")]
    NoWebhookSecret,
    /// The account's deliveries are signed as Copernica signs, and no signing key is configured.
    #[error("no signing key is configured for the copernica profile (DATAREQUEST_SIGNING_KEYS)")]
    NoSigningKey,
    /// The web address answered with a status that is not a success.
    #[error("the web address answered HTTP {0}")]
    Refused(u16),
    /// The attempt ran past its deadline.
    #[error("the delivery did not finish in time")]
    TimedOut,
    /// A store, the mailer or the connection failed; its text (never personal data).
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl From<std::io::Error> for DeliveryError {
    fn from(error: std::io::Error) -> Self {
        Self::Failed(error.into())
    }
}

/// The export file of a request, read whole (it fits the attachment limit).
async fn read_export(app: &App, id: RequestId) -> Result<Vec<u8>, DeliveryError> {
    read_file(app.exports.open(id, ExportFormat::Json).await?.ok_or(DeliveryError::ExportMissing)?).await
}

async fn read_file(mut file: crate::ports::ExportFile) -> Result<Vec<u8>, DeliveryError> {
    let mut bytes = Vec::with_capacity(usize::try_from(file.len).unwrap_or(0));
    file.reader.read_to_end(&mut bytes).await?;
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
) -> Result<&'static str, DeliveryError> {
    let size = request.available;
    let limit = app.settings.attachment_limit;
    let method = mail_method(app, size);
    let expires = request.expires.unwrap_or_else(|| app.now());
    // The download link of the export (`…&format=html` for the report), signed until it expires.
    let link = |suffix: &str| {
        let token = DownloadToken::sign(&app.settings.link_secret, request.id, expires);
        let base = app.settings.public_url.as_deref().ok_or(DeliveryError::NoPublicUrl)?;
        Ok::<_, DeliveryError>(format!(
            "{base}/v1/datarequest/{}/download?token={}{suffix}",
            request.id,
            token.as_str()
        ))
    };
    // The HTML report goes beside the JSON while both fit the limit together; otherwise it is
    // linked. An export built before reports existed has none.
    let report = app.exports.open(request.id, ExportFormat::Html).await?;
    let html = match report {
        Some(file) if size <= limit && file.len <= limit - size => Html::Attached(read_file(file).await?),
        // Without a public URL the attached JSON still goes; only the report's link is left out.
        Some(_) if size <= limit => link("&format=html").map_or(Html::Missing, Html::Link),
        Some(_) => Html::Link(link("&format=html")?),
        None => Html::Missing,
    };
    let content = if size <= limit {
        let json = read_export(app, request.id).await?;
        Content::Attachment { json, html, expires: expires.to_string() }
    } else {
        Content::Link { url: link("")?, html, expires: expires.to_string(), size }
    };
    let raw = compose(&app.settings, request, to, content)?;
    let mail = OutgoingMail { request: request.id, from: app.settings.sender.email.to_string(), to: to.clone(), raw };
    app.mailer.send(&mail).await?;
    Ok(method)
}

async fn post_web(
    app: &App,
    request: &DataRequest,
    target: &crate::domain::WebAddress,
) -> Result<&'static str, DeliveryError> {
    let profile = app.accounts.signing_profile(request.account).await?.unwrap_or_default();
    // Signed anew on every attempt: a retry carries its own date, nonce and signature.
    let headers = match profile {
        SigningProfile::StandardWebhooks => {
            let secret = app.accounts.webhook_secret(request.account).await?.ok_or(DeliveryError::NoWebhookSecret)?;
            let timestamp = app.now().unix();
            let mut mac = secret.signer(&request.id.to_string(), timestamp);
            read_export_chunks(app, request.id, |chunk| hmac::Mac::update(&mut mac, chunk)).await?;
            WebhookHeaders::standard(request.id.to_string(), timestamp, WebhookSecret::signature(mac))
        }
        SigningProfile::Copernica => {
            let key = app.settings.signer.as_deref().ok_or(DeliveryError::NoSigningKey)?;
            let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
            let length = read_export_chunks(app, request.id, |chunk| sha2::Digest::update(&mut hasher, chunk)).await?;
            let nonce: String = rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect();
            let post = CopernicaPost {
                url: target.url(),
                date: app.now(),
                content_length: length,
                content_type: WEB_CONTENT_TYPE,
                id_prefix: &app.settings.copernica_id_prefix,
                account: request.account,
                sha256: sha2::Digest::finalize(hasher).into(),
                nonce: &nonce,
            };
            WebhookHeaders::from(sign_copernica(key, &post).map_err(|e| DeliveryError::Failed(e.into()))?)
        }
    };
    let body = app.exports.open(request.id, ExportFormat::Json).await?.ok_or(DeliveryError::ExportMissing)?;
    match app.web.post(target, &headers, body).await? {
        status if (200..300).contains(&status) => Ok("web"),
        status => Err(DeliveryError::Refused(status)),
    }
}

/// Reads the export once as a stream, handing each chunk to `consume`; returns its length.
async fn read_export_chunks(app: &App, id: RequestId, mut consume: impl FnMut(&[u8])) -> Result<u64, DeliveryError> {
    let mut file = app.exports.open(id, ExportFormat::Json).await?.ok_or(DeliveryError::ExportMissing)?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut length = 0u64;
    loop {
        let n = file.reader.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        consume(&chunk[..n]);
        length += n as u64;
    }
    Ok(length)
}
