//! Local mode's embedded storage: one SQLite database (bundled, WAL mode) holding accounts and
//! hashed tokens, data requests, the durable build queue and the subject data. Calls run in
//! turn on one database thread; a conditional update reads, checks and writes inside one
//! immediate transaction, so it is atomic even against another process on the same file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use tokio::sync::Notify;

use crate::domain::{
    AccountId, DataRequest, Delivery, Event, EventKind, Message, Profile, ProfileId, Record, Report, RequestId,
    Subject, Subprofile, SubprofileId, Timestamp, TokenHash, WebPolicy, WebhookSecret,
};
use crate::ports::{Accounts, BuildQueue, Change, Guard, Page, RequestStore, SubjectData};

const SCHEMA: &str = r"
PRAGMA page_size = 16384;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_secret TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    account INTEGER NOT NULL REFERENCES accounts(id)
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    account INTEGER NOT NULL,
    subject_kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    report TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    available INTEGER NOT NULL,
    created INTEGER NOT NULL,
    completed INTEGER,
    expires INTEGER,
    delivery_status TEXT NOT NULL,
    delivery_attempts INTEGER NOT NULL,
    delivery_method TEXT,
    delivery_error TEXT,
    delivery_claimed_until INTEGER
);
CREATE INDEX IF NOT EXISTS requests_expires ON requests(expires) WHERE state IN ('built', 'delivered');
CREATE TABLE IF NOT EXISTS queue (
    request INTEGER PRIMARY KEY,
    visible_at INTEGER NOT NULL,
    receives INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS profiles (
    account INTEGER NOT NULL,
    id INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE TABLE IF NOT EXISTS subprofiles (
    account INTEGER NOT NULL,
    id INTEGER NOT NULL,
    profile INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE INDEX IF NOT EXISTS subprofiles_by_profile ON subprofiles(account, profile, id);
CREATE TABLE IF NOT EXISTS messages (
    account INTEGER NOT NULL,
    id TEXT NOT NULL,
    profile INTEGER,
    subprofile INTEGER,
    email TEXT NOT NULL,
    email_lc TEXT NOT NULL,
    mailing TEXT NOT NULL,
    subject TEXT NOT NULL,
    sent INTEGER NOT NULL,
    mime TEXT NOT NULL,
    PRIMARY KEY (account, id)
);
CREATE INDEX IF NOT EXISTS messages_by_profile ON messages(account, profile, sent, id);
CREATE INDEX IF NOT EXISTS messages_by_subprofile ON messages(account, subprofile, sent, id);
CREATE INDEX IF NOT EXISTS messages_by_email ON messages(account, email_lc, sent, id);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account INTEGER NOT NULL,
    kind TEXT NOT NULL,
    profile INTEGER,
    subprofile INTEGER,
    email_lc TEXT,
    time INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_profile ON events(account, profile, kind, time, seq);
CREATE INDEX IF NOT EXISTS events_by_subprofile ON events(account, subprofile, kind, time, seq);
CREATE INDEX IF NOT EXISTS events_by_email ON events(account, email_lc, kind, time, seq);
";

/// Messages per page: MIME bodies are large.
const MESSAGE_PAGE: i64 = 32;
/// Events and subprofiles per page.
const RECORD_PAGE: i64 = 500;

/// Work for the database thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The local database: one connection, owned by one thread that runs the store's work in
/// turn. One thread rather than a pool: every row is allocated by the same thread (and its
/// allocator arena), which keeps the memory of a large build flat.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: std::sync::mpsc::Sender<Job>,
    queued: Arc<Notify>,
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

/// One build queue message as the local worker receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The request.
    pub id: RequestId,
    /// How often it has been received, this time included.
    pub receives: u32,
}

impl SqliteStore {
    /// Opens (and creates) the database file.
    ///
    /// # Errors
    /// When the file cannot be opened or the schema not created.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let connection = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.execute_batch(SCHEMA).context("creating the schema")?;
        let (jobs, receiver) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new().name("datarequest-sqlite".into()).spawn(move || {
            let mut connection = connection;
            // Ends when the last clone of the store is dropped.
            for job in receiver {
                job(&mut connection);
            }
        })?;
        Ok(Self { jobs, queued: Arc::new(Notify::new()) })
    }

    async fn run<T, F>(&self, work: F) -> anyhow::Result<T>
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
        result.await.context("the database thread has stopped")?
    }

    /// Takes the next visible queue message, hiding it for `visibility`.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn receive(&self, visibility: Duration) -> anyhow::Result<Option<Received>> {
        let hide = i64::try_from(visibility.as_millis()).unwrap_or(i64::MAX);
        self.run(move |c| {
            let now = now_millis();
            let row = c
                .query_row(
                    "UPDATE queue SET visible_at = ?1 + ?2, receives = receives + 1
                     WHERE request = (SELECT request FROM queue WHERE visible_at <= ?1 ORDER BY visible_at, request LIMIT 1)
                     RETURNING request, receives",
                    params![now, hide],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                )
                .optional()?;
            row.map(|(id, receives)| {
                Ok(Received { id: RequestId::try_from(to_u64(id))?, receives: u32::try_from(receives).unwrap_or(u32::MAX) })
            })
            .transpose()
        })
        .await
    }

    /// Removes a handled message.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn acknowledge(&self, id: RequestId) -> anyhow::Result<()> {
        self.run(move |c| Ok(c.execute("DELETE FROM queue WHERE request = ?1", [to_i64(id.get())]).map(drop)?)).await
    }

    /// Makes a message visible again after `delay`.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn retry_after(&self, id: RequestId, delay: Duration) -> anyhow::Result<()> {
        let at = now_millis().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        self.run(move |c| {
            Ok(c.execute("UPDATE queue SET visible_at = ?2 WHERE request = ?1", params![to_i64(id.get()), at])
                .map(drop)?)
        })
        .await?;
        self.queued.notify_waiters();
        Ok(())
    }

    /// At start: the previous process is gone, so messages it held are visible again, and
    /// requests that lost their message (a crash between store and queue) get one.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn recover(&self) -> anyhow::Result<usize> {
        let unfinished = RequestStore::unfinished(self).await?;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_millis();
            tx.execute("UPDATE queue SET visible_at = ?1 WHERE visible_at > ?1 AND receives > 0", [now])?;
            let mut requeued = 0;
            for id in &unfinished {
                requeued += tx.execute(
                    "INSERT OR IGNORE INTO queue (request, visible_at, receives) VALUES (?1, ?2, 0)",
                    params![to_i64(id.get()), now],
                )?;
            }
            tx.commit()?;
            Ok(requeued)
        })
        .await
    }

    /// Milliseconds until the next message becomes visible, if any is queued.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn next_visible_in(&self) -> anyhow::Result<Option<Duration>> {
        self.run(|c| {
            let next: Option<i64> = c.query_row("SELECT MIN(visible_at) FROM queue", [], |row| row.get(0))?;
            Ok(next.map(|at| Duration::from_millis(to_u64(at - now_millis()))))
        })
        .await
    }

    /// Resolves when something was enqueued (or a retry scheduled).
    pub async fn queued(&self) {
        self.queued.notified().await;
    }

    /// Whether the database holds no account yet.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn is_empty(&self) -> anyhow::Result<bool> {
        self.run(|c| Ok(c.query_row("SELECT COUNT(*) FROM accounts", [], |row| row.get::<_, i64>(0))? == 0)).await
    }
}

