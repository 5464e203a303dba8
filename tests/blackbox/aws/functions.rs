//! End to end through the real compiled Lambda binaries under the Runtime API emulator: an API
//! Gateway event POSTs through `intake`, the message waits in SQS, `builder` runs on an SQS
//! event made from it, the export lands in S3 and the mail in SES (or at a web address), and
//! `status` reports it and redirects `/data` to a URL that serves the same bytes.

use std::time::Duration;

use base64::Engine;
use hmac::Mac;
use mail_parser::MessageParser;
use serde_json::{Value, json};

use datarequest_tests::runtime::Function;

use super::Env;
use crate::helpers::{Account, Receiver, SAMPLE, binary};

const POST_EVENT: &str = include_str!("../../../functions/core/tests/fixtures/apigw-v2-post-profile-datarequest.json");
const GET_EVENT: &str = include_str!("../../../functions/core/tests/fixtures/apigw-v2-get-datarequest-status.json");

/// An account and the sample data, made with the operator's command (`--backend aws`).
pub(super) fn seed(env: &Env) -> Account {
    let account = operator(env, &["account", "create"]);
    let loaded = operator(env, &["import", SAMPLE]);
    assert_eq!(loaded["loaded"]["events"], 7);
    Account {
        id: account["account"].as_u64().expect("id"),
        token: account["token"].as_str().expect("token").to_owned(),
        secret: account["webhook_secret"].as_str().expect("secret").to_owned(),
    }
}

pub(super) fn post_event(token: &str, subject: &str, report: Option<&str>) -> Value {
    let mut event: Value = serde_json::from_str(POST_EVENT).expect("fixture");
    let (kind, id) = subject.split_once('/').expect("kind/id");
    let path = format!("/v1/{kind}/{id}/datarequest");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["routeKey"] = json!(format!("POST /{{version}}/{kind}/{{id}}/datarequest"));
    event["pathParameters"]["id"] = json!(id);
    event["rawQueryString"] = json!(format!("access_token={token}"));
    event["queryStringParameters"]["access_token"] = json!(token);
    let body = report.map_or_else(|| "[]".to_owned(), |r| json!({"report": r}).to_string());
    event["headers"]["content-length"] = json!(body.len().to_string());
    event["body"] = json!(body);
    event
}

pub(super) fn get_event(token: &str, path: &str) -> Value {
    let mut event: Value = serde_json::from_str(GET_EVENT).expect("fixture");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    event
}

/// Starts a function binary with the emulator's environment and `extra` on top; `without`
/// names variables to leave out.
pub(super) async fn start(name: &str, env: &Env, extra: &[(&'static str, &'static str)], without: &[&str]) -> Function {
    let vars = env.0.iter().filter(|(k, _)| !without.contains(&k.as_str())).map(|(k, v)| (k.as_str(), v.as_str()));
    Function::start(&binary(name), vars.chain(extra.iter().copied())).await
}

pub(super) async fn submit(intake: &Function, account: &Account, subject: &str, report: Option<&str>) -> u64 {
    let response = intake.invoke(post_event(&account.token, subject, report)).await.expect("intake answers");
    assert_eq!(response["statusCode"], 201, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON body");
    let id = body["id"].as_u64().expect("id");
    assert_eq!(response["headers"]["x-created"], id.to_string());
    assert_eq!(response["headers"]["content-type"], "application/json");
    id
}

pub(super) async fn status(function: &Function, account: &Account, id: u64) -> Value {
    let response =
        function.invoke(get_event(&account.token, &format!("/v1/datarequest/{id}/status"))).await.expect("status");
    assert_eq!(response["statusCode"], 200, "{response}");
    serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON")
}

/// Takes every waiting message off the build queue as SQS event records.
pub(super) async fn queued_records(env: &Env, expected: usize) -> Vec<Value> {
    let mut records = Vec::new();
    for _ in 0..10 {
        records.extend(receive_records(env, 1).await);
        if records.len() >= expected {
            break;
        }
    }
    assert_eq!(records.len(), expected, "messages in the build queue");
    records
}

/// The build queue messages that arrive within 20 seconds, as SQS event records.
async fn queued_records_now(env: &Env) -> Vec<Value> {
    receive_records(env, 20).await
}

/// One receive from the build queue (waiting up to `wait` seconds), as SQS event records.
pub(super) async fn receive_records(env: &Env, wait: i32) -> Vec<Value> {
    let clients = env.clients().await;
    let url = env.get("DATAREQUEST_BUILD_QUEUE_URL");
    let arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
        .expect("queue ARN");
    let received = clients
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .wait_time_seconds(wait)
        .send()
        .await
        .expect("receive");
    received
        .messages()
        .iter()
        .map(|message| {
            let attributes: serde_json::Map<String, Value> = message
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), json!(v))).collect())
                .unwrap_or_default();
            json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": message.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect()
}

