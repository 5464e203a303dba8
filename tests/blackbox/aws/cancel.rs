//! Cancelling on AWS, through the real Lambda binaries: `intake` serves the `DELETE`, the
//! `builder` meets the cancelled request in its queue message or mid-build, and nothing of it
//! is left in the bucket or sent through SES.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Env;
use super::functions::{get_event, queued_records, seed, seed_stranger, start, status, submit};
use crate::helpers::Account;

fn delete_event(token: &str, id: u64) -> Value {
    let path = format!("/v2/datarequest/{id}");
    let mut event = get_event(token, &path);
    event["routeKey"] = json!("DELETE /{version}/datarequest/{id}");
    event["requestContext"]["routeKey"] = json!("DELETE /{version}/datarequest/{id}");
    event["requestContext"]["http"]["method"] = json!("DELETE");
    event["pathParameters"] = json!({"version": "v2", "id": id.to_string()});
    event
}

/// The intake function's answer to a `DELETE`: its status code and JSON body.
async fn cancel(intake: &datarequest_tests::runtime::Function, account: &Account, id: u64) -> (u64, Value) {
    let response = intake.invoke(delete_event(&account.token, id)).await.expect("intake answers");
    let body = serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON body");
    (response["statusCode"].as_u64().expect("status code"), body)
}

fn assert_cancelled((code, body): &(u64, Value)) {
    assert_eq!(*code, 200, "{body}");
    assert_eq!(
        (&body["status"], &body["state"], &body["reason"]),
        (&json!("not available"), &json!("cancelled"), &json!("cancelled"))
    );
}

/// Every object of a request in the bucket (exports, reports, checkpoint tails) and every
/// upload still open for it.
async fn leftovers(env: &Env, id: u64) -> Vec<String> {
    let clients = env.clients().await;
    let bucket = env.get("DATAREQUEST_EXPORTS_BUCKET");
    let prefix = format!("exports/{id}.");
    let objects = clients.s3.list_objects_v2().bucket(bucket).prefix(&prefix).send().await.expect("list");
    let uploads = clients.s3.list_multipart_uploads().bucket(bucket).prefix(&prefix).send().await.expect("uploads");
    let mut left: Vec<String> = objects.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    left.extend(uploads.uploads().iter().filter_map(|u| u.key().map(|k| format!("upload of {k}"))));
    left
}

async fn mails_of(env: &Env, id: u64) -> usize {
    let subject = format!("Your data request {id}");
    env.sent_mail().await.into_iter().filter(|(_, _, raw)| raw.contains(&subject)).count()
}

#[tokio::test]
async fn a_request_cancelled_through_intake_before_or_after_its_build_is_never_delivered_and_keeps_no_file() {
    let env = Env::provision();
    let account = seed(&env);
    let intake = start("intake", &env, &[], &[]).await;
    let builder = start("builder", &env, &[], &[]).await;
    let status_fn = start("status", &env, &[], &[]).await;

    // Accepted: the builder's message finds nothing to do.
    let waiting = submit(&intake, &account, "profile/42", Some("dpo@customer.example")).await;
    let first = cancel(&intake, &account, waiting).await;
    assert_cancelled(&first);
    let records = queued_records(&env, 1).await;
    assert_eq!(builder.invoke(json!({"Records": records})).await.expect("builder"), json!({"batchItemFailures": []}));
    assert_eq!(leftovers(&env, waiting).await, Vec::<String>::new());
    assert_eq!(mails_of(&env, waiting).await, 0);
    assert_eq!(cancel(&intake, &account, waiting).await, first, "a repeat answers the same");

    // Delivered: its files go.
    let delivered = submit(&intake, &account, "profile/42", Some("dpo@customer.example")).await;
    let records = queued_records(&env, 1).await;
    assert_eq!(builder.invoke(json!({"Records": records})).await.expect("builder"), json!({"batchItemFailures": []}));
    assert_eq!(status(&status_fn, &account, delivered).await["state"], "delivered");
    assert_eq!(leftovers(&env, delivered).await.len(), 2, "the export and its report");
    assert_cancelled(&cancel(&intake, &account, delivered).await);
    assert_eq!(leftovers(&env, delivered).await, Vec::<String>::new());
    let report = status(&status_fn, &account, delivered).await;
    assert_eq!((&report["state"], &report["available"]), (&json!("cancelled"), &json!(0)), "{report}");

    // Another account's token: exactly like an unknown id, and nothing changes.
    let built = submit(&intake, &account, "subprofile/4201", None).await;
    let records = queued_records(&env, 1).await;
    assert_eq!(builder.invoke(json!({"Records": records})).await.expect("builder"), json!({"batchItemFailures": []}));
    let stranger = seed_stranger(&env);
    let foreign = cancel(&intake, &stranger, built).await;
    let unknown = cancel(&intake, &stranger, 1_234_567_890_123_456).await;
    assert_eq!(foreign, (400, json!({"error": {"message": "No entity with supplied ID"}})));
    assert_eq!(foreign, unknown);
    let report = status(&status_fn, &account, built).await;
    assert_eq!(report["state"], "built");
    assert_eq!(report["records"]["subprofiles"], 1, "the counts kept with the request: {report}");
    assert_eq!(
        report["records"].as_object().map(serde_json::Map::len),
        Some(9),
        "every section of a subprofile's export"
    );

    let log =
        status_fn.invoke(get_event(&account.token, &format!("/v1/datarequest/{delivered}/log"))).await.expect("log");
    let log: Value = serde_json::from_str(log["body"].as_str().expect("body")).expect("JSON");
    let cancelled: Vec<&Value> =
        log["log"].as_array().expect("log").iter().filter(|e| e["event"] == "cancelled").collect();
    assert_eq!(cancelled.len(), 1, "{log}");
    assert_eq!((&cancelled[0]["account"], &cancelled[0]["version"]), (&json!(account.id), &json!("v2")));
}

