//! Large MIME bodies on AWS: stored gzip-compressed in the bucket, streamed from it into the
//! export through a streaming gunzip, and written byte for byte as the in-memory store (the
//! reference) writes them; a tiny compressed body that inflates to a large one is streamed from
//! its item the same way.

use datarequest::adapters::memory::{MemoryExports, MemoryRequests, MemorySubjects};
use datarequest::app::ingest::parse_records;
use datarequest::domain::{AccountId, DataRequest, Mime, Record, RequestId, Subject, Timestamp};
use datarequest::export::{HtmlOutput, write_export_and_report};
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

/// A build into the bucket that stops at every checkpoint, and is killed mid-way in every
/// other run, goes on from its last checkpoint each time: the open upload, its parts and the
/// tail kept beside them. Both files come out byte for byte as an uninterrupted build writes
/// them in memory.
#[tokio::test]
async fn a_build_into_the_bucket_resumes_from_its_checkpoints_byte_for_byte() {
    use datarequest::adapters::aws::S3Exports;
    use datarequest::adapters::memory::FakeClock;
    use datarequest::domain::Transition;
    use datarequest::export::{BuildInputs, BuildOutcome as Outcome, Checkpoints};
    use datarequest::ports::RequestStore;
    use std::sync::atomic::AtomicI64;
    use std::time::{Duration, Instant};

    let env = Env::provision();
    let account = fresh_account();
    let mut lines = vec![json!({"kind":"profile","account":account.get(),"id":7,"database":1,
        "created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"})];
    for n in 0..12 {
        let mime =
            format!("Subject: {n}\r\n\r\n{}", varied_text(n, 1_500_000 + usize::try_from(n).expect("small") * 1_000));
        lines.push(message(account, &format!("m-{n:02}"), &format!("2024-02-{:02} 00:00:00", n + 1), &mime));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let records: Vec<Record> = parse_records(&text).expect("valid");
    let memory = MemorySubjects::default();
    memory.load(&records).await.expect("load");
    let clock = FakeClock::at(Timestamp::from_unix(1_750_000_000));
    let ttl = Duration::from_secs(86_400);
    let subject = Subject::from_parts("profile", "7").expect("subject");
    let request = DataRequest::accepted(RequestId::random(), account, subject, None, Timestamp::from_unix(1_000));

    let (reference, requests) = (MemoryExports::default(), MemoryRequests::default());
    let writer = reference.create(request.id, ExportFormat::Json).await.expect("writer");
    let html = HtmlOutput {
        writer: reference.create(request.id, ExportFormat::Html).await.expect("writer"),
        clock: &clock,
        ttl,
    };
    write_export_and_report(&memory, &NoSources, &requests, &request, writer, html, None).await.expect("export");

    let clients = env.clients().await;
    let bucket = env.resources().exports_bucket;
    let exports = S3Exports::new(clients.s3.clone(), bucket.clone());
    requests.insert(&request).await.expect("insert");
    let build = BuildInputs {
        subjects: &memory,
        sources: &NoSources,
        requests: &requests,
        exports: &exports,
        clock: &clock,
        ttl,
        not_before: None,
    };
    let mut runs = 0;
    let (mut stopped, mut killed) = (0, 0);
    loop {
        runs += 1;
        assert!(runs < 150, "the build makes progress");
        let now = Timestamp::from_unix(1_000 + 100 * runs);
        let lease_until = now.plus_seconds(60);
        assert!(requests.update(request.id, &Transition::StartBuild { now, lease_until }).await.expect("start"));
        let stored = requests.get(request.id).await.expect("get").expect("stored");
        let held = AtomicI64::new(lease_until.unix());
        // Every 3 MiB: most checkpoints leave a tail under S3's 5 MiB part minimum.
        let checkpoints = Checkpoints { every: 3 << 20, stop_at: Some(Instant::now()), lease: &held };
        let run = datarequest::export::build(&build, &stored, checkpoints);
        // Every other run in the first half of the build is killed. (A kill in the last stretch
        // can land while the emulator completes an upload the run sent: S3 then answers the
        // next run's part with NoSuchUpload, which starts the build again, but the emulator
        // answers 500, which a build cannot tell from any other failure.)
        let half = reference.bytes(request.id).map_or(0, |b| b.len() as u64) / 2;
        if runs % 2 == 0 && stored.available < half {
            // Killed: the run is dropped wherever it is, its writers unfinished.
            let Ok(outcome) = tokio::time::timeout(Duration::from_millis(150), run).await else {
                killed += 1;
                continue;
            };
            if matches!(outcome.expect("the run"), Outcome::Complete(..)) {
                break;
            }
            stopped += 1;
        } else if let Outcome::Complete(..) = run.await.expect("the run") {
            break;
        } else {
            stopped += 1;
        }
    }
    assert!(stopped >= 4, "the build stopped at its checkpoints ({stopped} times)");
    assert!(killed >= 1, "a run was killed mid-way");

    for format in ExportFormat::ALL {
        let key = format!("exports/{}.{}", request.id, format.as_str());
        let object = clients.s3.get_object().bucket(&bucket).key(&key).send().await.expect("the file is complete");
        let bytes = object.body.collect().await.expect("body").into_bytes().to_vec();
        let expected = reference.bytes_of(request.id, format).expect("reference");
        assert!(
            bytes == expected,
            "{key} differs from the uninterrupted build ({} against {} bytes)",
            bytes.len(),
            expected.len()
        );
    }
    let listed = clients
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(format!("exports/{}.", request.id))
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    // The recorded checkpoints' tails go with the finish; a killed run may leave the one it
    // stored but never recorded (per file), for the bucket's lifecycle rule.
    let tails = keys.iter().filter(|key| key.contains(".tail-")).count();
    assert_eq!(keys.len() - tails, 2, "{keys:?}");
    assert!(tails <= 2 * killed, "{tails} tails left after {killed} killed runs: {keys:?}");
}
