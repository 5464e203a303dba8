//! The life of a request around the process: a restart in the middle of a build, expiry, the
//! import command and the demo.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use datarequest_tests::faults::write_big_subject;

use crate::helpers::{TestApp, binary, section};

#[tokio::test]
async fn a_request_interrupted_by_a_crash_is_built_after_the_restart() {
    let (mut app, account) = TestApp::new(&[]);
    let big = app.data_dir().join("big.ndjson");
    write_big_subject(&big, 1200, 1500);
    let output = app.cli(&["import", big.to_str().expect("path")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    app.spawn();

    let id = app.submit("profile/77", &account, Some("dpo@customer.example")).await;
    let seen = app.wait_for(id, &account, |s| s["state"] == "building" && s["available"].as_u64() > Some(0)).await;
    assert_eq!(seen["status"], "pending");
    app.kill();
    let exports = app.data_dir().join("exports");
    assert!(!exports.join(format!("{id}.json")).exists(), "no export is visible before it is complete");

    app.spawn();
    let status = app.wait_delivered(id, &account).await;
    assert_eq!(status["state"], "delivered");
    let data = app.data(id, &account).await;
    assert_eq!(status["available"].as_u64(), Some(data.len() as u64));
    let export: serde_json::Value = serde_json::from_slice(&data).expect("a complete JSON export");
    let destinations = section(&export, "destinations").expect("destinations");
    assert_eq!(destinations.len(), 1200);
    assert_eq!(destinations[1199]["ID"], "m-01199");
    assert_eq!(section(&export, "impressions").expect("impressions").len(), 1500);
    let leftovers: Vec<_> = std::fs::read_dir(&exports)
        .expect("exports")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "the killed build's part file was cleaned up");
    assert!(app.data_dir().join("outbox").join(format!("{id}.eml")).exists());
}

#[tokio::test]
async fn an_export_expires_its_file_is_deleted_and_the_status_says_not_available() {
    // 0.00003 days is about 2.6 seconds.
    let (app, account) = TestApp::start(&[("DATAREQUEST_EXPORT_TTL_DAYS", "0.00003")]);
    let id = app.submit("profile/42", &account, None).await;
    let status = app.wait_for(id, &account, |s| s["status"] == "available").await;
    assert!(status["expires"].is_string());
    let file = app.data_dir().join("exports").join(format!("{id}.json"));
    let report = file.with_extension("html");
    assert!(file.exists() && report.exists());

    let status = app.wait_for(id, &account, |s| s["status"] == "not available").await;
    assert_eq!(status["state"], "expired");
    assert_eq!(status["available"], 0);
    assert!(!file.exists(), "the file is deleted");
    assert!(!report.exists(), "and so is its HTML report");
    let data = app.get(&format!("/v1/datarequest/{id}/data?access_token={}", account.token)).await;
    assert_eq!(data.status, 404);
    assert_eq!(data.json()["error"]["message"], "Data not available");
    assert_eq!(data.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn while_a_request_is_pending_the_request_itself_says_data_not_available_yet() {
    let (mut app, account) = TestApp::new(&[]);
    app.spawn();
    // Stop the worker from getting to it: kill the server right after the request is stored.
    let id = app.submit("subprofile/4201", &account, None).await;
    app.kill();
    let db_state = app.cli(&["account", "create"]);
    assert!(db_state.status.success());
    app.spawn();
    let status = app.wait_for(id, &account, |s| s["status"] == "available").await;
    assert_eq!(status["info"], serde_json::json!({"type": "subprofile", "id": 4201}));
    let export = app.get(&format!("/v3/datarequest/{id}?access_token={}", account.token)).await;
    assert_eq!(export.status, 200);
    assert_eq!(export.header("content-type"), Some("application/json"));
    assert_eq!(export.json()["info"]["type"], "subprofile");
}

#[tokio::test]
async fn an_import_with_a_bad_line_names_it_and_loads_nothing() {
    let (app, account) = TestApp::start(&[]);
    let file = app.data_dir().join("bad.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"kind":"profile","account":1,"id":500,"database":1,"created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"}"#,
            "\n\n",
            r#"{"kind":"profile","account":1,"id":501,"database":1,"created":"yesterday","modified":"2024-01-01 00:00:00"}"#,
            "\n"
        ),
    )
    .expect("write");
    let output = app.cli(&["import", file.to_str().expect("path")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3") && stderr.contains("nothing was loaded"), "{stderr}");
    let path = format!("/v1/profile/500/datarequest?access_token={}", account.token);
    let response = app.request("POST", &path, &[], None).await;
    assert_eq!(response.json()["error"]["message"], "No entity with supplied ID", "line 1 was not loaded either");

    let good = app.data_dir().join("good.ndjson");
    let lines: Vec<&str> =
        std::fs::read_to_string(crate::helpers::SAMPLE).map(|s| s.leak().lines().collect()).expect("sample");
    std::fs::write(&good, lines[..3].join("\n")).expect("write");
    let output = app.cli(&["import", good.to_str().expect("path")]);
    assert!(output.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("summary JSON");
    assert_eq!(
        summary,
        serde_json::json!({"loaded": {"profiles": 1, "subprofiles": 1, "messages": 1, "events": 0, "erased": 0, "skipped": 0}})
    );
}

#[tokio::test]
async fn the_demo_prints_a_token_and_commands_that_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(binary("datarequest"))
        .env_clear()
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve --demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut token = None;
    let mut url = None;
    let mut post = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(t) = line.strip_prefix("TOKEN=") {
            token = Some(t.to_owned());
        }
        if line.starts_with("ID=$(curl -s -X POST") {
            post = Some(line.clone());
        }
        if let Some(u) = line.strip_prefix("Datarequest listening on ") {
            url = Some(u.to_owned());
            break;
        }
    }
    let (token, url, post) = (token.expect("a token"), url.expect("an address"), post.expect("a POST command"));
    assert!(post.contains(&format!("{url}/v3/profile/1001/datarequest?access_token=$TOKEN")), "{post}");
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{url}/v3/profile/1001/datarequest?access_token={token}"))
        .header("content-type", "application/json")
        .body(r#"{"report":"dpo@example.com"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.expect("JSON")["id"].as_u64().expect("id");
    let mut status = serde_json::Value::Null;
    for _ in 0..500 {
        status = client
            .get(format!("{url}/v3/datarequest/{id}/status?access_token={token}"))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        if status["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status["state"], "delivered", "{status}");
    let _ = child.kill();
    let _ = child.wait();
}
