//! `bench ingest`: subject data through `POST /ingest`.
//!
//! - the local server (in this process: `Local::open` on a fresh data dir, its router under
//!   `axum::serve` on loopback), fed NDJSON bodies of 5,000 lines one after the other by one
//!   client, against a bare SQLite insert of the same rows (one transaction, prepared
//!   statements, no indexes) on the same machine;
//! - the `ingest` Lambda binary under the emulated Runtime API, storing into DynamoDB (and S3)
//!   on the emulator, fed API Gateway v2 events of the same bodies (a figure only).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use datarequest::compose;
use datarequest::domain::{
    AccountId, Event, EventKind, Message, Profile, ProfileId, Record, Subprofile, SubprofileId, Timestamp,
};
use rusqlite::types::Value as Sql;
use serde_json::{Value, json};

use crate::{LINE, Lcg, MB, Report};

/// Lines per POST.
pub const BATCH: usize = 5_000;
/// Lines through the local server.
pub const LINES: usize = 100_000;
/// Lines through the Lambda function and DynamoDB on the emulator (it is slow).
pub const LAMBDA_LINES: usize = 10_000;
/// Profiles the lines are spread over.
const PROFILES: u64 = 1_000;
/// Subprofiles, each of profile `2 * id - 1`.
const SUBPROFILES: u64 = 500;
/// The largest request Lambda takes synchronously.
const LAMBDA_PAYLOAD: usize = 6 * 1024 * 1024;
/// The function's timeout in `template.yaml`, in seconds (API Gateway also gives up at 30 s).
const FUNCTION_TIMEOUT: f64 = 30.0;

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
];

fn profile_id(n: u64) -> ProfileId {
    ProfileId::try_from(n).unwrap_or_else(|_| unreachable!())
}

fn subprofile_id(n: u64) -> SubprofileId {
    SubprofileId::try_from(n).unwrap_or_else(|_| unreachable!())
}

/// A multipart newsletter of about 5 KB, with tracking links that do not repeat (so it
/// compresses as a real one does, not to nothing).
fn mime(rng: &mut Lcg, id: &str, email: &str, subject: &str) -> String {
    let (mut text, mut html) = (String::new(), String::new());
    let mut line = 0;
    while text.len() < 2_200 {
        let token = format!("{:08x}{:08x}", rng.next(), rng.next());
        text.push_str(&format!("{LINE} {line}\r\nhttps://t.shop.example/c/{token}\r\n"));
        html.push_str(&format!("<p>{LINE} <a href=\"https://t.shop.example/c/{token}\">{line}</a></p>\r\n"));
        line += 1;
    }
    format!(
        "From: Shop <news@shop.example>\r\nTo: {email}\r\nSubject: {subject}\r\nMessage-ID: <{id}@shop.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}--b--\r\n"
    )
}

