//! Ports: the capabilities the use cases need, each a small trait. Every port has an in-memory
//! fake in [`crate::adapters::memory`], an embedded adapter for local mode and an AWS adapter.
//! Their shapes follow the strictest backend: writes are conditional, queues deliver at least
//! once, exports are written as a stream of parts, and links are minted per call.

mod sources;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncRead;

pub use sources::{NoRows, NoSources, SourceError, SourceReader, SourceRow, SourceValue, SubjectSources};

use crate::domain::{
    AccountId, AuditEntry, DataRequest, EmailAddress, Erasure, Event, EventKind, Line, Message, Mime, MimeRef, Profile,
    ProfileId, Record, RequestId, SigningProfile, Subject, Subprofile, SubprofileId, Timestamp, TokenHash, Transition,
    WebAddress, WebhookSecret, signing::Keyring,
};

/// What an idempotency key names: a request, what was asked for it, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    /// The request the key names.
    pub request: RequestId,
    /// What the POST asked for ([`crate::domain::idempotency::fingerprint`]).
    pub fingerprint: String,
    /// When the key stops naming the request.
    pub expires: Timestamp,
}

/// Stores data requests.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores `claim` under the hash of an idempotency key of `account`, unless a claim that
    /// has not expired at `now` is stored there: then returns that one and stores nothing.
    /// Atomic: of two calls at once, one stores and the other gets its claim.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn claim_key(
        &self,
        account: AccountId,
        key_hash: &str,
        claim: &KeyClaim,
        now: Timestamp,
    ) -> anyhow::Result<Option<KeyClaim>>;

    /// Stores a new request. Returns `false`, storing nothing, when the id is taken.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn insert(&self, request: &DataRequest) -> anyhow::Result<bool>;

    /// The request with this id, of any account: callers scope it (see `http::lookup`).
    ///
    /// # Errors
    /// When the store cannot be reached or holds a corrupt record.
    async fn get(&self, id: RequestId) -> anyhow::Result<Option<DataRequest>>;

    /// Applies `transition` if its guard admits the stored request, atomically. Returns
    /// whether it did.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn update(&self, id: RequestId, transition: &Transition) -> anyhow::Result<bool>;

    /// Up to `limit` requests that still hold a file whose expiry is at or before `now`.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn expiring(&self, now: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>>;

    /// Up to `limit` requests still to be built whose last sign of life is at or before
    /// `before` ([`crate::domain::lifecycle::is_stuck`]).
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn stuck(&self, before: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>>;

    /// Requests not yet at rest (accepted, building, or built with delivery still to do), for a
    /// local process to requeue at start.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn unfinished(&self) -> anyhow::Result<Vec<RequestId>>;

    /// Every request of `account`, in any state (for an erasure or the deletion of the
    /// account, which are rare: a store may scan).
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn requests_of(&self, _account: AccountId) -> anyhow::Result<Vec<DataRequest>> {
        anyhow::bail!("this request store cannot list an account's requests")
    }

    /// Deletes every request and idempotency key of `account` (its account was deleted and
    /// its files are gone).
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn forget_account(&self, _account: AccountId) -> anyhow::Result<()> {
        anyhow::bail!("this request store cannot forget an account")
    }
}

/// Queues a request for the builder. Delivery is at least once: the worker tolerates
/// duplicates.
#[async_trait]
pub trait BuildQueue: Send + Sync {
    /// Enqueues a request id.
    ///
    /// # Errors
    /// When the queue cannot be reached.
    async fn enqueue(&self, id: RequestId) -> anyhow::Result<()>;
}

/// A build queue message as its consumer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The request it names.
    pub request: RequestId,
    /// How often the queue has handed it out, this time included.
    pub receives: u32,
    /// The queue's handle of this receive (SQS's receipt handle; empty where the request id
    /// names the message).
    pub handle: String,
}

/// Settles a received build queue message: the three things a consumer can do with it, the
/// same on SQS and on local mode's queue. [`crate::app::App::consume`] picks one.
#[async_trait]
pub trait QueueConsumer: Send + Sync {
    /// The message was handled: it goes. (On SQS the batch answer removes it.)
    ///
    /// # Errors
    /// When the queue cannot be reached.
    async fn acknowledge(&self, message: &QueueMessage) -> anyhow::Result<()>;

