//! `bench`: figures against the service's limits, each compared with its limit in the same run.
//! Run it through `infra/bench.sh`, which builds the release binaries first. Nothing here is a
//! timed test: it prints what it measured and says which goals are met.
//!
//! - builder throughput on a generated ~1 GB subject, against serde_json serialising the same
//!   records into a sink; and, as a figure, the JSON alone of the same build (no report);
//! - builder peak memory for 100 MB and 1 GB subjects (each build in a child process);
//! - builder peak memory for a subject of 200 mails of 5 MB each (see [`big_mail`]);
//! - a 200 MB export through the S3 multipart path against the emulator, with its peak memory;
//! - Lambda start: spawn to first request for work (median of 20) and first invocation;
//! - the local server under `wrk`, against an axum hello-world on the same machine;
//! - `POST /ingest` of generated subject data: the local server against a bare SQLite insert of
//!   the same rows, and the `ingest` Lambda function on DynamoDB on the emulator (see
//!   [`ingest`]);
//! - web delivery of a 200 MB export to a receiver reading at 5 MB/s, with its peak memory (see
//!   [`webhook`]);
//! - `bench postgres` only: subject data read from PostgreSQL through the shipped mapping,
//!   against `COPY` of the same queries, and Fides' shape from POST to `available` (see
//!   [`postgres`]);
//! - `bench abuse` only: the local server under floods of idle, slowloris and slow-body
//!   connections (see [`abuse`]).

mod abuse;
mod continuations;
mod faults;
mod ingest;
mod mysql;
mod postgres;
mod shop;
mod webhook;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use datarequest::App;
use datarequest::compose;
use datarequest::domain::{
    AccountId, Event, EventKind, Message, Profile, ProfileId, Record, Subject, Subprofile, SubprofileId, Timestamp,
};
use serde_json::{Value, json};