const REQUEST_COLUMNS: &str = "id, account, subject_kind, subject, report, state, reason, available, created, completed, \
     expires, delivery_status, delivery_attempts, delivery_method, delivery_error, delivery_claimed_until";

fn request_from_row(row: &Row<'_>) -> anyhow::Result<DataRequest> {
    let kind: String = row.get(2)?;
    let subject: String = row.get(3)?;
    let report: Option<String> = row.get(4)?;
    let state: String = row.get(5)?;
    let status: String = row.get(11)?;
    Ok(DataRequest {
        id: RequestId::try_from(to_u64(row.get(0)?))?,
        account: AccountId::try_from(to_u64(row.get(1)?))?,
        subject: Subject::from_parts(&kind, &subject)?,
        // The address was checked at intake; the web delivery checks it again when it connects.
        report: report.map(|r| Report::parse(&r, WebPolicy::AllowPrivate)).transpose()?,
        state: state.parse()?,
        reason: row.get(6)?,
        available: to_u64(row.get(7)?),
        created: Timestamp::from_unix(row.get(8)?),
        completed: row.get::<_, Option<i64>>(9)?.map(Timestamp::from_unix),
        expires: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_unix),
        delivery: Delivery {
            status: status.parse()?,
            attempts: u32::try_from(row.get::<_, i64>(12)?).unwrap_or(0),
            method: row.get(13)?,
            error: row.get(14)?,
            claimed_until: row.get::<_, Option<i64>>(15)?.map(Timestamp::from_unix),
        },
    })
}

