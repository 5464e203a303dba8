//! `bench mysql [MB]`: subject data read from MariaDB through the shipped mapping
//! (`examples/mysql/sources.toml` on the schema beside it): a subject of about MB megabytes
//! (messages of 15 to 120 KB of MIME, 20 events each) built into its export in a child process
//! (time, peak RSS), against the `mariadb` client with `--quick` streaming the same queries
//! into /dev/null: the limit.
//!
//! The server is the one `DATAREQUEST_TEST_MARIADB_URL` names, else `infra/mariadb.sh start`
//! makes one (and it is stopped again at the end).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use datarequest::adapters::sources::mapping;
use datarequest::domain::SubjectKind;
use mysql_async::Value;
use mysql_async::prelude::Queryable;

use crate::shop::{self, Limit, Server};
use crate::{Lcg, MB, Report};

const SCHEMA: &str = include_str!("../../examples/mysql/schema.sql");
const MAPPING: &str = include_str!("../../examples/mysql/sources.toml");

/// `bench mysql [MB]`: only these figures.
pub async fn only(bytes: u64) -> anyhow::Result<()> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (release, work) = crate::release_and_work()?;
    println!("{}", crate::HEADER);
    let server =
        Server::new(&root, "infra/mariadb.sh", "DATAREQUEST_TEST_MARIADB_URL", "DATAREQUEST_TEST_MARIADB_READER")?;
    let result = figures(&server, &release, &work, &mut Report { rows: Vec::new() }, bytes).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    result
}

const KINDS: [&str; 7] = ["impressions", "clicks", "deliveries", "errors", "abuses", "unsubscribes", "surveys"];

/// Inserts `rows` (each `width` values) into `table` with multi-row statements of about 4 MB.
async fn insert(conn: &mut mysql_async::Conn, table: &str, columns: &str, rows: Vec<Vec<Value>>) -> anyhow::Result<()> {
    let width = columns.split(',').count();
    let mut batch: Vec<Value> = Vec::new();
    let mut size = 0;
    let mut flush = async |batch: &mut Vec<Value>| -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let row = format!("({})", vec!["?"; width].join(","));
        let sql = format!("INSERT INTO {table} ({columns}) VALUES {}", vec![row; batch.len() / width].join(","));
        conn.exec_drop(sql, std::mem::take(batch)).await?;
        Ok(())
    };
    for row in rows {
        size += row.iter().map(|v| if let Value::Bytes(b) = v { b.len() } else { 8 }).sum::<usize>();
        batch.extend(row);
        if size >= 4 << 20 || batch.len() >= 60_000 {
            flush(&mut batch).await?;
            size = 0;
        }
    }
    flush(&mut batch).await
}

fn text(value: &str) -> Value {
    Value::Bytes(value.as_bytes().to_vec())
}

