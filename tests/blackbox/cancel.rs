//! Cancelling requests on the local server (`DELETE /vN/datarequest/{id}`): one waiting for the
//! worker is never built, a long build stops and leaves no file, a delivered one loses its
//! files and its mail, a repeat answers the same, and another account's token cancels nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use datarequest_tests::faults::write_big_subject;

use crate::helpers::{Account, Response, TestApp};

async fn cancel(app: &TestApp, id: u64, account: &Account) -> Response {
    app.request("DELETE", &format!("/v4/datarequest/{id}?access_token={}", account.token), &[], None).await
}

/// Asserts a cancel's answer: `200` with the status of a cancelled request.
fn assert_cancelled(response: &Response, id: u64) -> Value {
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.bytes));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let status = response.json();
    assert_eq!(status["id"], id);
    assert_eq!(
        (&status["status"], &status["state"], &status["reason"], &status["available"]),
        (&json!("not available"), &json!("cancelled"), &json!("cancelled"), &json!(0)),
        "{status}"
    );
    status
}

/// Every file of a request in the data dir: exports, unfinished exports, and the kept mail.
fn files_of(dir: &Path, id: u64) -> Vec<String> {
    let mut found = Vec::new();
    for folder in ["exports", "outbox"] {
        for entry in std::fs::read_dir(dir.join(folder)).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{id}.")) || name.starts_with(&format!(".{id}.")) {
                found.push(format!("{folder}/{name}"));
            }
        }
    }
    found
}

async fn events(app: &TestApp, id: u64, account: &Account) -> Vec<String> {
    let log = app.get(&format!("/v1/datarequest/{id}/log?access_token={}", account.token)).await.json();
    log["log"].as_array().expect("log").iter().map(|e| e["event"].as_str().expect("event").to_owned()).collect()
}

