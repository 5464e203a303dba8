//! The application: the use cases, which own the ports and are all the doors may call.
//! Submitting and reading requests live here; building ([`build`]), delivering ([`deliver`])
//! and consuming the build queue ([`consume`]) have modules of their own.

mod access;
mod build;
mod cancel;
mod consume;
mod deliver;
mod erase;
pub mod ingest;
pub mod mail;
mod operator;

pub use access::DownloadError;
pub use consume::{Consumed, settle};
pub use deliver::DeliveryError;
pub use operator::{NewAccount, NewSigningKey, Operator, OperatorStores, SigningKeyError};

use std::sync::Arc;

use anyhow::Context;
use tracing::instrument;

use crate::config::Settings;
use crate::domain::audit::{self, ReportTrace};
use crate::domain::idempotency;
use crate::domain::{AccountId, DataRequest, IdempotencyKey, Report, RequestId, State, Subject, Timestamp, Transition};
use crate::domain::{AuditEntry, AuditEvent, TokenHash};
use crate::ports::{
    Accounts, AuditLog, BuildQueue, Clock, ExportStore, KeyClaim, Mailer, RequestStore, SubjectData, SubjectSources,
    WebDelivery,
};

/// Why a request of an account deleted before its build or delivery failed.
pub const ACCOUNT_DELETED: &str = "the account was deleted";

/// What to do with the queue message after handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Nothing more to do: delete the message.
    Done,
    /// Deliver the message again after this long: a delivery to retry, or a build or delivery
    /// another worker holds.
    RetryAfter(std::time::Duration),
    /// The run stopped before its deadline, the build at a checkpoint: queue the message again
    /// at once (a continuation), as a new message that has not failed.
    Continue,
}

/// Every port the service uses, injected once by [`crate::compose`]; the doors call the use
/// cases, never a port.
#[derive(Clone)]
pub struct App {
    /// Data requests.
    pub(crate) requests: Arc<dyn RequestStore>,
    /// The build queue.
    pub(crate) queue: Arc<dyn BuildQueue>,
    /// Export files.
    pub(crate) exports: Arc<dyn ExportStore>,
    /// The platform's data about subjects.
    pub(crate) subjects: Arc<dyn SubjectData>,
    /// The platform's own databases, read per request through the mapping.
    pub(crate) sources: Arc<dyn SubjectSources>,
    /// Accounts and tokens.
    pub(crate) accounts: Arc<dyn Accounts>,
    /// Outgoing mail.
    pub(crate) mailer: Arc<dyn Mailer>,
    /// Web delivery.
    pub(crate) web: Arc<dyn WebDelivery>,
    /// The time.
    pub(crate) clock: Arc<dyn Clock>,
    /// The audit log of each request.
    pub(crate) audit: Arc<dyn AuditLog>,
    /// Settings.
    pub(crate) settings: Arc<Settings>,
    /// The per-account limit on new requests.
    pub(crate) limiter: Arc<RateLimiter>,
}

/// A fixed-window limit per key and minute, kept in this process's memory: the data requests
/// an account POSTs (each Lambda instance counts for itself; API Gateway throttles in front),
/// and the failed authentications of a client address (local mode).
#[derive(Debug)]
pub struct RateLimiter<K = AccountId> {
    per_minute: u32,
    windows: std::sync::Mutex<std::collections::HashMap<K, (i64, u32)>>,
}

impl<K: std::hash::Hash + Eq + Copy> RateLimiter<K> {
    /// A limiter allowing `per_minute` per key per minute; 0 allows all.
    #[must_use]
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, windows: std::sync::Mutex::default() }
    }

    /// The seconds until the next minute when `key` is at its limit at `now`; counts nothing.
    #[must_use]
    pub fn over(&self, key: K, now: Timestamp) -> Option<u64> {
        if self.per_minute == 0 {
            return None;
        }
        let minute = now.unix().div_euclid(60);
        let windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        windows
            .get(&key)
            .filter(|(m, n)| *m == minute && *n >= self.per_minute)
            .map(|_| u64::try_from(60 - now.unix().rem_euclid(60)).unwrap_or(60))
    }

    /// Counts one for `key` at `now`.
    pub fn count(&self, key: K, now: Timestamp) {
        if self.per_minute == 0 {
            return;
        }
        let minute = now.unix().div_euclid(60);
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > 10_000 {
            windows.retain(|_, (m, _)| *m == minute);
        }
        let window = windows.entry(key).or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        window.1 = window.1.saturating_add(1);
    }

    /// Counts one for `key` at `now` unless it is at its limit. `Err` holds the seconds until
    /// the next minute when it is.
    ///
    /// # Errors
    /// The seconds to wait, when over the limit.
    pub fn check(&self, key: K, now: Timestamp) -> Result<(), u64> {
        if let Some(wait) = self.over(key, now) {
            return Err(wait);
        }
        self.count(key, now);
        Ok(())
    }
}