fn export_bytes_of(raw: &str) -> Vec<u8> {
    let message = MessageParser::default().parse(raw.as_bytes()).expect("MIME");
    message.attachment(0).expect("attached").contents().to_vec()
}

async fn s3_export(env: &Env, id: u64) -> Vec<u8> {
    let clients = env.clients().await;
    let object = clients
        .s3
        .get_object()
        .bucket(env.get("DATAREQUEST_EXPORTS_BUCKET"))
        .key(format!("exports/{id}.json"))
        .send()
        .await
        .expect("the export is in S3");
    object.body.collect().await.expect("body").into_bytes().to_vec()
}

#[tokio::test]
async fn a_request_flows_through_intake_the_queue_builder_s3_ses_and_status() {
    let env = Env::provision();
    let account = seed(&env);
    // No public URL for intake and status: they answer with the API's own domain, as deployed.
    let intake = start("intake", &env, &[], &["DATAREQUEST_PUBLIC_URL"]).await;
    let builder = start("builder", &env, &[], &[]).await;
    let status_fn = start("status", &env, &[], &["DATAREQUEST_PUBLIC_URL"]).await;

    let id = submit(&intake, &account, "profile/42", Some("dpo@customer.example")).await;
    let response = intake.invoke(post_event(&account.token, "profile/42", None)).await.expect("intake");
    let other: Value = serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON");
    assert_eq!(
        response["headers"]["location"],
        format!("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/v1/datarequest/{}", other["id"])
    );
    assert_eq!(status(&status_fn, &account, id).await["status"], "pending");

    let records = queued_records(&env, 2).await;
    let ours: Vec<Value> =
        records.into_iter().filter(|r| r["body"].as_str().is_some_and(|b| b.contains(&id.to_string()))).collect();
    assert_eq!(ours.len(), 1);
    let event = json!({"Records": ours});
    let answer = builder.invoke(event.clone()).await.expect("builder answers");
    assert_eq!(answer, json!({"batchItemFailures": []}));

    let export = s3_export(&env, id).await;
    let parsed: Value = serde_json::from_slice(&export).expect("JSON export");
    assert_eq!(parsed["info"], json!({"type": "profile", "id": 42}));
    let subject = format!("Your data request {id}");
    let mails = |sent: Vec<(String, Vec<String>, String)>| -> Vec<String> {
        sent.into_iter().filter(|(_, _, raw)| raw.contains(&subject)).map(|(_, _, raw)| raw).collect()
    };
    let sent = mails(env.sent_mail().await);
    assert_eq!(sent.len(), 1);
    assert_eq!(export_bytes_of(&sent[0]), export, "the attachment is the export");

    // The same message again (SQS delivers at least once): no second mail.
    assert_eq!(builder.invoke(event).await.expect("builder answers"), json!({"batchItemFailures": []}));
    assert_eq!(mails(env.sent_mail().await).len(), 1);

    let report = status(&status_fn, &account, id).await;
    assert_eq!(report["status"], "available");
    assert_eq!(report["state"], "delivered");
    assert_eq!(report["available"].as_u64(), Some(export.len() as u64));
    // A small export comes in the body (the official PHP class follows no redirect).
    for path in [format!("/v1/datarequest/{id}/data"), format!("/v1/datarequest/{id}")] {
        let data = status_fn.invoke(get_event(&account.token, &path)).await.expect("status answers");
        assert_eq!(data["statusCode"], 200, "{data}");
        assert_eq!(data["headers"]["content-type"], "application/json");
        assert_eq!(data["body"].as_str().map(str::as_bytes), Some(export.as_slice()), "the export in the body");
    }

    // An export above 5 MiB is a 303 to a fresh signed URL.
    let big = big_subject(&env).await;
    let big_id = submit(&intake, &account, &format!("profile/{big}"), None).await;
    let records = queued_records(&env, 1).await;
    assert_eq!(builder.invoke(json!({"Records": records})).await.expect("builder"), json!({"batchItemFailures": []}));
    let big_export = s3_export(&env, big_id).await;
    assert!(big_export.len() > 5 * 1024 * 1024, "{} bytes", big_export.len());
    for path in [format!("/v1/datarequest/{big_id}/data"), format!("/v1/datarequest/{big_id}")] {
        let data = status_fn.invoke(get_event(&account.token, &path)).await.expect("status answers");
        assert_eq!(data["statusCode"], 303, "{data}");
        let url = data["headers"]["location"].as_str().expect("location");
        assert!(url.starts_with(env.get("AWS_ENDPOINT_URL")) && url.contains("X-Amz-Signature="), "{url}");
        let fetched = reqwest::get(url).await.expect("GET").bytes().await.expect("body");
        assert_eq!(fetched.to_vec(), big_export, "the signed URL serves the same bytes");
    }
    // Another account sees nothing.
    let stranger = seed_stranger(&env);
    assert_eq!(
        status(&status_fn, &stranger, id).await,
        json!({"status": "not available", "available": 0, "content-type": "application/json"})
    );
}