    /// The message failed: it shows again after `delay`, keeping its receive count, so the
    /// queue's bound on failures (its dead-letter queue) still holds.
    ///
    /// # Errors
    /// When the queue cannot be reached.
    async fn retry_after(&self, message: &QueueMessage, delay: Duration) -> anyhow::Result<()>;

    /// The request goes on after `delay` as a message that has not failed (a delivery to
    /// retry, a build another worker holds, a continuation); this receive is done with.
    ///
    /// # Errors
    /// When the queue cannot be reached.
    async fn enqueue_after(&self, message: &QueueMessage, delay: Duration) -> anyhow::Result<()>;
}

/// A readable export file.
pub struct ExportFile {
    /// Its size in bytes.
    pub len: u64,
    /// Its bytes.
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
}

/// How to hand an export to an HTTP client.
pub enum Served {
    /// Stream these bytes in the response.
    Stream(ExportFile),
    /// Send the client to this short-lived URL with a `303`.
    Redirect(String),
}

/// Writes one export, part by part.
#[async_trait]
pub trait ExportWriter: Send {
    /// Appends bytes.
    ///
    /// # Errors
    /// When the store refuses the bytes; [`WriteError::UnfinishedGone`] when the unfinished
    /// file is gone.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError>;

    /// Makes every byte written so far durable and describes the unfinished file (opaque text,
    /// for [`ExportStore::resume`]). The file stays unfinished and unpublished; it is kept for a
    /// resume even when this writer is dropped without finishing.
    ///
    /// # Errors
    /// When the store cannot keep the bytes; [`WriteError::UnfinishedGone`] when the unfinished
    /// file is gone.
    async fn checkpoint(&mut self) -> Result<String, WriteError>;

    /// How long [`ExportWriter::finish`] is expected to take, from what this writer has seen of
    /// its store: a run with less time left takes a checkpoint instead and leaves the completion
    /// to a continuation. Zero for stores that complete a file at once.
    fn finish_cost(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Completes the file, which only now becomes visible. Returns its size.
    ///
    /// # Errors
    /// When the store cannot complete it; [`WriteError::UnfinishedGone`] when the unfinished
    /// file is gone.
    async fn finish(self: Box<Self>) -> Result<u64, WriteError>;

    /// Gives the file up (its request was cancelled or erased while it built): whatever this
    /// writer wrote goes, what its checkpoints kept included, and nothing is published.
    ///
    /// # Errors
    /// When the store cannot remove it; the local server's start and the bucket's lifecycle
    /// rules remove what is left.
    async fn discard(self: Box<Self>) -> Result<(), WriteError>;
}

/// Why an export writer (or a resume of one) failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A resumed writer found its unfinished file gone (completed by a run that died before it
    /// could record so, or removed): the build cannot go on from the checkpoint and starts
    /// again.
    #[error("the unfinished export is gone")]
    UnfinishedGone,
    /// The store failed otherwise.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(error: std::io::Error) -> Self {
        Self::Failed(error.into())
    }
}

/// The checkpoint of an export written to a named file that is kept unfinished until it is
/// complete: the stores that write such files (a folder, memory) describe it so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnfinishedFile {
    /// The unfinished file's name in its store.
    pub file: String,
    /// The bytes that are part of the export; anything after them was written past the
    /// checkpoint and is cut off on resume.
    pub written: u64,
}

impl UnfinishedFile {
    /// The checkpoint as its writer hands it out.
    ///
    /// # Errors
    /// Never in practice (the struct always serialises).
    pub fn to_text(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Reads a checkpoint, which must name a file whose name starts with `prefix`.
    ///
    /// # Errors
    /// When the text is not such a checkpoint.
    pub fn parse(text: &str, prefix: &str) -> anyhow::Result<Self> {
        let parsed: Self = serde_json::from_str(text).map_err(|e| anyhow::anyhow!("not an export checkpoint: {e}"))?;
        let plain = !parsed.file.contains(['/', '\\']) && parsed.file.starts_with(prefix);
        anyhow::ensure!(plain, "the checkpoint names another export's file");
        Ok(parsed)
    }
}

/// The renderings of an export: Copernica's JSON file, and an HTML page a person can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// The JSON export (`.json`).
    Json,
    /// The self-contained HTML report (`.html`).
    Html,
}

impl ExportFormat {
    /// Both formats.
    pub const ALL: [Self; 2] = [Self::Json, Self::Html];