fn write_request(c: &Connection, r: &DataRequest, insert: bool) -> rusqlite::Result<usize> {
    let verb = if insert { "INSERT OR IGNORE" } else { "REPLACE" };
    c.execute(
        &format!("{verb} INTO requests ({REQUEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
        params![
            to_i64(r.id.get()),
            to_i64(r.account.get()),
            r.subject.kind().as_str(),
            r.subject.value(),
            r.report.as_ref().map(ToString::to_string),
            r.state.as_str(),
            r.reason,
            to_i64(r.available),
            r.created.unix(),
            r.completed.map(Timestamp::unix),
            r.expires.map(Timestamp::unix),
            r.delivery.status.as_str(),
            i64::from(r.delivery.attempts),
            r.delivery.method,
            r.delivery.error,
            r.delivery.claimed_until.map(Timestamp::unix),
        ],
    )
}

fn read_request(c: &Connection, id: RequestId) -> anyhow::Result<Option<DataRequest>> {
    let mut statement = c.prepare_cached(&format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"))?;
    let mut rows = statement.query([to_i64(id.get())])?;
    rows.next()?.map(request_from_row).transpose()
}

fn ids(c: &Connection, sql: &str, params: impl rusqlite::Params) -> anyhow::Result<Vec<RequestId>> {
    let mut statement = c.prepare(sql)?;
    let found = statement.query_map(params, |row| row.get::<_, i64>(0))?;
    found.map(|id| Ok(RequestId::try_from(to_u64(id?))?)).collect()
}

#[async_trait]
impl RequestStore for SqliteStore {
    async fn insert(&self, request: &DataRequest) -> anyhow::Result<bool> {
        let request = request.clone();
        self.run(move |c| Ok(write_request(c, &request, true)? == 1)).await
    }

    async fn get(&self, id: RequestId) -> anyhow::Result<Option<DataRequest>> {
        self.run(move |c| read_request(c, id)).await
    }

    async fn update(&self, id: RequestId, guard: &Guard, change: &Change) -> anyhow::Result<bool> {
        let (guard, change) = (guard.clone(), change.clone());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut request) = read_request(&tx, id)? else { return Ok(false) };
            if !guard.admits(&request) {
                return Ok(false);
            }
            change.apply(&mut request);
            write_request(&tx, &request, false)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn expiring(&self, now: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            ids(
                c,
                "SELECT id FROM requests WHERE state IN ('built', 'delivered') AND expires <= ?1 ORDER BY expires LIMIT ?2",
                params![now.unix(), limit],
            )
        })
        .await
    }

    async fn unfinished(&self) -> anyhow::Result<Vec<RequestId>> {
        self.run(|c| {
            ids(
                c,
                "SELECT id FROM requests WHERE state IN ('accepted', 'building')
                 OR (state = 'built' AND delivery_status IN ('pending', 'sending')) ORDER BY created",
                [],
            )
        })
        .await
    }
}

#[async_trait]
impl BuildQueue for SqliteStore {
    async fn enqueue(&self, id: RequestId) -> anyhow::Result<()> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO queue (request, visible_at, receives) VALUES (?1, ?2, 0)
                 ON CONFLICT (request) DO UPDATE SET visible_at = MIN(visible_at, excluded.visible_at)",
                params![to_i64(id.get()), now_millis()],
            )?;
            Ok(())
        })
        .await?;
        self.queued.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl Accounts for SqliteStore {
    async fn create(&self, token: &TokenHash, secret: &WebhookSecret) -> anyhow::Result<AccountId> {
        let (hash, secret) = (token.to_hex(), secret.expose().to_owned());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO accounts (webhook_secret, created) VALUES (?1, ?2)",
                params![secret, Timestamp::now().unix()],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute("INSERT INTO tokens (hash, account) VALUES (?1, ?2)", params![hash, id])?;
            tx.commit()?;
            Ok(AccountId::try_from(to_u64(id))?)
        })
        .await
    }

    async fn add_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        let hash = token.to_hex();
        self.run(move |c| {
            let exists: bool =
                c.query_row("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)", [to_i64(account.get())], |row| {
                    row.get(0)
                })?;
            if exists {
                c.execute(
                    "INSERT OR IGNORE INTO tokens (hash, account) VALUES (?1, ?2)",
                    params![hash, to_i64(account.get())],
                )?;
            }
            Ok(exists)
        })
        .await
    }

    async fn by_token(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>> {
        let hash = token.to_hex();
        self.run(move |c| {
            let id: Option<i64> = c
                .prepare_cached("SELECT account FROM tokens WHERE hash = ?1")?
                .query_row([hash], |row| row.get(0))
                .optional()?;
            id.map(|id| Ok(AccountId::try_from(to_u64(id))?)).transpose()
        })
        .await
    }

    async fn webhook_secret(&self, account: AccountId) -> anyhow::Result<Option<WebhookSecret>> {
        self.run(move |c| {
            let text: Option<String> = c
                .query_row("SELECT webhook_secret FROM accounts WHERE id = ?1", [to_i64(account.get())], |row| {
                    row.get(0)
                })
                .optional()?;
            text.map(|t| Ok(WebhookSecret::parse(&t)?)).transpose()
        })
        .await
    }
}