/// Loads profile 4300 of account 1 with a 6 MB message, so its export is above 5 MiB.
async fn big_subject(env: &Env) -> u64 {
    let subjects = env.subjects().await;
    let noise = super::noise(6_000_000, 11);
    let lines = format!(
        "{}\n{}\n",
        json!({"kind":"profile","account":1,"id":4300,"database":1,"created":"2025-01-01 00:00:00","modified":"2025-01-01 00:00:00"}),
        json!({"kind":"message","account":1,"id":"big-4300","profile":4300,"email":"big@example.com","mailing":"1",
            "subject":"big","sent":"2025-01-02 00:00:00","mime":format!("Subject: big\r\n\r\n{noise}")})
    );
    let records = datarequest::app::ingest::parse_records(&lines).expect("valid");
    datarequest::ports::SubjectData::load(&subjects, &records).await.expect("load");
    4300
}

pub(super) fn seed_stranger(env: &Env) -> Account {
    let output = std::process::Command::new(binary("datarequest"))
        .env_clear()
        .envs(env.0.iter())
        .args(["--backend", "aws", "account", "create"])
        .output()
        .expect("runs datarequest");
    let account: Value = serde_json::from_slice(&output.stdout).expect("account JSON");
    Account {
        id: account["account"].as_u64().expect("id"),
        token: account["token"].as_str().expect("token").to_owned(),
        secret: account["webhook_secret"].as_str().expect("secret").to_owned(),
    }
}