/// Where a POST came from: for its idempotency and its audit log.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Its `Idempotency-Key`, if any.
    pub key: Option<IdempotencyKey>,
    /// The API version of the call.
    pub version: &'static str,
    /// The hash of the access token it came with.
    pub token: Option<TokenHash>,
}

/// Why a request could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The profile does not exist in the caller's account (or exists in another one).
    #[error("no such profile")]
    NoSuchProfile,
    /// The subprofile does not exist in the caller's account (or exists in another one).
    #[error("no such subprofile")]
    NoSuchSubprofile,
    /// The idempotency key was used in the last 24 hours for a call with another subject or
    /// report (named).
    #[error("Idempotency-Key was used for a request with another {0} in the last 24 hours")]
    KeyConflict(&'static str),
    /// Anything else; the cause is logged, not shown.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl App {
    /// Accepts a data request: checks that the subject exists in the account, stores the
    /// request and queues it. A refused subject uses up no idempotency key. A request that
    /// could not be queued is marked failed, so nothing is left waiting forever. With an idempotency key, a call that repeats an earlier one of
    /// the last 24 hours gets the earlier request's id and creates nothing (if the earlier call
    /// stopped before storing its request, this one stores it, under the same id).
    ///
    /// # Errors
    /// [`SubmitError::NoSuchProfile`] or [`SubmitError::NoSuchSubprofile`] for an unknown or
    /// foreign one; [`SubmitError::KeyConflict`] for a key used for another call.
    #[instrument(skip_all, fields(account = %account, kind = subject.kind().as_str()))]
    pub async fn submit(
        &self,
        account: AccountId,
        subject: Subject,
        report: Option<Report>,
        origin: &Origin,
    ) -> Result<RequestId, SubmitError> {
        // A subject exists when the store has it or a source's `exists` query finds it; an
        // address is always accepted. Checked before the idempotency key is claimed: a refused
        // call claims nothing, so its key still serves a call that can succeed.
        let stored = match &subject {
            Subject::Profile(p) => self.subjects.profile(account, *p).await?.is_some(),
            Subject::Subprofile(s) => self.subjects.subprofile(account, *s).await?.is_some(),
            Subject::Email(_) => true,
        };
        if !stored && !self.sources.exists(account, &subject).await.context("asking the sources")? {
            return Err(match subject {
                Subject::Subprofile(_) => SubmitError::NoSuchSubprofile,
                _ => SubmitError::NoSuchProfile,
            });
        }
        let now = self.clock.now();
        let mut id = RequestId::random();
        let token = origin.token.as_ref().map(audit::token_id).unwrap_or_default();
        let key = origin.key.as_ref();
        if let Some(key) = key {
            let claim = KeyClaim {
                request: id,
                fingerprint: idempotency::fingerprint(&subject, report.as_ref()),
                expires: now.plus_seconds(idempotency::IDEMPOTENCY_WINDOW_SECS),
            };
            if let Some(stored) = self.requests.claim_key(account, &key.hash(), &claim, now).await? {
                if stored.fingerprint != claim.fingerprint {
                    return Err(SubmitError::KeyConflict(idempotency::conflict(
                        &stored.fingerprint,
                        &claim.fingerprint,
                    )));
                }
                if self.requests.get(stored.request).await?.is_some() {
                    tracing::info!(request_id = %stored.request, "data request repeated under its idempotency key");
                    let event = AuditEvent::Repeated { version: origin.version.to_owned(), token };
                    self.record(account, stored.request, event).await;
                    return Ok(stored.request);
                }
                id = stored.request;
            }
        }
        let received = AuditEvent::Received {
            version: origin.version.to_owned(),
            token,
            subject: subject.kind().as_str().to_owned(),
            report: report.as_ref().map(ReportTrace::of),
        };
        let mut request = DataRequest::accepted(id, account, subject, report, now);
        let mut tries = 0;
        while !self.requests.insert(&request).await? {
            if key.is_some() {
                // The same key's other call stored this id a moment ago: it is that request.
                return match self.requests.get(request.id).await? {
                    Some(stored) if stored.account == account => Ok(stored.id),
                    _ => Err(anyhow::anyhow!("the id of an idempotency key is taken").into()),
                };
            }
            tries += 1;
            if tries == 5 {
                return Err(anyhow::anyhow!("no free request id after 5 tries").into());
            }
            request.id = RequestId::random();
        }
        // Recorded before the request is queued, so a worker's first entry never precedes it.
        self.record(account, request.id, received).await;
        if let Err(error) = self.queue.enqueue(request.id).await {
            let _ = self.requests.update(request.id, &Transition::Fail { reason: "could not be queued".into() }).await;
            return Err(SubmitError::Unexpected(error.context("queueing the request")));
        }
        tracing::info!(request_id = %request.id, "data request accepted");
        Ok(request.id)
    }

    /// The request with this id if it belongs to `account`; a foreign request is `None`,
    /// exactly like a missing one. A request past its expiry is expired here and now.
    ///
    /// # Errors
    /// When a store cannot be reached.
    pub async fn find(&self, account: AccountId, id: RequestId) -> anyhow::Result<Option<DataRequest>> {
        let Some(request) = self.requests.get(id).await? else { return Ok(None) };
        if request.account != account {
            return Ok(None);
        }
        self.expire_if_due(request).await.map(Some)
    }

    /// The request with this id, of any account that still exists (for download links, whose
    /// signed token is the authority), expired when due.
    ///
    /// # Errors
    /// When a store cannot be reached.
    pub async fn find_any(&self, id: RequestId) -> anyhow::Result<Option<DataRequest>> {
        match self.requests.get(id).await? {
            // A deleted account's requests are gone for its links too.
            Some(request) if self.accounts.webhook_secret(request.account).await?.is_some() => {
                self.expire_if_due(request).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn expire_if_due(&self, mut request: DataRequest) -> anyhow::Result<DataRequest> {
        let now = self.clock.now();
        if request.effective_state(now) == State::Expired && request.state != State::Expired {
            self.expire(request.id).await?;
            request.state = State::Expired;
        }
        Ok(request)
    }

    /// Deletes the file of a request and marks it expired (if it still holds a file).
    ///
    /// # Errors
    /// When a store cannot be reached.
    pub async fn expire(&self, id: RequestId) -> anyhow::Result<()> {
        if self.expire_unscrubbed(id).await? {
            // The request's addresses were overwritten: the store rewrites what it kept.
            self.subjects.scrub().await?;
        }
        Ok(())
    }

    /// [`App::expire`] but for the scrub, which a sweep does once for all it expired.
    /// Returns whether this call expired the request.
    async fn expire_unscrubbed(&self, id: RequestId) -> anyhow::Result<bool> {
        self.exports.delete(id).await.context("deleting an expired export")?;
        self.mailer.forget(id).await.context("deleting the mail of an expired export")?;
        if !self.requests.update(id, &Transition::Expire).await? {
            return Ok(false);
        }
        tracing::info!(request_id = %id, "export expired");
        if let Some(request) = self.requests.get(id).await? {
            self.record(request.account, id, AuditEvent::Expired).await;
        }
        Ok(true)
    }

    /// Queues again every request stuck before its build (see
    /// [`crate::domain::lifecycle::STUCK_AFTER`]): its queue message was lost, or its builder
    /// died. Returns how many.
    ///
    /// # Errors
    /// When a store or the queue cannot be reached.
    pub async fn requeue_stuck(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let bound = i64::try_from(crate::domain::lifecycle::STUCK_AFTER.as_secs()).unwrap_or(i64::MAX);
        let mut seen = std::collections::HashSet::new();
        let mut count = 0;
        // Each one requeued is marked, so the next page holds others.
        loop {
            let stuck = self.requests.stuck(now.plus_seconds(-bound), 100).await?;
            let fresh: Vec<RequestId> = stuck.into_iter().filter(|id| seen.insert(*id)).collect();
            if fresh.is_empty() {
                return Ok(count);
            }
            for id in fresh {
                // Only the sweep that marks it queues it: two sweeps at once queue it once.
                if self.requests.update(id, &Transition::Requeue { now }).await? {
                    self.queue.enqueue(id).await.context("queueing a stuck request")?;
                    tracing::warn!(request_id = %id, "a stuck request was queued again");
                    count += 1;
                }
            }
        }
    }

    /// Expires every request whose time has come. Returns how many.
    ///
    /// # Errors
    /// When a store cannot be reached.
    pub async fn sweep_expired(&self) -> anyhow::Result<usize> {
        let mut count = 0;
        loop {
            let due = self.requests.expiring(self.clock.now(), 100).await?;
            if due.is_empty() {
                return Ok(count);
            }
            let mut expired = false;
            for id in &due {
                expired |= self.expire_unscrubbed(*id).await?;
            }
            if expired {
                self.subjects.scrub().await?;
            }
            count += due.len();
        }
    }

    /// Erases the data of the accounts deleted without it (`account delete --background`) or
    /// whose erasure a failure cut short. Returns how many accounts were erased.
    ///
    /// # Errors
    /// When a store fails; the erasures not done are done by the next sweep.
    pub async fn erase_deleted_accounts(&self) -> anyhow::Result<usize> {
        let due = self.accounts.erasing().await?;
        for account in &due {
            self.eraser().erase_deleted(&*self.accounts, *account).await?;
        }
        Ok(due.len())
    }

    /// Deletes what is past its retention: with a subject-data retention, the messages and
    /// events older than it; and the audit entries older than the audit retention. Stores that
    /// expire records by themselves (DynamoDB) have nothing to do. Returns the records and the
    /// entries deleted.
    ///
    /// # Errors
    /// When a store fails.
    pub async fn forget_past_retention(&self) -> anyhow::Result<(usize, usize)> {
        let now = self.now();
        let records = match self.settings.retained_since(now) {
            Some(cutoff) => self.subjects.forget_before(cutoff).await.context("the retention sweep")?,
            None => 0,
        };
        let keep = i64::try_from(self.settings.audit_retention.as_secs()).unwrap_or(i64::MAX);
        let entries = self.audit.forget_before(now.plus_seconds(-keep)).await.context("the audit retention sweep")?;
        if records > 0 || entries > 0 {
            self.subjects.scrub().await?;
        }
        Ok((records, entries))
    }

    /// The operator's use cases on this app's account and subject stores.
    #[must_use]
    pub fn operator(&self) -> Operator {
        Operator::new(OperatorStores {
            accounts: self.accounts.clone(),
            subjects: self.subjects.clone(),
            requests: self.requests.clone(),
            exports: self.exports.clone(),
            mailer: self.mailer.clone(),
            signing_keys: None,
        })
    }

    /// Creates an account with a fresh token and webhook secret.
    ///
    /// # Errors
    /// When the account store cannot be reached.
    pub async fn create_account(&self) -> anyhow::Result<NewAccount> {
        self.operator().create_account().await
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Appends to a request's audit log, now. A failure is logged and does not fail the work
    /// being recorded: a download or a delivery goes on when the log cannot be written.
    pub async fn record(&self, account: AccountId, request: RequestId, event: AuditEvent) {
        let entry = AuditEntry { at: self.now(), event };
        if let Err(error) = self.audit.append(account, request, &entry).await {
            tracing::error!(request_id = %request, error = format!("{error:#}"), "audit log write failed");
        }
    }

    /// The owner's audit log of a request, oldest first; `None` for an unknown or foreign one.
    ///
    /// # Errors
    /// When the audit log cannot be read.
    pub async fn log(&self, account: AccountId, request: RequestId) -> anyhow::Result<Option<Vec<AuditEntry>>> {
        let entries = self.audit.entries(account, request).await?;
        Ok((!entries.is_empty()).then_some(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limiter_counts_per_account_per_minute() {
        let limiter = RateLimiter::new(2);
        let (a, b) = (
            AccountId::try_from(1).unwrap_or_else(|_| unreachable!()),
            AccountId::try_from(2).unwrap_or_else(|_| unreachable!()),
        );
        let at = |s: i64| Timestamp::from_unix(1_800_000_000 + s);
        assert_eq!(limiter.check(a, at(0)), Ok(()));
        assert_eq!(limiter.check(a, at(1)), Ok(()));
        assert_eq!(limiter.check(a, at(20)), Err(40), "third in the minute: wait for the next");
        assert_eq!(limiter.check(b, at(20)), Ok(()), "another account has its own count");
        assert_eq!(limiter.check(a, at(60)), Ok(()), "a new minute");
        let off = RateLimiter::new(0);
        assert!((0..1000).all(|n| off.check(a, at(n)).is_ok()));
    }
}
