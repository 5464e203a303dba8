//! Erasure reaches the disk: after an erasure, an account's deletion or an export's expiry, no
//! byte of what went remains in any file under the data dir (the SQLite database and its
//! write-ahead log, the exports, the outbox).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Account, TestApp};

/// Strings that appear only in the erased subject's data.
const MARKER: &str = "Zq7Erasure-Marker-9f3c";
const ADDRESS: &str = "marker-9f3c@erasure.example";
const SUB_ADDRESS: &str = "sub-marker-9f3c@erasure.example";
const REPORT: &str = "dpo-9f3c@receiver.example";

/// A profile with a subprofile, messages of both with the marker in their MIME, and events of
/// both with the marker in their data, in `account`.
fn subject_lines(account: u64) -> String {
    let at = "2025-02-03 04:05:06";
    let mime = |who: &str| {
        format!("From: shop@example.com\r\nTo: {who}\r\nSubject: {MARKER}\r\n\r\nHello {MARKER}, {who}\r\n")
    };
    [
        json!({"kind":"profile","account":account,"id":9100,"database":1,"email":ADDRESS,
               "fields":{"note":MARKER},"created":at,"modified":at}),
        json!({"kind":"subprofile","account":account,"id":9101,"profile":9100,"collection":1,"email":SUB_ADDRESS,
               "fields":{"note":MARKER},"created":at,"modified":at}),
        json!({"kind":"message","account":account,"id":"m-9100","profile":9100,"subprofile":null,"email":ADDRESS,
               "mailing":"1","subject":MARKER,"sent":at,"mime":mime(ADDRESS)}),
        json!({"kind":"message","account":account,"id":"m-9101","profile":9100,"subprofile":9101,"email":SUB_ADDRESS,
               "mailing":"1","subject":MARKER,"sent":at,"mime":mime(SUB_ADDRESS)}),
        json!({"kind":"event","account":account,"type":"click","message":"m-9100","profile":9100,"subprofile":null,
               "email":ADDRESS,"time":at,"data":{"url":format!("https://shop.example/{MARKER}")}}),
        json!({"kind":"event","account":account,"type":"impression","message":"m-9101","profile":9100,"subprofile":9101,
               "email":SUB_ADDRESS,"time":at,"data":{"useragent":MARKER}}),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect()
}

fn import(app: &TestApp, account: u64) {
    let file = app.data_dir().join("marker.ndjson");
    std::fs::write(&file, subject_lines(account)).expect("writes the lines");
    let output = app.cli(&["import", file.to_str().expect("path")]);
    assert!(output.status.success(), "import: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::remove_file(&file).expect("removes the lines");
}

/// Every file under `dir` that holds one of `needles` (case-insensitively), with the needle.
fn files_holding(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("reads the folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let text = bytes.to_ascii_lowercase();
            for needle in needles {
                let needle = needle.to_ascii_lowercase();
                if text.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(format!("{} holds {needle}", path.display()));
                }
            }
        }
    }
    hits
}

/// Builds and delivers a profile export and an e-mail export of the marked subject, and
/// checks that the marker is on disk before anything is erased (so the search can find it).
async fn deliver_both(app: &TestApp, account: &Account) -> (u64, u64) {
    let by_profile = app.submit("profile/9100", account, Some(REPORT)).await;
    let by_address = app.submit(&format!("email/{ADDRESS}"), account, Some(REPORT)).await;
    for id in [by_profile, by_address] {
        let status = app.wait_delivered(id, account).await;
        assert_eq!(status["state"], "delivered", "{status}");
    }
    let before = files_holding(app.data_dir(), &[MARKER, ADDRESS, REPORT]);
    assert!(before.iter().any(|hit| hit.contains("outbox")), "the mails hold the subject: {before:?}");
    assert!(before.iter().any(|hit| hit.contains("exports")), "the exports hold the subject: {before:?}");
    (by_profile, by_address)
}