#[tokio::test]
async fn a_poisoned_message_fails_alone_web_delivery_is_signed_and_dead_letters_mark_failure() {
    let env = Env::provision();
    let account = seed(&env);
    let receiver = Receiver::start(&[]).await;
    let private = [("DATAREQUEST_WEBHOOK_ALLOW_PRIVATE", "true")];
    let intake = start("intake", &env, &private, &[]).await;
    let builder = start("builder", &env, &private, &[]).await;
    let status_fn = start("status", &env, &[], &[]).await;

    let web = submit(&intake, &account, "subprofile/4201", Some(&receiver.url)).await;
    let plain = submit(&intake, &account, "email/guest%40example.org", None).await;
    let mut records = queued_records(&env, 2).await;
    let mut poison = records[0].clone();
    poison["messageId"] = json!("poisoned-1");
    poison["body"] = json!("{\"request\": \"not a number\"}");
    records.insert(1, poison);
    let answer = builder.invoke(json!({"Records": records})).await.expect("builder answers");
    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "poisoned-1"}]}));

    for id in [web, plain] {
        assert_eq!(status(&status_fn, &account, id).await["status"], "available");
    }
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let post = &received[0];
    assert_eq!(post.headers["webhook-id"].to_str().ok(), Some(web.to_string().as_str()));
    let key =
        base64::engine::general_purpose::STANDARD.decode(account.secret.trim_start_matches("whsec_")).expect("key");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    let timestamp = post.headers["webhook-timestamp"].to_str().expect("timestamp");
    mac.update(format!("{web}.{timestamp}.").as_bytes());
    mac.update(&post.body);
    let signature = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(post.headers["webhook-signature"].to_str().ok(), Some(signature.as_str()));
    assert_eq!(post.body, s3_export(&env, web).await);

    // The queue gives up on a request: its dead letter marks it failed, with the reason.
    let doomed = submit(&intake, &account, "profile/42", None).await;
    let mut dead = queued_records(&env, 1).await.remove(0);
    dead["eventSourceARN"] = json!(env.get("DATAREQUEST_DEAD_LETTER_QUEUE_ARN"));
    assert_eq!(builder.invoke(json!({"Records": [dead]})).await.expect("builder"), json!({"batchItemFailures": []}));
    let report = status(&status_fn, &account, doomed).await;
    assert_eq!(report["status"], "not available");
    assert_eq!(report["state"], "failed");
    assert_eq!(report["reason"], "the export could not be built");
}

/// The Copernica profile on AWS: the key made with `signing-key create --backend aws` into the
/// stack's secret, the profile stored in DynamoDB with `account signing --backend aws`, and the
/// builder (given the key's id) signing a delivery that the independent verifier accepts.
#[tokio::test]
async fn on_aws_the_builder_signs_a_copernica_profile_delivery_with_the_key_from_the_secret() {
    use crate::signing::{header, pairs, verify};
    let env = Env::provision();
    let account = seed(&env);
    let run = |args: &[&str]| {
        let output = std::process::Command::new(binary("datarequest"))
            .env_clear()
            .envs(env.0.iter())
            .args(["--backend", "aws"])
            .args(args)
            .output()
            .expect("runs datarequest");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).expect("JSON")
    };
    let key_id = "dr1._domainkey.shop.test";
    let created = run(&["signing-key", "create", "--key-id", key_id]);
    let txt = created["txt"].as_str().expect("txt").to_owned();
    let switched = run(&["account", "signing", "--account", &account.id.to_string(), "copernica"]);
    assert_eq!(switched["signing"], "copernica");

    let receiver = Receiver::start(&[]).await;
    let private = [("DATAREQUEST_WEBHOOK_ALLOW_PRIVATE", "true")];
    let intake = start("intake", &env, &private, &[]).await;
    let builder = start("builder", &env, &[private[0], ("DATAREQUEST_SIGNING_KEYS", key_id)], &[]).await;
    let id = submit(&intake, &account, "profile/42", Some(&receiver.url)).await;
    let records = queued_records(&env, 1).await;
    assert_eq!(builder.invoke(json!({"Records": records})).await.expect("builder"), json!({"batchItemFailures": []}));

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let post = &received[0];
    assert_eq!(post.body, s3_export(&env, id).await);
    assert!(header(post, "signature").starts_with(&format!("keyId=\"{key_id}\"")));
    let copernica_id = format!("account_{}", account.id);
    assert_eq!(header(post, "x-copernica-id"), copernica_id);
    verify(post, &pairs(post), &post.body, &txt).expect("the delivery verifies against the TXT record");
}