/// The conditions that pick a subject's rows, each served in order by one index, and the
/// subject's key (`?2`); a row is the subject's when it meets any of them.
fn scope(subject: &Subject) -> (&'static [&'static str], rusqlite::types::Value) {
    use rusqlite::types::Value;
    match subject {
        Subject::Profile(id) => (
            &["profile = ?2", "subprofile IN (SELECT id FROM subprofiles WHERE account = ?1 AND profile = ?2)"],
            Value::Integer(to_i64(id.get())),
        ),
        Subject::Subprofile(id) => (&["subprofile = ?2"], Value::Integer(to_i64(id.get()))),
        Subject::Email(address) => (&["email_lc = ?2"], Value::Text(address.normalized())),
    }
}

/// A page query over `table` for a subject: the keys of the next page come from the covering
/// indexes alone (one ordered range scan per condition of [`scope`], merged), and only the
/// rows of that page are read whole. Reading a page thus costs the page, not the subject:
/// a single `OR` over the table sorted every remaining row, bodies included, for each page.
/// `page.filter` narrows further, `page.key` names the row key, `page.order` the page order,
/// `page.after` the cursor row value and `page.limit` the page size (as SQL parameters).
fn page_query(page: &PageQuery, conditions: &[&str]) -> String {
    let PageQuery { table, columns, filter, key, order, after, limit } = page;
    let keys = conditions
        .iter()
        .map(|condition| {
            format!(
                "SELECT * FROM (SELECT {key} AS k, {order} FROM {table} WHERE account = ?1 AND {filter}{condition} \
                 AND ({order}) > ({after}) ORDER BY {order} LIMIT {limit})"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ");
    format!(
        "SELECT {columns} FROM {table} WHERE {key} IN (SELECT k FROM ({keys}) ORDER BY {order} LIMIT {limit}) \
         ORDER BY {order}"
    )
}

/// The parts of a [`page_query`].
struct PageQuery {
    table: &'static str,
    columns: &'static str,
    filter: &'static str,
    key: &'static str,
    order: &'static str,
    after: &'static str,
    limit: &'static str,
}

const MESSAGE_PAGE_QUERY: PageQuery = PageQuery {
    table: "messages",
    columns: "id, profile, subprofile, email, mailing, subject, sent, mime",
    filter: "",
    key: "rowid",
    order: "sent, id",
    after: "?3, ?4",
    limit: "?5",
};

const EVENT_PAGE_QUERY: PageQuery = PageQuery {
    table: "events",
    columns: "seq, time, body",
    filter: "kind = ?3 AND ",
    key: "seq",
    order: "time, seq",
    after: "?4, ?5",
    limit: "?6",
};

/// Cursors are `<time>:<tie-breaker>` of the last row of the previous page.
fn split_cursor(cursor: Option<&str>) -> anyhow::Result<(i64, String)> {
    match cursor {
        None => Ok((i64::MIN, String::new())),
        Some(text) => {
            let (time, rest) = text.split_once(':').context("not a cursor of this store")?;
            Ok((time.parse().context("not a cursor of this store")?, rest.to_owned()))
        }
    }
}

fn message_from_row(row: &Row<'_>, account: AccountId) -> anyhow::Result<Message> {
    Ok(Message {
        account,
        id: row.get(0)?,
        profile: row.get::<_, Option<i64>>(1)?.map(|p| ProfileId::try_from(to_u64(p))).transpose()?,
        subprofile: row.get::<_, Option<i64>>(2)?.map(|s| SubprofileId::try_from(to_u64(s))).transpose()?,
        email: row.get(3)?,
        mailing: row.get(4)?,
        subject: row.get(5)?,
        sent: Timestamp::from_unix(row.get(6)?),
        mime: row.get(7)?,
    })
}

#[async_trait]
impl SubjectData for SqliteStore {
    async fn profile(&self, account: AccountId, id: ProfileId) -> anyhow::Result<Option<Profile>> {
        self.run(move |c| {
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM profiles WHERE account = ?1 AND id = ?2")?
                .query_row(params![to_i64(account.get()), to_i64(id.get())], |row| row.get(0))
                .optional()?;
            body.map(|b| Ok(serde_json::from_str(&b)?)).transpose()
        })
        .await
    }

    async fn subprofile(&self, account: AccountId, id: SubprofileId) -> anyhow::Result<Option<Subprofile>> {
        self.run(move |c| {
            let body: Option<String> = c
                .prepare_cached("SELECT body FROM subprofiles WHERE account = ?1 AND id = ?2")?
                .query_row(params![to_i64(account.get()), to_i64(id.get())], |row| row.get(0))
                .optional()?;
            body.map(|b| Ok(serde_json::from_str(&b)?)).transpose()
        })
        .await
    }

    async fn subprofiles(
        &self,
        account: AccountId,
        profile: ProfileId,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Subprofile>> {
        let after: i64 = cursor.map_or(Ok(0), str::parse).context("not a cursor of this store")?;
        self.run(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT id, body FROM subprofiles WHERE account = ?1 AND profile = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
            )?;
            let rows = statement
                .query_map(params![to_i64(account.get()), to_i64(profile.get()), after, RECORD_PAGE], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })?;
            let mut items = Vec::new();
            let mut last = None;
            for row in rows {
                let (id, body) = row?;
                items.push(serde_json::from_str(&body)?);
                last = Some(id);
            }
            let full = items.len() == usize::try_from(RECORD_PAGE).unwrap_or(usize::MAX);
            Ok(Page { items, next: last.filter(|_| full).map(|id| id.to_string()) })
        })
        .await
    }

    async fn messages(
        &self,
        account: AccountId,
        subject: &Subject,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Message>> {
        let (after_time, after_id) = split_cursor(cursor)?;
        let (conditions, value) = scope(subject);
        self.run(move |c| {
            let mut statement = c.prepare_cached(&page_query(&MESSAGE_PAGE_QUERY, conditions))?;
            let mut rows =
                statement.query(params![to_i64(account.get()), value, after_time, after_id, MESSAGE_PAGE])?;
            let mut items = Vec::new();
            while let Some(row) = rows.next()? {
                items.push(message_from_row(row, account)?);
            }
            let full = items.len() == usize::try_from(MESSAGE_PAGE).unwrap_or(usize::MAX);
            let next = items.last().filter(|_| full).map(|m: &Message| format!("{}:{}", m.sent.unix(), m.id));
            Ok(Page { items, next })
        })
        .await
    }

    async fn events(
        &self,
        account: AccountId,
        subject: &Subject,
        kind: EventKind,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Event>> {
        let (after_time, after_seq) = split_cursor(cursor)?;
        let after_seq: i64 =
            if after_seq.is_empty() { 0 } else { after_seq.parse().context("not a cursor of this store")? };
        let (conditions, value) = scope(subject);
        self.run(move |c| {
            let mut statement = c.prepare_cached(&page_query(&EVENT_PAGE_QUERY, conditions))?;
            let mut rows = statement.query(params![
                to_i64(account.get()),
                value,
                kind.as_str(),
                after_time,
                after_seq,
                RECORD_PAGE
            ])?;
            let mut items = Vec::new();
            let mut last = None;
            while let Some(row) = rows.next()? {
                let body: String = row.get(2)?;
                items.push(serde_json::from_str::<Event>(&body)?);
                last = Some((row.get::<_, i64>(1)?, row.get::<_, i64>(0)?));
            }
            let full = items.len() == usize::try_from(RECORD_PAGE).unwrap_or(usize::MAX);
            Ok(Page { items, next: last.filter(|_| full).map(|(time, seq)| format!("{time}:{seq}")) })
        })
        .await
    }

    async fn load(&self, records: &[Record]) -> anyhow::Result<()> {
        let records = records.to_vec();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for record in &records {
                let account = to_i64(record.account().get());
                match record {
                    Record::Profile(p) => {
                        tx.prepare_cached("REPLACE INTO profiles (account, id, body) VALUES (?1, ?2, ?3)")?
                            .execute(params![account, to_i64(p.id.get()), serde_json::to_string(p)?])?;
                    }
                    Record::Subprofile(s) => {
                        tx.prepare_cached("REPLACE INTO subprofiles (account, id, profile, body) VALUES (?1, ?2, ?3, ?4)")?
                            .execute(params![account, to_i64(s.id.get()), to_i64(s.profile.get()), serde_json::to_string(s)?])?;
                    }
                    Record::Message(m) => {
                        tx.prepare_cached(
                            "REPLACE INTO messages (account, id, profile, subprofile, email, email_lc, mailing, subject, sent, mime)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        )?
                        .execute(params![
                            account,
                            m.id,
                            m.profile.map(|p| to_i64(p.get())),
                            m.subprofile.map(|s| to_i64(s.get())),
                            m.email,
                            m.email.to_ascii_lowercase(),
                            m.mailing,
                            m.subject,
                            m.sent.unix(),
                            m.mime,
                        ])?;
                    }
                    Record::Event(e) => {
                        tx.prepare_cached(
                            "INSERT INTO events (account, kind, profile, subprofile, email_lc, time, body)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )?
                        .execute(params![
                            account,
                            e.kind.as_str(),
                            e.profile.map(|p| to_i64(p.get())),
                            e.subprofile.map(|s| to_i64(s.get())),
                            e.email.as_ref().map(|m| m.to_ascii_lowercase()),
                            e.time.unix(),
                            serde_json::to_string(e)?,
                        ])?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parse_line;

    fn record(line: &serde_json::Value) -> Record {
        parse_line(&line.to_string()).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| unreachable!())
    }

    async fn all_messages(store: &SqliteStore, subject: &Subject) -> (Vec<String>, usize) {
        let account = AccountId::try_from(1).unwrap_or_else(|_| unreachable!());
        let (mut ids, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
        loop {
            let page = store.messages(account, subject, cursor.as_deref()).await.unwrap_or_else(|e| panic!("{e:#}"));
            pages += 1;
            assert!(pages <= 200, "paging does not end");
            ids.extend(page.items.into_iter().map(|m| m.id));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return (ids, pages),
            }
        }
    }

    #[tokio::test]
    async fn pages_merge_a_profile_and_its_subprofiles_in_send_order_without_gaps_or_repeats() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap_or_else(|e| panic!("{e:#}"));
        let mut records = vec![
            record(&serde_json::json!({"kind":"profile","account":1,"id":7,"database":1,
                "created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"})),
            record(&serde_json::json!({"kind":"subprofile","account":1,"id":70,"profile":7,"collection":1,
                "created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"})),
        ];
        // 100 messages over 10 send times (ties broken by id), owned in turn by the profile,
        // its subprofile, and both; plus another profile's mail, which must not show.
        let (mut expected, mut subprofile_ids) = (Vec::new(), Vec::new());
        for n in 0..100 {
            let (profile, subprofile) = match n % 3 {
                0 => (Some(7), None),
                1 => (None, Some(70)),
                _ => (Some(7), Some(70)),
            };
            let id = format!("m{:03}", (n * 37) % 100);
            let sent = format!("2024-01-01 00:00:{:02}", n % 10);
            records.push(record(&serde_json::json!({"kind":"message","account":1,"id":id,"profile":profile,
                "subprofile":subprofile,"email":"seven@example.com","mailing":"1","subject":"s","sent":sent,"mime":"x"})));
            if subprofile.is_some() {
                subprofile_ids.push(id.clone());
            }
            expected.push((n % 10, id));
        }
        records.push(record(&serde_json::json!({"kind":"message","account":1,"id":"other","profile":8,
            "subprofile":null,"email":"eight@example.com","mailing":"1","subject":"s","sent":"2024-01-01 00:00:05","mime":"x"})));
        store.load(&records).await.unwrap_or_else(|e| panic!("{e:#}"));
        expected.sort();
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

        let (ids, pages) =
            all_messages(&store, &Subject::Profile(ProfileId::parse("7").unwrap_or_else(|_| unreachable!()))).await;
        assert_eq!(ids, expected);
        assert_eq!(pages, 4, "100 messages in pages of {MESSAGE_PAGE}");
        let (ids, _) =
            all_messages(&store, &Subject::Subprofile(SubprofileId::parse("70").unwrap_or_else(|_| unreachable!())))
                .await;
        let subprofiles: Vec<String> = expected.iter().filter(|id| subprofile_ids.contains(id)).cloned().collect();
        assert_eq!(subprofiles.len(), 66);
        assert_eq!(ids, subprofiles, "the subprofile's own and shared messages, in the same order");
    }
}