const MB: f64 = 1_000_000.0;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.first().map(String::as_str) {
        Some("build-child") => {
            let dir = args.get(1).context("usage: bench build-child DIR [s3 | json]")?;
            match args.get(2).map(String::as_str) {
                Some("json") => runtime.block_on(build_json_child(Path::new(dir))),
                other => runtime.block_on(build_child(Path::new(dir), other)),
            }
        }
        Some("hello") => runtime.block_on(hello()),
        // `bench prepare DIR MB` then `bench build-child DIR`: one build to profile on its own.
        Some("prepare") => {
            let (Some(dir), Some(mb)) = (args.get(1), args.get(2).and_then(|mb| mb.parse::<u64>().ok())) else {
                anyhow::bail!("usage: bench prepare DIR MB");
            };
            runtime.block_on(prepare(Path::new(dir), mb * 1_000_000))
        }
        // `bench load`: only the local server under wrk.
        Some("load") => runtime.block_on(load_only()),
        // `bench abuse [SECONDS]`: only the local server under floods (idle, slowloris, slow
        // bodies); an attacker whose connection is closed opens another SECONDS later (default 1).
        Some("abuse") => {
            let Ok(seconds) = args.get(1).map_or(Ok(1.0), |n| n.parse::<f64>()) else {
                anyhow::bail!("usage: bench abuse [SECONDS]");
            };
            let reconnect = Duration::from_secs_f64(seconds.max(0.0));
            runtime.block_on(alone(async |_, release, work, report| abuse::run(release, work, report, reconnect).await))
        }
        // `bench ingest [LINES [LAMBDA_LINES]]`: only the ingest figures (LAMBDA_LINES 0: no Lambda).
        Some("ingest") => {
            let count = |i: usize, default: usize| args.get(i).map_or(Ok(default), |n| n.parse::<usize>());
            let (Ok(lines), Ok(lambda_lines)) = (count(1, ingest::LINES), count(2, ingest::LAMBDA_LINES)) else {
                anyhow::bail!("usage: bench ingest [LINES [LAMBDA_LINES]]");
            };
            runtime.block_on(ingest_only(lines, lambda_lines))
        }
        Some("ingest-key-child") => runtime.block_on(ingest::key_child()),
        // `bench mysql [MB]`: only the MySQL source figures, on MariaDB (a subject of MB, default 1000).
        Some("mysql") => {
            let Some(mb) = args.get(1).map_or(Some(1000), |mb| mb.parse::<u64>().ok()) else {
                anyhow::bail!("usage: bench mysql [MB]");
            };
            runtime.block_on(mysql::only(mb * 1_000_000))
        }
        // `bench postgres [MB]`: only the PostgreSQL source figures (a subject of MB, default 1000).
        Some("postgres") => {
            let Ok(mb) = args.get(1).map_or(Ok(1_000), |mb| mb.parse::<u64>()) else {
                anyhow::bail!("usage: bench postgres [MB]");
            };
            runtime.block_on(postgres::only(mb * 1_000_000))
        }
        // `bench mail [COUNT [MB]]`: only the builder memory of COUNT mails of MB each (default
        // 200 of 5), beside that of an ordinary 100 MB subject.
        Some("mail") => {
            let number = |i: usize, default: u64| args.get(i).map_or(Ok(default), |n| n.parse::<u64>());
            let (Ok(count), Ok(mb)) = (number(1, BIG_MAILS), number(2, BIG_MAIL_MB)) else {
                anyhow::bail!("usage: bench mail [COUNT [MB]]");
            };
            runtime.block_on(mail_only(count, mb * 1_000_000))
        }
        // `bench webhook [MB]`: only the web delivery figure (an export of MB, default 200).
        Some("webhook") => {
            let Ok(mb) = args.get(1).map_or(Ok(webhook::BYTES / 1_000_000), |mb| mb.parse::<u64>()) else {
                anyhow::bail!("usage: bench webhook [MB]");
            };
            runtime.block_on(webhook_only(mb * 1_000_000))
        }
        Some("webhook-child") => {
            let (Some(url), Some(path)) = (args.get(1), args.get(2)) else {
                anyhow::bail!("usage: bench webhook-child URL FILE");
            };
            runtime.block_on(webhook::child(url, Path::new(path)))
        }
        // `bench faults [REQUESTS]`: only the fault-injection run (default 1,000 requests).
        Some("faults") => {
            let Ok(requests) = args.get(1).map_or(Ok(faults::REQUESTS), |n| n.parse::<usize>()) else {
                anyhow::bail!("usage: bench faults [REQUESTS]");
            };
            runtime.block_on(faults_only(requests))
        }
        // `bench builder [MB]`: only the builder's throughput (a subject of MB, default 1000).
        Some("builder") => {
            let Ok(mb) = args.get(1).map_or(Ok(1_000), |n| n.parse::<u64>()) else {
                anyhow::bail!("usage: bench builder [MB]");
            };
            runtime.block_on(builder_only(mb * 1_000_000))
        }
        Some("continuations") => {
            let Ok(mb) = args.get(1).map_or(Ok(2_000), |n| n.parse::<u64>()) else {
                anyhow::bail!("usage: bench continuations [MB]");
            };
            runtime.block_on(continuations_only(mb))
        }
        Some("continuations-child") => {
            let (Some(mb), Some(work)) = (args.get(1).and_then(|n| n.parse::<u64>().ok()), args.get(2)) else {
                anyhow::bail!("usage: bench continuations-child MB WORK");
            };
            runtime.block_on(continuations::child(mb, Path::new(work)))
        }
        Some("all") | None => runtime.block_on(all()),
        Some(other) => {
            anyhow::bail!(
                "unknown command {other}: use `bench`, `bench all`, `bench load`, `bench abuse`, `bench ingest`, `bench mail`, `bench webhook`, `bench postgres`, `bench mysql`, `bench faults`, `bench continuations`, `bench builder` or `bench prepare`"
            )
        }
    }
}

/// A deterministic pseudo-random sequence, so every run generates the same subject.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

const LINE: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.";

/// The records of one profile with about `bytes` of history: messages of 15 to 120 KB of
/// multipart MIME, about 20 events each, every kind of event, three subprofiles.
fn subject(account: AccountId, bytes: u64) -> impl Iterator<Item = Record> {
    let profile = ProfileId::parse("1").unwrap_or_else(|_| unreachable!());
    let time = |n: u64| Timestamp::from_unix(1_700_000_000 + i64::try_from(n).unwrap_or(0) * 60);
    let head = std::iter::once(Record::Profile(Profile {
        account,
        id: profile,
        database: 1,
        email: Some("big@example.com".into()),
        fields: serde_json::from_value(json!({"firstname": "Big", "lastname": "Subject", "city": "Utrecht"}))
            .unwrap_or_default(),
        interests: vec!["news".into()],
        created: time(0),
        modified: time(1),
    }))
    .chain((1..=3).map(move |n| {
        Record::Subprofile(Subprofile {
            account,
            id: SubprofileId::try_from(n).unwrap_or_else(|_| unreachable!()),
            profile,
            collection: 1,
            email: Some(format!("big{n}@work.example")),
            fields: serde_json::from_value(json!({"order": n})).unwrap_or_default(),
            created: time(n),
            modified: time(n),
        })
    }));
    let mut rng = Lcg(42);
    let mut written = 0u64;
    let mut n = 0u64;
    let history = std::iter::from_fn(move || {
        if written >= bytes {
            return None;
        }
        n += 1;
        let size = 15_000 + rng.next() % 105_000;
        let lines = usize::try_from(size / 2 / (LINE.len() as u64 + 2)).unwrap_or(1);
        let text: String = (0..lines).map(|i| format!("{LINE} {i}\r\n")).collect();
        let html: String = (0..lines).map(|i| format!("<p>{LINE} {i}</p>\r\n")).collect();
        let id = format!("m-{n:07}");
        let mime = format!(
            "From: Shop <news@shop.example>\r\nTo: big@example.com\r\nSubject: Mail {n}\r\nMessage-ID: <{id}@shop.example>\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{text}--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}--b--\r\n"
        );
        let subprofile = n.is_multiple_of(5).then(|| SubprofileId::try_from(1 + n % 3).unwrap_or_else(|_| unreachable!()));
        let mut records = vec![Record::Message(Message {
            account,
            id: id.clone(),
            profile: Some(profile),
            subprofile,
            email: "big@example.com".into(),
            mailing: (n % 40).to_string(),
            subject: format!("Mail {n}"),
            sent: time(n * 100),
            mime,
        })];
        written += size;
        for e in 0..20 {
            let kind = EventKind::ALL[usize::try_from((n + e) % 7).unwrap_or(0)];
            let data = json!({"ip": "198.51.100.23", "useragent": "Mozilla/5.0 (X11; Linux x86_64)", "link": format!("https://shop.example/p/{e}")});
            records.push(Record::Event(Event {
                account,
                id: None,
                kind,
                message: Some(id.clone()),
                profile: Some(profile),
                subprofile,
                email: Some("big@example.com".into()),
                time: time(n * 100 + e + 1),
                data: serde_json::from_value(data).unwrap_or_default(),
            }));
            written += 250;
        }
        Some(records)
    })
    .flatten();
    head.chain(history)
}

