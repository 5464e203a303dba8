//! `bench postgres [MB]`: subject data read where it lives, from PostgreSQL through the shipped
//! mapping (`examples/postgres/sources.toml` on the schema beside it).
//!
//! - a subject of about 1 GB (messages of 15 to 120 KB of MIME, 20 events each) built into its
//!   export in a child process (time, peak RSS), against `COPY (the same queries) TO STDOUT`
//!   into a sink: the limit;
//! - the shape Fides was measured with: one customer with 2,000 messages and 3,000 events among
//!   1,000 others; POST to `available` on the local server, median of 10, against the same
//!   shape in the embedded store (the two servers asked in turn).
//!
//! The cluster is the one `DATAREQUEST_TEST_POSTGRES_URL` names, else `infra/postgres.sh start`
//! makes one (and it is stopped again at the end).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use datarequest::adapters::sources::mapping;
use datarequest::domain::{AccountId, Event, EventKind, Message, Profile, ProfileId, Record, SubjectKind, Timestamp};
use futures_util::{SinkExt, TryStreamExt};
use serde_json::Value;
use tokio_postgres::NoTls;

use crate::shop::{self, Limit, Server};
use crate::{Lcg, MB, Report, spawn_announcing};

const SCHEMA: &str = include_str!("../../examples/postgres/schema.sql");
const MAPPING: &str = include_str!("../../examples/postgres/sources.toml");

/// The cluster `DATAREQUEST_TEST_POSTGRES_URL` names, else a private one.
fn cluster(root: &Path) -> anyhow::Result<Server> {
    Server::new(root, "infra/postgres.sh", "DATAREQUEST_TEST_POSTGRES_URL", "DATAREQUEST_TEST_POSTGRES_READER")
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.context("connecting to the cluster")?;
    tokio::spawn(connection);
    Ok(client)
}

/// A fresh database with the sample schema (and no rows): the superuser's client and the
/// reading role's URL.
async fn database(cluster: &Server, name: &str) -> anyhow::Result<(tokio_postgres::Client, String)> {
    let admin = connect(cluster.admin.as_str()).await?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await?;
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let mut url = cluster.admin.clone();
    url.set_path(&format!("/{name}"));
    let client = connect(url.as_str()).await?;
    client.batch_execute(SCHEMA).await?;
    client.batch_execute("TRUNCATE customer, contact, messages, events").await?;
    client.batch_execute(&format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}", cluster.reader_user())).await?;
    Ok((client, cluster.reader_url(name)))
}

/// Appends a field in COPY's text format.
fn field(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn row(out: &mut String, fields: &[&str]) {
    for (i, value) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        if *value == "\\N" { out.push_str(value) } else { field(out, value) }
    }
    out.push('\n');
}

type Chunk = std::io::Cursor<Vec<u8>>;

/// Loads rows with COPY, a few megabytes at a time.
struct Loader {
    buffer: String,
    sink: std::pin::Pin<Box<tokio_postgres::CopyInSink<Chunk>>>,
}

impl Loader {
    async fn start(client: &tokio_postgres::Client, statement: &str) -> anyhow::Result<Self> {
        let sink = Box::pin(client.copy_in(statement).await?);
        Ok(Self { buffer: String::with_capacity(8 << 20), sink })
    }