/// `count` lines of subject data for account 1, the same on every run: of every 100 lines one
/// is a profile (ids 1 to 1,000 in turn), one in 200 a subprofile (ids 1 to 500), four are
/// messages of about 5 KB of MIME and the rest (94.5 %) events of about 300 bytes with ip, user
/// agent and link; half the events carry the platform's id, half are identified by content
/// (as SES records are). Messages and events go to a random one of 1,000 profiles, one in
/// five through one of its subprofiles.
pub fn records(count: usize) -> Vec<Record> {
    let account = AccountId::try_from(1).unwrap_or_else(|_| unreachable!());
    let mut rng = Lcg(7);
    let (mut messages, mut events) = (0u64, 0u64);
    let mut records = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let time = Timestamp::from_unix(1_760_000_000 + i64::try_from(i).unwrap_or(0) * 7);
        if i.is_multiple_of(100) {
            let id = (i / 100) % PROFILES + 1;
            records.push(Record::Profile(Profile {
                account,
                id: profile_id(id),
                database: 1,
                email: Some(format!("p{id}@example.com")),
                fields: serde_json::from_value(json!({"firstname": "Kim", "lastname": format!("Person {id}"), "city": "Utrecht", "newsletter": "yes"}))
                    .unwrap_or_default(),
                interests: vec!["news".into(), "offers".into()],
                created: time,
                modified: time,
            }));
            continue;
        }
        if i % 200 == 50 {
            let id = (i / 200) % SUBPROFILES + 1;
            records.push(Record::Subprofile(Subprofile {
                account,
                id: subprofile_id(id),
                profile: profile_id(2 * id - 1),
                collection: 1,
                email: Some(format!("s{id}@work.example")),
                fields: serde_json::from_value(json!({"order": id, "status": "paid"})).unwrap_or_default(),
                created: time,
                modified: time,
            }));
            continue;
        }
        // The subject: a profile, or one time in five a subprofile with its profile.
        let (profile, subprofile, email) = if rng.next().is_multiple_of(5) {
            let sub = rng.next() % SUBPROFILES + 1;
            (2 * sub - 1, Some(subprofile_id(sub)), format!("s{sub}@work.example"))
        } else {
            let p = rng.next() % PROFILES + 1;
            (p, None, format!("p{p}@example.com"))
        };
        if i % 25 == 7 {
            messages += 1;
            let id = format!("m-{messages:07}");
            let subject = format!("Offers of week {}", messages % 52 + 1);
            let mime = mime(&mut rng, &id, &email, &subject);
            records.push(Record::Message(Message {
                account,
                id,
                profile: Some(profile_id(profile)),
                subprofile,
                email,
                mailing: (messages % 40).to_string(),
                subject,
                sent: time,
                mime,
            }));
            continue;
        }
        events += 1;
        let kind = EventKind::ALL[usize::try_from(rng.next() % 3).unwrap_or(0)];
        let message = (messages > 0).then(|| format!("m-{:07}", rng.next() % messages + 1));
        let mut data = json!({
            "ip": format!("198.51.{}.{}", rng.next() % 256, rng.next() % 256),
            "useragent": USER_AGENTS[usize::try_from(rng.next() % 4).unwrap_or(0)],
        });
        if kind == EventKind::Click {
            data["link"] = json!(format!("https://shop.example/p/{}", rng.next() % 10_000));
        }
        records.push(Record::Event(Event {
            account,
            id: events.is_multiple_of(2).then(|| format!("ev-{events:07}")),
            kind,
            message,
            profile: Some(profile_id(profile)),
            subprofile,
            email: Some(email),
            time,
            data: serde_json::from_value(data).unwrap_or_default(),
        }));
    }
    records
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The NDJSON bodies of `BATCH` lines each.
fn bodies(records: &[Record]) -> anyhow::Result<Vec<String>> {
    records
        .chunks(BATCH)
        .map(|chunk| {
            let mut body = String::new();
            for record in chunk {
                body.push_str(&serde_json::to_string(record)?);
                body.push('\n');
            }
            Ok(body)
        })
        .collect()
}

/// What the records should leave stored: distinct profiles, subprofiles, messages, events.
fn distinct(records: &[Record]) -> [usize; 4] {
    let mut sets: [HashSet<String>; 4] = Default::default();
    for record in records {
        let (set, key) = match record {
            Record::Profile(p) => (0, p.id.to_string()),
            Record::Subprofile(s) => (1, s.id.to_string()),
            Record::Message(m) => (2, m.id.clone()),
            Record::Event(e) => (3, e.key()),
        };
        sets[set].insert(key);
    }
    sets.map(|s| s.len())
}

/// Adds up the counts of `POST /ingest` answers.
fn add_summary(total: &mut u64, answer: &Value) -> anyhow::Result<()> {
    for field in ["profiles", "subprofiles", "messages", "events", "erased", "skipped"] {
        *total += answer[field].as_u64().with_context(|| format!("the answer has no {field}: {answer}"))?;
    }
    Ok(())
}