    /// The name in `?format=` and the file extension.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Html => "html",
        }
    }

    /// The `Content-Type` a file of this format is served with.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Html => "text/html; charset=utf-8",
        }
    }

    /// The format named `json` or `html`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// Stores export files, each request's in both formats.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// Starts writing the export of a request in one format, replacing any earlier one when
    /// finished.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn create(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Box<dyn ExportWriter>>;

    /// Goes on writing an unfinished file from a checkpoint of its writer: the file holds
    /// exactly the bytes written up to that checkpoint, whatever was written after it.
    ///
    /// # Errors
    /// When the store cannot be reached or the checkpoint is not one of this store's;
    /// [`WriteError::UnfinishedGone`] when its file is gone.
    async fn resume(
        &self,
        id: RequestId,
        format: ExportFormat,
        checkpoint: &str,
    ) -> Result<Box<dyn ExportWriter>, WriteError>;

    /// Opens a finished export for reading, if it exists.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn open(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Option<ExportFile>>;

    /// How to serve a finished export to an HTTP client: streamed, or (when the store can
    /// mint one and the file is large) a fresh signed URL valid for `ttl`.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn serve(&self, id: RequestId, format: ExportFormat, ttl: Duration) -> anyhow::Result<Option<Served>>;

    /// Deletes the export of a request in every format; deleting a missing one is not an error.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn delete(&self, id: RequestId) -> anyhow::Result<()>;

    /// Removes the unfinished file a writer's `checkpoint` names (see
    /// [`ExportWriter::discard`]), of a build that will not go on; one already gone is not an
    /// error.
    ///
    /// # Errors
    /// When the store cannot be reached or the checkpoint is not one of this store's.
    async fn discard(&self, id: RequestId, format: ExportFormat, checkpoint: &str) -> anyhow::Result<()>;
}

/// The bytes of a stored MIME body, in order, in chunks of a store's choosing (a chunk may end
/// inside a UTF-8 character). The stream ends after the last byte, or with an error.
pub type MimeChunks = futures_util::stream::BoxStream<'static, anyhow::Result<bytes::Bytes>>;

/// A page of records and the cursor of the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The records, in export order.
    pub items: Vec<T>,
    /// Opaque cursor of the next page, `None` on the last.
    pub next: Option<String>,
}

/// Pages of records, one after another to the last, each with the cursor of the one after it.
pub type Pages<'a, T> = futures_util::stream::BoxStream<'a, anyhow::Result<Page<T>>>;

/// The pages `fetch` reads, one after another, from the page at `cursor` (the first when
/// `None`) to the last. A failed read ends the pages with its error.
pub fn paged<'a, T, F, R>(cursor: Option<String>, fetch: F) -> Pages<'a, T>
where
    T: Send + 'a,
    F: FnMut(Option<String>) -> R + Send + 'a,
    R: std::future::Future<Output = anyhow::Result<Page<T>>> + Send + 'a,
{
    use futures_util::StreamExt;
    futures_util::stream::unfold(Some((cursor, fetch)), |state| async move {
        let (cursor, mut fetch) = state?;
        match fetch(cursor).await {
            Ok(page) => {
                let next = page.next.clone().map(|next| (Some(next), fetch));
                Some((Ok(page), next))
            }
            Err(error) => Some((Err(error), None)),
        }
    })
    .boxed()
}

/// Reads, loads and erases the platform's data about subjects. Lists come in pages so that
/// memory stays flat however large a subject's history is.
///
/// Every store holds one rule of ownership ([`crate::domain::Owner`]): a message or event that
/// names a subprofile belongs to that subprofile and through it to the profile the subprofile
/// belongs to *now*; one without a subprofile belongs to the profile it names; e-mail subjects
/// match the address a record names, case-insensitively. Messages come by send time then id,
/// events by time then [`Event::key`], so the same data gives the same export on every store,
/// whatever order it was loaded in.
#[async_trait]
pub trait SubjectData: Send + Sync {
    /// A profile of the account.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn profile(&self, account: AccountId, id: ProfileId) -> anyhow::Result<Option<Profile>>;

    /// A subprofile of the account.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn subprofile(&self, account: AccountId, id: SubprofileId) -> anyhow::Result<Option<Subprofile>>;

