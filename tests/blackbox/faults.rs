//! Fault injection on the local server: requests for subjects of mixed sizes, built and
//! delivered while the server is killed (SIGKILL) at random moments and started again, and
//! while the queue hands messages out twice (a held message made visible again, so a second
//! worker takes it while the first still runs). Afterwards no request is lost: every one is
//! delivered, and every export is byte-identical to a build of the same subject without faults.
//! A longer run of the same mix is `bench faults`.

use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::TestApp;
use crate::lifecycle::write_big_subject;

/// A small deterministic generator, so a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Makes every queue message visible at once, held or not: each held one is handed out again.
fn duplicate_held_messages(app: &TestApp) -> usize {
    let db = rusqlite::Connection::open(app.data_dir().join("datarequest.sqlite3")).expect("database");
    db.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    db.execute("UPDATE queue SET visible_at = 0 WHERE receives > 0", []).expect("update")
}

#[tokio::test]
async fn killed_at_random_and_fed_duplicates_no_request_is_lost_and_every_export_is_identical() {
    let seed = std::env::var("FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026_u64);
    let mut rng = Rng(seed);
    let (mut app, account) = TestApp::new(&[("DATAREQUEST_WORKERS", "3")]);
    let big = app.data_dir().join("big.ndjson");
    write_big_subject(&big, 200, 400);
    let output = app.cli(&["import", big.to_str().expect("path")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    app.spawn();

    // The reference: each subject built once, without faults.
    let subjects = ["profile/42", "subprofile/4201", "email/jane.doe@example.com", "profile/77"];
    let mut reference = HashMap::new();
    for subject in subjects {
        let id = app.submit(subject, &account, None).await;
        app.wait_for(id, &account, |s| s["status"] == "available").await;
        reference.insert(subject, app.data(id, &account).await);
    }

    let mut requests = Vec::new();
    let (mut kills, mut duplicated) = (0, 0);
    for round in 0..8 {
        for _ in 0..4 {
            let subject = subjects[usize::try_from(rng.below(subjects.len() as u64)).expect("index")];
            requests.push((subject, app.submit(subject, &account, Some("dpo@customer.example")).await));
        }
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        if rng.below(2) == 0 {
            duplicated += duplicate_held_messages(&app);
            tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
        }
        if round % 2 == 1 || rng.below(3) == 0 {
            app.kill();
            kills += 1;
            app.spawn();
        }
    }
    assert!(kills >= 4, "the run killed the server {kills} times");

    for (subject, id) in &requests {
        let status = app.wait_delivered(*id, &account).await;
        assert_eq!(status["state"], "delivered", "request {id} for {subject} (seed {seed}): {status}");
        let data = app.data(*id, &account).await;
        assert!(data == reference[subject], "request {id} for {subject}: not the reference bytes (seed {seed})");
        assert!(!app.outbox(*id).is_empty(), "request {id}: its mail went out");
    }
    eprintln!("{} requests, {kills} kills, {duplicated} messages handed out twice: none lost", requests.len());
}
