//! `POST /ingest` stores a whole body or nothing of it on the local store: the server is killed
//! (SIGKILL) at random moments while it takes a large body, started again on the same data
//! dir, and the database then holds every line of the body or none. `INGEST_KILL_SEED`
//! repeats a run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Lines in each body: one profile and its events.
const LINES: u64 = 12_000;
/// Kills, spread over one and a half times the time a POST takes.
const KILLS: u64 = 24;

/// A body of a profile and `LINES - 1` events of it, about 400 bytes each: every round posts a
/// profile of its own, so what an earlier round stored is not counted again.
fn body(profile: u64) -> String {
    let mut body = String::with_capacity(usize::try_from(LINES).unwrap_or(0) * 420);
    let line = json!({"kind":"profile","account":1,"id":profile,"database":1,"email":"kill@example.net",
        "created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"});
    body.push_str(&format!("{line}\n"));
    let padding = "p".repeat(300);
    for n in 1..LINES {
        let line = json!({"kind":"event","account":1,"type":"survey","profile":profile,
            "time":"2025-01-01 00:00:00","data":{"n":n,"padding":padding}});
        body.push_str(&format!("{line}\n"));
    }
    body
}

/// The lines of the round's body the database holds, read from the file while no server runs.
fn stored(app: &TestApp, profile: u64) -> u64 {
    let path = app.data_dir().join("datarequest.sqlite3");
    let connection = rusqlite::Connection::open(&path).expect("open the database");
    let count = |sql: &str| -> u64 {
        connection.query_row(sql, [i64::try_from(profile).expect("id")], |row| row.get(0)).expect("count")
    };
    count("SELECT COUNT(*) FROM profiles WHERE account = 1 AND id = ?1")
        + count("SELECT COUNT(*) FROM events WHERE account = 1 AND profile = ?1")
}

async fn post(client: reqwest::Client, url: String, key: String, body: String) -> Result<(u16, Value), String> {
    let response = client
        .post(format!("{url}/ingest"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let json = response.json().await.map_err(|e| e.to_string())?;
    Ok((status, json))
}

/// A small generator for the kill times (xorshift): enough to spread them, and repeatable.
struct Seeded(u64);

impl Seeded {
    /// A number in `[0, 1)`.
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::test]
async fn a_body_killed_at_any_moment_of_its_post_is_stored_whole_or_not_at_all() {
    let seed = std::env::var("INGEST_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    let (mut app, _account) = TestApp::new(&[]);
    let output = app.cli(&["ingest-key", "create"]);
    assert!(output.status.success(), "ingest-key create: {}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("ingest-key JSON");
    let key = printed["ingest_key"].as_str().expect("ingest_key").to_owned();
    app.spawn();

    // How long a POST of such a body takes here, uninterrupted.
    let first = 9_000;
    let started = Instant::now();
    let answer = post(app.client.clone(), app.url.clone(), key.clone(), body(first)).await;
    let took = started.elapsed();
    assert_eq!(answer.as_ref().map(|(status, _)| *status), Ok(200), "{answer:?}");
    app.kill();
    assert_eq!(stored(&app, first), LINES);
    eprintln!("a POST of {LINES} lines ({} bytes) takes {took:?}; seed {seed}", body(first).len());

    let mut random = Seeded(seed);
    let (mut none, mut all, mut answered) = (0, 0, 0);
    for round in 0..KILLS {
        let profile = first + 1 + round;
        let body = body(profile);
        app.spawn();
        // One kill in each sixteenth of the POST's time, the last third of them after it
        // (a freshly started server may take longer than the measured POST).
        let at = took.mul_f64((round as f64 + random.next()) / 16.0);
        let posting = tokio::spawn(post(app.client.clone(), app.url.clone(), key.clone(), body));
        tokio::time::sleep(at).await;
        app.kill();
        let answer =
            tokio::time::timeout(Duration::from_secs(30), posting).await.expect("the POST ends").expect("task");

        let count = stored(&app, profile);
        assert!(count == 0 || count == LINES, "killed after {at:?}: {count} of {LINES} lines stored (seed {seed})");
        if let Ok((status, _)) = &answer {
            answered += 1;
            assert_eq!(*status, 200, "{answer:?}");
            assert_eq!(count, LINES, "answered 200, yet not all stored (seed {seed})");
        }
        if count == 0 { none += 1 } else { all += 1 }
    }
    eprintln!("{KILLS} kills: {none} stored nothing, {all} everything ({answered} answered before the kill)");
    assert!(none > 0, "no kill came before the body was stored: the kills are not spread over the POST");
}