    /// A page of the subprofiles of a profile, by id.
    ///
    /// # Errors
    /// When the store cannot be reached or the cursor is not one of its own.
    async fn subprofiles(
        &self,
        account: AccountId,
        profile: ProfileId,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Subprofile>>;

    /// A page of the messages of a subject, by send time then id. Small bodies come with the
    /// page; a large one stays in the store ([`Mime::Stored`]) until [`SubjectData::mime`]
    /// streams it, so a page holds little more than its messages' metadata.
    ///
    /// # Errors
    /// When the store cannot be reached or the cursor is not one of its own.
    async fn messages(
        &self,
        account: AccountId,
        subject: &Subject,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Message<Mime>>>;

    /// Opens a body a page of this store left in it, as a stream: the message as stored when
    /// the stream opens (one consistent version of it, never a mix of two).
    ///
    /// # Errors
    /// When the store cannot be reached, the reference is not one of its own, or the message
    /// is no longer there (erased since its page was read); also, from the stream, when
    /// reading fails part way.
    async fn mime(&self, body: &MimeRef) -> anyhow::Result<MimeChunks>;

    /// A page of one kind of event of a subject, by time then key.
    ///
    /// # Errors
    /// When the store cannot be reached or the cursor is not one of its own.
    async fn events(
        &self,
        account: AccountId,
        subject: &Subject,
        kind: EventKind,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Event>>;

    /// The pages of one kind of event of a subject from the page at `cursor` on, as
    /// [`SubjectData::events`] reads them one after another. A store may read a page while the
    /// one before it is still being made ready, so that paging through a subject's events
    /// keeps both busy.
    fn event_pages<'a>(
        &'a self,
        account: AccountId,
        subject: &'a Subject,
        kind: EventKind,
        cursor: Option<String>,
    ) -> Pages<'a, Event> {
        paged(cursor, move |cursor| async move { self.events(account, subject, kind, cursor.as_deref()).await })
    }

    /// Loads records (already validated), idempotently: profiles, subprofiles and messages
    /// replace the stored one with their id, events the stored one with their
    /// [`Event::key`]. Loading the same records again changes nothing.
    ///
    /// # Errors
    /// When the store cannot be reached; records of the batch may then be stored or not, and
    /// loading the batch again converges.
    async fn load(&self, records: &[Record]) -> anyhow::Result<()>;

    /// Erases a subject (GDPR Art. 17) with everything that belongs to it, MIME bodies kept
    /// elsewhere included: a profile, its subprofiles and every message and event of them; a
    /// subprofile and its messages and events; or every message and event naming an address,
    /// and every profile or subprofile with that address (with theirs). Erasing what is not
    /// there is not an error.
    ///
    /// # Errors
    /// When the store cannot be reached; erasing again completes the erasure.
    async fn erase(&self, erasure: &Erasure) -> anyhow::Result<()>;

    /// Stores checked lines in order: records as [`SubjectData::load`] loads them, erasures as
    /// [`SubjectData::erase`] erases, skipped lines not at all. A store that can do so applies
    /// them all in one transaction, so that after a failure or a crash it holds every line or
    /// none (SQLite does). The others keep this default: consecutive records in calls to
    /// `load` of at most [`APPLY_BATCH`], erasures one by one, in order.
    ///
    /// # Errors
    /// When the store fails. With this default, the lines before the failure may then be
    /// stored; every line is idempotent, so applying the same lines again converges.
    async fn apply(&self, lines: Vec<Line>) -> anyhow::Result<()> {
        let mut batch = Vec::with_capacity(APPLY_BATCH.min(lines.len()));
        for line in lines {
            match line {
                Line::Record(record) => {
                    batch.push(record);
                    if batch.len() >= APPLY_BATCH {
                        self.load(&batch).await?;
                        batch.clear();
                    }
                }
                Line::Erase(erasure) => {
                    if !batch.is_empty() {
                        self.load(&batch).await?;
                        batch.clear();
                    }
                    self.erase(&erasure).await?;
                }
                Line::Skip => {}
            }
        }
        if !batch.is_empty() {
            self.load(&batch).await?;
        }
        Ok(())
    }

    /// Deletes the messages sent and the events that happened before `cutoff` (the
    /// subject-data retention); returns how many records went. A store that expires records by
    /// itself (DynamoDB's time to live) has nothing to do here.
    ///
    /// # Errors
    /// When the store fails.
    async fn forget_before(&self, _cutoff: Timestamp) -> anyhow::Result<usize> {
        Ok(0)
    }

    /// Deletes every profile, subprofile, message and event of `account` (its account was
    /// deleted).
    ///
    /// # Errors
    /// When the store fails.
    async fn erase_account(&self, _account: AccountId) -> anyhow::Result<()> {
        anyhow::bail!("this subject store cannot erase an account")
    }

    /// Makes what was deleted unrecoverable from the store's own files: a store that keeps
    /// deleted pages or a log of them (SQLite's write-ahead log) rewrites them; others have
    /// nothing to do. Called after each erasure and each sweep that deleted something.
    ///
    /// # Errors
    /// When the store fails.
    async fn scrub(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The most records [`SubjectData::apply`]'s default hands to one call of [`SubjectData::load`].
pub const APPLY_BATCH: usize = 5_000;

/// The append-only audit log of each request (see [`crate::domain::audit`]). It outlives the
/// request's export and record: each entry carries the account, so a log is read by its owner
/// alone, and it is kept for the audit retention.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an entry to a request's log.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn append(&self, account: AccountId, request: RequestId, entry: &AuditEntry) -> anyhow::Result<()>;

    /// The request's log, oldest first; empty for another account's request or an unknown one.
    ///
    /// # Errors
    /// When the store cannot be reached or holds a corrupt entry.
    async fn entries(&self, account: AccountId, request: RequestId) -> anyhow::Result<Vec<AuditEntry>>;

    /// Deletes the entries older than `cutoff` (the audit retention); returns how many. A store
    /// that expires entries by itself (DynamoDB's time to live) has nothing to do here.
    ///
    /// # Errors
    /// When the store fails.
    async fn forget_before(&self, _cutoff: Timestamp) -> anyhow::Result<usize> {
        Ok(0)
    }
}

/// Accounts, their hashed access tokens and webhook secrets.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates an account with its first token and its webhook secret.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn create(&self, token: &TokenHash, secret: &WebhookSecret) -> anyhow::Result<AccountId>;

    /// Adds a token to an existing account. Returns `false` when there is no such account.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn add_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool>;

    /// Revokes a token of the account. Returns `false` when the account has no such token.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn revoke_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool>;

    /// Deletes an account: every token of it is revoked and the account is gone (its id is never
    /// given out again). Returns `false` when there is no such account.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn delete_account(&self, account: AccountId) -> anyhow::Result<bool>;

    /// The deleted accounts whose data is still to be erased: [`Accounts::delete_account`]
    /// adds the account (before it goes, on a store without transactions), [`Accounts::erased`]
    /// takes it off once its data is gone.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn erasing(&self) -> anyhow::Result<Vec<AccountId>>;

    /// Records that a deleted account's data is all erased.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn erased(&self, account: AccountId) -> anyhow::Result<()>;

    /// The account a token belongs to.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn by_token(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>>;

    /// The account a token belongs to, read from the store itself: a cache in front of a
    /// store passes this through, so a token revoked anywhere is refused at once. A store
    /// without a cache answers as [`Accounts::by_token`].
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn by_token_uncached(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>> {
        self.by_token(token).await
    }

    /// The account's webhook secret.
    ///
    /// # Errors
    /// When the store cannot be reached or holds a corrupt secret.
    async fn webhook_secret(&self, account: AccountId) -> anyhow::Result<Option<WebhookSecret>>;

    /// How the account's web deliveries are signed ([`SigningProfile::StandardWebhooks`] until
    /// it is set); `None` when there is no such account.
    ///
    /// # Errors
    /// When the store cannot be reached or holds a profile it does not know.
    async fn signing_profile(&self, account: AccountId) -> anyhow::Result<Option<SigningProfile>>;

    /// Sets how the account's web deliveries are signed. Returns `false` when there is no such
    /// account.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn set_signing_profile(&self, account: AccountId, profile: SigningProfile) -> anyhow::Result<bool>;

    /// Stores the hash of a new ingest key (the platform's key for `POST /ingest`; it belongs
    /// to no account and is no access token).
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn add_ingest_key(&self, key: &TokenHash) -> anyhow::Result<()>;

    /// Whether an ingest key with this hash exists.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn is_ingest_key(&self, key: &TokenHash) -> anyhow::Result<bool>;

    /// Whether the account exists: created, and not deleted since.
    ///
    /// # Errors
    /// When the store cannot be reached.
    async fn exists(&self, account: AccountId) -> anyhow::Result<bool>;
}

/// A complete MIME message ready to send.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    /// The request it delivers (names the outbox file).
    pub request: RequestId,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipient.
    pub to: EmailAddress,
    /// The RFC 5322 message.
    pub raw: Vec<u8>,
}

/// Sends e-mail.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one message.
    ///
    /// # Errors
    /// When the message could not be handed over; the text is safe to show the account.
    async fn send(&self, mail: &OutgoingMail) -> anyhow::Result<()>;

