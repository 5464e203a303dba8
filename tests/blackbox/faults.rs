//! Fault injection on the local server (see `datarequest_tests::faults`): a short run of the
//! mix `bench faults` runs long. `FAULTS_SEED` repeats a run.

use datarequest_tests::faults::{Plan, run, write_big_subject};

use crate::helpers::TestApp;

#[tokio::test]
async fn killed_at_random_and_fed_duplicates_no_request_is_lost_and_every_export_is_identical() {
    let seed = std::env::var("FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026_u64);
    let (app, account) = TestApp::new(&[("DATAREQUEST_WORKERS", "3")]);
    let big = app.data_dir().join("big.ndjson");
    write_big_subject(&big, 200, 400);
    let output = app.cli(&["import", big.to_str().expect("path")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let subjects = ["profile/42", "subprofile/4201", "email/jane.doe@example.com", "profile/77"];
    let plan = Plan { rounds: 8, per_round: 4, seed };
    let summary = run(|| app.command(), app.data_dir(), &account.token, &subjects, plan).await;
    assert_eq!(summary.requests, 32);
    assert!(summary.kills >= 4, "the run killed the server {} times", summary.kills);
    eprintln!("{summary:?}: none lost");
}