    async fn push(&mut self, fields: &[&str]) -> anyhow::Result<()> {
        row(&mut self.buffer, fields);
        if self.buffer.len() >= 4 << 20 {
            let chunk = std::mem::take(&mut self.buffer);
            self.sink.send(Chunk::new(chunk.into_bytes())).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> anyhow::Result<()> {
        let chunk = std::mem::take(&mut self.buffer);
        self.sink.send(Chunk::new(chunk.into_bytes())).await?;
        self.sink.as_mut().finish().await?;
        Ok(())
    }
}

const KINDS: [&str; 7] = ["open", "click", "delivery", "bounce", "complaint", "unsubscribe", "survey"];

/// The `n`-th minute of the generated history.
fn when(n: u64) -> Timestamp {
    Timestamp::from_unix(1_700_000_000 + i64::try_from(n).unwrap_or(0) * 60)
}

/// [`when`] as PostgreSQL reads it.
fn at(n: u64) -> String {
    format!("{}+00", when(n))
}

/// Customer `id` of tenant 1 with messages whose MIME is `size(n)` bytes and `events` events
/// per message, until `bytes` of history or `messages` messages.
async fn customer(
    client: &tokio_postgres::Client,
    id: u64,
    messages: u64,
    bytes: u64,
    events_per_message: u64,
    size: &mut dyn FnMut(u64) -> u64,
) -> anyhow::Result<u64> {
    let (id_text, address) = (id.to_string(), format!("customer{id}@example.com"));
    client
        .execute(
            "INSERT INTO customer (tenant, id, name, email, created_at) VALUES (1, $1, $2, $3, now())",
            &[&i64::try_from(id)?, &format!("Customer {id}"), &address],
        )
        .await?;
    let mut mails = Loader::start(
        client,
        "COPY messages (id, tenant, customer_id, address, mailing, subject, sent_at, body) FROM STDIN",
    )
    .await?;
    let mut written = 0;
    let mut n = 0;
    while n < messages && written < bytes {
        n += 1;
        let (message, mime) = shop::mail(id, &address, n, size(n));
        written += mime.len() as u64 + 250 * events_per_message;
        let (mailing, subject, sent) = ((n % 40).to_string(), format!("Mail {n}"), at(n * 100));
        mails.push(&[&message, "1", &id_text, &address, &mailing, &subject, &sent, &mime]).await?;
    }
    mails.finish().await?;
    let mut events = Loader::start(
        client,
        "COPY events (tenant, message_id, customer_id, address, kind, at, ip, user_agent, details) FROM STDIN",
    )
    .await?;
    for m in 1..=n {
        let message = format!("c{id}-m{m:07}");
        for e in 0..events_per_message {
            let kind = KINDS[usize::try_from((m + e) % 7).unwrap_or(0)];
            let details = format!(r#"{{"link": "https://shop.example/p/{e}"}}"#);
            let time = at(m * 100 + e + 1);
            let ua = "Mozilla/5.0 (X11; Linux x86_64)";
            events.push(&["1", &message, &id_text, &address, kind, &time, "198.51.100.23", ua, &details]).await?;
        }
    }
    events.finish().await?;
    Ok(written)
}

/// `COPY (each section's query of a profile, with its values) TO STDOUT` into a sink: bytes,
/// time.
async fn copy_limit(url: &str, profile: u64) -> anyhow::Result<(u64, Duration)> {
    let client = connect(url).await?;
    let mapping = mapping::parse(MAPPING).map_err(|m| anyhow::anyhow!("{}", mapping::lines(&m)))?;
    let queries = mapping.sources[0].queries(SubjectKind::Profile).context("profile queries")?;
    let start = Instant::now();
    let mut bytes = 0u64;
    for query in &queries.sections {
        let mut sql = query.sql.clone();
        for (i, param) in query.params.iter().enumerate().rev() {
            let value = if param.name() == "account" { "1".to_owned() } else { profile.to_string() };
            sql = sql.replace(&format!("${}", i + 1), &value);
        }
        let stream = client.copy_out(&format!("COPY ({sql}) TO STDOUT")).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.try_next().await? {
            bytes += chunk.len() as u64;
        }
    }
    Ok((bytes, start.elapsed()))
}

/// `bench postgres [MB]`: only these figures.
pub async fn only(bytes: u64) -> anyhow::Result<()> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (release, work) = crate::release_and_work()?;
    println!("{}", crate::HEADER);
    let result = run(&root, &release, &work, &mut Report { rows: Vec::new() }, bytes).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Every figure; `bytes` is the size of the large subject.
pub async fn run(root: &Path, release: &Path, work: &Path, report: &mut Report, bytes: u64) -> anyhow::Result<()> {
    figures(&cluster(root)?, release, work, report, bytes).await
}

async fn figures(cluster: &Server, release: &Path, work: &Path, report: &mut Report, bytes: u64) -> anyhow::Result<()> {
    // The large subject: customer 1, about `bytes` of history.
    let name = format!("bench_large_{}", std::process::id());
    let (client, url) = database(cluster, &name).await?;
    let start = Instant::now();
    let mut rng = Lcg(42);
    customer(&client, 1, u64::MAX, bytes, 20, &mut |_| 15_000 + rng.next() % 105_000).await?;
    client.batch_execute("ANALYZE").await?;
    eprintln!(
        "loaded the {:.0} MB subject into PostgreSQL in {:.1} s",
        bytes as f64 / MB,
        start.elapsed().as_secs_f64()
    );
    let (copied, copy_time) = copy_limit(&url, 1).await?;
    let limit = copied as f64 / MB / copy_time.as_secs_f64();
    let env = [("DATAREQUEST_SOURCES_TOML".into(), MAPPING.into()), ("SHOP_DATABASE_URL".into(), url.clone())];
    let what = format!("PostgreSQL source, {:.0} MB subject", bytes as f64 / MB);
    let limit_text = format!("COPY of the same queries into a sink: {limit:.0} MB/s ({:.0} MB)", copied as f64 / MB);
    shop::build_and_report(
        release,
        &work.join("postgres-large"),
        &env,
        report,
        &what,
        (Limit::Pace(limit), limit_text),
    )?;
    drop(client);
    connect(cluster.admin.as_str()).await?.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await?;

    // Fides' shape: 1 profile with 2,000 messages and 3,000 events, among 1,000 others.
    let name = format!("bench_fides_{}", std::process::id());
    let (client, url) = database(cluster, &name).await?;
    customer(&client, 1, FIDES_MESSAGES, u64::MAX, 0, &mut |_| FIDES_MAIL).await?;
    let mut events = Loader::start(
        &client,
        "COPY events (tenant, message_id, customer_id, address, kind, at, ip, user_agent, details) FROM STDIN",
    )
    .await?;
    for e in 0..FIDES_EVENTS {
        let (message, time) = (format!("c1-m{:07}", 1 + e % FIDES_MESSAGES), at(e * 7 + 1));
        let kind = KINDS[usize::try_from(e % 7).unwrap_or(0)];
        events
            .push(&["1", &message, "1", "customer1@example.com", kind, &time, "198.51.100.23", "Mozilla/5.0", "{}"])
            .await?;
    }
    events.finish().await?;
    for other in 2..=1 + FIDES_OTHERS {
        customer(&client, other, 2, u64::MAX, 1, &mut |_| FIDES_MAIL).await?;
    }
    client.batch_execute("ANALYZE").await?;
    let source = [("DATAREQUEST_SOURCES_TOML", MAPPING), ("SHOP_DATABASE_URL", url.as_str())];
    let mut servers = [
        LocalServer::start(release, &work.join("postgres-fides"), &source, |_| Ok(())).await?,
        // The same shape in the embedded store, served the same way.
        LocalServer::start(release, &work.join("embedded-fides"), &[], load_fides).await?,
    ];
    // One request to each in turn, so what the machine does meanwhile weighs on both alike.
    let measured = async {
        let client = reqwest::Client::new();
        let mut times = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
        for _ in 0..10 {
            for (server, (posts, totals)) in servers.iter().zip(&mut times) {
                let (post, total) = server.post_to_available(&client).await?;
                posts.push(post);
                totals.push(total);
            }
        }
        let [(mut posts, mut totals), (mut embedded_posts, mut embedded_totals)] = times;
        anyhow::Ok([
            Served { available: median(&mut totals), post: median(&mut posts) },
            Served { available: median(&mut embedded_totals), post: median(&mut embedded_posts) },
        ])
    }
    .await;
    for server in &mut servers {
        server.stop();
    }
    let [pooled, embedded] = measured?;
    drop(client);
    connect(cluster.admin.as_str()).await?.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await?;

    report.row(
        "PostgreSQL source, 1 profile + 2,000 messages + 3,000 events among 1,000: POST to available (median of 10)",
        format!("{:.0} ms", pooled.available * 1000.0),
        format!("the embedded store, same shape: {:.0} ms", embedded.available * 1000.0),
        pooled.available / embedded.available,
        "<= 1.5x the embedded store",
        pooled.available <= 1.5 * embedded.available,
    );
    report.figure(
        "PostgreSQL source, same shape: POST to available against Fides (median of 10)",
        format!("{:.0} ms", pooled.available * 1000.0),
        "Fides, same shape: 1.1 s".into(),
        pooled.available / 1.1,
    );
    report.row(
        "PostgreSQL source, same shape: profile POST (its `exists` query on a pooled connection; median of 10)",
        format!("{:.1} ms", pooled.post * 1000.0),
        "2 ms".into(),
        pooled.post / 0.002,
        "<= 2 ms",
        pooled.post <= 0.002,
    );
    report.figure(
        "the embedded store, same shape: profile POST (median of 10)",
        format!("{:.1} ms", embedded.post * 1000.0),
        format!("PostgreSQL source: {:.1} ms", pooled.post * 1000.0),
        embedded.post / pooled.post,
    );
    Ok(())
}

/// Fides' shape: the profile asked for, its messages and events, and the other customers.
const FIDES_MESSAGES: u64 = 2_000;
const FIDES_EVENTS: u64 = 3_000;
const FIDES_OTHERS: u64 = 1_000;
const FIDES_MAIL: u64 = 2_000;

/// Fides' shape in the embedded store, for `account`: the customers, messages and events that
/// [`figures`] loads into PostgreSQL, as records.
fn fides_records(account: AccountId) -> impl Iterator<Item = Record> {
    let event = move |message: String, customer: u64, kind: u64, time: Timestamp| {
        let profile = ProfileId::try_from(customer).ok();
        let data = serde_json::json!({"ip": "198.51.100.23", "useragent": "Mozilla/5.0"});
        Record::Event(Event {
            account,
            id: None,
            kind: EventKind::ALL[usize::try_from(kind % 7).unwrap_or(0)],
            message: Some(message),
            profile,
            subprofile: None,
            email: Some(format!("customer{customer}@example.com")),
            time,
            data: serde_json::from_value(data).unwrap_or_default(),
        })
    };
    (1..=1 + FIDES_OTHERS).flat_map(move |customer| {
        let address = format!("customer{customer}@example.com");
        let profile = ProfileId::try_from(customer).ok();
        let messages = if customer == 1 { FIDES_MESSAGES } else { 2 };
        let head = profile.map(|id| {
            Record::Profile(Profile {
                account,
                id,
                database: 1,
                email: Some(address.clone()),
                fields: serde_json::from_value(serde_json::json!({"name": format!("Customer {customer}")}))
                    .unwrap_or_default(),
                interests: Vec::new(),
                created: Timestamp::from_unix(1_700_000_000),
                modified: Timestamp::from_unix(1_700_000_000),
            })
        });
        let mails = (1..=messages).flat_map(move |n| {
            let (id, mime) = shop::mail(customer, &address, n, FIDES_MAIL);
            let message = Record::Message(Message {
                account,
                id: id.clone(),
                profile,
                subprofile: None,
                email: address.clone(),
                mailing: (n % 40).to_string(),
                subject: format!("Mail {n}"),
                sent: when(n * 100),
                mime,
            });
            // The others have one event a message; the subject's come after its messages.
            let own = (customer != 1).then(|| event(id, customer, n, when(n * 100 + 1)));
            std::iter::once(message).chain(own)
        });
        let events = (customer == 1)
            .then_some(0..FIDES_EVENTS)
            .into_iter()
            .flatten()
            .map(move |e| event(format!("c1-m{:07}", 1 + e % FIDES_MESSAGES), 1, e, when(e * 7 + 1)));
        head.into_iter().chain(mails).chain(events)
    })
}

/// Loads Fides' shape into the embedded store of `dir` for account 1.
fn load_fides(dir: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let local = datarequest::compose::local(dir, &|_| None, Some("http://127.0.0.1:1".into()))?;
        let subjects = datarequest::compose::ports(&local.app).subjects;
        let mut batch = Vec::with_capacity(500);
        for record in fides_records(AccountId::try_from(1)?) {
            batch.push(record);
            if batch.len() == batch.capacity() {
                subjects.load(&batch).await?;
                batch.clear();
            }
        }
        subjects.load(&batch).await
    })
}

/// Medians of 10 profile requests on the local server.
struct Served {
    /// Seconds from the POST to `available`.
    available: f64,
    /// Seconds the POST itself took.
    post: f64,
}

/// The local server on a data dir of its own, with account 1.
struct LocalServer {
    process: std::process::Child,
    dir: std::path::PathBuf,
    base: String,
    token: String,
}

impl LocalServer {
    /// Serves a new data dir `dir` with account 1 (whose data `load` adds before it starts) and
    /// the variables `env`.
    async fn start(
        release: &Path,
        dir: &Path,
        env: &[(&str, &str)],
        load: impl FnOnce(&Path) -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let binary = release.join("datarequest");
        let account = Command::new(&binary).args(["account", "create", "--data-dir"]).arg(dir).output()?;
        anyhow::ensure!(account.status.success(), "account create failed");
        let created: Value = serde_json::from_slice(&account.stdout)?;
        anyhow::ensure!(created["account"] == 1, "a new data dir's first account is 1: {created}");
        let token = created["token"].as_str().context("token")?.to_owned();
        let owned = dir.to_path_buf();
        tokio::task::spawn_blocking(move || load(&owned)).await??;
        let mut serve = Command::new(&binary);
        serve
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .env("DATAREQUEST_RATE_LIMIT_PER_MINUTE", "0")
            .envs(env.iter().copied());
        let (process, lines) = spawn_announcing(serve, "listening on")?;
        let base =
            lines.last().and_then(|l| l.strip_prefix("Datarequest listening on ")).context("address")?.to_owned();
        Ok(Self { process, dir: dir.to_path_buf(), base, token })
    }