/// Ingest figures: the local server with its limit, then (with the emulator) the Lambda
/// function on DynamoDB.
pub async fn run(
    root: &Path,
    release: &Path,
    work: &Path,
    report: &mut Report,
    lines: usize,
    lambda_lines: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(lines > 0, "bench ingest needs at least one line");
    let start = Instant::now();
    let records = records(lines);
    let bodies = bodies(&records)?;
    let bytes: usize = bodies.iter().map(String::len).sum();
    let mut sizes = [(0usize, 0usize); 4];
    let mut mime = 0;
    for record in &records {
        let kind = match record {
            Record::Profile(_) => 0,
            Record::Subprofile(_) => 1,
            Record::Message(m) => {
                mime += m.mime.len();
                2
            }
            Record::Event(_) => 3,
        };
        sizes[kind].0 += 1;
        sizes[kind].1 += serde_json::to_string(record)?.len() + 1;
    }
    let [profiles, subprofiles, messages, events] = sizes.map(|(n, bytes)| (n, bytes / n.max(1)));
    eprintln!(
        "generated {lines} ingest lines, {:.1} MB, in {:.1} s: {} events of {} bytes on average, {} messages of {} \
         ({} bytes of MIME), {} profiles of {}, {} subprofiles of {}",
        bytes as f64 / MB,
        start.elapsed().as_secs_f64(),
        events.0,
        events.1,
        messages.0,
        messages.1,
        mime / messages.0.max(1),
        profiles.0,
        profiles.1,
        subprofiles.0,
        subprofiles.1
    );
    let (seconds, posts) = local_server(&work.join("ingest-local"), bodies, &records).await?;
    // The limit is the best of three runs.
    let mut limit_seconds = f64::MAX;
    for _ in 0..3 {
        limit_seconds = limit_seconds.min(sqlite_limit(&work.join("ingest-limit.sqlite3"), &records)?.as_secs_f64());
    }
    let ours = lines as f64 / seconds;
    let limit = lines as f64 / limit_seconds;
    report.row(
        &format!("ingest, local server, {lines} lines"),
        format!(
            "{ours:.0} records/s ({posts} POST{} of {} lines in {seconds:.2} s, 1 client)",
            plural(posts),
            BATCH.min(lines)
        ),
        format!("bare SQLite insert (best of 3): {limit:.0} records/s"),
        ours / limit,
        ">= 0.5 of the limit",
        ours / limit >= 0.5,
    );
    // For scale: the same rows into the store's own tables, keys and indexes, by plain INSERTs
    // in one transaction: what storing them costs before any of the service's own work.
    let mut schema_seconds = f64::MAX;
    for _ in 0..3 {
        schema_seconds = schema_seconds.min(schema_limit(&work.join("ingest-schema"), &records)?.as_secs_f64());
    }
    let schema = lines as f64 / schema_seconds;
    report.figure(
        &format!("ingest, local server, {lines} lines, against the store's own schema"),
        format!("{ours:.0} records/s"),
        format!("plain INSERTs into the same tables and indexes (best of 3): {schema:.0} records/s"),
        ours / schema,
    );
    if lambda_lines > 0 {
        lambda(root, release, report, lambda_lines, limit).await?;
    }
    Ok(())
}

