//! Subject data: profiles, subprofiles, messages and events, each in its table, with indexes
//! that serve every export as a few ordered range scans. A page of messages brings the bodies
//! of up to [`INLINE_MIME`] bytes; a larger body is streamed in chunks by [`SqliteStore::mime`]
//! from a read-only connection of its own, through SQLite's incremental blob I/O, inside one
//! read transaction: one version of the message, never held whole.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use async_trait::async_trait;
use futures_util::StreamExt;
use rusqlite::blob::Blob;
use rusqlite::{Connection, MAIN_DB, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

use super::{SqliteStore, to_i64, to_u64};
use crate::domain::{
    AccountId, Erasure, Event, EventKind, Line, Message, Mime, MimeRef, Profile, ProfileId, Record, Subject,
    Subprofile, SubprofileId, Timestamp,
};
use crate::ports::{MimeChunks, Page, Pages, SubjectData};

/// Messages per page.
const MESSAGE_PAGE: i64 = 32;
/// MIME bodies up to this many bytes come with their page: the common mail, read at the speed
/// of one query. A page thus holds at most 32 × 128 KiB of bodies, whatever the mails' size.
const INLINE_MIME: i64 = 128 * 1024;
/// The chunks a larger body is streamed in.
const MIME_CHUNK: usize = 64 * 1024;
/// Chunks read ahead of the export.
const MIME_READ_AHEAD: usize = 2;
/// Pages of events read ahead of their parsing.
const EVENT_READ_AHEAD: usize = 2;
/// Events and subprofiles per page.
const RECORD_PAGE: i64 = 500;

/// The condition that picks a subject's rows, served in order by one index, and the subject's
/// key (`?2`). A profile owns its records without a subprofile, and the records of its
/// subprofiles as they are now: each row keeps its owner (see the schema), so a profile's
/// records are one range of one index too, however many subprofiles it has.
fn scope(subject: &Subject) -> (&'static str, rusqlite::types::Value) {
    use rusqlite::types::Value;
    match subject {
        Subject::Profile(id) => ("owner = ?2", Value::Integer(to_i64(id.get()))),
        Subject::Subprofile(id) => ("subprofile = ?2", Value::Integer(to_i64(id.get()))),
        Subject::Email(address) => ("email_lc = ?2", Value::Text(address.normalized())),
    }
}

/// A page query over `table` for a subject (`condition`, from [`scope`]): one ordered range
/// scan of an index, which stops after the page. `page.filter` narrows further, `page.order`
/// is the page order, `page.after` the cursor row value and `page.limit` the page size (as SQL
/// parameters).
fn page_query(page: &PageQuery, condition: &str) -> String {
    let PageQuery { table, columns, filter, order, after, limit } = page;
    format!(
        "SELECT {columns} FROM {table} WHERE account = ?1 AND {filter}{condition} AND ({order}) > ({after}) \
         ORDER BY {order} LIMIT {limit}"
    )
}

/// The parts of a [`page_query`].
struct PageQuery {
    table: &'static str,
    columns: &'static str,
    filter: &'static str,
    order: &'static str,
    after: &'static str,
    limit: &'static str,
}

// `octet_length` reads a body's size from its record header, so a large body is not read.
const MESSAGE_PAGE_QUERY: PageQuery = PageQuery {
    table: "messages",
    columns: "id, profile, subprofile, email, mailing, subject, sent, CASE WHEN octet_length(mime) <= ?6 THEN mime END",
    filter: "",
    order: "sent, id",
    after: "?3, ?4",
    limit: "?5",
};

const EVENT_PAGE_QUERY: PageQuery = PageQuery {
    table: "events",
    columns: "key, time, body",
    filter: "kind = ?3 AND ",
    order: "time, key",
    after: "?4, ?5",
    limit: "?6",
};

/// Stores a message with its owner.
static MESSAGE_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "REPLACE INTO messages (account, id, profile, subprofile, email, email_lc, mailing, subject, sent, mime, owner) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, {})",
        super::schema::owner("?1", "?3", "?4")
    )
});

/// Stores an event with its owner.
static EVENT_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "REPLACE INTO events (account, key, kind, profile, subprofile, email_lc, time, body, owner) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, {})",
        super::schema::owner("?1", "?4", "?5")
    )
});

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

