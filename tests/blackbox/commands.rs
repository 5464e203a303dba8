//! The operator's commands beside `account` and `import`: `ingest-key create` and `erase`, run
//! as the real binary on a data dir and checked through the real HTTP API.

use serde_json::{Value, json};

use crate::helpers::{Account, Response, TestApp, assert_unknown, request_data};

/// POSTs a data request for a subject path like `profile/42`.
/// Asserts that a data request for `subject` is accepted (the subject exists).
async fn assert_known(app: &TestApp, account: &Account, subject: &str) {
    let response = request_data(app, account, subject).await;
    assert_eq!(response.status, 201, "{subject}: {}", String::from_utf8_lossy(&response.bytes));
}

/// Runs a command that must succeed and print one JSON line.
fn run_json(app: &TestApp, args: &[&str]) -> Value {
    let output = app.cli(args);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    serde_json::from_str(&stdout).expect("JSON")
}

/// Everything the store keeps on disk: the database and its journal files.
fn database_bytes(app: &TestApp) -> Vec<u8> {
    let main = app.data_dir().join("datarequest.sqlite3");
    assert!(main.is_file(), "{} is missing", main.display());
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(app.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.starts_with("datarequest.sqlite3") {
            bytes.extend(std::fs::read(&path).expect("read the database"));
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

async fn ingest(app: &TestApp, key: &str) -> Response {
    let line = r#"{"kind":"profile","account":1,"id":77,"database":1,"created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"}"#;
    let bearer = format!("Bearer {key}");
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/x-ndjson")];
    app.request("POST", "/ingest", &headers, Some(line.as_bytes())).await
}

#[tokio::test]
async fn ingest_key_create_prints_a_new_working_key_each_time_and_stores_it_only_hashed() {
    let (mut app, account) = TestApp::new(&[]);

    let first = run_json(&app, &["ingest-key", "create"]);
    let second = run_json(&app, &["ingest-key", "create"]);

    let keys: Vec<String> = [&first, &second]
        .iter()
        .map(|printed| {
            assert_eq!(printed.as_object().map(|o| o.len()), Some(1), "only the key: {printed}");
            printed["ingest_key"].as_str().expect("ingest_key").to_owned()
        })
        .collect();
    assert!(keys[0].len() >= 32, "a key long enough not to be guessed: {}", keys[0]);
    assert_ne!(keys[0], keys[1], "two calls give two keys");
    let database = database_bytes(&app);
    for key in &keys {
        assert!(!contains(&database, key.as_bytes()), "the key is stored in clear");
    }
    app.spawn();
    for key in &keys {
        let response = ingest(&app, key).await;
        assert_eq!(response.status, 200, "the printed key opens /ingest: {}", String::from_utf8_lossy(&response.bytes));
    }
    assert_eq!(ingest(&app, &account.token).await.status, 401, "an account's token is no ingest key");
    assert_known(&app, &account, "profile/77").await;
}

#[tokio::test]
async fn erase_with_no_subject_or_with_two_is_a_usage_error_and_erases_nothing() {
    let (app, account) = TestApp::start(&[]);
    let cases: [&[&str]; 4] = [
        &["erase", "--account", "1"],
        &["erase", "--account", "1", "--profile", "42", "--subprofile", "4201"],
        &["erase", "--account", "1", "--profile", "42", "--email", "jane.doe@example.com"],
        &["erase", "--account", "1", "--subprofile", "4201", "--email", "jane@work.example"],
    ];

    for args in cases {
        let output = app.cli(args);

        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?} printed {}", String::from_utf8_lossy(&output.stdout));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--profile") && stderr.contains("Usage:"), "{args:?}: {stderr}");
    }
    assert_known(&app, &account, "profile/42").await;
    assert_known(&app, &account, "subprofile/4201").await;
}

#[tokio::test]
async fn erase_with_a_bad_value_names_the_option_and_erases_nothing() {
    let (app, account) = TestApp::start(&[]);
    let cases: [(&[&str], &str); 5] = [
        (&["erase", "--account", "0", "--profile", "42"], "--account"),
        (&["erase", "--account", "one", "--profile", "42"], "--account"),
        (&["erase", "--account", "1", "--profile", "042"], "--profile"),
        (&["erase", "--account", "1", "--subprofile", "4201x"], "--subprofile"),
        (&["erase", "--account", "1", "--email", "jane.doe at example.com"], "--email"),
    ];

    for (args, option) in cases {
        let output = app.cli(args);

        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("invalid value") && stderr.contains(option), "{args:?}: {stderr}");
    }
    assert_known(&app, &account, "profile/42").await;
    assert_known(&app, &account, "subprofile/4201").await;
}

#[tokio::test]
async fn erasing_a_profile_makes_it_and_its_subprofiles_unknown_to_the_api() {
    let (app, account) = TestApp::start(&[]);
    assert_known(&app, &account, "profile/42").await;

    let printed = run_json(&app, &["erase", "--account", "1", "--profile", "42"]);

    assert_eq!(printed, json!({"erased": {"account": 1, "profile": 42}}));
    assert_unknown(&app, &account, "profile/42").await;
    assert_unknown(&app, &account, "subprofile/4201").await;
}

#[tokio::test]
async fn erasing_a_subprofile_leaves_its_profile() {
    let (app, account) = TestApp::start(&[]);
    assert_known(&app, &account, "subprofile/4201").await;

    let printed = run_json(&app, &["erase", "--account", "1", "--subprofile", "4201"]);

    assert_eq!(printed, json!({"erased": {"account": 1, "subprofile": 4201}}));
    assert_unknown(&app, &account, "subprofile/4201").await;
    assert_known(&app, &account, "profile/42").await;
}

#[tokio::test]
async fn erasing_an_address_erases_the_subprofile_whose_address_it_is() {
    let (app, account) = TestApp::start(&[]);

    let printed = run_json(&app, &["erase", "--account", "1", "--email", "jane@work.example"]);

    assert_eq!(printed, json!({"erased": {"account": 1, "email": "jane@work.example"}}));
    assert_unknown(&app, &account, "subprofile/4201").await;
    assert_known(&app, &account, "profile/42").await;
}

#[tokio::test]
async fn erasing_in_another_account_leaves_this_accounts_subject_alone() {
    let (app, account) = TestApp::start(&[]);

    let printed = run_json(&app, &["erase", "--account", "2", "--profile", "42"]);

    assert_eq!(printed, json!({"erased": {"account": 2, "profile": 42}}));
    assert_known(&app, &account, "profile/42").await;
    assert_known(&app, &account, "subprofile/4201").await;
}