/// The records through `POST /ingest` of a local server in this process; checks every answer
/// and what the database holds afterwards. Returns the seconds of all POSTs and their number.
async fn local_server(dir: &Path, bodies: Vec<String>, records: &[Record]) -> anyhow::Result<(f64, usize)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let local = compose::local(dir, &|_| None, Some(url.clone()))?;
    local.app.create_account().await?;
    let key = local.app.operator().create_ingest_key().await?;
    let routes = datarequest::inbound::http::router(local.app.clone(), datarequest::inbound::http::Routes::All);
    let server = tokio::spawn(async move { axum::serve(listener, routes).await });
    let result = async {
        let client = reqwest::Client::new();
        let auth = format!("Bearer {}", key.expose());
        let posts = bodies.len();
        let mut stored = 0u64;
        let start = Instant::now();
        for body in bodies {
            let response = client
                .post(format!("{url}/ingest"))
                .header("Authorization", &auth)
                .header("Content-Type", "application/x-ndjson")
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let answer: Value = response.json().await?;
            anyhow::ensure!(status.is_success(), "POST /ingest answered {status}: {answer}");
            add_summary(&mut stored, &answer)?;
        }
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(stored == records.len() as u64, "the answers counted {stored} of {} lines", records.len());
        anyhow::Ok((seconds, posts))
    }
    .await;
    server.abort();
    let (seconds, posts) = result?;
    // What the database holds: every distinct record once.
    let db = rusqlite::Connection::open_with_flags(
        dir.join("datarequest.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let expected = distinct(records);
    for (table, want) in ["profiles", "subprofiles", "messages", "events"].into_iter().zip(expected) {
        let have: i64 = db.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))?;
        anyhow::ensure!(usize::try_from(have).ok() == Some(want), "{table}: {have} rows stored, {want} expected");
    }
    eprintln!(
        "  local ingest stored {} profiles, {} subprofiles, {} messages, {} events, as expected",
        expected[0], expected[1], expected[2], expected[3]
    );
    drop(db);
    drop(local);
    let _ = std::fs::remove_dir_all(dir);
    Ok((seconds, posts))
}

/// The limit: the same rows inserted into a fresh SQLite database (WAL, synchronous NORMAL,
/// 16 KB pages, as the local store opens its own), a table a record type without indexes, one
/// prepared `INSERT` each, in one transaction. The row values are taken out of the records
/// before the clock starts; the time is from `BEGIN` to the end of `COMMIT`.
fn sqlite_limit(path: &Path, records: &[Record]) -> anyhow::Result<Duration> {
    let _ = std::fs::remove_file(path);
    let mut db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE profiles (account INTEGER, id INTEGER, database INTEGER, email TEXT, fields TEXT, interests TEXT, created INTEGER, modified INTEGER);
         CREATE TABLE subprofiles (account INTEGER, id INTEGER, profile INTEGER, collection INTEGER, email TEXT, fields TEXT, created INTEGER, modified INTEGER);
         CREATE TABLE messages (account INTEGER, id TEXT, profile INTEGER, subprofile INTEGER, email TEXT, mailing TEXT, subject TEXT, sent INTEGER, mime TEXT);
         CREATE TABLE events (account INTEGER, id TEXT, type TEXT, message TEXT, profile INTEGER, subprofile INTEGER, email TEXT, time INTEGER, data TEXT);",
    )?;
    let int = |n: u64| Sql::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let text = |s: Option<&str>| s.map_or(Sql::Null, |s| Sql::Text(s.to_owned()));
    let mut rows: Vec<(usize, Vec<Sql>)> = Vec::with_capacity(records.len());
    for record in records {
        rows.push(match record {
            Record::Profile(p) => (
                0,
                vec![
                    int(p.account.get()),
                    int(p.id.get()),
                    int(p.database),
                    text(p.email.as_deref()),
                    Sql::Text(serde_json::to_string(&p.fields)?),
                    Sql::Text(serde_json::to_string(&p.interests)?),
                    Sql::Integer(p.created.unix()),
                    Sql::Integer(p.modified.unix()),
                ],
            ),
            Record::Subprofile(s) => (
                1,
                vec![
                    int(s.account.get()),
                    int(s.id.get()),
                    int(s.profile.get()),
                    int(s.collection),
                    text(s.email.as_deref()),
                    Sql::Text(serde_json::to_string(&s.fields)?),
                    Sql::Integer(s.created.unix()),
                    Sql::Integer(s.modified.unix()),
                ],
            ),
            Record::Message(m) => (
                2,
                vec![
                    int(m.account.get()),
                    text(Some(&m.id)),
                    m.profile.map_or(Sql::Null, |p| int(p.get())),
                    m.subprofile.map_or(Sql::Null, |s| int(s.get())),
                    text(Some(&m.email)),
                    text(Some(&m.mailing)),
                    text(Some(&m.subject)),
                    Sql::Integer(m.sent.unix()),
                    text(Some(&m.mime)),
                ],
            ),
            Record::Event(e) => (
                3,
                vec![
                    int(e.account.get()),
                    text(e.id.as_deref()),
                    text(Some(e.kind.as_str())),
                    text(e.message.as_deref()),
                    e.profile.map_or(Sql::Null, |p| int(p.get())),
                    e.subprofile.map_or(Sql::Null, |s| int(s.get())),
                    text(e.email.as_deref()),
                    Sql::Integer(e.time.unix()),
                    Sql::Text(serde_json::to_string(&e.data)?),
                ],
            ),
        });
    }
    let elapsed = timed_inserts(
        &mut db,
        [
            "INSERT INTO profiles VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            "INSERT INTO subprofiles VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            "INSERT INTO messages VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        ],
        &rows,
    )?;
    drop(db);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(elapsed)
}