/// The `sweeper` function under the Runtime API, as its EventBridge schedule invokes it: a
/// request whose queue message was lost (stored, never sent) is queued again once, a request
/// still fresh is left alone, and an export whose time is up is deleted and its request
/// marked expired.
#[tokio::test]
async fn the_sweeper_queues_stuck_requests_once_and_deletes_expired_exports() {
    use datarequest::adapters::aws::DynamoDbRequests;
    use datarequest::domain::{AccountId, DataRequest, ProfileId, RequestId, State, Subject, Timestamp, Transition};
    use datarequest::ports::RequestStore;

    let env = Env::provision();
    let clients = env.clients().await;
    let requests = DynamoDbRequests::new(clients.dynamodb.clone(), env.resources().requests_table);
    let now = Timestamp::now();
    let request = |created: Timestamp| {
        let subject = Subject::Profile(ProfileId::parse("42").expect("id"));
        DataRequest::accepted(RequestId::random(), AccountId::try_from(1_u64).expect("id"), subject, None, created)
    };
    let (lost, fresh, due) = (request(now.plus_seconds(-20 * 60)), request(now), request(now.plus_seconds(-3_600)));
    for r in [&lost, &fresh, &due] {
        assert!(requests.insert(r).await.expect("insert"));
    }
    let building = Transition::StartBuild { now, lease_until: now.plus_seconds(60) };
    assert!(requests.update(due.id, &building).await.expect("start"));
    let built = Transition::Built {
        bytes: 2,
        completed: now.plus_seconds(-1),
        expires: now.plus_seconds(-1),
        records: Vec::new(),
    };
    assert!(requests.update(due.id, &built).await.expect("built"));
    let bucket = env.get("DATAREQUEST_EXPORTS_BUCKET");
    let key = format!("exports/{}.json", due.id);
    clients.s3.put_object().bucket(bucket).key(&key).body(b"{}".to_vec().into()).send().await.expect("put");

    // An account deleted in the background (not the requests' account 1): its data waits for the sweep.
    let _first = seed_stranger(&env);
    let deleted = seed_stranger(&env);
    let line = json!({"kind":"profile","account":deleted.id,"id":77,"database":1,"email":"gone@example.com",
        "created":"2025-01-01 00:00:00","modified":"2025-01-01 00:00:00"});
    let records = datarequest::app::ingest::parse_records(&format!("{line}\n")).expect("valid");
    datarequest::ports::SubjectData::load(&env.subjects().await, &records).await.expect("load");
    let answer = operator(&env, &["account", "delete", "--account", &deleted.id.to_string(), "--background"]);
    assert_eq!(answer, json!({"deleted": deleted.id, "erased": false}));
    let held = |clients: &datarequest::adapters::aws::Clients| {
        let scan = clients.dynamodb.scan().table_name(env.get("DATAREQUEST_SUBJECTS_TABLE")).send();
        async move { scan.await.expect("scan").count() }
    };
    assert!(held(&clients).await > 0, "the deleted account's subject data waits for the sweep");

    let sweeper = start("sweeper", &env, &[], &[]).await;
    let scheduled = json!({"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
                           "account": "123456789012", "time": "2026-11-29T12:00:00Z", "region": "us-east-1",
                           "resources": [], "detail": {}});
    assert_eq!(
        sweeper.invoke(scheduled.clone()).await.expect("sweeper answers"),
        json!({"requeued": 1, "expired": 1, "erased_accounts": 1})
    );
    assert_eq!(held(&clients).await, 0, "the sweeper function erased the deleted account's data");

    let queued = queued_records(&env, 1).await;
    assert_eq!(queued[0]["body"], json!({"request": lost.id.to_string()}).to_string());
    let stored = |id| {
        let requests = &requests;
        async move { requests.get(id).await.expect("get").expect("stored") }
    };
    assert_eq!(stored(due.id).await.state, State::Expired);
    assert_eq!(stored(fresh.id).await.state, State::Accepted);
    let gone = clients.s3.head_object().bucket(bucket).key(&key).send().await;
    assert!(gone.is_err(), "the expired export is deleted");
    // The next run finds nothing new: the requeued request is marked for another 15 minutes.
    assert_eq!(
        sweeper.invoke(scheduled).await.expect("sweeper answers"),
        json!({"requeued": 0, "expired": 0, "erased_accounts": 0})
    );
}