/// One page of a subject's events as the database holds them: the bodies, not yet parsed,
/// and where the next page starts.
struct EventRows {
    bodies: Vec<String>,
    /// The time and key of the page's last row, when the page is full (so another may follow).
    after: Option<(i64, String)>,
}

impl EventRows {
    /// The page, its bodies parsed: off the database thread, which meanwhile can read the next
    /// page (see `event_pages`).
    fn parse(self) -> anyhow::Result<Page<Event>> {
        let items =
            self.bodies.iter().map(|body| serde_json::from_str::<Event>(body)).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next: self.after.map(|(time, key)| format!("{time}:{key}")) })
    }
}

/// Reads the rows of the page of `kind` events after `after` for the subject that `condition`
/// and `value` pick (see [`scope`]).
fn event_rows(
    c: &mut Connection,
    account: AccountId,
    condition: &str,
    value: &rusqlite::types::Value,
    kind: EventKind,
    (after_time, after_key): (i64, String),
) -> anyhow::Result<EventRows> {
    let mut statement = c.prepare_cached(&page_query(&EVENT_PAGE_QUERY, condition))?;
    let mut rows =
        statement.query(params![to_i64(account.get()), value, kind.as_str(), after_time, after_key, RECORD_PAGE])?;
    let mut bodies = Vec::new();
    let mut last = None;
    while let Some(row) = rows.next()? {
        bodies.push(row.get::<_, String>(2)?);
        last = Some((row.get::<_, i64>(1)?, row.get::<_, String>(0)?));
    }
    let full = bodies.len() == usize::try_from(RECORD_PAGE).unwrap_or(usize::MAX);
    Ok(EventRows { bodies, after: last.filter(|_| full) })
}

fn message_from_row(row: &Row<'_>, account: AccountId) -> anyhow::Result<Message<Mime>> {
    let id: String = row.get(0)?;
    let mime = match row.get::<_, Option<String>>(7)? {
        Some(text) => Mime::Text(text),
        None => Mime::Stored(MimeRef::new(format!("{account}:{id}"))),
    };
    Ok(Message {
        account,
        id,
        profile: row.get::<_, Option<i64>>(1)?.map(|p| ProfileId::try_from(to_u64(p))).transpose()?,
        subprofile: row.get::<_, Option<i64>>(2)?.map(|s| SubprofileId::try_from(to_u64(s))).transpose()?,
        email: row.get(3)?,
        mailing: row.get(4)?,
        subject: row.get(5)?,
        sent: Timestamp::from_unix(row.get(6)?),
        mime,
    })
}

/// On a thread of its own: opens a read-only connection, and in one read transaction finds the
/// message and streams its body in chunks into `chunks`, until the body ends or the export
/// stops reading. `opened` says whether the message was found; later errors go into the stream.
fn stream_mime(
    path: &Path,
    account: AccountId,
    id: &str,
    opened: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
    chunks: &tokio::sync::mpsc::Sender<anyhow::Result<bytes::Bytes>>,
) {
    let mut connection = match reader(path) {
        Ok(connection) => connection,
        Err(error) => {
            let _ = opened.send(Err(error));
            return;
        }
    };
    // Finding the row and reading it in one transaction sees one version of the message.
    let tx = match connection.transaction() {
        Ok(tx) => tx,
        Err(error) => {
            let _ = opened.send(Err(error.into()));
            return;
        }
    };
    let blob = match body(&tx, account, id) {
        Ok(blob) => blob,
        Err(error) => {
            let _ = opened.send(Err(error));
            return;
        }
    };
    let _ = opened.send(Ok(()));
    if let Err(error) = send_chunks(blob, chunks) {
        let _ = chunks.blocking_send(Err(error));
    }
}

/// A read-only connection for one body.
fn reader(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .context("opening the database to read a MIME body")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    // Each page of a body is read once: a small cache is enough.
    connection.execute_batch("PRAGMA cache_size = -1024")?;
    Ok(connection)
}