    /// Deletes any copy of a request's mail that this mailer keeps (local mode's outbox), when
    /// its export expires or its subject is erased. A mail already handed to a mail server
    /// cannot be called back: there is nothing to do then.
    ///
    /// # Errors
    /// When the copy cannot be deleted.
    async fn forget(&self, _request: RequestId) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The media type of every web delivery's body (the export's JSON).
pub const WEB_CONTENT_TYPE: &str = "application/json";

/// The headers of one web delivery beside `Content-Type` ([`WEB_CONTENT_TYPE`]) and
/// `Content-Length` (the body's length), which the delivery sets itself: a signing profile's
/// headers, by lower-case name, in the order they are sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookHeaders(Vec<(&'static str, String)>);

impl WebhookHeaders {
    /// Standard Webhooks' headers: `webhook-id`, `webhook-timestamp` (unix seconds) and
    /// `webhook-signature` (`v1,<base64>`).
    #[must_use]
    pub fn standard(id: String, timestamp: i64, signature: String) -> Self {
        Self(vec![("webhook-id", id), ("webhook-timestamp", timestamp.to_string()), ("webhook-signature", signature)])
    }

    /// The value of a header, by lower-case name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(n, v)| (*n, v.as_str()))
    }
}

impl From<Vec<(&'static str, String)>> for WebhookHeaders {
    fn from(fields: Vec<(&'static str, String)>) -> Self {
        Self(fields)
    }
}

/// POSTs exports to web addresses.
#[async_trait]
pub trait WebDelivery: Send + Sync {
    /// POSTs the body with the headers, streaming it however large it is. Returns the response
    /// status code.
    ///
    /// # Errors
    /// When no response came (refused address, connection, the receiver stalling or not
    /// answering for the idle timeout); the text is safe to show the account.
    async fn post(&self, target: &WebAddress, headers: &WebhookHeaders, body: ExportFile) -> anyhow::Result<u16>;
}

/// Where the keys that sign Copernica-profile deliveries are kept, as one [`Keyring`]: a file
/// locally, a Secrets Manager secret on AWS. Only the operator's commands write it; the
/// delivering functions read it once at start.
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// The keys; an empty keyring when none were made.
    ///
    /// # Errors
    /// When the store cannot be read or holds something that is not a keyring.
    async fn load(&self) -> anyhow::Result<Keyring>;

    /// Replaces the keys with `keyring`.
    ///
    /// # Errors
    /// When the store cannot be written.
    async fn save(&self, keyring: &Keyring) -> anyhow::Result<()>;
}

