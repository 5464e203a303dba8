//! Fault injection on the local server (see `datarequest_tests::faults`): a short run of the
//! mix `bench faults` runs long, cancellations included. `FAULTS_SEED` repeats a run.

use datarequest_tests::faults::{Plan, run, write_big_subject};

use crate::helpers::TestApp;

#[tokio::test]
async fn killed_at_random_fed_duplicates_and_cancelling_some_no_other_request_is_lost_and_every_export_is_identical() {
    let seed = std::env::var("FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026_u64);
    let (app, account) = TestApp::new(&[("DATAREQUEST_WORKERS", "3")]);
    let big = app.data_dir().join("big.ndjson");
    write_big_subject(&big, 200, 400);
    let output = app.cli(&["import", big.to_str().expect("path")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let subjects = ["profile/42", "subprofile/4201", "email/jane.doe@example.com", "profile/77"];
    let plan = Plan { rounds: 8, per_round: 4, seed, cancel_one_in: 4 };
    let summary = run(|| app.command(), app.data_dir(), &account.token, &subjects, plan).await;
    assert_eq!(summary.requests, 32);
    assert!(summary.cancelled >= 4, "the run cancelled {} requests", summary.cancelled);
    assert!(summary.kills >= 4, "the run killed the server {} times", summary.kills);
    eprintln!("{summary:?}: none lost");
}

/// A local build killed mid-way (SIGKILL) goes on from its last checkpoint after the restart:
/// `available` never falls back towards 0 (a build started again would count up from there),
/// and the export is byte for byte that of a build of the same data that was never interrupted.
#[tokio::test]
async fn a_local_build_killed_mid_way_goes_on_from_its_checkpoint() {
    let (mut app, account) = TestApp::new(&[("DATAREQUEST_CHECKPOINT_MB", "1")]);
    let big = app.data_dir().join("big.ndjson");
    write_big_subject(&big, 3_000, 100);
    let output = app.cli(&["import", big.to_str().expect("path")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    app.spawn();

    let id = app.submit("profile/77", &account, None).await;
    let available = |status: &serde_json::Value| status["available"].as_u64().unwrap_or(0);
    let status = app.wait_for(id, &account, |s| available(s) >= 24 << 20 || s["status"] != "pending").await;
    assert_eq!(status["state"], "building", "the build ended before the kill: {status}");
    let before = available(&status);
    app.kill();
    app.spawn();

    let mut lowest = u64::MAX;
    let status = app
        .wait_for(id, &account, |s| {
            lowest = lowest.min(available(s));
            s["status"] != "pending"
        })
        .await;
    assert_eq!(status["state"], "built", "{status}");
    // The checkpoint is at most 1 MiB and one record behind the bytes written, which the
    // status shows late, never early.
    assert!(lowest + (2 << 20) >= before, "the build went back to {lowest} bytes after the kill at {before}");
    let resumed = app.data(id, &account).await;
    let parts = std::fs::read_dir(app.data_dir().join("exports"))
        .expect("exports")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .count();
    assert_eq!(parts, 0, "the checkpointed files became the export");

    let again = app.submit("profile/77", &account, None).await;
    app.wait_for(again, &account, |s| s["status"] != "pending").await;
    let uninterrupted = app.data(again, &account).await;
    assert!(
        resumed == uninterrupted,
        "the resumed export differs ({} against {} bytes)",
        resumed.len(),
        uninterrupted.len()
    );
}