/// The same rows as plain `INSERT`s into the tables the local store creates (its keys and
/// indexes included), in one transaction; each row's values (the event key and the stored
/// JSON among them) are made before the clock starts.
fn schema_limit(dir: &Path, records: &[Record]) -> anyhow::Result<Duration> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let path = dir.join("db.sqlite3");
    drop(datarequest::adapters::sqlite::SqliteStore::open(&path)?);
    let mut db = rusqlite::Connection::open(&path)?;
    let int = |n: u64| Sql::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let lower = |e: Option<&str>| e.map_or(Sql::Null, |e| Sql::Text(e.to_ascii_lowercase()));
    let mut rows: Vec<(usize, Vec<Sql>)> = Vec::with_capacity(records.len());
    for record in records {
        rows.push(match record {
            Record::Profile(p) => (
                0,
                vec![
                    int(p.account.get()),
                    int(p.id.get()),
                    lower(p.email.as_deref()),
                    Sql::Text(serde_json::to_string(p)?),
                ],
            ),
            Record::Subprofile(s) => (
                1,
                vec![
                    int(s.account.get()),
                    int(s.id.get()),
                    int(s.profile.get()),
                    lower(s.email.as_deref()),
                    Sql::Text(serde_json::to_string(s)?),
                ],
            ),
            Record::Message(m) => (
                2,
                vec![
                    int(m.account.get()),
                    Sql::Text(m.id.clone()),
                    m.profile.map_or(Sql::Null, |p| int(p.get())),
                    m.subprofile.map_or(Sql::Null, |s| int(s.get())),
                    Sql::Text(m.email.clone()),
                    lower(Some(&m.email)),
                    Sql::Text(m.mailing.clone()),
                    Sql::Text(m.subject.clone()),
                    Sql::Integer(m.sent.unix()),
                    Sql::Text(m.mime.clone()),
                ],
            ),
            Record::Event(e) => (
                3,
                vec![
                    int(e.account.get()),
                    Sql::Text(e.key()),
                    Sql::Text(e.kind.as_str().to_owned()),
                    e.profile.map_or(Sql::Null, |p| int(p.get())),
                    e.subprofile.map_or(Sql::Null, |s| int(s.get())),
                    lower(e.email.as_deref()),
                    Sql::Integer(e.time.unix()),
                    Sql::Text(serde_json::to_string(e)?),
                ],
            ),
        });
    }
    let elapsed = timed_inserts(
        &mut db,
        [
            "INSERT OR REPLACE INTO profiles (account, id, email_lc, body) VALUES (?1, ?2, ?3, ?4)",
            "INSERT OR REPLACE INTO subprofiles (account, id, profile, email_lc, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            // Each record with its owner, which the generated lines name as their profile
            // (a subprofile's records name the subprofile's profile).
            "INSERT OR REPLACE INTO messages (account, id, profile, subprofile, email, email_lc, mailing, subject, sent, mime, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?3)",
            "INSERT OR REPLACE INTO events (account, key, kind, profile, subprofile, email_lc, time, body, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?4)",
        ],
        &rows,
    )?;
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
    Ok(elapsed)
}