#[tokio::test]
async fn a_request_cancelled_while_it_waits_or_builds_is_never_built_or_delivered_and_leaves_no_file() {
    // One worker, busy with a long build (a 1 MiB checkpoint keeps unfinished files on disk),
    // so the request after it waits in the queue.
    let (mut app, account) = TestApp::new(&[("DATAREQUEST_WORKERS", "1"), ("DATAREQUEST_CHECKPOINT_MB", "1")]);
    let big = app.data_dir().join("big.ndjson");
    write_big_subject(&big, 2_000, 100);
    let output = app.cli(&["import", big.to_str().expect("path")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    app.spawn();

    let long = app.submit("profile/77", &account, Some("dpo@customer.example")).await;
    let waiting = app.submit("profile/42", &account, Some("dpo@customer.example")).await;
    let available = |status: &Value| status["available"].as_u64().unwrap_or(0);
    let status = app.wait_for(long, &account, |s| available(s) >= 4 << 20 || s["status"] != "pending").await;
    assert_eq!(status["state"], "building", "the build ended before the cancel: {status}");
    let before = app.status(waiting, &account).await;
    assert_eq!((&before["state"], &before["records"]), (&json!("accepted"), &Value::Null), "{before}");
    assert!(!files_of(app.data_dir(), long).is_empty(), "the build keeps unfinished files");

    assert_cancelled(&cancel(&app, waiting, &account).await, waiting);
    let cancelled_at = Instant::now();
    let answer = assert_cancelled(&cancel(&app, long, &account).await, long);
    assert_eq!(answer["info"]["type"], "profile");

    // The build stops at its next page and discards its files.
    while !files_of(app.data_dir(), long).is_empty() {
        assert!(cancelled_at.elapsed() < Duration::from_secs(10), "left: {:?}", files_of(app.data_dir(), long));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("the build's files were gone {:?} after the cancel", cancelled_at.elapsed());
    // The worker goes on to the waiting request's message, which finds nothing to do; a new
    // request after it is built, so the worker has passed both.
    let after = app.submit("subprofile/4201", &account, None).await;
    app.wait_for(after, &account, |s| s["state"] == "built").await;
    for id in [long, waiting] {
        assert_eq!(files_of(app.data_dir(), id), Vec::<String>::new(), "request {id} left files");
        assert_cancelled(&app.get(&format!("/v1/datarequest/{id}/status?access_token={}", account.token)).await, id);
        let events = events(&app, id, &account).await;
        assert!(!events.iter().any(|e| e == "built" || e == "delivery"), "{id}: {events:?}");
        assert_eq!(events.iter().filter(|e| *e == "cancelled").count(), 1, "{events:?}");
    }
    assert!(!events(&app, waiting, &account).await.contains(&"build_started".to_owned()), "never built");
    let export = app.get(&format!("/v1/datarequest/{long}/data?access_token={}", account.token)).await;
    assert_eq!(export.status, 404);
    app.kill();
}

#[tokio::test]
async fn a_delivered_request_cancelled_loses_its_files_and_its_mail_and_a_repeat_answers_the_same() {
    let (app, account) = TestApp::start(&[]);
    let id = app.submit("profile/42", &account, Some("dpo@customer.example")).await;
    app.wait_delivered(id, &account).await;
    let mut before = files_of(app.data_dir(), id);
    before.sort();
    assert_eq!(before, [format!("exports/{id}.html"), format!("exports/{id}.json"), format!("outbox/{id}.eml")]);

    let first = cancel(&app, id, &account).await;
    let answer = assert_cancelled(&first, id);
    assert_eq!(files_of(app.data_dir(), id), Vec::<String>::new());
    assert_eq!(answer["delivery"], json!({"status": "none"}), "the report address is gone");
    assert_eq!(answer["records"], Value::Null, "no counts without a file");
    let request = app.get(&format!("/v1/datarequest/{id}?access_token={}", account.token)).await;
    assert_eq!(request.json()["data"], "Data not available");
    let again = cancel(&app, id, &account).await;
    assert_eq!((again.status, again.json()), (200, first.json()), "a repeat answers the same");

    let log = app.get(&format!("/v1/datarequest/{id}/log?access_token={}", account.token)).await.json();
    let cancelled: Vec<&Value> =
        log["log"].as_array().expect("log").iter().filter(|e| e["event"] == "cancelled").collect();
    assert_eq!(cancelled.len(), 1, "recorded once: {log}");
    let token = sha2_hex(&account.token);
    assert_eq!(cancelled[0]["account"], account.id);
    assert_eq!(cancelled[0]["version"], "v4");
    assert_eq!(cancelled[0]["token"], json!(&token[..12]), "the token's short id, never the token");
    assert!(!log.to_string().contains(&account.token));
    assert!(cancelled[0]["at"].as_str().is_some_and(|at| at.len() == 19), "when: {}", cancelled[0]);
}

fn sha2_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn another_accounts_token_or_a_revoked_one_cancels_nothing() {
    let (app, account) = TestApp::start(&[]);
    let id = app.submit("profile/42", &account, None).await;
    app.wait_for(id, &account, |s| s["state"] == "built").await;
    let stranger = app.create_account();

    let foreign = cancel(&app, id, &stranger).await;
    let unknown = cancel(&app, 1_234_567_890_123_456, &stranger).await;
    for response in [&foreign, &unknown] {
        assert_eq!(response.status, 400);
        assert_eq!(response.json(), json!({"error": {"message": "No entity with supplied ID"}}));
    }
    assert_eq!(foreign.bytes, unknown.bytes, "another account's id answers exactly like an unknown one");

    // A token revoked a moment ago, which a read has just used: the cancel checks the store.
    let added: Value =
        serde_json::from_slice(&app.cli(&["account", "token", "add", "--account", &account.id.to_string()]).stdout)
            .expect("token JSON");
    let second = Account { token: added["token"].as_str().expect("token").to_owned(), ..account.clone() };
    assert_eq!(app.status(id, &second).await["state"], "built");
    let revoked = app.cli(&["account", "token", "revoke", "--account", &account.id.to_string(), &second.token]);
    assert!(revoked.status.success());
    crate::helpers::assert_refused_token(&cancel(&app, id, &second).await);

    assert_eq!(app.status(id, &account).await["state"], "built", "left alone");
    assert!(!files_of(app.data_dir(), id).is_empty());
}
