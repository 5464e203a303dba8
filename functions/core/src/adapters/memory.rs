//! In-memory implementations of every port: fakes for tests, with handles to look inside.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use crate::domain::{
    AccountId, AuditEntry, DataRequest, Erasure, Event, EventKind, Message, Mime, MimeRef, Owner, Profile, ProfileId,
    Record, RequestId, SigningProfile, State, Subject, SubjectKind, Subprofile, SubprofileId, Timestamp, TokenHash,
    Transition, WebAddress, WebhookSecret, signing::Keyring,
};
use crate::ports::{
    Accounts, AuditLog, BuildQueue, Clock, ExportFile, ExportFormat, ExportStore, ExportWriter, KeyClaim, Mailer,
    MimeChunks, OutgoingMail, Page, QueueConsumer, QueueMessage, RequestStore, Served, SigningKeyStore, SourceError,
    SourceReader, SourceRow, SubjectData, SubjectSources, UnfinishedFile, WebDelivery, WebhookHeaders, WriteError,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Requests in a map, and idempotency keys in another.
#[derive(Default)]
pub struct MemoryRequests(Mutex<HashMap<RequestId, DataRequest>>, Mutex<HashMap<(AccountId, String), KeyClaim>>);

#[async_trait]
impl RequestStore for MemoryRequests {
    async fn claim_key(
        &self,
        account: AccountId,
        key_hash: &str,
        claim: &KeyClaim,
        now: Timestamp,
    ) -> anyhow::Result<Option<KeyClaim>> {
        let mut keys = lock(&self.1);
        match keys.get(&(account, key_hash.to_owned())) {
            Some(stored) if stored.expires > now => Ok(Some(stored.clone())),
            _ => {
                keys.insert((account, key_hash.to_owned()), claim.clone());
                Ok(None)
            }
        }
    }

    async fn insert(&self, request: &DataRequest) -> anyhow::Result<bool> {
        let mut map = lock(&self.0);
        if map.contains_key(&request.id) {
            return Ok(false);
        }
        map.insert(request.id, request.clone());
        Ok(true)
    }

    async fn get(&self, id: RequestId) -> anyhow::Result<Option<DataRequest>> {
        Ok(lock(&self.0).get(&id).cloned())
    }

    async fn update(&self, id: RequestId, transition: &Transition) -> anyhow::Result<bool> {
        Ok(lock(&self.0).get_mut(&id).is_some_and(|request| transition.apply(request)))
    }

    async fn stuck(&self, before: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>> {
        let mut ids: Vec<RequestId> =
            lock(&self.0).values().filter(|r| crate::domain::lifecycle::is_stuck(r, before)).map(|r| r.id).collect();
        ids.sort();
        ids.truncate(limit);
        Ok(ids)
    }

    async fn expiring(&self, now: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>> {
        let mut ids: Vec<RequestId> = lock(&self.0)
            .values()
            .filter(|r| r.state.has_file() && r.expires.is_some_and(|e| e <= now))
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids.truncate(limit);
        Ok(ids)
    }

    async fn unfinished(&self) -> anyhow::Result<Vec<RequestId>> {
        let mut ids: Vec<RequestId> = lock(&self.0)
            .values()
            .filter(|r| {
                matches!(r.state, State::Accepted | State::Building)
                    || (r.state == State::Built
                        && matches!(
                            r.delivery.status,
                            crate::domain::DeliveryStatus::Pending | crate::domain::DeliveryStatus::Sending
                        ))
            })
            .map(|r| r.id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn requests_of(&self, account: AccountId) -> anyhow::Result<Vec<DataRequest>> {
        let mut requests: Vec<DataRequest> = lock(&self.0).values().filter(|r| r.account == account).cloned().collect();
        requests.sort_by_key(|r| r.id);
        Ok(requests)
    }

    async fn forget_account(&self, account: AccountId) -> anyhow::Result<()> {
        lock(&self.0).retain(|_, r| r.account != account);
        lock(&self.1).retain(|(owner, _), _| *owner != account);
        Ok(())
    }
}

/// A queue that only collects what was enqueued, and how its consumer settled each message.
#[derive(Default)]
pub struct MemoryQueue {
    items: Mutex<Vec<RequestId>>,
    settled: Mutex<Vec<(RequestId, Settled)>>,
    fail: std::sync::atomic::AtomicBool,
}

/// How a consumer settled a message of a [`MemoryQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Acknowledged: handled.
    Acknowledged,
    /// Failed: shown again after this long, its receive count kept.
    RetryAfter(Duration),
    /// Handed on as a fresh message after this long.
    EnqueuedAfter(Duration),
}

impl MemoryQueue {
    /// Takes everything enqueued so far.
    pub fn drain(&self) -> Vec<RequestId> {
        std::mem::take(&mut *lock(&self.items))
    }

    /// Makes every later enqueue fail (or succeed again).
    pub fn fail(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Takes how the messages were settled so far, in order.
    pub fn settled(&self) -> Vec<(RequestId, Settled)> {
        std::mem::take(&mut *lock(&self.settled))
    }

    fn settle(&self, message: &QueueMessage, how: Settled) -> anyhow::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            anyhow::bail!("the queue is unavailable");
        }
        lock(&self.settled).push((message.request, how));
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for MemoryQueue {
    async fn acknowledge(&self, message: &QueueMessage) -> anyhow::Result<()> {
        self.settle(message, Settled::Acknowledged)
    }

    async fn retry_after(&self, message: &QueueMessage, delay: Duration) -> anyhow::Result<()> {
        self.settle(message, Settled::RetryAfter(delay))
    }

    async fn enqueue_after(&self, message: &QueueMessage, delay: Duration) -> anyhow::Result<()> {
        self.settle(message, Settled::EnqueuedAfter(delay))?;
        lock(&self.items).push(message.request);
        Ok(())
    }
}

#[async_trait]
impl BuildQueue for MemoryQueue {
    async fn enqueue(&self, id: RequestId) -> anyhow::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            anyhow::bail!("the queue is unavailable");
        }
        lock(&self.items).push(id);
        Ok(())
    }
}

/// Export files by request and format.
type ExportFiles = Arc<Mutex<HashMap<(RequestId, ExportFormat), Vec<u8>>>>;

/// Export files as byte vectors, by request and format.
#[derive(Default)]
pub struct MemoryExports(ExportFiles, Arc<Mutex<HashMap<String, Vec<u8>>>>);

impl MemoryExports {
    /// The bytes of a JSON export.
    pub fn bytes(&self, id: RequestId) -> Option<Vec<u8>> {
        self.bytes_of(id, ExportFormat::Json)
    }

    /// The bytes of an export in a format.
    pub fn bytes_of(&self, id: RequestId, format: ExportFormat) -> Option<Vec<u8>> {
        lock(&self.0).get(&(id, format)).cloned()
    }

    /// How many unfinished files of a request checkpoints keep.
    pub fn unfinished(&self, id: RequestId) -> usize {
        let prefix = format!("{id}.");
        lock(&self.1).keys().filter(|name| name.starts_with(&prefix)).count()
    }
}

struct MemoryWriter {
    key: (RequestId, ExportFormat),
    buffer: Vec<u8>,
    files: ExportFiles,
    /// The name of its unfinished file among the checkpointed ones.
    name: String,
    unfinished: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

fn unfinished_prefix(id: RequestId, format: ExportFormat) -> String {
    format!("{id}.{}.", format.as_str())
}

#[async_trait]
impl ExportWriter for MemoryWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }

    async fn checkpoint(&mut self) -> Result<String, WriteError> {
        lock(&self.unfinished).insert(self.name.clone(), self.buffer.clone());
        Ok(UnfinishedFile { file: self.name.clone(), written: self.buffer.len() as u64 }.to_text()?)
    }

    async fn finish(self: Box<Self>) -> Result<u64, WriteError> {
        let len = self.buffer.len() as u64;
        lock(&self.unfinished).remove(&self.name);
        lock(&self.files).insert(self.key, self.buffer);
        Ok(len)
    }

    async fn discard(self: Box<Self>) -> Result<(), WriteError> {
        lock(&self.unfinished).remove(&self.name);
        Ok(())
    }
}

fn memory_file(bytes: Vec<u8>) -> ExportFile {
    ExportFile { len: bytes.len() as u64, reader: Box::pin(Cursor::new(bytes)) }
}

#[async_trait]
impl ExportStore for MemoryExports {
    async fn create(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Box<dyn ExportWriter>> {
        let name = format!("{}{:016x}", unfinished_prefix(id, format), rand::random::<u64>());
        let (files, unfinished) = (Arc::clone(&self.0), Arc::clone(&self.1));
        Ok(Box::new(MemoryWriter { key: (id, format), buffer: Vec::new(), files, name, unfinished }))
    }

    async fn resume(
        &self,
        id: RequestId,
        format: ExportFormat,
        checkpoint: &str,
    ) -> Result<Box<dyn ExportWriter>, WriteError> {
        let at = UnfinishedFile::parse(checkpoint, &unfinished_prefix(id, format))?;
        let mut buffer = lock(&self.1).get(&at.file).cloned().ok_or_else(|| anyhow::anyhow!("the file is gone"))?;
        if (buffer.len() as u64) < at.written {
            return Err(anyhow::anyhow!("the file is shorter than its checkpoint").into());
        }
        buffer.truncate(usize::try_from(at.written).map_err(anyhow::Error::from)?);
        let (files, unfinished) = (Arc::clone(&self.0), Arc::clone(&self.1));
        Ok(Box::new(MemoryWriter { key: (id, format), buffer, files, name: at.file, unfinished }))
    }

    async fn open(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Option<ExportFile>> {
        Ok(self.bytes_of(id, format).map(memory_file))
    }

    async fn serve(&self, id: RequestId, format: ExportFormat, _ttl: Duration) -> anyhow::Result<Option<Served>> {
        Ok(self.bytes_of(id, format).map(|bytes| Served::Stream(memory_file(bytes))))
    }

    async fn delete(&self, id: RequestId) -> anyhow::Result<()> {
        let mut files = lock(&self.0);
        for format in ExportFormat::ALL {
            files.remove(&(id, format));
        }
        Ok(())
    }

    async fn discard(&self, id: RequestId, format: ExportFormat, checkpoint: &str) -> anyhow::Result<()> {
        let at = UnfinishedFile::parse(checkpoint, &unfinished_prefix(id, format))?;
        lock(&self.1).remove(&at.file);
        Ok(())
    }
}

/// MIME bodies up to this many bytes come with their page; larger ones are left in the store
/// and streamed, as the real stores do, so tests on this fake take both paths.
const MEMORY_INLINE_MIME: usize = 256;
/// The chunks a stored body is streamed in: small, and of an odd size, so that they cut
/// characters of every width.
const MEMORY_MIME_CHUNK: usize = 101;

/// Subject data in maps, filtered and sorted on every read; pages of `page_size`. The
/// reference the other stores are compared with: it holds the ownership rule of
/// [`SubjectData`] in the plainest form.
pub struct MemorySubjects {
    data: Mutex<SubjectMaps>,
    page_size: usize,
}

#[derive(Default)]
struct SubjectMaps {
    profiles: BTreeMap<(AccountId, ProfileId), Profile>,
    subprofiles: BTreeMap<(AccountId, SubprofileId), Subprofile>,
    messages: BTreeMap<(AccountId, String), Message>,
    events: BTreeMap<(AccountId, String), Event>,
}

impl SubjectMaps {
    /// Whether a record with this owner belongs to the subject.
    fn owns(&self, account: AccountId, subject: &Subject, owner: Owner<'_>) -> bool {
        match subject {
            Subject::Profile(id) => match owner.subprofile {
                Some(s) => self.subprofiles.get(&(account, s)).is_some_and(|x| x.profile == *id),
                None => owner.profile == Some(*id),
            },
            Subject::Subprofile(id) => owner.subprofile == Some(*id),
            Subject::Email(address) => owner.email.is_some_and(|e| e.eq_ignore_ascii_case(address.as_str())),
        }
    }

    /// Removes every message and event of the subject (as it is now).
    fn erase_records(&mut self, account: AccountId, subject: &Subject) {
        let owned = |maps: &Self, record: &Record| {
            record.account() == account && record.owner().is_some_and(|o| maps.owns(account, subject, o))
        };
        let messages: Vec<_> = self
            .messages
            .iter()
            .filter(|(_, m)| owned(self, &Record::Message((*m).clone())))
            .map(|(k, _)| k.clone())
            .collect();
        let events: Vec<_> = self
            .events
            .iter()
            .filter(|(_, e)| owned(self, &Record::Event((*e).clone())))
            .map(|(k, _)| k.clone())
            .collect();
        for key in messages {
            self.messages.remove(&key);
        }
        for key in events {
            self.events.remove(&key);
        }
    }

    fn erase_profile(&mut self, account: AccountId, id: ProfileId) {
        self.erase_records(account, &Subject::Profile(id));
        self.profiles.remove(&(account, id));
        self.subprofiles.retain(|(a, _), s| !(*a == account && s.profile == id));
    }

    fn erase_subprofile(&mut self, account: AccountId, id: SubprofileId) {
        self.erase_records(account, &Subject::Subprofile(id));
        self.subprofiles.remove(&(account, id));
    }
}

impl Default for MemorySubjects {
    fn default() -> Self {
        Self { data: Mutex::new(SubjectMaps::default()), page_size: 2 }
    }
}

fn paginate<T>(mut items: Vec<T>, cursor: Option<&str>, size: usize) -> anyhow::Result<Page<T>> {
    let start: usize = cursor.map_or(Ok(0), str::parse)?;
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    let items = items.drain(start.min(end)..end).collect();
    Ok(Page { items, next })
}

#[async_trait]
impl SubjectData for MemorySubjects {
    async fn profile(&self, account: AccountId, id: ProfileId) -> anyhow::Result<Option<Profile>> {
        Ok(lock(&self.data).profiles.get(&(account, id)).cloned())
    }

    async fn subprofile(&self, account: AccountId, id: SubprofileId) -> anyhow::Result<Option<Subprofile>> {
        Ok(lock(&self.data).subprofiles.get(&(account, id)).cloned())
    }

    async fn subprofiles(
        &self,
        account: AccountId,
        profile: ProfileId,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Subprofile>> {
        let items: Vec<Subprofile> = lock(&self.data)
            .subprofiles
            .values()
            .filter(|s| s.account == account && s.profile == profile)
            .cloned()
            .collect();
        paginate(items, cursor, self.page_size)
    }

    async fn messages(
        &self,
        account: AccountId,
        subject: &Subject,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Message<Mime>>> {
        let data = lock(&self.data);
        let mut items: Vec<Message> = data
            .messages
            .values()
            .filter(|m| m.account == account)
            .filter(|m| {
                data.owns(
                    account,
                    subject,
                    Owner { profile: m.profile, subprofile: m.subprofile, email: Some(&m.email) },
                )
            })
            .cloned()
            .collect();
        drop(data);
        items.sort_by(|a, b| (a.sent, &a.id).cmp(&(b.sent, &b.id)));
        let items = items
            .into_iter()
            .map(|m| {
                let mime = if m.mime.len() <= MEMORY_INLINE_MIME {
                    Mime::Text(m.mime.clone())
                } else {
                    Mime::Stored(MimeRef::new(format!("{}:{}", m.account, m.id)))
                };
                m.with_mime(mime)
            })
            .collect();
        paginate(items, cursor, self.page_size)
    }

    async fn mime(&self, body: &MimeRef) -> anyhow::Result<MimeChunks> {
        let (account, id) = body.key().split_once(':').ok_or_else(|| anyhow::anyhow!("not a body of this store"))?;
        let account = AccountId::parse(account)?;
        let text = lock(&self.data)
            .messages
            .get(&(account, id.to_owned()))
            .map(|m| bytes::Bytes::from(m.mime.clone()))
            .ok_or_else(|| anyhow::anyhow!("the message is no longer stored"))?;
        let chunks: Vec<anyhow::Result<bytes::Bytes>> = (0..text.len())
            .step_by(MEMORY_MIME_CHUNK)
            .map(|at| Ok(text.slice(at..(at + MEMORY_MIME_CHUNK).min(text.len()))))
            .collect();
        Ok(Box::pin(futures_util::stream::iter(chunks)))
    }

    async fn events(
        &self,
        account: AccountId,
        subject: &Subject,
        kind: EventKind,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Event>> {
        let data = lock(&self.data);
        let mut items: Vec<(Timestamp, String, Event)> = data
            .events
            .iter()
            .filter(|((a, _), e)| *a == account && e.kind == kind)
            .filter(|(_, e)| {
                let owner = Owner { profile: e.profile, subprofile: e.subprofile, email: e.email.as_deref() };
                data.owns(account, subject, owner)
            })
            .map(|((_, key), e)| (e.time, key.clone(), e.clone()))
            .collect();
        drop(data);
        items.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        paginate(items.into_iter().map(|(_, _, e)| e).collect(), cursor, self.page_size)
    }

    async fn load(&self, records: &[Record]) -> anyhow::Result<()> {
        let mut data = lock(&self.data);
        for record in records {
            match record {
                Record::Profile(p) => {
                    data.profiles.insert((p.account, p.id), p.clone());
                }
                Record::Subprofile(s) => {
                    data.subprofiles.insert((s.account, s.id), s.clone());
                }
                Record::Message(m) => {
                    data.messages.insert((m.account, m.id.clone()), m.clone());
                }
                Record::Event(e) => {
                    data.events.insert((e.account, e.key()), e.clone());
                }
            }
        }
        Ok(())
    }

    async fn erase_account(&self, account: AccountId) -> anyhow::Result<()> {
        let mut data = lock(&self.data);
        data.profiles.retain(|(owner, _), _| *owner != account);
        data.subprofiles.retain(|(owner, _), _| *owner != account);
        data.messages.retain(|(owner, _), _| *owner != account);
        data.events.retain(|(owner, _), _| *owner != account);
        Ok(())
    }

    async fn erase(&self, erasure: &Erasure) -> anyhow::Result<()> {
        let mut data = lock(&self.data);
        match erasure {
            Erasure::Profile(account, id) => data.erase_profile(*account, *id),
            Erasure::Subprofile(account, id) => data.erase_subprofile(*account, *id),
            Erasure::Email(account, address) => {
                let account = *account;
                let matches =
                    |email: &Option<String>| email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(address.as_str()));
                let profiles: Vec<ProfileId> = data
                    .profiles
                    .values()
                    .filter(|p| p.account == account && matches(&p.email))
                    .map(|p| p.id)
                    .collect();
                for id in profiles {
                    data.erase_profile(account, id);
                }
                let subprofiles: Vec<SubprofileId> = data
                    .subprofiles
                    .values()
                    .filter(|s| s.account == account && matches(&s.email))
                    .map(|s| s.id)
                    .collect();
                for id in subprofiles {
                    data.erase_subprofile(account, id);
                }
                data.erase_records(account, &Subject::Email(address.clone()));
            }
        }
        Ok(())
    }
}

/// Audit entries in a list.
#[derive(Default)]
pub struct MemoryAudit(Mutex<Vec<(AccountId, RequestId, AuditEntry)>>);

#[async_trait]
impl AuditLog for MemoryAudit {
    async fn append(&self, account: AccountId, request: RequestId, entry: &AuditEntry) -> anyhow::Result<()> {
        lock(&self.0).push((account, request, entry.clone()));
        Ok(())
    }

    async fn entries(&self, account: AccountId, request: RequestId) -> anyhow::Result<Vec<AuditEntry>> {
        Ok(lock(&self.0).iter().filter(|(a, r, _)| *a == account && *r == request).map(|(_, _, e)| e.clone()).collect())
    }
}

/// Accounts in maps.
#[derive(Default)]
pub struct MemoryAccounts {
    tokens: Mutex<HashMap<TokenHash, AccountId>>,
    secrets: Mutex<Vec<WebhookSecret>>,
    ingest_keys: Mutex<std::collections::HashSet<TokenHash>>,
    deleted: Mutex<std::collections::HashSet<AccountId>>,
    erasing: Mutex<std::collections::BTreeSet<AccountId>>,
    profiles: Mutex<HashMap<AccountId, SigningProfile>>,
}

#[async_trait]
impl Accounts for MemoryAccounts {
    async fn create(&self, token: &TokenHash, secret: &WebhookSecret) -> anyhow::Result<AccountId> {
        let mut secrets = lock(&self.secrets);
        secrets.push(secret.clone());
        let account = AccountId::try_from(secrets.len() as u64)?;
        lock(&self.tokens).insert(*token, account);
        Ok(account)
    }

    async fn add_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        if account.get() > lock(&self.secrets).len() as u64 || lock(&self.deleted).contains(&account) {
            return Ok(false);
        }
        lock(&self.tokens).insert(*token, account);
        Ok(true)
    }

    async fn by_token(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>> {
        Ok(lock(&self.tokens).get(token).copied())
    }

    async fn revoke_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        let mut tokens = lock(&self.tokens);
        if tokens.get(token) == Some(&account) {
            tokens.remove(token);
            return Ok(true);
        }
        Ok(false)
    }

    async fn delete_account(&self, account: AccountId) -> anyhow::Result<bool> {
        lock(&self.tokens).retain(|_, a| *a != account);
        let gone = lock(&self.deleted).insert(account) && account.get() <= lock(&self.secrets).len() as u64;
        if gone {
            lock(&self.erasing).insert(account);
        }
        Ok(gone)
    }

    async fn erasing(&self) -> anyhow::Result<Vec<AccountId>> {
        Ok(lock(&self.erasing).iter().copied().collect())
    }

    async fn erased(&self, account: AccountId) -> anyhow::Result<()> {
        lock(&self.erasing).remove(&account);
        Ok(())
    }

    async fn webhook_secret(&self, account: AccountId) -> anyhow::Result<Option<WebhookSecret>> {
        if lock(&self.deleted).contains(&account) {
            return Ok(None);
        }
        let index = usize::try_from(account.get() - 1)?;
        Ok(lock(&self.secrets).get(index).cloned())
    }

    async fn signing_profile(&self, account: AccountId) -> anyhow::Result<Option<SigningProfile>> {
        if !self.exists(account).await? {
            return Ok(None);
        }
        Ok(Some(lock(&self.profiles).get(&account).copied().unwrap_or_default()))
    }

    async fn set_signing_profile(&self, account: AccountId, profile: SigningProfile) -> anyhow::Result<bool> {
        if !self.exists(account).await? {
            return Ok(false);
        }
        lock(&self.profiles).insert(account, profile);
        Ok(true)
    }

    async fn add_ingest_key(&self, key: &TokenHash) -> anyhow::Result<()> {
        lock(&self.ingest_keys).insert(*key);
        Ok(())
    }

    async fn is_ingest_key(&self, key: &TokenHash) -> anyhow::Result<bool> {
        Ok(lock(&self.ingest_keys).contains(key))
    }

    async fn exists(&self, account: AccountId) -> anyhow::Result<bool> {
        Ok(account.get() <= lock(&self.secrets).len() as u64 && !lock(&self.deleted).contains(&account))
    }
}

/// Collects sent mail; can be told to fail.
#[derive(Default)]
pub struct MemoryMailer {
    sent: Mutex<Vec<OutgoingMail>>,
    failures_left: Mutex<u32>,
}

impl MemoryMailer {
    /// Everything sent so far.
    pub fn sent(&self) -> Vec<OutgoingMail> {
        lock(&self.sent).clone()
    }

    /// Makes the next `n` sends fail.
    pub fn fail_next(&self, n: u32) {
        *lock(&self.failures_left) = n;
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, mail: &OutgoingMail) -> anyhow::Result<()> {
        let mut failures = lock(&self.failures_left);
        if *failures > 0 {
            *failures -= 1;
            anyhow::bail!("the mail server refused the message");
        }
        lock(&self.sent).push(mail.clone());
        Ok(())
    }
}

/// One web delivery as the fake received it.
#[derive(Debug, Clone)]
pub struct Posted {
    /// Target.
    pub target: String,
    /// Headers.
    pub headers: WebhookHeaders,
    /// Body.
    pub body: Vec<u8>,
}

/// Receives web deliveries and answers with a programmed status.
pub struct MemoryWeb {
    posted: Mutex<Vec<Posted>>,
    statuses: Mutex<Vec<u16>>,
}

impl Default for MemoryWeb {
    fn default() -> Self {
        Self { posted: Mutex::new(Vec::new()), statuses: Mutex::new(Vec::new()) }
    }
}

impl MemoryWeb {
    /// Everything posted so far.
    pub fn posted(&self) -> Vec<Posted> {
        lock(&self.posted).clone()
    }

    /// Answers the next posts with these statuses, then with 200.
    pub fn answer(&self, statuses: &[u16]) {
        *lock(&self.statuses) = statuses.iter().rev().copied().collect();
    }
}

#[async_trait]
impl WebDelivery for MemoryWeb {
    async fn post(&self, target: &WebAddress, headers: &WebhookHeaders, mut body: ExportFile) -> anyhow::Result<u16> {
        let mut bytes = Vec::new();
        body.reader.read_to_end(&mut bytes).await?;
        lock(&self.posted).push(Posted { target: target.to_string(), headers: headers.clone(), body: bytes });
        Ok(lock(&self.statuses).pop().unwrap_or(200))
    }
}

/// A keyring kept as its stored text, as the file and the secret keep it.
#[derive(Default)]
pub struct MemorySigningKeys(Mutex<String>);

#[async_trait]
impl SigningKeyStore for MemorySigningKeys {
    async fn load(&self) -> anyhow::Result<Keyring> {
        Ok(Keyring::parse(&lock(&self.0))?)
    }

    async fn save(&self, keyring: &Keyring) -> anyhow::Result<()> {
        *lock(&self.0) = keyring.to_json();
        Ok(())
    }
}

/// A clock that moves only when told.
#[derive(Debug)]
pub struct FakeClock(AtomicI64);

impl FakeClock {
    /// A clock at this time.
    #[must_use]
    pub fn at(time: Timestamp) -> Self {
        Self(AtomicI64::new(time.unix()))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(i64::try_from(by.as_secs()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix(self.0.load(Ordering::SeqCst))
    }
}

/// Sources in memory: rows per subject and section in the order added, the subjects they know,
/// and a section whose read fails (to see a build fail).
#[derive(Default)]
pub struct MemorySources(Mutex<SourcesState>);

#[derive(Default)]
struct SourcesState {
    rows: Vec<(AccountId, Subject, &'static str, SourceRow)>,
    known: Vec<(AccountId, Subject)>,
    failing: Option<SourceError>,
}

impl MemorySources {
    /// Adds a row of a section of a subject.
    pub fn add(&self, account: AccountId, subject: Subject, section: &'static str, row: SourceRow) {
        lock(&self.0).rows.push((account, subject, section, row));
    }

    /// Makes a subject exist in the sources.
    pub fn know(&self, account: AccountId, subject: Subject) {
        lock(&self.0).known.push((account, subject));
    }

    /// Makes every read fail with `error` when it reaches the error's section.
    pub fn fail(&self, error: SourceError) {
        lock(&self.0).failing = Some(error);
    }

    /// Makes reads succeed again.
    pub fn recover(&self) {
        lock(&self.0).failing = None;
    }
}

#[async_trait]
impl SubjectSources for MemorySources {
    fn sections(&self, kind: SubjectKind) -> Vec<&'static str> {
        // Copernica's, then the sections of its own any row was added to.
        let standard = SubjectKind::Profile.standard_sections();
        let mut own: Vec<&'static str> =
            lock(&self.0).rows.iter().map(|(_, _, section, _)| *section).filter(|s| !standard.contains(s)).collect();
        own.sort_unstable();
        own.dedup();
        kind.standard_sections().iter().copied().chain(own).collect()
    }

    async fn exists(&self, account: AccountId, subject: &Subject) -> anyhow::Result<bool> {
        Ok(lock(&self.0).known.iter().any(|(a, s)| *a == account && s == subject))
    }

    async fn read(&self, account: AccountId, subject: &Subject) -> Result<Box<dyn SourceReader>, SourceError> {
        let state = lock(&self.0);
        let rows = state
            .rows
            .iter()
            .filter(|(a, s, _, _)| *a == account && s == subject)
            .map(|(_, _, section, row)| (*section, row.clone()))
            .collect();
        Ok(Box::new(MemoryRead { rows, failing: state.failing.clone(), given: None }))
    }
}

struct MemoryRead {
    rows: Vec<(&'static str, SourceRow)>,
    failing: Option<SourceError>,
    given: Option<&'static str>,
}

#[async_trait]
impl SourceReader for MemoryRead {
    async fn next(&mut self, section: &'static str) -> Result<Option<Vec<SourceRow>>, SourceError> {
        if let Some(error) = self.failing.as_ref().filter(|e| e.section.as_deref() == Some(section)) {
            return Err(error.clone());
        }
        if self.given == Some(section) {
            return Ok(None);
        }
        self.given = Some(section);
        let rows: Vec<SourceRow> =
            self.rows.iter().filter(|(s, _)| *s == section).map(|(_, row)| row.clone()).collect();
        Ok((!rows.is_empty()).then_some(rows))
    }

    async fn finish(self: Box<Self>) -> Result<(), SourceError> {
        Ok(())
    }
}

/// The fakes behind an in-memory app ([`crate::compose::memory`]), to arrange and inspect.
pub struct Fakes {
    /// Requests.
    pub requests: Arc<MemoryRequests>,
    /// Queue.
    pub queue: Arc<MemoryQueue>,
    /// Exports.
    pub exports: Arc<MemoryExports>,
    /// Subject data.
    pub subjects: Arc<MemorySubjects>,
    /// Sources.
    pub sources: Arc<MemorySources>,
    /// Accounts.
    pub accounts: Arc<MemoryAccounts>,
    /// Mail.
    pub mailer: Arc<MemoryMailer>,
    /// Web deliveries.
    pub web: Arc<MemoryWeb>,
    /// Clock.
    pub clock: Arc<FakeClock>,
    /// Audit log.
    pub audit: Arc<MemoryAudit>,
}