    /// POSTs a request for profile 1 and polls its status until it is `available`: seconds the
    /// POST took, and seconds to `available`.
    async fn post_to_available(&self, client: &reqwest::Client) -> anyhow::Result<(f64, f64)> {
        let (base, token) = (&self.base, &self.token);
        let start = Instant::now();
        let created: Value = client
            .post(format!("{base}/v1/profile/1/datarequest?access_token={token}"))
            .header("content-type", "application/json")
            .body("[]")
            .send()
            .await?
            .json()
            .await?;
        let post = start.elapsed().as_secs_f64();
        let id = created["id"].as_u64().context("no request id")?;
        loop {
            let status: Value = client
                .get(format!("{base}/v1/datarequest/{id}/status?access_token={token}"))
                .send()
                .await?
                .json()
                .await?;
            if status["status"] == "available" {
                anyhow::ensure!(status["records"]["destinations"] == FIDES_MESSAGES, "not the shape: {status}");
                return Ok((post, start.elapsed().as_secs_f64()));
            }
            anyhow::ensure!(status["state"] != "failed", "the build failed: {status}");
            anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "never available");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for LocalServer {
    /// A server is stopped whatever ends the run (stopping twice does no harm).
    fn drop(&mut self) {
        self.stop();
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_escape_what_the_text_format_needs() {
        let mut out = String::new();
        row(&mut out, &["a\tb", "c\\d\r\n", "\\N"]);
        assert_eq!(out, "a\\tb\tc\\\\d\\r\\n\t\\N\n");
    }
}