/// A local data dir holding account 1 with a generated subject of about `bytes`.
async fn prepare(dir: &Path, bytes: u64) -> anyhow::Result<()> {
    let local = compose::local(dir, &|_| None, Some("http://127.0.0.1:1".into()))?;
    let account = local.app.create_account().await?.account;
    let mut batch = Vec::with_capacity(500);
    for record in subject(account, bytes) {
        batch.push(record);
        if batch.len() == 500 {
            datarequest::compose::ports(&local.app).subjects.load(&batch).await?;
            batch.clear();
        }
    }
    datarequest::compose::ports(&local.app).subjects.load(&batch).await?;
    Ok(())
}

/// Mails in the large-mail subject, and the size of each.
const BIG_MAILS: u64 = 200;
const BIG_MAIL_MB: u64 = 5;

/// One mail of about `bytes`: a short text part and an attachment of random bytes in base64
/// (as large mails are: a PDF, a photo), which compresses poorly and fills the body.
fn big_mail(account: AccountId, n: u64, bytes: u64) -> Record {
    let mut rng = Lcg(n);
    let id = format!("big-{n:04}");
    let mut mime = format!(
        "From: Shop <news@shop.example>\r\nTo: big@example.com\r\nSubject: Your invoice {n}\r\n\
         Message-ID: <{id}@shop.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDear customer, your invoice is attached.\r\n{LINE}\r\n\
         --b\r\nContent-Type: application/pdf; name=\"invoice-{n}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"invoice-{n}.pdf\"\r\n\r\n"
    );
    const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let size = usize::try_from(bytes).unwrap_or(usize::MAX);
    while mime.len() < size {
        let line: String = (0..76).map(|_| char::from(BASE64[usize::try_from(rng.next() % 64).unwrap_or(0)])).collect();
        mime.push_str(&line);
        mime.push_str("\r\n");
    }
    mime.push_str("--b--\r\n");
    let time = Timestamp::from_unix(1_700_000_000 + i64::try_from(n).unwrap_or(0) * 3_600);
    Record::Message(Message {
        account,
        id,
        profile: Some(ProfileId::parse("1").unwrap_or_else(|_| unreachable!())),
        subprofile: None,
        email: "big@example.com".into(),
        mailing: "9".into(),
        subject: format!("Your invoice {n}"),
        sent: time,
        mime,
    })
}

/// A local data dir holding account 1 with profile 1 and `count` mails of about `bytes` each.
async fn prepare_big_mail(dir: &Path, count: u64, bytes: u64) -> anyhow::Result<()> {
    let local = compose::local(dir, &|_| None, Some("http://127.0.0.1:1".into()))?;
    let account = local.app.create_account().await?.account;
    let profile = subject(account, 0).next().context("the profile")?;
    datarequest::compose::ports(&local.app).subjects.load(&[profile]).await?;
    for n in 1..=count {
        datarequest::compose::ports(&local.app).subjects.load(&[big_mail(account, n, bytes)]).await?;
    }
    Ok(())
}

