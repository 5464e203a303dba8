//! `bench faults [REQUESTS]`: the fault-injection run of the black-box tests at length (1,000
//! requests by default) on the release `datarequest` binary: subjects of mixed sizes built and
//! delivered while the server is killed (SIGKILL) at random moments and started again and
//! held queue messages are handed out twice. It fails when a request is lost or an export
//! differs from the reference build of its subject; otherwise it prints the figures.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use datarequest_tests::faults::{Plan, run as run_faults, write_big_subject};

use crate::Report;

/// Requests of a full run.
pub const REQUESTS: usize = 1_000;

/// Runs `requests` requests (in rounds of 4) against a fresh data dir under `work`.
///
/// # Errors
/// When the data dir cannot be set up.
pub async fn run(root: &Path, release: &Path, work: &Path, report: &mut Report, requests: usize) -> anyhow::Result<()> {
    let data = work.join("faults");
    std::fs::create_dir_all(&data)?;
    let command = || {
        let mut command = Command::new(release.join("datarequest"));
        command.env_clear().env("RUST_LOG", "warn").env("DATAREQUEST_WORKERS", "3");
        command.env("DATAREQUEST_DELIVERY_BACKOFF_SECS", "0.1");
        command
    };
    let cli = |args: &[&str]| -> anyhow::Result<Vec<u8>> {
        let output = command().args(args).arg("--data-dir").arg(&data).output()?;
        anyhow::ensure!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        Ok(output.stdout)
    };
    let account: serde_json::Value = serde_json::from_slice(&cli(&["account", "create"])?)?;
    let token = account["token"].as_str().context("a token")?.to_owned();
    let sample = root.join("functions/core/tests/fixtures/subjects-sample.ndjson");
    cli(&["import", sample.to_str().context("path")?])?;
    let big = work.join("big.ndjson");
    write_big_subject(&big, 200, 400);
    cli(&["import", big.to_str().context("path")?])?;

    let subjects = ["profile/42", "subprofile/4201", "email/jane.doe@example.com", "profile/77"];
    let seed = std::env::var("FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026_u64);
    let plan = Plan { rounds: requests.div_ceil(4), per_round: 4, seed, cancel_one_in: 0 };
    let summary = run_faults(command, &data, &token, &subjects, plan).await;
    report.row(
        "fault injection: requests with kills and duplicate messages",
        format!(
            "{} requests, {} kills, {} messages handed out twice, {:.0} s: none lost, every export identical",
            summary.requests,
            summary.kills,
            summary.duplicated,
            summary.elapsed.as_secs_f64()
        ),
        "0 lost, 0 differing".to_owned(),
        0.0,
        "no request lost",
        true,
    );
    Ok(())
}
