//! The database schema, and the step that brings a database of an earlier version up to date.
//!
//! Version 9 (this one) keeps each account's signing profile for web delivery (no value: the
//! default, Standard Webhooks), the deleted accounts whose data is still to be erased, and the
//! record count of each section of a built export in its request. Version 8 keeps each event's
//! body in the index of events by owner, so that a
//! profile's events of one kind are read from that index alone, in order, and not row by row
//! from the table, where they lie among the other events in the order they arrived. Version 7
//! keeps on each message and event its owner, the profile whose export holds it (the profile
//! it names when it has no subprofile, else its subprofile's profile as it is now), so that a
//! profile's records are one ordered range of one index, and indexes by owner and by
//! subprofile only the records that have one; version 6 adds the checkpoint of a build;
//! version 5 the build lease of a request; version 4 the audit log; version 3 the idempotency
//! keys of POSTs. Version 2 keeps events by their key (so a replayed event is stored once),
//! serves a profile's own records through indexes of the records without a subprofile (a
//! subprofile's records reach a profile only through the subprofile), and keeps the
//! lower-cased address of profiles and subprofiles for erasure by address.
//! `PRAGMA user_version` holds the version.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::to_i64;
use crate::domain::Event;

const VERSION: i64 = 9;

const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_secret TEXT NOT NULL,
    created INTEGER NOT NULL,
    signing TEXT
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    account INTEGER NOT NULL REFERENCES accounts(id)
);
CREATE TABLE IF NOT EXISTS erasing (
    account INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS ingest_keys (
    hash TEXT PRIMARY KEY,
    created INTEGER NOT NULL
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
    delivery_claimed_until INTEGER,
    build_lease_until INTEGER,
    build_checkpoint TEXT,
    records TEXT
);
CREATE INDEX IF NOT EXISTS requests_expires ON requests(expires) WHERE state IN ('built', 'delivered');
CREATE TABLE IF NOT EXISTS idempotency (
    account INTEGER NOT NULL,
    key TEXT NOT NULL,
    request INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (account, key)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account INTEGER NOT NULL,
    request INTEGER NOT NULL,
    at INTEGER NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_request ON audit(request, seq);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit(at);
CREATE TABLE IF NOT EXISTS queue (
    request INTEGER PRIMARY KEY,
    visible_at INTEGER NOT NULL,
    receives INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS profiles (
    account INTEGER NOT NULL,
    id INTEGER NOT NULL,
    body TEXT NOT NULL,
    email_lc TEXT,
    PRIMARY KEY (account, id)
);
CREATE INDEX IF NOT EXISTS profiles_by_email ON profiles(account, email_lc);
CREATE TABLE IF NOT EXISTS subprofiles (
    account INTEGER NOT NULL,
    id INTEGER NOT NULL,
    profile INTEGER NOT NULL,
    body TEXT NOT NULL,
    email_lc TEXT,
    PRIMARY KEY (account, id)
);
CREATE INDEX IF NOT EXISTS subprofiles_by_profile ON subprofiles(account, profile, id);
CREATE INDEX IF NOT EXISTS subprofiles_by_email ON subprofiles(account, email_lc);
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
    owner INTEGER,
    PRIMARY KEY (account, id)
);
CREATE INDEX IF NOT EXISTS messages_of_owner ON messages(account, owner, sent, id) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_subprofile ON messages(account, subprofile, sent, id) WHERE subprofile IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_email ON messages(account, email_lc, sent, id);
CREATE TABLE IF NOT EXISTS events (
    account INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    profile INTEGER,
    subprofile INTEGER,
    email_lc TEXT,
    time INTEGER NOT NULL,
    body TEXT NOT NULL,
    owner INTEGER,
    PRIMARY KEY (account, key)
);
CREATE INDEX IF NOT EXISTS events_of_owner ON events(account, owner, kind, time, key, body) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_subprofile ON events(account, subprofile, kind, time, key) WHERE subprofile IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_email ON events(account, email_lc, kind, time, key);
";

/// The owner of a message or event (the profile whose export holds it), as SQL over the
/// expressions of its account, profile and subprofile: the profile it names when it has no
/// subprofile, else its subprofile's profile (none while the subprofile is not stored).
pub(super) fn owner(account: &str, profile: &str, subprofile: &str) -> String {
    format!(
        "CASE WHEN {subprofile} IS NULL THEN {profile} ELSE (SELECT s.profile FROM subprofiles s \
         WHERE s.account = {account} AND s.id = {subprofile}) END"
    )
}

/// Whether `table` has a column `name` (false when the table does not exist).
fn has_column(c: &Connection, table: &str, name: &str) -> rusqlite::Result<bool> {
    c.query_row("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", params![table, name], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

/// Creates the schema, or brings a database of version 1 up to date, in one transaction.
pub fn create(connection: &mut Connection) -> anyhow::Result<()> {
    // Only a new database takes these; WAL stays on once set.
    connection.execute_batch("PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version >= VERSION {
        return Ok(());
    }
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Version 1 kept events by arrival (`seq`); later versions only add tables.
    let old = has_column(&tx, "events", "seq")?;
    if old {
        // Version 1: events appended by arrival (`seq`), owned by the profile the line named.
        tx.execute_batch(
            "ALTER TABLE events RENAME TO events_v1;
             DROP INDEX IF EXISTS events_by_profile;
             DROP INDEX IF EXISTS events_by_subprofile;
             DROP INDEX IF EXISTS events_by_email;
             DROP INDEX IF EXISTS messages_by_profile;
             ALTER TABLE profiles ADD COLUMN email_lc TEXT;
             ALTER TABLE subprofiles ADD COLUMN email_lc TEXT;
             UPDATE profiles SET email_lc = lower(json_extract(body, '$.email'));
             UPDATE subprofiles SET email_lc = lower(json_extract(body, '$.email'));",
        )?;
    }
    // Version 4 and before: requests without a build lease.
    let leaseless = has_column(&tx, "requests", "id")? && !has_column(&tx, "requests", "build_lease_until")?;
    if leaseless {
        tx.execute_batch("ALTER TABLE requests ADD COLUMN build_lease_until INTEGER;")?;
    }
    // Version 5 and before: requests without a build checkpoint.
    if has_column(&tx, "requests", "id")? && !has_column(&tx, "requests", "build_checkpoint")? {
        tx.execute_batch("ALTER TABLE requests ADD COLUMN build_checkpoint TEXT;")?;
    }
    // Version 8 and before: requests without their record counts.
    if has_column(&tx, "requests", "id")? && !has_column(&tx, "requests", "records")? {
        tx.execute_batch("ALTER TABLE requests ADD COLUMN records TEXT;")?;
    }
    // Version 6 and before: records without their owner, a profile's own records in an index
    // of their own, and the records without a subprofile in the index by subprofile too.
    for table in ["messages", "events"] {
        if has_column(&tx, table, "account")? && !has_column(&tx, table, "owner")? {
            tx.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN owner INTEGER; DROP INDEX IF EXISTS {table}_of_profile;
                 DROP INDEX IF EXISTS {table}_by_subprofile;"
            ))?;
        }
    }
    // Version 8 and before: accounts without a signing profile.
    if has_column(&tx, "accounts", "id")? && !has_column(&tx, "accounts", "signing")? {
        tx.execute_batch("ALTER TABLE accounts ADD COLUMN signing TEXT;")?;
    }
    // Version 7 and before: the index by owner without the events' bodies.
    tx.execute_batch("DROP INDEX IF EXISTS events_of_owner;")?;
    tx.execute_batch(SCHEMA)?;
    if old {
        let mut insert = tx.prepare(
            "INSERT OR REPLACE INTO events (account, key, kind, profile, subprofile, email_lc, time, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut rows = tx.prepare("SELECT body FROM events_v1 ORDER BY seq")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let event: Event = serde_json::from_str(&row.get::<_, String>(0)?)?;
            insert.execute(params![
                to_i64(event.account.get()),
                event.key(),
                event.kind.as_str(),
                event.profile.map(|p| to_i64(p.get())),
                event.subprofile.map(|s| to_i64(s.get())),
                event.email.as_ref().map(|e| e.to_ascii_lowercase()),
                event.time.unix(),
                serde_json::to_string(&event)?,
            ])?;
        }
        drop(rows);
        drop(insert);
        tx.execute_batch("DROP TABLE events_v1;")?;
    }
    if version < 7 {
        for table in ["messages", "events"] {
            let owner = owner(&format!("{table}.account"), &format!("{table}.profile"), &format!("{table}.subprofile"));
            tx.execute(&format!("UPDATE {table} SET owner = {owner}"), [])?;
        }
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema of version 1, as databases made before version 2 hold it.
    const VERSION_1: &str = r"
CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, webhook_secret TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE profiles (account INTEGER NOT NULL, id INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (account, id));
CREATE TABLE subprofiles (account INTEGER NOT NULL, id INTEGER NOT NULL, profile INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (account, id));
CREATE INDEX subprofiles_by_profile ON subprofiles(account, profile, id);
CREATE TABLE messages (account INTEGER NOT NULL, id TEXT NOT NULL, profile INTEGER, subprofile INTEGER,
    email TEXT NOT NULL, email_lc TEXT NOT NULL, mailing TEXT NOT NULL, subject TEXT NOT NULL, sent INTEGER NOT NULL,
    mime TEXT NOT NULL, PRIMARY KEY (account, id));
CREATE INDEX messages_by_profile ON messages(account, profile, sent, id);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, account INTEGER NOT NULL, kind TEXT NOT NULL,
    profile INTEGER, subprofile INTEGER, email_lc TEXT, time INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX events_by_profile ON events(account, profile, kind, time, seq);
CREATE INDEX events_by_subprofile ON events(account, subprofile, kind, time, seq);
CREATE INDEX events_by_email ON events(account, email_lc, kind, time, seq);
";

    #[test]
    fn a_version_8_database_gets_the_record_counts_of_its_requests() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut c = Connection::open(dir.path().join("db.sqlite3")).unwrap_or_else(|e| panic!("{e}"));
        create(&mut c).unwrap_or_else(|e| panic!("{e:#}"));
        c.execute_batch("ALTER TABLE requests DROP COLUMN records; PRAGMA user_version = 8;")
            .unwrap_or_else(|e| panic!("{e}"));
        create(&mut c).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(has_column(&c, "requests", "records").unwrap_or_default());
        let version: i64 = c.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap_or_default();
        assert_eq!(version, VERSION);
    }

    #[test]
    fn a_version_7_database_gets_the_events_bodies_in_its_index_by_owner() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db.sqlite3");
        let mut c = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        create(&mut c).unwrap_or_else(|e| panic!("{e:#}"));
        // Version 7's index by owner, and an event in it.
        c.execute_batch(
            r#"DROP INDEX events_of_owner;
            CREATE INDEX events_of_owner ON events(account, owner, kind, time, key, body) WHERE owner IS NOT NULL;
            INSERT INTO events (account, key, kind, profile, subprofile, email_lc, time, body, owner)
                VALUES (1, 'k1', 'click', 7, NULL, NULL, 1735689600, '{"n":1}', 7);
            PRAGMA user_version = 7;"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        create(&mut c).unwrap_or_else(|e| panic!("{e:#}"));
        let index: String = c
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'events_of_owner'", [], |row| row.get(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(index.contains("key, body)"), "{index}");
        let body: String = c
            .query_row(
                "SELECT body FROM events INDEXED BY events_of_owner WHERE account = 1 AND owner = 7 AND kind = 'click'",
                [],
                |row| row.get(0),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body, r#"{"n":1}"#);
        let version: i64 = c.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap_or_default();
        assert_eq!(version, VERSION);
    }

    #[test]
    fn a_version_1_database_is_brought_up_to_date_with_its_events_stored_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db.sqlite3");
        {
            let c = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
            c.execute_batch(VERSION_1).unwrap_or_else(|e| panic!("{e}"));
            let event = r#"{"account":1,"type":"click","message":"m1","profile":7,"subprofile":null,"email":"A@Example.com","time":"2025-01-01 00:00:00","data":{"n":1}}"#;
            for _ in 0..2 {
                // Version 1 appended an event on every import.
                c.execute(
                    "INSERT INTO events (account, kind, profile, subprofile, email_lc, time, body) VALUES (1, 'click', 7, NULL, 'a@example.com', 1735689600, ?1)",
                    [event],
                )
                .unwrap_or_else(|e| panic!("{e}"));
            }
            // A message of a subprofile of profile 7, which names no profile itself.
            c.execute_batch(
                r#"INSERT INTO subprofiles (account, id, profile, body) VALUES (1, 70, 7, '{}');
                INSERT INTO messages (account, id, profile, subprofile, email, email_lc, mailing, subject, sent, mime)
                    VALUES (1, 'm1', NULL, 70, 'a@example.com', 'a@example.com', '1', 's', 1735689600, 'x');"#,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            c.execute(
                "INSERT INTO profiles (account, id, body) VALUES (1, 7, ?1)",
                [r#"{"account":1,"id":7,"database":1,"email":"A@Example.com","created":"2025-01-01 00:00:00","modified":"2025-01-01 00:00:00"}"#],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut c = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        create(&mut c).unwrap_or_else(|e| panic!("{e:#}"));
        let version: i64 = c.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap_or_default();
        assert_eq!(version, VERSION);
        let (count, key): (i64, String) = c
            .query_row("SELECT COUNT(*), MAX(key) FROM events", [], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count, 1, "the duplicate is gone");
        assert!(key.starts_with("h:"), "{key}");
        let email: Option<String> =
            c.query_row("SELECT email_lc FROM profiles", [], |row| row.get(0)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(email.as_deref(), Some("a@example.com"));
        let owners: (i64, i64) = c
            .query_row("SELECT (SELECT owner FROM events), (SELECT owner FROM messages)", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(owners, (7, 7), "the event names profile 7; the message's subprofile is profile 7's");
        assert!(has_column(&c, "accounts", "signing").unwrap_or(false), "accounts gain their signing profile");
        create(&mut c).unwrap_or_else(|e| panic!("opening again changes nothing: {e:#}"));
    }
}