/// Builder peak memory for `count` mails of about `bytes` each (goal: at most 128 MB), and, when
/// asked, for an ordinary subject of `ordinary` bytes in the same run (goal: flat, at most 64 MB).
async fn mail(work: &Path, report: &mut Report, count: u64, bytes: u64, ordinary: Option<u64>) -> anyhow::Result<()> {
    let dir = work.join("subject-big-mail");
    let start = Instant::now();
    prepare_big_mail(&dir, count, bytes).await?;
    eprintln!("generated {count} mails of {:.0} MB in {:.1} s", bytes as f64 / MB, start.elapsed().as_secs_f64());
    let built = run_child(&dir, None)?;
    let _ = std::fs::remove_dir_all(&dir);
    let rss = built["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0;
    report.row(
        &format!("builder peak RSS, {count} mails of {:.0} MB", bytes as f64 / MB),
        format!("{rss:.1} MB (export {})", made(&built)),
        "128 MB".into(),
        rss / 128.0,
        "<= 128 MB",
        rss <= 128.0,
    );
    let Some(ordinary) = ordinary else { return Ok(()) };
    let dir = work.join("subject-ordinary");
    prepare(&dir, ordinary).await?;
    let built = run_child(&dir, None)?;
    let _ = std::fs::remove_dir_all(&dir);
    let rss = built["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0;
    report.row(
        &format!("builder peak RSS, ordinary {:.0} MB subject (same run)", ordinary as f64 / MB),
        format!("{rss:.1} MB (export {:.0} MB)", built["bytes"].as_f64().unwrap_or(0.0) / MB),
        "64 MB".into(),
        rss / 64.0,
        "flat, <= 64 MB",
        rss <= 64.0,
    );
    Ok(())
}

/// The builder's throughput in a build that gave `built`, against the serde_json limit for the
/// same records; and, as figures, the same build's JSON alone, the time the disk under `dir`
/// takes to write the bytes of both files through the page cache and sync them (the build
/// writes them directly, which on this kind of machine is the quicker way), and the time the
/// export store takes to write them alone, the floor under any build on that disk.
async fn throughput(dir: &Path, report: &mut Report, built: &Value, bytes: u64) -> anyhow::Result<()> {
    let size = built["bytes"].as_f64().unwrap_or(0.0);
    let seconds = built["seconds"].as_f64().unwrap_or(1.0);
    let (serialized, elapsed) = serde_limit(bytes)?;
    let ours = size / MB / seconds;
    let limit = serialized as f64 / MB / elapsed.as_secs_f64();
    report.row(
        &format!("builder throughput, {:.0} MB subject", bytes as f64 / MB),
        format!(
            "{ours:.0} MB/s ({:.0} MB, and a report of {:.0} MB, in {seconds:.1} s)",
            size / MB,
            built["report_bytes"].as_f64().unwrap_or(0.0) / MB
        ),
        format!("serde_json into a sink: {limit:.0} MB/s"),
        ours / limit,
        ">= 0.5 of the limit",
        ours / limit >= 0.5,
    );
    // The JSON alone, from the same store into the same folder.
    let alone = spawn_child(dir, Some("json"), &[])?;
    let json_rate = alone["bytes"].as_f64().unwrap_or(0.0) / MB / alone["seconds"].as_f64().unwrap_or(1.0);
    report.figure(
        "builder, the JSON alone (the same build without its report)",
        format!("{json_rate:.0} MB/s ({})", made(&alone)),
        format!("serde_json into a sink: {limit:.0} MB/s"),
        json_rate / limit,
    );
    let both = size + built["report_bytes"].as_f64().unwrap_or(0.0);
    let disk = disk_seconds(dir, both as u64)?;
    report.figure(
        "builder, the same build against its disk",
        format!("{:.0} MB (JSON and report) written and synced in {seconds:.1} s", both / MB),
        format!("the same bytes written through the page cache and synced alone: {disk:.1} s"),
        disk / seconds,
    );
    let report_bytes = built["report_bytes"].as_u64().unwrap_or(0);
    let alone = store_write_seconds(dir, built["bytes"].as_u64().unwrap_or(0), report_bytes).await?;
    report.figure(
        "builder, the same build against its own writes alone",
        format!("{:.0} MB (JSON and report) in {seconds:.1} s", both / MB),
        format!("the export store writing the same two files at once from ready bytes: {alone:.1} s"),
        alone / seconds,
    );
    Ok(())
}

/// Seconds the local export store takes to write one export of `json` bytes and its report of
/// `report` bytes, both files at once as a build writes them, from bytes ready in memory: the
/// part of a build its disk takes, with no build around it.
async fn store_write_seconds(dir: &Path, json: u64, report: u64) -> anyhow::Result<f64> {
    settle()?;
    let local = compose::local(dir, &|_| None, Some("http://127.0.0.1:1".into()))?;
    let exports = &datarequest::compose::ports(&local.app).exports;
    let id = datarequest::domain::RequestId::random();
    // The size of the build's own buffer.
    let block = vec![b'x'; 256 * 1024];
    let write = async |format, bytes: u64| {
        let mut writer = exports.create(id, format).await?;
        let mut left = bytes;
        while left > 0 {
            let take = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
            writer.write(&block[..take]).await?;
            left -= take as u64;
        }
        writer.finish().await?;
        anyhow::Ok(())
    };
    let start = Instant::now();
    tokio::try_join!(
        write(datarequest::ports::ExportFormat::Json, json),
        write(datarequest::ports::ExportFormat::Html, report)
    )?;
    let seconds = start.elapsed().as_secs_f64();
    exports.delete(id).await?;
    Ok(seconds)
}

/// What a build child made, as a figure: "1093 MB in 1.8 s".
fn made(built: &Value) -> String {
    format!(
        "{:.0} MB in {:.1} s",
        built["bytes"].as_f64().unwrap_or(0.0) / MB,
        built["seconds"].as_f64().unwrap_or(0.0)
    )
}

/// Writes back every file's pending bytes, so that one step's writes do not slow the next.
fn settle() -> anyhow::Result<()> {
    anyhow::ensure!(Command::new("sync").status()?.success(), "sync failed");
    Ok(())
}

/// Seconds the disk under `dir` takes to write `bytes` into two files, 512 KB at a time, and
/// sync them.
fn disk_seconds(dir: &Path, bytes: u64) -> anyhow::Result<f64> {
    settle()?;
    let block = vec![b'x'; 512 * 1024];
    let names = ["disk-a", "disk-b"];
    let start = Instant::now();
    for (name, share) in names.iter().zip([bytes / 2, bytes - bytes / 2]) {
        let mut file = std::fs::File::create(dir.join(name))?;
        let mut left = share;
        while left > 0 {
            let take = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
            file.write_all(&block[..take])?;
            left -= take as u64;
        }
        file.sync_all()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    for name in names {
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(seconds)
}

/// Builder throughput alone, for a subject of `bytes`.
async fn builder_only(bytes: u64) -> anyhow::Result<()> {
    alone(async |_, _, work, report| {
        let dir = work.join("subject-builder");
        prepare(&dir, bytes).await?;
        let built = run_child(&dir, None)?;
        throughput(&dir, report, &built, bytes).await?;
        report.row(
            &format!("builder peak RSS, {:.0} MB subject", bytes as f64 / MB),
            format!("{:.1} MB", built["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0),
            "64 MB".into(),
            built["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0 / 64.0,
            "flat, <= 64 MB",
            built["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0 <= 64.0,
        );
        Ok(())
    })
    .await
}

/// Serialises the same records with serde_json into a sink: the limit of the builder.
fn serde_limit(bytes: u64) -> anyhow::Result<(u64, Duration)> {
    struct Counting(u64);
    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let account = AccountId::try_from(1)?;
    let records: Vec<Record> = subject(account, bytes).collect::<Vec<_>>();
    let mut sink = std::io::BufWriter::with_capacity(256 * 1024, Counting(0));
    let start = Instant::now();
    for record in &records {
        serde_json::to_writer(&mut sink, record)?;
        sink.write_all(b",")?;
    }
    sink.flush()?;
    let elapsed = start.elapsed();
    Ok((sink.get_ref().0, elapsed))
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// In a child process: builds the export of profile 1 of account 1 in `dir` (to S3 when
/// `s3` is given, the emulator's environment being set) and prints size, time and peak RSS.
async fn build_child(dir: &Path, s3: Option<&str>) -> anyhow::Result<()> {
    let lookup = |name: &str| std::env::var(name).ok();
    let mut local = compose::local(dir, &lookup, Some("http://127.0.0.1:1".into()))?;
    if s3.is_some() {
        let clients = datarequest::adapters::aws::Clients::from_env().await;
        let bucket = std::env::var(datarequest::config::EXPORTS_BUCKET)?;
        let exports = Arc::new(datarequest::adapters::aws::S3Exports::new(clients.s3, bucket));
        local.app = datarequest::compose::rewire(
            &local.app,
            datarequest::compose::Ports { exports, ..datarequest::compose::ports(&local.app) },
        );
    }
    let app: &App = &local.app;
    let account = AccountId::try_from(1)?;
    let id = app
        .submit(account, Subject::Profile(ProfileId::parse("1")?), None, &datarequest::app::Origin::default())
        .await?;
    let baseline = peak_rss_kb();
    let start = Instant::now();
    app.handle_message(id, 1).await?;
    let seconds = start.elapsed().as_secs_f64();
    let request = datarequest::compose::ports(app).requests.get(id).await?.context("request")?;
    anyhow::ensure!(
        request.state == datarequest::domain::State::Built,
        "the build did not finish: {:?}",
        request.state
    );
    let report = datarequest::compose::ports(app)
        .exports
        .open(id, datarequest::ports::ExportFormat::Html)
        .await?
        .map_or(0, |file| file.len);
    println!(
        "{}",
        json!({"bytes": request.available, "report_bytes": report, "seconds": seconds, "peak_rss_kb": peak_rss_kb(), "rss_before_kb": baseline})
    );
    Ok(())
}

/// The JSON alone of the same build (no HTML report), written into the same folder from the
/// same store: what the serde_json limit compares with like for like.
async fn build_json_child(dir: &Path) -> anyhow::Result<()> {
    let lookup = |name: &str| std::env::var(name).ok();
    let local = compose::local(dir, &lookup, Some("http://127.0.0.1:1".into()))?;
    let app: &App = &local.app;
    let account = AccountId::try_from(1)?;
    let id = app
        .submit(account, Subject::Profile(ProfileId::parse("1")?), None, &datarequest::app::Origin::default())
        .await?;
    let request = datarequest::compose::ports(app).requests.get(id).await?.context("request")?;
    let start = Instant::now();
    let writer = datarequest::compose::ports(app).exports.create(id, datarequest::ports::ExportFormat::Json).await?;
    let written = datarequest::export::write_export(
        &*datarequest::compose::ports(app).subjects,
        &*datarequest::compose::ports(app).requests,
        &request,
        writer,
        None,
    )
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    datarequest::compose::ports(app).exports.delete(id).await?;
    println!("{}", json!({"bytes": written.bytes, "seconds": seconds, "peak_rss_kb": peak_rss_kb()}));
    Ok(())
}

fn run_child(dir: &Path, s3_env: Option<&[(String, String)]>) -> anyhow::Result<Value> {
    match s3_env {
        Some(env) => spawn_child(dir, Some("s3"), env),
        None => spawn_child(dir, None, &[]),
    }
}

/// Runs `bench build-child DIR [MODE]` with `env`, once the disk has settled, and returns
/// the figures it prints.
fn spawn_child(dir: &Path, mode: Option<&str>, env: &[(String, String)]) -> anyhow::Result<Value> {
    // The subject was just written: its bytes reach the disk first, not during the build.
    settle()?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("build-child").arg(dir).args(mode).env("RUST_LOG", "warn");
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let output = command.stderr(Stdio::inherit()).output()?;
    anyhow::ensure!(output.status.success(), "the build child failed");
    Ok(serde_json::from_slice(&output.stdout)?)
}

async fn hello() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "Hello, World!" }));
    axum::serve(listener, app).await?;
    Ok(())
}

struct Report {
    rows: Vec<String>,
}

impl Report {
    fn row(&mut self, what: &str, figure: String, limit: String, ratio: f64, goal: &str, met: bool) {
        let line =
            format!("| {what} | {figure} | {limit} | {ratio:.2} | {goal} | {} |", if met { "met" } else { "not yet" });
        println!("{line}");
        self.rows.push(line);
    }

    /// A figure without a goal, shown next to a reference.
    fn figure(&mut self, what: &str, figure: String, reference: String, ratio: f64) {
        let line = format!("| {what} | {figure} | {reference} | {ratio:.2} | (figure only) | |");
        println!("{line}");
        self.rows.push(line);
    }
}

const HEADER: &str = "| benchmark | figure | limit | ratio | goal | |\n|---|---|---|---|---|---|";

/// The folder of the release binaries (this one's), and a fresh work folder.
fn release_and_work() -> anyhow::Result<(PathBuf, PathBuf)> {
    let release = std::env::current_exe()?.parent().map(Path::to_path_buf).context("target dir")?;
    let work = std::env::temp_dir().join(format!("datarequest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    Ok((release, work))
}

async fn load_only() -> anyhow::Result<()> {
    let (release, work) = release_and_work()?;
    let result = load(&release, &work, &mut Report { rows: Vec::new() }).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Runs one benchmark alone: prints the table's header, hands it the repository's root, the
/// release folder, a fresh work folder and a report, and removes the work folder after.
async fn alone(figure: impl AsyncFnOnce(&Path, &Path, &Path, &mut Report) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (release, work) = release_and_work()?;
    println!("{HEADER}");
    let result = figure(&root, &release, &work, &mut Report { rows: Vec::new() }).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn ingest_only(lines: usize, lambda_lines: usize) -> anyhow::Result<()> {
    alone(async |root, release, work, report| ingest::run(root, release, work, report, lines, lambda_lines).await).await
}

async fn mail_only(count: u64, bytes: u64) -> anyhow::Result<()> {
    alone(async |_, _, work, report| mail(work, report, count, bytes, Some(100_000_000)).await).await
}

async fn webhook_only(bytes: u64) -> anyhow::Result<()> {
    alone(async |_, _, work, report| webhook::run(work, report, bytes).await).await
}

async fn faults_only(requests: usize) -> anyhow::Result<()> {
    alone(async |root, release, work, report| faults::run(root, release, work, report, requests).await).await
}

async fn continuations_only(megabytes: u64) -> anyhow::Result<()> {
    alone(async |root, release, work, report| continuations::run(root, release, work, report, megabytes).await).await
}

async fn all() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (release, work) = release_and_work()?;
    let mut report = Report { rows: Vec::new() };
    println!("{HEADER}");

    // Builder throughput and memory.
    // BENCH_SCALE shrinks every subject, to try the benchmark quickly (figures then mean little).
    let scale: f64 = std::env::var("BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let scaled = |bytes: f64| (bytes * scale) as u64;
    let mut memory = Vec::new();
    for (name, bytes) in [("100 MB", scaled(1e8)), ("1 GB", scaled(1e9))] {
        let dir = work.join(format!("subject-{bytes}"));
        let start = Instant::now();
        prepare(&dir, bytes).await?;
        eprintln!("generated the {name} subject in {:.1} s", start.elapsed().as_secs_f64());
        let built = run_child(&dir, None)?;
        let size = built["bytes"].as_f64().unwrap_or(0.0);
        let rss = built["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0;
        memory.push(rss);
        if name == "1 GB" {
            throughput(&dir, &mut report, &built, bytes).await?;
        }
        report.row(
            &format!("builder peak RSS, {name} subject"),
            format!("{rss:.1} MB (export {:.0} MB)", size / MB),
            "64 MB".into(),
            rss / 64.0,
            "flat, <= 64 MB",
            rss <= 64.0,
        );
        if name == "100 MB" {
            // 200 MB through the S3 multipart path, if the emulator is up.
            if let Some(env) = emulator_env(&root)? {
                let dir = work.join("subject-s3");
                prepare(&dir, scaled(2e8)).await?;
                let built = run_child(&dir, Some(&env))?;
                let rss = built["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0;
                report.row(
                    "S3 multipart export, 200 MB, peak RSS",
                    format!("{rss:.1} MB ({})", made(&built)),
                    "64 MB".into(),
                    rss / 64.0,
                    "flat, <= 64 MB",
                    rss <= 64.0,
                );
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    mail(&work, &mut report, BIG_MAILS, scaled(BIG_MAIL_MB as f64 * 1e6), None).await?;
    if let [small, large] = memory[..] {
        report.row(
            "builder RSS growth, 100 MB -> 1 GB",
            format!("{:+.1} MB", large - small),
            "0 MB".into(),
            large / small.max(1.0),
            "flat",
            large - small <= 8.0,
        );
    }

    lambda_start(&root, &release, &mut report).await?;
    load(&release, &work, &mut report).await?;
    let scaled_lines = |lines: usize| ((lines as f64 * scale) as usize).max(1);
    ingest::run(&root, &release, &work, &mut report, scaled_lines(ingest::LINES), scaled_lines(ingest::LAMBDA_LINES))
        .await?;
    webhook::run(&work, &mut report, scaled(webhook::BYTES as f64)).await?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Starts the emulator (idempotent) and provisions a fresh set of resources.
fn emulator_env(root: &Path) -> anyhow::Result<Option<Vec<(String, String)>>> {
    let script = root.join("infra/emulator.sh");
    let started = Command::new(&script).arg("start").stdout(Stdio::null()).status()?;
    if !started.success() {
        eprintln!("the emulator did not start; skipping the S3 and Lambda figures");
        return Ok(None);
    }
    static ROUND: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let round = ROUND.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let suffix = format!("bench{}-{round}", std::process::id());
    let output = Command::new(&script).args(["provision", &suffix]).output()?;
    anyhow::ensure!(output.status.success(), "provisioning failed");
    let text = String::from_utf8(output.stdout)?;
    Ok(Some(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()))
}

async fn lambda_start(root: &Path, release: &Path, report: &mut Report) -> anyhow::Result<()> {
    let Some(env) = emulator_env(root)? else { return Ok(()) };
    let event: Value =
        serde_json::from_str(include_str!("../../functions/core/tests/fixtures/apigw-v2-get-datarequest-status.json"))?;
    for name in ["intake", "status", "builder"] {
        let path = release.join(name);
        anyhow::ensure!(
            path.exists(),
            "{} is missing: build the release binaries (infra/bench.sh does)",
            path.display()
        );
        let mut inits = Vec::new();
        let mut first_invocation = Duration::ZERO;
        for round in 0..20 {
            let function =
                datarequest_tests::runtime::Function::start(&path, env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while function.init_time().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            inits.push(function.init_time().context("the function never asked for work")?);
            if round == 0 && name == "status" {
                let start = Instant::now();
                let _ = function.invoke(event.clone()).await;
                first_invocation = start.elapsed();
            }
        }
        inits.sort();
        let median = inits[inits.len() / 2].as_secs_f64() * 1000.0;
        report.row(
            &format!("Lambda init, `{name}` (median of 20)"),
            format!("{median:.1} ms"),
            "25 ms".into(),
            median / 25.0,
            "<= 25 ms",
            median <= 25.0,
        );
        if name == "status" {
            let ms = first_invocation.as_secs_f64() * 1000.0;
            println!("  first invocation of `status` (a status GET, DynamoDB on the emulator): {ms:.1} ms");
        }
    }
    Ok(())
}

struct Wrk {
    requests_per_second: f64,
    p99_ms: f64,
}

fn wrk(url: &str, extra: &[&str]) -> anyhow::Result<Wrk> {
    let output = Command::new("wrk")
        .args(["-t2", "-c32", "-d8s", "--latency"])
        .args(extra)
        .arg(url)
        .output()
        .context("wrk is missing: apt-get install wrk (infra/bench.sh does)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let requests_per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context("wrk printed no rate")?;
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).map(str::trim).context("wrk printed no p99")?;
    let p99_ms = if let Some(us) = p99.strip_suffix("us") {
        us.parse::<f64>()? / 1000.0
    } else if let Some(ms) = p99.strip_suffix("ms") {
        ms.parse::<f64>()?
    } else {
        p99.trim_end_matches('s').parse::<f64>()? * 1000.0
    };
    // Every answer must be the real one (a 2xx): a rate limit or an error would flatter the rate.
    let failed = text.lines().find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"));
    anyhow::ensure!(failed.is_none(), "{url}: {} answers were not 2xx or 3xx", failed.unwrap_or_default().trim());
    Ok(Wrk { requests_per_second, p99_ms })
}

fn spawn_announcing(mut command: Command, marker: &str) -> anyhow::Result<(std::process::Child, Vec<String>)> {
    use std::io::BufRead;
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let done = line.contains(marker);
        lines.push(line);
        if done {
            return Ok((child, lines));
        }
    }
    anyhow::bail!("the server did not start")
}

async fn load(release: &Path, work: &Path, report: &mut Report) -> anyhow::Result<()> {
    let (mut hello, lines) = spawn_announcing(
        {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("hello");
            c
        },
        "listening on",
    )?;
    let hello_url = lines.last().and_then(|l| l.strip_prefix("listening on ")).context("hello address")?.to_owned();
    let baseline = wrk(&format!("{hello_url}/"), &[]);
    let _ = hello.kill();
    let baseline = baseline?;

    let mut serve = Command::new(release.join("datarequest"));
    serve
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(work.join("load"))
        .env("RUST_LOG", "warn")
        .env(datarequest::config::RATE_LIMIT_PER_MINUTE, "0");
    let (mut server, lines) = spawn_announcing(serve, "Datarequest listening on")?;
    let result = async {
        let url = lines.last().and_then(|l| l.strip_prefix("Datarequest listening on ")).context("address")?.to_owned();
        let token = lines.iter().find_map(|l| l.strip_prefix("TOKEN=")).context("token")?.to_owned();
        let client = reqwest::Client::new();
        let created: Value =
            client.post(format!("{url}/v1/profile/1001/datarequest?access_token={token}")).send().await?.json().await?;
        let id = created["id"].as_u64().context("id")?;
        let auth = format!("Authorization: Bearer {token}");
        let status = wrk(&format!("{url}/v1/datarequest/{id}/status"), &["-H", &auth])?;
        let script = work.join("post.lua");
        std::fs::write(
            &script,
            "wrk.method = \"POST\"\nwrk.body = \"[]\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        )?;
        let intake =
            wrk(&format!("{url}/v1/profile/1001/datarequest"), &["-H", &auth, "-s", script.to_str().context("path")?])?;
        anyhow::Ok((status, intake))
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    let (status, intake) = result?;
    let hello_rate = baseline.requests_per_second;
    println!(
        "  axum hello-world: {hello_rate:.0} req/s, p99 {:.2} ms (wrk -t2 -c32 -d8s, same machine)",
        baseline.p99_ms
    );
    report.row(
        "local server, status GETs",
        format!("{:.0} req/s, p99 {:.2} ms", status.requests_per_second, status.p99_ms),
        format!("hello-world {hello_rate:.0} req/s"),
        status.requests_per_second / hello_rate,
        ">= 0.5 of hello-world",
        status.requests_per_second / hello_rate >= 0.5,
    );
    report.figure(
        "local server, intake POSTs",
        format!("{:.0} req/s, p99 {:.2} ms", intake.requests_per_second, intake.p99_ms),
        format!("hello-world {hello_rate:.0} req/s"),
        intake.requests_per_second / hello_rate,
    );
    Ok(())
}