/// The body of a message, as a blob handle (which reads its overflow pages in order).
fn body<'c>(tx: &'c rusqlite::Transaction<'_>, account: AccountId, id: &str) -> anyhow::Result<Blob<'c>> {
    let rowid: Option<i64> = tx
        .query_row(
            "SELECT rowid FROM messages WHERE account = ?1 AND id = ?2",
            params![to_i64(account.get()), id],
            |row| row.get(0),
        )
        .optional()?;
    let rowid = rowid.context("the message is no longer stored (erased during the build)")?;
    Ok(tx.blob_open(MAIN_DB, c"messages", c"mime", rowid, true)?)
}

/// Sends a body in chunks until its end, or until the receiver is gone (the export failed).
fn send_chunks(
    mut blob: Blob<'_>,
    chunks: &tokio::sync::mpsc::Sender<anyhow::Result<bytes::Bytes>>,
) -> anyhow::Result<()> {
    let mut left = blob.len();
    while left > 0 {
        let mut chunk = vec![0; left.min(MIME_CHUNK)];
        blob.read_exact(&mut chunk).context("reading a MIME body")?;
        left -= chunk.len();
        if chunks.blocking_send(Ok(chunk.into())).is_err() {
            return Ok(());
        }
    }
    Ok(())
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
    ) -> anyhow::Result<Page<Message<Mime>>> {
        let (after_time, after_id) = split_cursor(cursor)?;
        let (condition, value) = scope(subject);
        self.run(move |c| {
            let mut statement = c.prepare_cached(&page_query(&MESSAGE_PAGE_QUERY, condition))?;
            let mut rows = statement.query(params![
                to_i64(account.get()),
                value,
                after_time,
                after_id,
                MESSAGE_PAGE,
                INLINE_MIME
            ])?;
            let mut items = Vec::new();
            while let Some(row) = rows.next()? {
                items.push(message_from_row(row, account)?);
            }
            let full = items.len() == usize::try_from(MESSAGE_PAGE).unwrap_or(usize::MAX);
            let next = items.last().filter(|_| full).map(|m: &Message<Mime>| format!("{}:{}", m.sent.unix(), m.id));
            Ok(Page { items, next })
        })
        .await
    }

    async fn mime(&self, body: &MimeRef) -> anyhow::Result<MimeChunks> {
        let (account, id) = body.key().split_once(':').context("not a MIME body of this store")?;
        let (account, id) = (AccountId::parse(account)?, id.to_owned());
        let path = self.path.clone();
        let (opened, found) = tokio::sync::oneshot::channel();
        let (chunks, mut received) = tokio::sync::mpsc::channel(MIME_READ_AHEAD);
        tokio::task::spawn_blocking(move || stream_mime(&path, account, &id, opened, &chunks));
        found.await.context("the MIME reader stopped")??;
        Ok(Box::pin(futures_util::stream::poll_fn(move |cx| received.poll_recv(cx))))
    }

    async fn events(
        &self,
        account: AccountId,
        subject: &Subject,
        kind: EventKind,
        cursor: Option<&str>,
    ) -> anyhow::Result<Page<Event>> {
        let after = split_cursor(cursor)?;
        let (condition, value) = scope(subject);
        self.run(move |c| event_rows(c, account, condition, &value, kind, after)).await?.parse()
    }

    /// A reader task of its own reads the pages' rows into a short queue, and each page's
    /// bodies are parsed on a blocking thread: the database thread, the parsing and the caller's
    /// work on the pages go on side by side, none waiting for another's every page. A reader
    /// whose pages are no longer wanted ends at its next page.
    fn event_pages<'a>(
        &'a self,
        account: AccountId,
        subject: &'a Subject,
        kind: EventKind,
        cursor: Option<String>,
    ) -> Pages<'a, Event> {
        let (condition, value) = scope(subject);
        let store = self.clone();
        let (pages, rows) = tokio::sync::mpsc::channel(EVENT_READ_AHEAD);
        tokio::spawn(async move {
            let mut after = match split_cursor(cursor.as_deref()) {
                Ok(after) => Some(after),
                Err(error) => {
                    let _ = pages.send(Err(error)).await;
                    None
                }
            };
            while let Some(at) = after.take() {
                let value = value.clone();
                let read = store.run(move |c| event_rows(c, account, condition, &value, kind, at)).await;
                after = read.as_ref().ok().and_then(|rows| rows.after.clone());
                if pages.send(read).await.is_err() {
                    return;
                }
            }
        });
        // A failure ends the pages, as `paged` ends them: none after it, though more were read.
        futures_util::stream::unfold(Some(rows), |rows| async move {
            let mut rows = rows?;
            let page = match rows.recv().await? {
                Ok(read) => tokio::task::spawn_blocking(move || read.parse())
                    .await
                    .context("parsing events")
                    .and_then(|page| page),
                Err(error) => Err(error),
            };
            let rows = page.is_ok().then_some(rows);
            Some((page, rows))
        })
        .boxed()
    }

    async fn load(&self, records: &[Record]) -> anyhow::Result<()> {
        let records = records.to_vec();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for record in &records {
                load_record(&tx, record)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn erase(&self, erasure: &Erasure) -> anyhow::Result<()> {
        let erasure = erasure.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            erase_subject(&tx, &erasure)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Every line in one immediate transaction, on the database thread: a crash or a failure
    /// midway leaves none of them stored. The lines are moved to the thread, not copied; the
    /// transaction's pages beyond the connection's cache go to the write-ahead log, so memory
    /// stays flat however many lines there are. The database thread does nothing else
    /// meanwhile (a body of 8 MiB of events takes it about a second; see subject-data.md).
    async fn apply(&self, lines: Vec<Line>) -> anyhow::Result<()> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for line in &lines {
                match line {
                    Line::Record(record) => load_record(&tx, record)?,
                    Line::Erase(erasure) => erase_subject(&tx, erasure)?,
                    Line::Skip => {}
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn forget_before(&self, cutoff: Timestamp) -> anyhow::Result<usize> {
        SqliteStore::forget_before(self, cutoff).await
    }

    async fn erase_account(&self, account: AccountId) -> anyhow::Result<()> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for table in ["events", "messages", "subprofiles", "profiles"] {
                tx.execute(&format!("DELETE FROM {table} WHERE account = ?1"), [to_i64(account.get())])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn scrub(&self) -> anyhow::Result<()> {
        // Deleted rows are zeroed in the database file as they go (`secure_delete`); their
        // page images in the write-ahead log go when it is checkpointed and truncated. A
        // reader of an older snapshot (a MIME body being streamed) holds the log: wait a
        // little for it, and otherwise leave it to the next scrub.
        self.run(|c| {
            for _ in 0..40 {
                let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
                if busy == 0 {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            tracing::warn!("the write-ahead log is still read; the next scrub truncates it");
            Ok(())
        })
        .await
    }
}

impl SqliteStore {
    /// Creates the indexes the retention sweep reads (by send and event time). Only a store
    /// with a retention needs them, and every index costs each ingested record a write.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn index_for_retention(&self) -> anyhow::Result<()> {
        self.run(|c| {
            c.execute_batch(
                "CREATE INDEX IF NOT EXISTS messages_by_sent ON messages(sent);
                 CREATE INDEX IF NOT EXISTS events_by_time ON events(time);",
            )?;
            Ok(())
        })
        .await
    }

    /// Deletes the messages sent and the events that happened before `cutoff` (the retention
    /// sweep of local mode). Returns how many records went.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn forget_before(&self, cutoff: Timestamp) -> anyhow::Result<usize> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let gone = tx.execute("DELETE FROM messages WHERE sent < ?1", [cutoff.unix()])?
                + tx.execute("DELETE FROM events WHERE time < ?1", [cutoff.unix()])?;
            tx.commit()?;
            Ok(gone)
        })
        .await
    }
}

/// Stores one record, replacing the stored one with its id (or key), inside the caller's
/// transaction.
fn load_record(tx: &rusqlite::Transaction<'_>, record: &Record) -> anyhow::Result<()> {
    let account = to_i64(record.account().get());
    match record {
        Record::Profile(p) => {
            tx.prepare_cached("REPLACE INTO profiles (account, id, email_lc, body) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![account, to_i64(p.id.get()), lower(p.email.as_deref()), serde_json::to_string(p)?])?;
        }
        Record::Subprofile(s) => {
            tx.prepare_cached(
                "REPLACE INTO subprofiles (account, id, profile, email_lc, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                account,
                to_i64(s.id.get()),
                to_i64(s.profile.get()),
                lower(s.email.as_deref()),
                serde_json::to_string(s)?
            ])?;
            // The subprofile's records go with it, to the profile it names now.
            for table in ["messages", "events"] {
                tx.prepare_cached(&format!(
                    "UPDATE {table} SET owner = ?3 WHERE account = ?1 AND subprofile = ?2 AND owner IS NOT ?3"
                ))?
                .execute(params![account, to_i64(s.id.get()), to_i64(s.profile.get())])?;
            }
        }
        Record::Message(m) => {
            tx.prepare_cached(&MESSAGE_INSERT)?.execute(params![
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
            tx.prepare_cached(&EVENT_INSERT)?.execute(params![
                account,
                e.key(),
                e.kind.as_str(),
                e.profile.map(|p| to_i64(p.get())),
                e.subprofile.map(|s| to_i64(s.get())),
                lower(e.email.as_deref()),
                e.time.unix(),
                serde_json::to_string(e)?,
            ])?;
        }
    }
    Ok(())
}

/// Erases a subject with everything that belongs to it, inside the caller's transaction.
fn erase_subject(tx: &rusqlite::Transaction<'_>, erasure: &Erasure) -> rusqlite::Result<()> {
    let account = to_i64(erasure.account().get());
    match erasure {
        Erasure::Profile(_, id) => erase_profile(tx, account, to_i64(id.get())),
        Erasure::Subprofile(_, id) => erase_subprofile(tx, account, to_i64(id.get())),
        Erasure::Email(_, address) => {
            let address = address.normalized();
            for id in column(tx, "SELECT id FROM profiles WHERE account = ?1 AND email_lc = ?2", account, &address)? {
                erase_profile(tx, account, id)?;
            }
            for id in column(tx, "SELECT id FROM subprofiles WHERE account = ?1 AND email_lc = ?2", account, &address)?
            {
                erase_subprofile(tx, account, id)?;
            }
            for table in ["messages", "events"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE account = ?1 AND email_lc = ?2"),
                    params![account, address],
                )?;
            }
            Ok(())
        }
    }
}

/// An address as the indexes keep it.
fn lower(email: Option<&str>) -> Option<String> {
    email.map(str::to_ascii_lowercase)
}

fn column(c: &rusqlite::Connection, sql: &str, account: i64, value: &str) -> rusqlite::Result<Vec<i64>> {
    let mut statement = c.prepare_cached(sql)?;
    let rows = statement.query_map(params![account, value], |row| row.get(0))?;
    rows.collect()
}

/// Deletes a profile, its subprofiles and every record that belongs to them now.
fn erase_profile(c: &rusqlite::Connection, account: i64, id: i64) -> rusqlite::Result<()> {
    for table in ["messages", "events"] {
        c.execute(&format!("DELETE FROM {table} WHERE account = ?1 AND owner = ?2"), params![account, id])?;
    }
    c.execute("DELETE FROM subprofiles WHERE account = ?1 AND profile = ?2", params![account, id])?;
    c.execute("DELETE FROM profiles WHERE account = ?1 AND id = ?2", params![account, id])?;
    Ok(())
}

/// Deletes a subprofile and every record that names it.
fn erase_subprofile(c: &rusqlite::Connection, account: i64, id: i64) -> rusqlite::Result<()> {
    for table in ["messages", "events"] {
        c.execute(&format!("DELETE FROM {table} WHERE account = ?1 AND subprofile = ?2"), params![account, id])?;
    }
    c.execute("DELETE FROM subprofiles WHERE account = ?1 AND id = ?2", params![account, id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;
    use crate::domain::ndjson::parse_line;

    #[tokio::test]
    async fn the_retention_sweep_deletes_only_records_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap_or_else(|e| panic!("{e:#}"));
        let at = |day: u32| format!("2025-01-{day:02} 00:00:00");
        let mut records = Vec::new();
        for day in [1, 2, 3] {
            records.push(record(&serde_json::json!({"kind":"message","account":1,"id":format!("m{day}"),"profile":7,
                "email":"seven@example.com","mailing":"1","subject":"s","sent":at(day),"mime":"x"})));
            records.push(record(&serde_json::json!({"kind":"event","account":1,"type":"click","profile":7,
                "email":"seven@example.com","time":at(day)})));
        }
        store.load(&records).await.unwrap_or_else(|e| panic!("{e:#}"));
        let cutoff = Timestamp::parse(&at(2)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.forget_before(cutoff).await.ok(), Some(2), "the message and the event of day 1");
        assert_eq!(store.forget_before(cutoff).await.ok(), Some(0), "nothing more the second time");
        let (ids, _) =
            all_messages(&store, &Subject::Profile(ProfileId::parse("7").unwrap_or_else(|_| unreachable!()))).await;
        assert_eq!(ids, ["m2", "m3"]);
    }

    /// How SQLite plans a page of a profile's events: from the index by owner alone. Read row by
    /// row from the table, a kind's events cost a read of every table page they share with
    /// events of other kinds, once per kind.
    #[tokio::test]
    async fn a_profiles_events_are_read_from_the_index_by_owner_alone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db.sqlite3");
        drop(SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e:#}")));
        let c = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let (condition, _) = scope(&Subject::Profile(ProfileId::parse("7").unwrap_or_else(|_| unreachable!())));
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {}", page_query(&EVENT_PAGE_QUERY, condition)))
            .and_then(|mut plan| {
                plan.query_map(params![1, 7, EventKind::Click.as_str(), 0, "", RECORD_PAGE], |row| {
                    row.get::<_, String>(3)
                })?
                .collect()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            plan.iter().any(|step| step.contains("COVERING INDEX events_of_owner")),
            "the plan reads the table too: {plan:?}"
        );
    }

    /// The pages `events` reads, one call after another, from `cursor` to the last.
    async fn one_by_one(
        store: &SqliteStore,
        subject: &Subject,
        kind: EventKind,
        mut cursor: Option<String>,
    ) -> anyhow::Result<Vec<Page<Event>>> {
        let account = AccountId::try_from(1)?;
        let mut pages = Vec::new();
        loop {
            let page = store.events(account, subject, kind, cursor.as_deref()).await?;
            cursor.clone_from(&page.next);
            pages.push(page);
            if cursor.is_none() {
                return Ok(pages);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 12, ..Default::default() })]

        /// The pages read ahead by a task of their own and parsed on blocking threads are the
        /// pages `events` reads one by one: from the first, and from the cursor of any later
        /// page (where a resumed build goes on). Events of other kinds and of another profile
        /// lie between them, and many share a time, so the keys order them.
        #[test]
        fn event_pages_are_the_pages_events_reads_one_by_one(
            events in proptest::collection::vec((0u8..30, 0usize..4, proptest::bool::weighted(0.8)), 0..3200),
            from in 0usize..4,
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
            let read = runtime.block_on(async {
                let dir = tempfile::tempdir()?;
                let store = SqliteStore::open(&dir.path().join("db.sqlite3"))?;
                // Half of them clicks: up to three pages of them.
                let kinds = ["click", "click", "impression", "survey"];
                let records: Vec<Record> = events.iter().enumerate().map(|(n, (minute, kind, ours))| {
                    record(&serde_json::json!({"kind":"event","account":1,"type":kinds[*kind],
                        "profile":if *ours { 7 } else { 8 },"time":format!("2025-01-01 00:{minute:02}:00"),
                        "data":{"n":n}}))
                }).collect();
                store.load(&records).await?;
                let subject = Subject::Profile(ProfileId::parse("7")?);
                let account = AccountId::try_from(1)?;
                let pages = |cursor| store.event_pages(account, &subject, EventKind::Click, cursor).try_collect();
                let expected = one_by_one(&store, &subject, EventKind::Click, None).await?;
                let read: Vec<Page<Event>> = pages(None).await?;
                let rest = match expected.get(from).and_then(|page| page.next.clone()) {
                    Some(cursor) => Some((
                        pages(Some(cursor.clone())).await?,
                        one_by_one(&store, &subject, EventKind::Click, Some(cursor)).await?,
                    )),
                    None => None,
                };
                anyhow::Ok((read, expected, rest))
            });
            let (read, expected, rest) = read.map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e:#}")))?;
            proptest::prop_assert_eq!(&read, &expected);
            let clicks = events.iter().filter(|(_, kind, ours)| *kind < 2 && *ours).count();
            proptest::prop_assert_eq!(read.iter().map(|page| page.items.len()).sum::<usize>(), clicks);
            if let Some((read, expected)) = rest {
                proptest::prop_assert_eq!(read, expected);
            }
        }
    }

    /// A store failing at the last line of a body leaves none of its lines stored.
    #[tokio::test]
    async fn a_body_failing_at_its_last_line_leaves_nothing_of_it_stored() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db.sqlite3");
        let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e:#}"));
        let profile = |id: u64| {
            record(&serde_json::json!({"kind":"profile","account":1,"id":id,"database":1,
                "created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"}))
        };
        store.load(&[profile(11)]).await.unwrap_or_else(|e| panic!("{e:#}"));
        Connection::open(&path)
            .and_then(|c| {
                c.execute_batch(
                    "CREATE TRIGGER refuse AFTER INSERT ON profiles WHEN NEW.id = 13 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                )
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let account = AccountId::try_from(1).unwrap_or_else(|_| unreachable!());
        let lines = vec![
            Line::Record(profile(12)),
            Line::Erase(Erasure::Profile(account, ProfileId::try_from(11).unwrap_or_else(|_| unreachable!()))),
            Line::Record(message_line("m", "x")),
            Line::Record(profile(13)),
        ];

        let failed = store.apply(lines).await;

        assert!(failed.is_err(), "the trigger refuses the last line");
        let found = |id: u64| {
            let store = store.clone();
            async move {
                let id = ProfileId::try_from(id).unwrap_or_else(|_| unreachable!());
                store.profile(account, id).await.unwrap_or_else(|e| panic!("{e:#}")).is_some()
            }
        };
        assert!(!found(12).await, "the first line was rolled back");
        assert!(found(11).await, "the erasure was rolled back");
        let subject = Subject::Profile(ProfileId::parse("7").unwrap_or_else(|_| unreachable!()));
        assert!(all_messages(&store, &subject).await.0.is_empty(), "the message was rolled back");
    }

    #[tokio::test]
    async fn event_pages_from_a_cursor_of_another_store_end_with_its_error() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap_or_else(|e| panic!("{e:#}"));
        let subject = Subject::Profile(ProfileId::parse("7").unwrap_or_else(|_| unreachable!()));
        let account = AccountId::try_from(1).unwrap_or_else(|_| unreachable!());
        let mut pages = store.event_pages(account, &subject, EventKind::Click, Some("nonsense".into()));
        let first = pages.next().await.map(|page| page.map_err(|e| e.to_string()));
        assert_eq!(first, Some(Err("not a cursor of this store".into())));
        assert!(pages.next().await.is_none(), "nothing after the error");
    }

    #[tokio::test]
    async fn event_pages_end_at_a_body_that_does_not_parse() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db.sqlite3");
        let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e:#}"));
        let records: Vec<Record> = (0..1200)
            .map(|n| {
                record(&serde_json::json!({"kind":"event","account":1,"type":"click","profile":7,
                    "time":"2025-01-01 00:00:00","data":{"n":n}}))
            })
            .collect();
        store.load(&records).await.unwrap_or_else(|e| panic!("{e:#}"));
        let damaged = Connection::open(&path)
            .and_then(|c| {
                c.execute("UPDATE events SET body = 'not json' WHERE rowid = (SELECT MIN(rowid) FROM events)", [])
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(damaged, 1);
        let subject = Subject::Profile(ProfileId::parse("7").unwrap_or_else(|_| unreachable!()));
        let account = AccountId::try_from(1).unwrap_or_else(|_| unreachable!());
        let pages: Vec<Result<usize, String>> = store
            .event_pages(account, &subject, EventKind::Click, None)
            .map(|page| page.map(|page| page.items.len()).map_err(|e| e.to_string()))
            .collect()
            .await;
        assert_eq!(pages.len(), 1, "one error, and no page after it: {pages:?}");
        assert!(pages[0].is_err(), "{pages:?}");
    }

    fn record(line: &serde_json::Value) -> Record {
        match parse_line(&line.to_string()) {
            Ok(Some(Line::Record(record))) => record,
            other => panic!("{other:?}"),
        }
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

    fn message_line(id: &str, mime: &str) -> Record {
        record(&serde_json::json!({"kind":"message","account":1,"id":id,"profile":7,"email":"seven@example.com",
            "mailing":"1","subject":"s","sent":"2025-01-01 00:00:00","mime":mime}))
    }

    async fn read_all(store: &SqliteStore, body: &MimeRef) -> anyhow::Result<Vec<u8>> {
        use futures_util::TryStreamExt;
        let mut chunks = store.mime(body).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.try_next().await? {
            assert!(chunk.len() <= MIME_CHUNK);
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn only_message(store: &SqliteStore) -> Message<Mime> {
        let account = AccountId::try_from(1).unwrap_or_else(|_| unreachable!());
        let subject = Subject::Profile(ProfileId::parse("7").unwrap_or_else(|_| unreachable!()));
        let mut page = store.messages(account, &subject, None).await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(page.items.len(), 1);
        page.items.remove(0)
    }

    #[tokio::test]
    async fn a_large_body_is_left_out_of_its_page_and_streams_back_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap_or_else(|e| panic!("{e:#}"));
        let limit = usize::try_from(INLINE_MIME).unwrap_or(usize::MAX);
        for (size, streamed) in [(limit, false), (limit + 1, true), (3 * MIME_CHUNK + 5, true)] {
            // ASCII up to the size, so that the limit is met exactly, after a line of wide characters.
            let mut mime = "Grüße € 𝄞\r\n".to_owned();
            mime.push_str(&"x".repeat(size - mime.len()));
            store.load(&[message_line("m", &mime)]).await.unwrap_or_else(|e| panic!("{e:#}"));
            match only_message(&store).await.mime {
                Mime::Text(text) => {
                    assert!(!streamed, "{size} bytes came with the page");
                    assert_eq!(text, mime);
                }
                Mime::Stored(body) => {
                    assert!(streamed, "{size} bytes were left out");
                    let bytes = read_all(&store, &body).await.unwrap_or_else(|e| panic!("{e:#}"));
                    assert!(bytes == mime.as_bytes(), "{size} bytes streamed back");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_body_streams_as_it_was_when_opened_though_it_is_replaced_meanwhile() {
        use futures_util::TryStreamExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap_or_else(|e| panic!("{e:#}"));
        let old = "a".repeat(40 * MIME_CHUNK);
        store.load(&[message_line("m", &old)]).await.unwrap_or_else(|e| panic!("{e:#}"));
        let Mime::Stored(body) = only_message(&store).await.mime else { panic!("a large body is streamed") };
        let mut chunks = store.mime(&body).await.unwrap_or_else(|e| panic!("{e:#}"));
        let mut bytes =
            chunks.try_next().await.unwrap_or_else(|e| panic!("{e:#}")).map(|c| c.to_vec()).unwrap_or_default();

        // Replaced (a new row) while the stream is open: the stream keeps its version.
        store.load(&[message_line("m", &"b".repeat(40 * MIME_CHUNK))]).await.unwrap_or_else(|e| panic!("{e:#}"));
        while let Some(chunk) = chunks.try_next().await.unwrap_or_else(|e| panic!("{e:#}")) {
            bytes.extend_from_slice(&chunk);
        }
        assert!(bytes == old.as_bytes(), "one version, whole");
        let fresh = read_all(&store, &body).await.unwrap_or_else(|e| panic!("{e:#}"));
        assert!(fresh.iter().all(|b| *b == b'b') && fresh.len() == old.len(), "opened again: the new version");
    }

    #[tokio::test]
    async fn a_body_erased_after_its_page_was_read_cannot_be_opened() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap_or_else(|e| panic!("{e:#}"));
        store.load(&[message_line("m", &"x".repeat(200_000))]).await.unwrap_or_else(|e| panic!("{e:#}"));
        let Mime::Stored(body) = only_message(&store).await.mime else { panic!("a large body is streamed") };
        let account = AccountId::try_from(1).unwrap_or_else(|_| unreachable!());
        let profile = ProfileId::parse("7").unwrap_or_else(|_| unreachable!());
        store.erase(&Erasure::Profile(account, profile)).await.unwrap_or_else(|e| panic!("{e:#}"));
        let error = read_all(&store, &body).await.err().map(|e| format!("{e:#}"));
        assert!(error.as_deref().is_some_and(|e| e.contains("no longer stored")), "{error:?}");
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