/// Tells the time; tests substitute their own.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    /// Pages of the numbers below `count`, three to a page; the cursor is the next number. A
    /// cursor of 99 fails.
    async fn numbers(count: u32, cursor: Option<String>) -> anyhow::Result<Page<u32>> {
        let from: u32 = cursor.as_deref().map_or(Ok(0), str::parse)?;
        anyhow::ensure!(from != 99, "no such page");
        let to = (from + 3).min(count);
        Ok(Page { items: (from..to).collect(), next: (to < count).then(|| to.to_string()) })
    }

    async fn read(pages: Pages<'_, u32>) -> Vec<Result<Vec<u32>, String>> {
        pages.map(|page| page.map(|page| page.items).map_err(|e| e.to_string())).collect().await
    }

    #[tokio::test]
    async fn paged_reads_from_the_cursor_to_the_last_page_and_ends_at_an_error() {
        let all = read(paged(None, |cursor| numbers(7, cursor))).await;
        assert_eq!(all, [Ok(vec![0, 1, 2]), Ok(vec![3, 4, 5]), Ok(vec![6])]);
        let rest = read(paged(Some("3".into()), |cursor| numbers(7, cursor))).await;
        assert_eq!(rest, [Ok(vec![3, 4, 5]), Ok(vec![6])]);
        assert_eq!(read(paged(None, |cursor| numbers(0, cursor))).await, [Ok(vec![])]);
        let failed = read(paged(Some("99".into()), |cursor| numbers(200, cursor))).await;
        assert_eq!(failed, [Err("no such page".to_owned())], "nothing after the error");
    }
}
