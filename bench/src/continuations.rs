//! `bench continuations [MB]`: a subject far larger than one invocation can build (2,000 MB of
//! 5 MB mails by default), built by the release `builder` binary under the emulated Runtime
//! API with a 20 s deadline per invocation, against the AWS emulator. Each invocation stops at
//! a checkpoint before its deadline and queues a continuation, which the next invocation takes.
//! The export in the bucket is compared with the same subject built locally (SQLite and a
//! folder, uninterrupted) by its SHA-256. Prints invocations, throughput and the builder's
//! peak RSS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use datarequest::domain::{AccountId, DataRequest, ProfileId, Record, RequestId, Subject, Timestamp};
use datarequest::ports::{BuildQueue, ExportFormat, ExportStore, SubjectData};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::AsyncReadExt;

use crate::Report;

/// Bytes of each mail.
const MAIL: u64 = 5_000_000;
/// Each invocation's time, as the function would be configured.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Mails loaded at a time.
const CHUNK: u64 = 8;

/// Runs the figure: in a child process with the emulator's environment (the SDK reads it from
/// the process).
pub async fn run(root: &Path, release: &Path, work: &Path, report: &mut Report, megabytes: u64) -> anyhow::Result<()> {
    let builder = release.join("builder");
    anyhow::ensure!(
        builder.exists(),
        "{} is missing: build the release binaries (infra/bench.sh does)",
        builder.display()
    );
    let Some(env) = crate::emulator_env(root)? else { return Ok(()) };
    let output = Command::new(std::env::current_exe()?)
        .args(["continuations-child", &megabytes.to_string()])
        .arg(work)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(output.status.success(), "the continuations run failed");
    let result: Value = serde_json::from_slice(&output.stdout)?;
    let bytes = result["bytes"].as_f64().unwrap_or(0.0);
    let seconds = result["seconds"].as_f64().unwrap_or(1.0);
    let invocations = result["invocations"].as_u64().unwrap_or(0);
    let rss = result["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0;
    let local = result["local_seconds"].as_f64().unwrap_or(1.0);
    let same = result["identical"].as_bool().unwrap_or(false);
    let mb = bytes / crate::MB;
    report.row(
        &format!("`builder` under the Runtime API, {megabytes} MB subject, {}-s invocations", TIMEOUT.as_secs()),
        format!(
            "{invocations} invocations, {:.0} MB/s ({mb:.0} MB in {seconds:.0} s), peak RSS {rss:.1} MB, {}",
            mb / seconds,
            if same { "byte-identical to the local build" } else { "DIFFERS from the local build" }
        ),
        format!("the same subject built locally, uninterrupted: {:.0} MB/s", mb / local),
        (mb / seconds) / (mb / local),
        "completes through continuations, byte-identical",
        same && invocations > 1,
    );
    Ok(())
}

fn records(account: AccountId, from: u64, to: u64) -> Vec<Record> {
    (from..to).map(|n| crate::big_mail(account, n, MAIL)).collect()
}

async fn sha256(mut reader: impl tokio::io::AsyncRead + Unpin) -> anyhow::Result<(String, u64)> {
    let mut hash = sha2::Sha256::new();
    let (mut chunk, mut len) = (vec![0u8; 1 << 20], 0u64);
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        hash.update(&chunk[..n]);
        len += n as u64;
    }
    Ok((format!("{:x}", hash.finalize()), len))
}

