//! Large MIME bodies on AWS: stored gzip-compressed in the bucket, streamed from it into the
//! export through a streaming gunzip, and written byte for byte as the in-memory store (the
//! reference) writes them; a tiny compressed body that inflates to a large one is streamed from
//! its item the same way.

use datarequest::adapters::memory::{MemoryExports, MemoryRequests, MemorySubjects};
use datarequest::domain::{AccountId, DataRequest, Mime, Record, RequestId, Subject, Timestamp};
use datarequest::export::{HtmlOutput, write_export_and_report};
use datarequest::ingest::parse_records;
use datarequest::ports::{ExportFormat, ExportStore, NoSources, SubjectData};
use serde_json::json;

use super::Env;
use crate::subjects_model::{fresh_account, varied_text};

fn message(account: AccountId, id: &str, sent: &str, mime: &str) -> serde_json::Value {
    json!({"kind":"message","account":account.get(),"id":id,"profile":7,"subprofile":null,"email":"seven@example.com",
        "mailing":"1","subject":id,"sent":sent,"mime":mime})
}

async fn export(store: &dyn SubjectData, account: AccountId) -> (Vec<u8>, String) {
    let (requests, files) = (MemoryRequests::default(), MemoryExports::default());
    let subject = Subject::from_parts("profile", "7").expect("subject");
    let request = DataRequest::accepted(RequestId::random(), account, subject, None, Timestamp::now());
    let writer = files.create(request.id, ExportFormat::Json).await.expect("writer");
    let html = HtmlOutput {
        writer: files.create(request.id, ExportFormat::Html).await.expect("writer"),
        clock: &datarequest::adapters::memory::FakeClock::at(Timestamp::now()),
        ttl: std::time::Duration::from_secs(86_400),
    };
    write_export_and_report(store, &NoSources, &requests, &request, writer, html, None).await.expect("export");
    let report = files.bytes_of(request.id, ExportFormat::Html).expect("a report");
    (files.bytes(request.id).expect("an export"), String::from_utf8(report).expect("UTF-8"))
}

#[tokio::test]
async fn large_mime_streamed_from_the_bucket_exports_byte_for_byte() {
    let env = Env::provision();
    let dynamodb = env.subjects().await;
    let account = fresh_account();
    let large: Vec<String> =
        (1..=3).map(|n| format!("Subject: large {n}\r\n\r\n{}", varied_text(n, 2 << 20))).collect();
    let inflating = format!("Subject: one line\r\n\r\n{}", "the same line again\r\n".repeat(10_000));
    let mut lines = vec![json!({"kind":"profile","account":account.get(),"id":7,"database":1,
        "created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"})];
    for (n, mime) in large.iter().enumerate() {
        lines.push(message(account, &format!("large-{n}"), &format!("2024-02-0{} 00:00:00", n + 1), mime));
    }
    lines.push(message(account, "inflating", "2024-03-01 00:00:00", &inflating));
    lines.push(message(account, "small", "2024-03-02 00:00:00", "Subject: small\r\n\r\nHello"));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let records: Vec<Record> = parse_records(&text).expect("valid");
    let memory = MemorySubjects::default();
    memory.load(&records).await.expect("load");
    dynamodb.load(&records).await.expect("load");

    // The page brings the small body and leaves the others where they are.
    let mut cursor = None;
    let mut bodies = Vec::new();
    loop {
        let page = dynamodb
            .messages(account, &Subject::from_parts("profile", "7").expect("subject"), cursor.as_deref())
            .await
            .expect("messages");
        bodies.extend(page.items.into_iter().map(|m| (m.id, m.mime)));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let stored: Vec<&str> =
        bodies.iter().filter(|(_, mime)| matches!(mime, Mime::Stored(_))).map(|(id, _)| id.as_str()).collect();
    assert_eq!(stored, ["large-0", "large-1", "large-2", "inflating"], "streamed, not read with the page");
    assert!(matches!(&bodies[4].1, Mime::Text(text) if text.starts_with("Subject: small")));

    let (from_dynamodb, report) = export(&dynamodb, account).await;
    let (from_memory, _) = export(&memory, account).await;
    assert!(from_dynamodb.len() > 6 << 20, "{} bytes", from_dynamodb.len());
    assert!(from_dynamodb == from_memory, "the same bytes as the reference store");
    let parsed: serde_json::Value = serde_json::from_slice(&from_dynamodb).expect("JSON");
    let destinations = parsed["data"][2].as_array().expect("destinations");
    assert_eq!(destinations[0], "destinations");
    for (n, mime) in large.iter().enumerate() {
        assert_eq!(destinations[n + 1]["mime"].as_str(), Some(mime.as_str()), "large-{n} complete");
    }
    assert_eq!(destinations[4]["mime"].as_str(), Some(inflating.as_str()));
    assert_eq!(report.matches("This message is larger than shown").count(), 3, "each 2 MB mail is cut in the page");
}
