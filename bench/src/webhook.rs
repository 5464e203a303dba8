//! `bench webhook`: web delivery of a large export. A 200 MB export file goes through
//! `HttpWebDelivery`, with the default idle timeout, to a receiver on loopback that reads at
//! 5 MB/s; the figure is the delivery's pace against the receiver's. The delivery runs in a
//! child process (`bench webhook-child URL FILE`), so its peak RSS is its own; the receiver, in
//! this process, checks the body arrived byte for byte.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use datarequest::adapters::webhook::HttpWebDelivery;
use datarequest::config::DEFAULT_WEBHOOK_TIMEOUT_SECS;
use datarequest::domain::{WebAddress, WebPolicy};
use datarequest::ports::{ExportFile, WebDelivery, WebhookHeaders};
use datarequest_tests::receiver::{Behaviour, SlowReceiver};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Lcg, MB, Report, peak_rss_kb};

/// The export's size.
pub const BYTES: u64 = 200_000_000;
/// The receiver's pace, in bytes per second.
const RATE: u64 = 5_000_000;

/// Writes `bytes` of pseudo-random export to `path`; returns its SHA-256.
fn write_export(path: &Path, bytes: u64) -> anyhow::Result<[u8; 32]> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).context("creating the export")?);
    let mut hash = Sha256::new();
    let mut rng = Lcg(7);
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for word in block.chunks_mut(4) {
            let value = u32::try_from(rng.next() & 0xffff_ffff).unwrap_or(0).to_le_bytes();
            word.copy_from_slice(&value[..word.len()]);
        }
        let n = usize::try_from(left.min(block.len() as u64))?;
        file.write_all(&block[..n])?;
        hash.update(&block[..n]);
        left -= n as u64;
    }
    file.flush()?;
    Ok(hash.finalize().into())
}

/// In a child process: POSTs the file at `path` to `url` and prints the status, time and peak
/// RSS.
pub async fn child(url: &str, path: &Path) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(DEFAULT_WEBHOOK_TIMEOUT_SECS);
    let delivery = HttpWebDelivery::new(WebPolicy::AllowPrivate, timeout)?;
    let target = WebAddress::parse(url, WebPolicy::AllowPrivate)?;
    let headers = WebhookHeaders::standard("1".into(), 1_700_000_000, "v1,bench".into());
    let file = tokio::fs::File::open(path).await.context("opening the export")?;
    let export = ExportFile { len: file.metadata().await?.len(), reader: Box::pin(file) };
    let before = peak_rss_kb();
    let start = Instant::now();
    let status = delivery.post(&target, &headers, export).await?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"status": status, "seconds": seconds, "peak_rss_kb": peak_rss_kb(), "rss_before_kb": before})
    );
    Ok(())
}

/// Delivers an export of `bytes` to a receiver reading at 5 MB/s and reports the figure.
pub async fn run(work: &Path, report: &mut Report, bytes: u64) -> anyhow::Result<()> {
    let path = work.join("webhook-export.json");
    let digest = write_export(&path, bytes)?;
    let receiver = SlowReceiver::start(Some(RATE), Behaviour::Answer).await;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("webhook-child").arg(&receiver.url).arg(&path).env("RUST_LOG", "warn").stderr(Stdio::inherit());
    // Waited for off the runtime, which keeps the receiver reading meanwhile.
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let _ = std::fs::remove_file(&path);
    anyhow::ensure!(output.status.success(), "the delivery child failed");
    let posted: Value = serde_json::from_slice(&output.stdout)?;
    anyhow::ensure!(posted["status"] == 200, "the receiver answered {}", posted["status"]);
    let seen = receiver.seen();
    anyhow::ensure!(seen.bytes == bytes && seen.sha256 == Some(digest), "the body did not arrive whole");

    let seconds = posted["seconds"].as_f64().unwrap_or(f64::MAX);
    let rss = posted["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0;
    let pace = bytes as f64 / MB / seconds;
    let limit = RATE as f64 / MB;
    report.row(
        &format!("web delivery, {:.0} MB export to a receiver reading at {limit:.0} MB/s", bytes as f64 / MB),
        format!("{pace:.2} MB/s ({:.0} MB in {seconds:.1} s), peak RSS {rss:.1} MB", bytes as f64 / MB),
        format!("the receiver's pace: {limit:.0} MB/s"),
        pace / limit,
        "delivered, >= 0.9 of the pace",
        pace / limit >= 0.9,
    );
    println!("  idle timeout {DEFAULT_WEBHOOK_TIMEOUT_SECS} s (the default); the body arrived byte for byte");
    Ok(())
}