/// Runs each row's statement (profiles, subprofiles, messages, events) in one transaction; the
/// time from `BEGIN` to the end of `COMMIT`.
fn timed_inserts(
    db: &mut rusqlite::Connection,
    sql: [&str; 4],
    rows: &[(usize, Vec<Sql>)],
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let tx = db.transaction()?;
    {
        let mut statements = [tx.prepare(sql[0])?, tx.prepare(sql[1])?, tx.prepare(sql[2])?, tx.prepare(sql[3])?];
        for (table, values) in rows {
            statements[*table].execute(rusqlite::params_from_iter(values))?;
        }
    }
    tx.commit()?;
    Ok(start.elapsed())
}

/// In a child process with the emulator's environment: creates account 1 (the lines name it)
/// and an ingest key in the accounts table, and prints the key.
pub async fn key_child() -> anyhow::Result<()> {
    let lookup = |name: &str| std::env::var(name).ok();
    let operator = datarequest::compose::aws_operator(&lookup).await?;
    let account = operator.create_account().await?.account;
    anyhow::ensure!(account.get() == 1, "the lines are of account 1; the accounts table made account {account}");
    let key = operator.create_ingest_key().await?;
    println!("{}", json!({"ingest_key": key.expose()}));
    Ok(())
}

/// An API Gateway v2 (HTTP API, payload 2.0) event of `POST /ingest` with `body`.
/// The first `lines` records through the `ingest` binary under the emulated Runtime API, into
/// a fresh set of resources on the emulator, one invocation after the other.
async fn lambda(root: &Path, release: &Path, report: &mut Report, lines: usize, limit: f64) -> anyhow::Result<()> {
    let path = release.join("ingest");
    anyhow::ensure!(path.exists(), "{} is missing: build the binaries (infra/bench.sh does)", path.display());
    let Some(env) = crate::emulator_env(root)? else { return Ok(()) };
    let output = Command::new(std::env::current_exe()?)
        .arg("ingest-key-child")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(output.status.success(), "creating an ingest key on the emulator failed");
    let key: Value = serde_json::from_slice(&output.stdout)?;
    let key = key["ingest_key"].as_str().context("no ingest key")?.to_owned();

    let records = records(lines);
    let events: Vec<Value> =
        bodies(&records)?.iter().map(|body| datarequest_tests::events::ingest_event(&key, body)).collect();
    let largest = events.iter().map(|e| e.to_string().len()).max().unwrap_or(0);
    if largest > LAMBDA_PAYLOAD {
        eprintln!("  note: an event of {largest} bytes is over Lambda's 6 MB request limit");
    }
    let invocations = events.len();
    let function =
        datarequest_tests::runtime::Function::start(&path, env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while function.init_time().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut stored = 0u64;
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    for event in events {
        let began = Instant::now();
        let answer = function.invoke(event).await.map_err(|e| anyhow::anyhow!("the function failed: {e}"))?;
        slowest = slowest.max(began.elapsed());
        anyhow::ensure!(answer["statusCode"] == 200, "POST /ingest on Lambda answered {answer}");
        let summary: Value = serde_json::from_str(answer["body"].as_str().context("no body")?)?;
        add_summary(&mut stored, &summary)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(function);
    anyhow::ensure!(stored == lines as u64, "the answers counted {stored} of {lines} lines");
    let ours = lines as f64 / seconds;
    let slowest = slowest.as_secs_f64();
    eprintln!(
        "  Lambda ingest: slowest invocation {slowest:.1} s{}, largest event {:.1} MB (Lambda takes 6 MB)",
        if slowest > FUNCTION_TIMEOUT { " (over the function's 30 s timeout: on AWS it would fail)" } else { "" },
        largest as f64 / MB
    );
    report.figure(
        &format!("ingest, Lambda `ingest` on DynamoDB (emulator), {lines} lines"),
        format!(
            "{ours:.0} records/s ({invocations} invocation{} of {} lines in {seconds:.1} s, one at a time; slowest {slowest:.1} s)",
            plural(invocations),
            BATCH.min(lines)
        ),
        format!("bare SQLite insert (best of 3): {limit:.0} records/s"),
        ours / limit,
    );
    Ok(())
}