#[tokio::test]
async fn a_build_in_the_builder_function_stops_when_its_request_is_cancelled_and_leaves_nothing_in_the_bucket() {
    let env = Env::provision();
    let account = seed(&env);
    // Profile 4500: 400 mails of 60 KB, in pages of 32, stored with their bodies in the bucket.
    let subjects = env.subjects().await;
    let mut lines = vec![json!({"kind":"profile","account":1,"id":4500,"database":1,
        "created":"2025-01-01 00:00:00","modified":"2025-01-01 00:00:00"})];
    for n in 0..400 {
        let mime = format!("Subject: part {n}\r\n\r\n{}", super::noise(60_000, 500 + n));
        lines.push(json!({"kind":"message","account":1,"id":format!("c-{n:03}"),"profile":4500,
            "email":"long@example.com","mailing":"1","subject":"long",
            "sent":format!("2025-01-01 {:02}:{:02}:00", n / 60, n % 60),"mime":mime}));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let records = datarequest::app::ingest::parse_records(&text).expect("valid");
    datarequest::ports::SubjectData::load(&subjects, &records).await.expect("load");

    // A checkpoint every MiB: the build keeps an open upload and tails in the bucket.
    let settings = [("DATAREQUEST_CHECKPOINT_MB", "1")];
    let intake = start("intake", &env, &settings, &[]).await;
    let builder = start("builder", &env, &settings, &[]).await;
    let status_fn = start("status", &env, &[], &[]).await;
    let id = submit(&intake, &account, "profile/4500", Some("dpo@customer.example")).await;
    let event = json!({"Records": queued_records(&env, 1).await});

    let build = builder.invoke(event);
    let cancel_midway = async {
        loop {
            let report = status(&status_fn, &account, id).await;
            if report["available"].as_u64().unwrap_or(0) >= 2 << 20 {
                assert_eq!(report["state"], "building", "{report}");
                break;
            }
            assert_eq!(report["status"], "pending", "the build ended before the cancel: {report}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!leftovers(&env, id).await.is_empty(), "the build keeps an upload and tails");
        let answer = cancel(&intake, &account, id).await;
        (answer, Instant::now())
    };
    let (answer, (cancelled, at)) = tokio::join!(build, cancel_midway);
    let stopped = at.elapsed();
    assert_eq!(answer.expect("builder answers"), json!({"batchItemFailures": []}));
    assert_cancelled(&cancelled);
    eprintln!("the builder function answered {stopped:?} after the cancel");
    assert!(stopped < Duration::from_secs(20), "the build stopped late: {stopped:?}");
    assert_eq!(leftovers(&env, id).await, Vec::<String>::new(), "nothing of the build is left");
    assert_eq!(mails_of(&env, id).await, 0, "nothing is delivered");
    let report = status(&status_fn, &account, id).await;
    assert_eq!(report["state"], "cancelled");
    let log = status_fn.invoke(get_event(&account.token, &format!("/v1/datarequest/{id}/log"))).await.expect("log");
    let log: Value = serde_json::from_str(log["body"].as_str().expect("body")).expect("JSON");
    let events: Vec<&str> = log["log"].as_array().expect("log").iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(events.contains(&"build_started") && !events.contains(&"built"), "{events:?}");
}