/// A builder invocation killed mid-delivery (SIGKILL of the function's process, as a timeout
/// or a crash ends it) while the web address holds its POST: the message's next receive finds
/// the delivery claimed, comes back once the claim runs out instead of being dropped, and the
/// export is delivered, with the same `webhook-id`, and the request ends `delivered`.
#[tokio::test]
async fn a_builder_killed_mid_delivery_is_taken_over_once_its_claim_runs_out() {
    let env = Env::provision();
    let account = seed(&env);
    let receiver = Receiver::start(&[0]).await;
    // A 5 s delivery timeout: the claim lasts it plus a minute.
    let builder_env = [("DATAREQUEST_WEBHOOK_ALLOW_PRIVATE", "true"), ("DATAREQUEST_WEBHOOK_TIMEOUT_SECS", "5")];
    let intake = start("intake", &env, &builder_env, &[]).await;
    let id = submit(&intake, &account, "subprofile/4201", Some(&receiver.url)).await;
    let event = json!({"Records": queued_records(&env, 1).await});

    let doomed = start("builder", &env, &builder_env, &[]).await;
    let run = doomed.invoke(event.clone());
    let held = async {
        while receiver.received().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        answer = run => panic!("the builder answered while the web address held its POST: {answer:?}"),
        () = held => doomed.kill(),
    }
    let status_fn = start("status", &env, &[], &[]).await;
    assert_eq!(status(&status_fn, &account, id).await["delivery"]["status"], "sending");

    // The same message again (the queue hands it out after the dead invocation): left to the
    // claim, and queued again for when it runs out.
    let builder = start("builder", &env, &builder_env, &[]).await;
    assert_eq!(builder.invoke(event).await.expect("builder answers"), json!({"batchItemFailures": []}));
    assert_eq!(receiver.received().len(), 1, "no second POST while the claim holds");
    let started = std::time::Instant::now();
    let mut later = Vec::new();
    while later.is_empty() && started.elapsed() < std::time::Duration::from_secs(120) {
        later = queued_records_now(&env).await;
    }
    assert_eq!(later.len(), 1, "the message came back");
    assert!(started.elapsed() >= std::time::Duration::from_secs(50), "not before the claim ran out");
    assert_eq!(
        builder.invoke(json!({"Records": later})).await.expect("builder answers"),
        json!({"batchItemFailures": []})
    );

    let report = status(&status_fn, &account, id).await;
    assert_eq!(report["state"], "delivered", "{report}");
    let posts = receiver.received();
    assert_eq!(posts.len(), 2);
    for post in &posts {
        assert_eq!(post.headers["webhook-id"].to_str().ok(), Some(id.to_string().as_str()), "the same webhook-id");
    }
}

/// The functions behind a proxy that answers every fifth call to DynamoDB, SQS, S3 and SES with
/// a throttling error: the SDK clients retry, and the request is still accepted, built,
/// mailed once and reported, with the same export as without throttling.
#[tokio::test]
async fn throttled_aws_calls_are_retried_and_the_request_still_flows_end_to_end() {
    use datarequest_tests::throttle::ThrottlingProxy;

    let env = Env::provision();
    let account = seed(&env);
    let proxy = ThrottlingProxy::start(env.get("AWS_ENDPOINT_URL"), 5).await;
    let endpoint: &'static str = Box::leak(proxy.url.clone().into_boxed_str());
    let throttled = [("AWS_ENDPOINT_URL", endpoint)];
    let intake = start("intake", &env, &throttled, &["AWS_ENDPOINT_URL"]).await;
    let builder = start("builder", &env, &throttled, &["AWS_ENDPOINT_URL"]).await;
    let status_fn = start("status", &env, &throttled, &["AWS_ENDPOINT_URL"]).await;

    let id = submit(&intake, &account, "profile/42", Some("dpo@customer.example")).await;
    let records = queued_records(&env, 1).await;
    assert_eq!(builder.invoke(json!({"Records": records})).await.expect("builder"), json!({"batchItemFailures": []}));
    let report = status(&status_fn, &account, id).await;
    assert_eq!(report["state"], "delivered", "{report}");
    assert!(proxy.refused() >= 3, "the proxy throttled {} calls", proxy.refused());
    eprintln!("{} AWS calls throttled", proxy.refused());

    let export = s3_export(&env, id).await;
    let subject = format!("Your data request {id}");
    let sent: Vec<String> =
        env.sent_mail().await.into_iter().filter(|(_, _, raw)| raw.contains(&subject)).map(|(_, _, raw)| raw).collect();
    assert_eq!(sent.len(), 1, "mailed once");
    assert_eq!(export_bytes_of(&sent[0]), export);
    let parsed: Value = serde_json::from_slice(&export).expect("JSON export");
    assert_eq!(parsed["info"], json!({"type": "profile", "id": 42}));
}