#[tokio::test]
async fn erasing_a_subject_leaves_no_byte_of_it_in_any_file_of_the_data_dir() {
    let (mut app, account) = TestApp::new(&[]);
    import(&app, account.id);
    app.spawn();
    let (by_profile, by_address) = deliver_both(&app, &account).await;

    for args in [["--profile", "9100"], ["--email", ADDRESS]] {
        let output = app.cli(&["erase", "--account", "1", args[0], args[1]]);
        assert!(output.status.success(), "erase: {}", String::from_utf8_lossy(&output.stderr));
    }

    let left = files_holding(app.data_dir(), &[MARKER, ADDRESS, SUB_ADDRESS, REPORT]);
    assert!(left.is_empty(), "erased data is still on disk: {left:?}");
    for id in [by_profile, by_address] {
        let status = app.status(id, &account).await;
        assert_eq!(status["status"], "not available", "{status}");
    }
    // Another subject's export is untouched.
    let other = app.submit("profile/42", &account, None).await;
    app.wait_for(other, &account, |s| s["status"] == "available").await;
}

#[tokio::test]
async fn deleting_an_account_leaves_no_byte_of_its_data_in_any_file_of_the_data_dir() {
    let (mut app, _) = TestApp::new(&[]);
    let second = app.create_account();
    import(&app, second.id);
    app.spawn();
    deliver_both(&app, &second).await;

    let output = app.cli(&["account", "delete", "--account", &second.id.to_string()]);
    assert!(output.status.success(), "account delete: {}", String::from_utf8_lossy(&output.stderr));

    let left = files_holding(app.data_dir(), &[MARKER, ADDRESS, SUB_ADDRESS, REPORT]);
    assert!(left.is_empty(), "the deleted account's data is still on disk: {left:?}");
}

#[tokio::test]
async fn an_account_deleted_in_the_background_is_refused_at_once_and_erased_by_the_servers_sweep() {
    let (mut app, _) = TestApp::new(&[]);
    let second = app.create_account();
    import(&app, second.id);
    app.spawn();
    deliver_both(&app, &second).await;

    let output = app.cli(&["account", "delete", "--account", &second.id.to_string(), "--background"]);
    assert!(output.status.success(), "account delete: {}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(answer, serde_json::json!({"deleted": second.id, "erased": false}));
    crate::helpers::assert_refused_token(&crate::helpers::request_data(&app, &second, "profile/42").await);

    // The server's sweep runs every five seconds.
    let start = Instant::now();
    loop {
        let left = files_holding(app.data_dir(), &[MARKER, ADDRESS, SUB_ADDRESS, REPORT]);
        if left.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the deleted account's data is still on disk: {left:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("erased by the sweep {} ms after the command", start.elapsed().as_millis());
}

#[tokio::test]
async fn an_expired_export_leaves_neither_its_files_nor_its_mail_nor_its_report_address() {
    // Exports are kept for about two seconds.
    let (mut app, account) = TestApp::new(&[("DATAREQUEST_EXPORT_TTL_DAYS", "0.00002")]);
    app.spawn();
    let report = "expiry-report-5d1e@receiver.example";
    let id = app.submit("profile/42", &account, Some(report)).await;
    app.wait_delivered(id, &account).await;
    assert!(!files_holding(app.data_dir(), &[report]).is_empty(), "the report address is on disk at first");

    let start = Instant::now();
    loop {
        let left = files_holding(app.data_dir(), &[report]);
        let outbox = app.data_dir().join("outbox").join(format!("{id}.eml"));
        let exports = std::fs::read_dir(app.data_dir().join("exports")).expect("exports").count();
        if left.is_empty() && !outbox.exists() && exports == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "30 s after the expiry: {left:?}, mail kept: {}, export files: {exports}",
            outbox.exists()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = app.status(id, &account).await;
    assert_eq!(status["status"], "not available", "{status}");
}
