//! An export whose every section is empty (an address nobody ever mailed): the JSON keeps its
//! empty sections, and the HTML report and the delivery mail open with one plain sentence,
//! which an export holding a record never shows. The status gives each section's record count.

use mail_parser::MessageParser;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const NOTHING: &str = "We hold no data about this subject.";

#[tokio::test]
async fn an_empty_e_mail_export_says_we_hold_no_data_in_its_report_and_mail_and_a_full_one_does_not() {
    let (app, account) = TestApp::start(&[]);
    let empty = app.submit("email/nobody@nowhere.example", &account, Some("dpo@customer.example")).await;
    let full = app.submit("email/jane.doe@example.com", &account, Some("dpo@customer.example")).await;
    for id in [empty, full] {
        assert_eq!(app.wait_delivered(id, &account).await["state"], "delivered");
    }

    let export: Value = serde_json::from_slice(&app.data(empty, &account).await).expect("JSON");
    let sections =
        ["destinations", "impressions", "clicks", "deliveries", "errors", "abuses", "unsubscribes", "surveys"];
    assert_eq!(export["data"], json!(sections.map(|s| [s])), "the JSON keeps its empty sections");

    for (id, holds_nothing) in [(empty, true), (full, false)] {
        let page = app.get(&format!("/v1/datarequest/{id}/data?format=html&access_token={}", account.token)).await;
        let page = String::from_utf8(page.bytes).expect("UTF-8");
        assert_eq!(page.contains(NOTHING), holds_nothing, "report of {id}");
        if holds_nothing {
            // The summary, which the page shows first, opens with it.
            let summary = &page[page.find("<section class=\"summary\"").expect("a summary")..];
            assert!(summary.find(NOTHING) < summary.find("<h2>"), "at the top of the summary");
        }
        let raw = app.outbox(id);
        let mail = MessageParser::default().parse(&raw).expect("MIME");
        let text = mail.body_text(0).expect("text").into_owned();
        assert_eq!(text.starts_with(&format!("{NOTHING}\r\n")), holds_nothing, "mail of {id}: {text}");
        assert_eq!(text.contains(NOTHING), holds_nothing, "mail of {id}");
    }

    let status = app.status(empty, &account).await;
    let zeros: serde_json::Map<String, Value> = sections.iter().map(|s| ((*s).to_owned(), json!(0))).collect();
    assert_eq!(status["records"], Value::Object(zeros));
    let raw = app.get(&format!("/v1/datarequest/{full}/status?access_token={}", account.token)).await;
    assert!(
        String::from_utf8_lossy(&raw.bytes).contains(r#""records":{"destinations":"#),
        "in export order: {}",
        String::from_utf8_lossy(&raw.bytes)
    );
    let status = raw.json();
    let records = status["records"].as_object().expect("records once built");
    let mut names: Vec<&str> = records.keys().map(String::as_str).collect();
    let mut expected = sections.to_vec();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected, "every section");
    let export: Value = serde_json::from_slice(&app.data(full, &account).await).expect("JSON");
    for section in export["data"].as_array().expect("data") {
        let name = section[0].as_str().expect("name");
        let count = section.as_array().expect("section").len() as u64 - 1;
        assert_eq!(records[name], count, "{name}: the status counts what the export holds");
    }
    assert!(records.values().any(|count| count.as_u64() > Some(0)));
}