/// A build longer than an invocation: the `builder` binary, given 3 seconds per invocation
/// (one of them to build, the rest kept back), stops at a checkpoint before its deadline and
/// queues a continuation; each later invocation goes on from the last checkpoint. No
/// invocation runs past its deadline, no message fails, and the export in the bucket is byte
/// for byte the one an uninterrupted build writes from the same data.
#[tokio::test]
async fn a_build_longer_than_an_invocation_goes_on_in_continuations() {
    use datarequest::adapters::memory::{MemoryExports, MemoryRequests};
    use datarequest::domain::{AccountId, DataRequest, RequestId, Subject, Timestamp};
    use datarequest::ports::{ExportFormat, ExportStore, SubjectData};

    let env = Env::provision();
    let account = seed(&env);
    let subjects = env.subjects().await;
    let mut lines = vec![json!({"kind":"profile","account":1,"id":4400,"database":1,
        "created":"2025-01-01 00:00:00","modified":"2025-01-01 00:00:00"})];
    for n in 0..12 {
        let mime = format!("Subject: part {n}\r\n\r\n{}", super::noise(2_500_000, 100 + n));
        lines.push(json!({"kind":"message","account":1,"id":format!("long-{n:02}"),"profile":4400,
            "email":"long@example.com","mailing":"1","subject":"long","sent":format!("2025-01-{:02} 00:00:00", n + 1),
            "mime":mime}));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    subjects.load(&datarequest::app::ingest::parse_records(&text).expect("valid")).await.expect("load");

    let settings = [("DATAREQUEST_CHECKPOINT_MB", "1")];
    let intake = start("intake", &env, &settings, &[]).await;
    let id = submit(&intake, &account, "profile/4400", None).await;
    let builder = start("builder", &env, &settings, &[]).await;
    builder.set_timeout(std::time::Duration::from_secs(3));
    let mut records = queued_records(&env, 1).await;
    let (mut invocations, mut slowest) = (0, Duration::ZERO);
    while !records.is_empty() {
        invocations += 1;
        assert!(invocations <= 60, "the build makes progress");
        let (answer, took) = builder.invoke_in_time(json!({"Records": records})).await;
        slowest = slowest.max(took);
        assert_eq!(answer.expect("builder answers"), json!({"batchItemFailures": []}));
        records = receive_records(&env, 1).await;
    }
    assert!(invocations >= 3, "the build took {invocations} invocations");
    eprintln!("{invocations} invocations of 3 s, the slowest {} ms", slowest.as_millis());

    let status_fn = start("status", &env, &[], &[]).await;
    let report = status(&status_fn, &account, id).await;
    assert_eq!(report["state"], "built", "{report}");
    let exported = s3_export(&env, id).await;
    assert_eq!(report["available"].as_u64(), Some(exported.len() as u64));

    let request = DataRequest::accepted(
        RequestId::random(),
        AccountId::try_from(1).expect("account"),
        Subject::from_parts("profile", "4400").expect("subject"),
        None,
        Timestamp::now(),
    );
    let files = MemoryExports::default();
    let writer = files.create(request.id, ExportFormat::Json).await.expect("writer");
    datarequest::export::write_export(&subjects, &MemoryRequests::default(), &request, writer, None)
        .await
        .expect("the uninterrupted build");
    let expected = files.bytes(request.id).expect("the reference");
    assert!(exported == expected, "the export differs ({} against {} bytes)", exported.len(), expected.len());
}

/// Runs the operator's command with `--backend aws`; its JSON answer.
fn operator(env: &Env, args: &[&str]) -> Value {
    let output = std::process::Command::new(binary("datarequest"))
        .env_clear()
        .envs(env.0.iter())
        .args(["--backend", "aws"])
        .args(args)
        .output()
        .expect("runs datarequest");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// Reads a request's status through the `status` function until the token is refused; the time
/// from `since` to that first refusal.
async fn first_refused_read(function: &Function, account: &Account, id: u64, since: std::time::Instant) -> Duration {
    loop {
        let response =
            function.invoke(get_event(&account.token, &format!("/v1/datarequest/{id}/status"))).await.expect("status");
        if response["statusCode"] == 400 {
            assert_eq!(response["body"], json!({"error": {"message": "Invalid access token"}}).to_string());
            return since.elapsed();
        }
        assert_eq!(response["statusCode"], 200, "{response}");
        assert!(since.elapsed() < Duration::from_secs(30), "the token still reads after 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The cache bound the AWS functions are given in this test.
const CACHE_SECS: &str = "2";

#[tokio::test]
async fn on_aws_a_revoked_or_deleted_accounts_token_submits_nothing_and_reads_nothing_past_the_cache_bound() {
    let env = Env::provision();
    let bound = Duration::from_secs(CACHE_SECS.parse().expect("seconds"));
    let cache = [("DATAREQUEST_TOKEN_CACHE_SECS", CACHE_SECS)];
    let intake = start("intake", &env, &cache, &[]).await;
    let status_fn = start("status", &env, &cache, &[]).await;

    // A revoked token.
    let account = seed(&env);
    let added = operator(&env, &["account", "token", "add", "--account", &account.id.to_string()]);
    let doomed = Account { token: added["token"].as_str().expect("token").to_owned(), ..account.clone() };
    let id = submit(&intake, &doomed, "profile/42", None).await;
    assert_eq!(status(&status_fn, &doomed, id).await["status"], "pending", "the cache holds the token now");
    let revoked = operator(&env, &["account", "token", "revoke", "--account", &account.id.to_string(), &doomed.token]);
    assert_eq!(revoked["revoked"], true);
    let since = std::time::Instant::now();
    let post = intake.invoke(post_event(&doomed.token, "profile/42", None)).await.expect("intake answers");
    assert_eq!(post["statusCode"], 400, "a POST checks the store: {post}");
    let took = first_refused_read(&status_fn, &doomed, id, since).await;
    eprintln!("revoked token on the emulator: first refused read {} ms after the command", took.as_millis());
    assert!(took <= bound + Duration::from_millis(500), "a read was allowed {took:?} after the revocation");

    // A deleted account's token.
    let id = submit(&intake, &account, "profile/42", None).await;
    assert_eq!(status(&status_fn, &account, id).await["status"], "pending", "the cache holds the token now");
    let deleted = operator(&env, &["account", "delete", "--account", &account.id.to_string()]);
    assert_eq!(deleted["deleted"].as_u64(), Some(account.id));
    let since = std::time::Instant::now();
    for _ in 0..3 {
        let post = intake.invoke(post_event(&account.token, "profile/42", None)).await.expect("intake answers");
        assert_eq!(post["statusCode"], 400, "a deleted account's token never gets a 201: {post}");
    }
    let took = first_refused_read(&status_fn, &account, id, since).await;
    eprintln!("deleted account on the emulator: first refused read {} ms after the command", took.as_millis());
    assert!(took <= bound + Duration::from_millis(500), "a read was allowed {took:?} after the deletion");
}