async fn figures(server: &Server, release: &Path, work: &Path, report: &mut Report, bytes: u64) -> anyhow::Result<()> {
    let name = format!("bench_mysql_{}", std::process::id());
    let mut admin = mysql_async::Conn::from_url(server.admin.as_str()).await.context("connecting to MariaDB")?;
    admin.query_drop(format!("DROP DATABASE IF EXISTS {name}")).await?;
    admin.query_drop(format!("CREATE DATABASE {name}")).await?;
    let mut url = server.admin.clone();
    url.set_path(&format!("/{name}"));
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await?;
    conn.query_drop(SCHEMA).await?;
    conn.query_drop("DELETE FROM events; DELETE FROM messages; DELETE FROM contact; DELETE FROM customer").await?;
    conn.query_drop(format!("GRANT SELECT ON {name}.* TO '{}'@'127.0.0.1'", server.reader_user())).await?;
    let (host, port) = (url.host_str().unwrap_or("127.0.0.1").to_owned(), shop::port_of(&url));
    let reader_url = server.reader_url(&name);

    let start = Instant::now();
    conn.query_drop(
        "INSERT INTO customer (tenant, id, name, email, created_at) VALUES (1, 1, 'Customer 1', 'customer1@example.com', NOW())",
    )
    .await?;
    let address = "customer1@example.com";
    let mut rng = Lcg(42);
    let (mut written, mut n) = (0u64, 0u64);
    let mut messages = Vec::new();
    let mut events = Vec::new();
    while written < bytes {
        n += 1;
        let size = 15_000 + rng.next() % 105_000;
        let (id, mime) = shop::mail(1, address, n, size);
        written += mime.len() as u64 + 250 * 20;
        let sent = datarequest::domain::Timestamp::from_unix(1_700_000_000 + i64::try_from(n * 6000).unwrap_or(0));
        messages.push(vec![
            text(&id),
            Value::Int(1),
            Value::Int(1),
            text(address),
            text(&(n % 40).to_string()),
            text(&format!("Mail {n}")),
            text(&sent.to_string()),
            text(&mime),
        ]);
        for e in 0..20u64 {
            let at = datarequest::domain::Timestamp::from_unix(
                1_700_000_000 + i64::try_from(n * 6000 + (e + 1) * 60).unwrap_or(0),
            );
            events.push(vec![
                Value::Int(1),
                text(&id),
                Value::Int(1),
                text(address),
                text(KINDS[usize::try_from((n + e) % 7).unwrap_or(0)]),
                text(&at.to_string()),
                text(&format!(
                    r#"{{"link": "https://shop.example/p/{e}", "useragent": "Mozilla/5.0 (X11; Linux x86_64)"}}"#
                )),
            ]);
        }
        if messages.len() >= 64 {
            insert(
                &mut conn,
                "messages",
                "id,tenant,customer_id,address,mailing,subject,sent_at,body",
                std::mem::take(&mut messages),
            )
            .await?;
        }
    }
    insert(&mut conn, "messages", "id,tenant,customer_id,address,mailing,subject,sent_at,body", messages).await?;
    insert(&mut conn, "events", "tenant,message_id,customer_id,address,section,at,data", events).await?;
    conn.query_drop("ANALYZE TABLE messages, events").await?;
    eprintln!("loaded the {:.0} MB subject into MariaDB in {:.1} s", bytes as f64 / MB, start.elapsed().as_secs_f64());

    // The limit: the client streaming the same queries (their values pasted) into /dev/null.
    let parsed = mapping::parse(MAPPING).map_err(|m| anyhow::anyhow!("{}", mapping::lines(&m)))?;
    let queries = parsed.sources[0].queries(SubjectKind::Profile).context("profile queries")?;
    let mut script = String::new();
    for query in &queries.sections {
        // Account 1, profile 1: every placeholder's value is 1.
        script.push_str(&query.sql.replace('?', "'1'"));
        script.push_str(";\n");
    }
    let (reader_user, reader_password) = server.reader.split_once(':').context("reader")?;
    let start = Instant::now();
    let status = Command::new("mariadb")
        .args(["--no-defaults", "--quick", "--batch", "-h", &host, "-P", &port.to_string(), "-u", reader_user])
        .arg(format!("-p{reader_password}"))
        .arg(&name)
        .arg("-e")
        .arg(&script)
        .stdout(Stdio::null())
        .status()?;
    let client_time = start.elapsed();
    anyhow::ensure!(status.success(), "the mariadb client failed");

    let env = [("DATAREQUEST_SOURCES_TOML".into(), MAPPING.into()), ("SHOP_MYSQL_URL".into(), reader_url)];
    let what = format!("MySQL source (MariaDB), {:.0} MB subject", bytes as f64 / MB);
    let limit_text = format!("mariadb --quick, same queries into /dev/null: {:.1} s", client_time.as_secs_f64());
    let limit = (Limit::Seconds(client_time.as_secs_f64()), limit_text);
    shop::build_and_report(release, &work.join("mysql-large"), &env, report, &what, limit)?;
    drop(conn);
    admin.query_drop(format!("DROP DATABASE IF EXISTS {name}")).await?;
    Ok(())
}