/// In the child: loads the subject into the emulator's tables and bucket and into a local
/// SQLite store, queues a request, drives the `builder` binary through its continuations, and
/// prints the figures as JSON.
pub async fn child(megabytes: u64, work: &Path) -> anyhow::Result<()> {
    let mails = (megabytes * 1_000_000).div_ceil(MAIL);
    let (app, queue) = datarequest::compose::aws_from_env().await?;
    // The builder builds only the requests of an account that exists.
    let account = app.create_account().await?.account;
    let local = datarequest::adapters::sqlite::SqliteStore::open(&work.join("continuations.sqlite3"))?;
    let started = Instant::now();
    let profile = crate::subject(account, 0).next().context("a profile")?;
    datarequest::compose::ports(&app).subjects.load(std::slice::from_ref(&profile)).await?;
    local.load(&[profile]).await?;
    for from in (0..mails).step_by(usize::try_from(CHUNK)?) {
        let chunk = records(account, from, (from + CHUNK).min(mails));
        datarequest::compose::ports(&app).subjects.load(&chunk).await?;
        local.load(&chunk).await?;
    }
    eprintln!("  loaded {mails} mails of {MAIL} bytes in {:.0} s", started.elapsed().as_secs_f64());

    // The local, uninterrupted build.
    let subject = Subject::Profile(ProfileId::parse("1")?);
    let request = DataRequest::accepted(RequestId::random(), account, subject.clone(), None, Timestamp::now());
    let folder = datarequest::adapters::folder::FolderExports::new(work.join("continuations-exports"))?;
    let writer = folder.create(request.id, ExportFormat::Json).await?;
    let local_started = Instant::now();
    datarequest::export::write_export(&local, &local, &request, writer, None).await?;
    let local_seconds = local_started.elapsed().as_secs_f64();
    let file = folder.open(request.id, ExportFormat::Json).await?.context("the local export")?;
    let (local_hash, local_len) = sha256(file.reader).await?;
    folder.delete(request.id).await?;
    drop(local);
    let _ = std::fs::remove_file(work.join("continuations.sqlite3"));

    // The same subject through the builder binary, invocation after invocation.
    let request = DataRequest::accepted(RequestId::random(), account, subject, None, Timestamp::now());
    datarequest::compose::ports(&app).requests.insert(&request).await?;
    queue.enqueue(request.id).await?;
    let env: Vec<(String, String)> =
        std::env::vars().filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("DATAREQUEST_")).collect();
    let path = std::env::current_exe()?.parent().context("target dir")?.join("builder");
    let function =
        datarequest_tests::runtime::Function::start(&path, env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).await;
    function.set_timeout(TIMEOUT);
    let queue_url = std::env::var("DATAREQUEST_BUILD_QUEUE_URL")?;
    let sqs = datarequest::adapters::aws::Clients::from_env().await.sqs;
    let started = Instant::now();
    let mut invocations = 0u64;
    let mut slowest = Duration::ZERO;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(1)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await?;
        let Some(message) = received.messages().first() else { break };
        let record = json!({
            "messageId": message.message_id(),
            "receiptHandle": message.receipt_handle(),
            "body": message.body(),
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:build",
            "awsRegion": "us-east-1",
        });
        invocations += 1;
        let (answer, took) = function.invoke_in_time(json!({"Records": [record]})).await;
        slowest = slowest.max(took);
        let answer = answer.map_err(|e| anyhow::anyhow!("the builder failed: {e}"))?;
        anyhow::ensure!(answer == json!({"batchItemFailures": []}), "a message failed: {answer}");
        // As Lambda does after a successful batch.
        if let Some(handle) = message.receipt_handle() {
            sqs.delete_message().queue_url(&queue_url).receipt_handle(handle).send().await?;
        }
        eprintln!("  invocation {invocations}: {:.1} s", took.as_secs_f64());
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_kb = function.peak_rss_kb();
    drop(function);
    let stored = datarequest::compose::ports(&app).requests.get(request.id).await?.context("the request")?;
    anyhow::ensure!(stored.state == datarequest::domain::State::Built, "the request ended {:?}", stored.state);
    let file = datarequest::compose::ports(&app)
        .exports
        .open(request.id, ExportFormat::Json)
        .await?
        .context("the export in the bucket")?;
    let (hash, len) = sha256(file.reader).await?;
    datarequest::compose::ports(&app).exports.delete(request.id).await?;
    eprintln!("  slowest invocation {:.1} s of {} s", slowest.as_secs_f64(), TIMEOUT.as_secs());
    println!(
        "{}",
        json!({
            "bytes": len,
            "seconds": seconds,
            "invocations": invocations,
            "peak_rss_kb": peak_rss_kb,
            "local_seconds": local_seconds,
            "identical": hash == local_hash && len == local_len,
        })
    );
    Ok(())
}
