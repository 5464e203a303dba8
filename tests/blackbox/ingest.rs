//! `POST /ingest`, the platform's own door for subject data: its key, its limits, its checking
//! of the whole body, its counts, its idempotency, its erasures and SES records, and the rule
//! that a subprofile's records follow the subprofile — all through the real server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Account, Response, TestApp, assert_unknown, request_data, section};

const NDJSON: &str = "application/x-ndjson";
const SES_EVENTS: &str = include_str!("../../functions/core/tests/fixtures/ses/ses-events.ndjson");
/// The export sections that hold a subject's history (everything but profile and subprofiles).
const HISTORY: [&str; 8] =
    ["destinations", "impressions", "clicks", "deliveries", "errors", "abuses", "unsubscribes", "surveys"];

/// A data dir with the sample subjects and an ingest key made by the command, and the server.
fn start() -> (TestApp, Account, String) {
    let (mut app, account) = TestApp::new(&[]);
    let output = app.cli(&["ingest-key", "create"]);
    assert!(output.status.success(), "ingest-key create: {}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("ingest-key JSON");
    let key = printed["ingest_key"].as_str().expect("ingest_key").to_owned();
    app.spawn();
    (app, account, key)
}

/// POSTs a body to `/ingest` with an optional key and content type.
async fn post(app: &TestApp, key: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Response {
    let bearer = key.map(|key| format!("Bearer {key}"));
    let mut headers = Vec::new();
    if let Some(bearer) = bearer.as_deref() {
        headers.push(("authorization", bearer));
    }
    if let Some(content_type) = content_type {
        headers.push(("content-type", content_type));
    }
    app.request("POST", "/ingest", &headers, Some(body)).await
}

/// POSTs NDJSON lines that must be accepted; returns the counts.
async fn ingest(app: &TestApp, key: &str, lines: &[Value]) -> Value {
    ingest_text(app, key, &ndjson(lines)).await
}

async fn ingest_text(app: &TestApp, key: &str, body: &str) -> Value {
    let response = post(app, Some(key), Some(NDJSON), body.as_bytes()).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.bytes));
    response.json()
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// The exact answer of a successful ingest.
fn counts(profiles: u64, subprofiles: u64, messages: u64, events: u64, erased: u64, skipped: u64) -> Value {
    json!({"profiles": profiles, "subprofiles": subprofiles, "messages": messages, "events": events,
        "erased": erased, "skipped": skipped})
}

/// Asserts Copernica's error shape with exactly this status and message.
fn assert_error(response: &Response, status: u16, message: &str) {
    let body = String::from_utf8_lossy(&response.bytes);
    assert_eq!(response.status, status, "{body}");
    assert_eq!(response.header("content-type"), Some("application/json"), "{body}");
    assert_eq!(response.json(), json!({"error": {"message": message}}));
}

/// Asserts Copernica's error shape with this status and some message; returns the message.
fn error_message(response: &Response, status: u16) -> String {
    let body = String::from_utf8_lossy(&response.bytes);
    assert_eq!(response.status, status, "{body}");
    assert_eq!(response.header("content-type"), Some("application/json"), "{body}");
    let json = response.json();
    assert_eq!(json.as_object().map(serde_json::Map::len), Some(1), "only `error`: {json}");
    assert_eq!(json["error"].as_object().map(serde_json::Map::len), Some(1), "only `message`: {json}");
    let message = json["error"]["message"].as_str().expect("message").to_owned();
    assert!(!message.is_empty());
    message
}

fn profile(id: u64, email: &str) -> Value {
    json!({"kind":"profile","account":1,"id":id,"database":1,"email":email,"fields":{"firstname":"Sam"},
        "interests":["news"],"created":"2024-01-01 00:00:00","modified":"2024-06-01 00:00:00"})
}

fn subprofile(id: u64, profile: u64, email: &str) -> Value {
    json!({"kind":"subprofile","account":1,"id":id,"profile":profile,"collection":2,"email":email,
        "fields":{"role":"buyer"},"created":"2024-01-02 00:00:00","modified":"2024-01-02 00:00:00"})
}

fn message(id: &str, profile: Option<u64>, subprofile: Option<u64>, email: &str) -> Value {
    json!({"kind":"message","account":1,"id":id,"profile":profile,"subprofile":subprofile,"email":email,
        "mailing":"12","subject":"News","sent":"2025-03-01 10:00:00",
        "mime":format!("From: Shop <news@shop.example>\r\nTo: {email}\r\nSubject: News\r\n\r\nHello\r\n")})
}

fn event(kind: &str, message: &str, profile: Option<u64>, subprofile: Option<u64>, email: &str, data: Value) -> Value {
    json!({"kind":"event","account":1,"type":kind,"message":message,"profile":profile,"subprofile":subprofile,
        "email":email,"time":"2025-03-01 11:00:00","data":data})
}

fn erase(member: &str, value: Value) -> Value {
    let mut line = json!({"kind":"erase","account":1});
    line[member] = value;
    line
}

/// POSTs a data request for a subject path like `profile/42`.
/// The export of `subject` as built now, through the API: its raw bytes and its JSON.
async fn export(app: &TestApp, account: &Account, subject: &str) -> (Vec<u8>, Value) {
    let response = request_data(app, account, subject).await;
    assert_eq!(response.status, 201, "{subject}: {}", String::from_utf8_lossy(&response.bytes));
    let id = response.json()["id"].as_u64().expect("id");
    let path = format!("/v1/datarequest/{id}/data?access_token={}", account.token);
    let start = Instant::now();
    loop {
        let response = app.get(&path).await;
        if response.status == 200 {
            let json = response.json();
            return (response.bytes, json);
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no export of {subject}: {}", response.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `ID`s of a section's records.
fn ids(export: &Value, name: &str) -> Vec<String> {
    section(export, name)
        .unwrap_or_else(|| panic!("no {name} section in {export}"))
        .iter()
        .map(|record| record["ID"].as_str().expect("ID").to_owned())
        .collect()
}

fn records(export: &Value, name: &str) -> Vec<Value> {
    section(export, name).unwrap_or_else(|| panic!("no {name} section in {export}"))
}

#[tokio::test]
async fn ingest_opens_only_to_an_ingest_key_and_the_key_opens_nothing_else() {
    let (app, account, key) = start();
    let body = ndjson(&[profile(501, "five@example.net")]);
    let mut wrong = key.clone();
    let last = wrong.pop().expect("a key");
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    let attempts = [
        ("no key", None),
        ("a wrong key", Some(wrong.as_str())),
        ("a garbage key", Some("not-a-key")),
        ("an account's access token", Some(account.token.as_str())),
    ];

    for (what, attempt) in attempts {
        let response = post(&app, attempt, Some(NDJSON), body.as_bytes()).await;
        assert_eq!(response.status, 401, "{what}");
        assert_error(&response, 401, "Invalid ingest key");
    }
    let basic = format!("Basic {key}");
    let response = app
        .request("POST", "/ingest", &[("authorization", &basic), ("content-type", NDJSON)], Some(body.as_bytes()))
        .await;
    assert_error(&response, 401, "Invalid ingest key");
    assert_unknown(&app, &account, "profile/501").await;

    let as_query = app
        .request(
            "POST",
            &format!("/v1/profile/42/datarequest?access_token={key}"),
            &[("content-type", "application/json")],
            Some(b"[]"),
        )
        .await;
    assert_error(&as_query, 400, "Invalid access token");
    let bearer = format!("Bearer {key}");
    let as_bearer = app.request("POST", "/v1/profile/42/datarequest", &[("authorization", &bearer)], None).await;
    assert_error(&as_bearer, 400, "Invalid access token");
    let status = app.get(&format!("/v1/datarequest/1234567890123456/status?access_token={key}")).await;
    assert_error(&status, 400, "Invalid access token");

    assert_eq!(ingest_text(&app, &key, &body).await, counts(1, 0, 0, 0, 0, 0));
    export(&app, &account, "profile/501").await;
}

#[tokio::test]
async fn a_body_that_is_not_declared_ndjson_gets_415_and_stores_nothing() {
    let (app, account, key) = start();
    let body = ndjson(&[profile(502, "five@example.net")]);

    for content_type in [Some("application/json"), Some("text/plain"), Some("application/ndjson"), None] {
        let response = post(&app, Some(&key), content_type, body.as_bytes()).await;
        assert_eq!(response.status, 415, "{content_type:?}");
        error_message(&response, 415);
    }

    assert_unknown(&app, &account, "profile/502").await;
    let response = post(&app, Some(&key), Some("application/x-ndjson; charset=utf-8"), body.as_bytes()).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.bytes));
}

/// One profile line padded (in a field) to exactly `size` bytes with its newline.
fn profile_of_size(id: u64, size: usize) -> String {
    let mut line = profile(id, "big@example.net");
    line["fields"]["notes"] = json!("");
    let empty = line.to_string().len() + 1;
    line["fields"]["notes"] = json!("n".repeat(size - empty));
    let text = format!("{line}\n");
    assert_eq!(text.len(), size);
    text
}

#[tokio::test]
async fn a_body_over_8_mib_gets_413_and_stores_nothing_while_8_mib_exactly_is_taken() {
    let (app, account, key) = start();
    const LIMIT: usize = 8 * 1024 * 1024;

    let response = post_declared(&app, &key, profile_of_size(503, LIMIT + 1).as_bytes()).await;
    error_message(&response, 413);
    assert_unknown(&app, &account, "profile/503").await;

    let response = post(&app, Some(&key), Some(NDJSON), profile_of_size(504, LIMIT).as_bytes()).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.bytes));
    assert_eq!(response.json(), counts(1, 0, 0, 0, 0, 0));
    let (_, big) = export(&app, &account, "profile/504").await;
    assert_eq!(ids(&big, "profile"), ["504"]);
}

/// POSTs a body with its length declared and `Expect: 100-continue`, over a bare connection:
/// a server that refuses by the declared length answers at once, and the body is sent only
/// when the server asks for it (a client still writing a refused body may see a broken pipe
/// instead of the answer).
async fn post_declared(app: &TestApp, key: &str, body: &[u8]) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.url.strip_prefix("http://").expect("an http:// address");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: {NDJSON}\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write the head");
    let mut received = Vec::new();
    let end_of_head = |bytes: &[u8]| bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4);
    let mut chunk = vec![0; 64 * 1024];
    while end_of_head(&received).is_none() {
        let n = stream.read(&mut chunk).await.expect("read the answer");
        assert!(n > 0, "the server closed without an answer");
        received.extend_from_slice(&chunk[..n]);
    }
    if received.starts_with(b"HTTP/1.1 100") {
        received.drain(..end_of_head(&received).expect("a head"));
        stream.write_all(body).await.expect("write the body");
    }
    stream.read_to_end(&mut received).await.expect("read the answer");
    let end = end_of_head(&received).expect("a final head");
    let head = String::from_utf8(received[..end].to_vec()).expect("an ASCII head");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status");
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("a header");
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).expect("a header name"),
            reqwest::header::HeaderValue::from_str(value.trim()).expect("a header value"),
        );
    }
    Response { status, headers, bytes: received[end..].to_vec() }
}

/// POSTs a body of unknown length (chunked, no `Content-Length`) to `/ingest`.
async fn post_streamed(app: &TestApp, key: &str, body: &str) -> Response {
    let path = app.data_dir().join("streamed.ndjson");
    std::fs::write(&path, body).expect("write the body");
    let file = tokio::fs::File::open(&path).await.expect("open the body");
    let response = app
        .client
        .post(format!("{}/ingest", app.url))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", NDJSON)
        .body(reqwest::Body::from(file))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body").to_vec();
    Response { status, headers, bytes }
}

#[tokio::test]
async fn a_body_over_8_mib_sent_without_a_length_gets_413_and_stores_nothing() {
    let (app, account, key) = start();
    const LIMIT: usize = 8 * 1024 * 1024;

    let response = post_streamed(&app, &key, &profile_of_size(507, LIMIT + 1)).await;
    error_message(&response, 413);
    // The body was not read to its end: the connection is not used again.
    assert_eq!(response.header("connection"), Some("close"));
    assert_unknown(&app, &account, "profile/507").await;

    let response = post_streamed(&app, &key, &profile_of_size(508, LIMIT)).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.bytes));
    assert_eq!(response.json(), counts(1, 0, 0, 0, 0, 0));
    let (_, big) = export(&app, &account, "profile/508").await;
    assert_eq!(ids(&big, "profile"), ["508"]);
}

/// A profile line and `lines - 1` distinct survey events of it.
fn many_lines(id: u64, lines: usize) -> String {
    let mut body = ndjson(&[profile(id, "many@example.net")]);
    for n in 1..lines {
        let line = json!({"kind":"event","account":1,"type":"survey","profile":id,"time":"2025-01-01 00:00:00",
            "data":{"n":n}});
        body.push_str(&format!("{line}\n"));
    }
    body
}

#[tokio::test]
async fn a_body_over_50000_lines_gets_413_and_stores_nothing_while_50000_exactly_are_taken() {
    let (app, account, key) = start();

    let over = many_lines(505, 50_001);
    assert!(over.len() < 8 * 1024 * 1024, "only the line limit is crossed");
    let response = post(&app, Some(&key), Some(NDJSON), over.as_bytes()).await;
    error_message(&response, 413);
    assert_unknown(&app, &account, "profile/505").await;

    let response = post(&app, Some(&key), Some(NDJSON), many_lines(506, 50_000).as_bytes()).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.bytes));
    assert_eq!(response.json(), counts(1, 0, 0, 49_999, 0, 0));
}

#[tokio::test]
async fn a_bad_line_refuses_the_whole_body_naming_its_number_and_stores_nothing() {
    let (app, account, key) = start();
    let mut ses_bad_account: Value = serde_json::from_str(SES_EVENTS.lines().next().expect("a record")).expect("JSON");
    ses_bad_account["mail"]["tags"]["account"] = json!(["one"]);
    // A number where SES puts a string is refused the same way, not skipped.
    let mut ses_numeric_account = ses_bad_account.clone();
    ses_numeric_account["mail"]["tags"]["account"] = json!([1]);
    let mut ses_without_object: Value =
        serde_json::from_str(SES_EVENTS.lines().next().expect("a record")).expect("JSON");
    ses_without_object.as_object_mut().expect("object").remove("open");
    let mut unknown_member = profile(602, "six@example.net");
    unknown_member["nmae"] = json!("typo");
    let mut empty_event_id = event("click", "m-1", Some(601), None, "six@example.net", json!({}));
    empty_event_id["id"] = json!("");
    let bad_lines = [
        "this is not JSON".to_owned(),
        r#"{"kind":"nothing","account":1}"#.to_owned(),
        unknown_member.to_string(),
        erase("profile", json!(42)).to_string().replace('}', r#","email":"jane.doe@example.com"}"#),
        erase("email", json!("not an address")).to_string(),
        message("", Some(601), None, "six@example.net").to_string(),
        empty_event_id.to_string(),
        r#"{"kind":"event","account":1,"type":"survey","time":"2025-01-01 00:00:00"}"#.to_owned(),
        ses_bad_account.to_string(),
        ses_numeric_account.to_string(),
        ses_without_object.to_string(),
        json!({"Type":"Notification","Message":"not JSON"}).to_string(),
    ];

    for bad in &bad_lines {
        // Line 2 erases a subject that exists: it must not be applied either.
        let body = format!(
            "{}\n{}\n{bad}\n{}\n",
            profile(601, "six@example.net"),
            erase("profile", json!(42)),
            profile(603, "six@example.net")
        );

        let response = post(&app, Some(&key), Some(NDJSON), body.as_bytes()).await;

        let message = error_message(&response, 400);
        let reason = message.strip_prefix("line 3: ").unwrap_or_else(|| panic!("{bad}: {message}"));
        assert!(!reason.is_empty(), "{bad}: {message}");
        assert_unknown(&app, &account, "profile/601").await;
        assert_unknown(&app, &account, "profile/603").await;
        let (_, sample) = export(&app, &account, "profile/42").await;
        assert_eq!(ids(&sample, "profile"), ["42"], "{bad}: the erase line on line 2 was applied");
    }

    let mut not_utf8 = format!("{}\n{}\n", profile(601, "six@example.net"), erase("profile", json!(42))).into_bytes();
    not_utf8.extend_from_slice(b"{\"kind\":\"profile\",\"fields\":\"\xff\"}\n");
    let response = post(&app, Some(&key), Some(NDJSON), &not_utf8).await;
    assert_error(&response, 400, "line 3: not valid UTF-8");
    assert_unknown(&app, &account, "profile/601").await;
}

#[tokio::test]
async fn a_successful_ingest_answers_exactly_the_count_of_each_kind_of_line() {
    let (app, _account, key) = start();
    let mut body = ndjson(&[
        profile(1001, "jane.doe@example.com"),
        profile(1002, "john@example.net"),
        subprofile(5001, 1001, "jane@work.example"),
        message("d-1001-1", Some(1001), None, "jane.doe@example.com"),
        message("d-5001-1", Some(1001), Some(5001), "jane@work.example"),
        event("survey", "d-1001-1", Some(1001), None, "jane.doe@example.com", json!({"rating":"5"})),
        erase("profile", json!(1002)),
        erase("email", json!("nobody@example.net")),
    ]);
    body.push('\n'); // A blank line is no line of data.
    body.push_str(SES_EVENTS);

    let response = post(&app, Some(&key), Some(NDJSON), body.as_bytes()).await;

    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.bytes));
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json(), counts(2, 1, 2, 7, 2, 2));
}

#[tokio::test]
async fn ses_records_are_stored_as_events_of_their_tagged_subject_and_the_others_skipped() {
    let (app, account, key) = start();
    ingest(
        &app,
        &key,
        &[
            profile(1001, "jane.doe@example.com"),
            subprofile(5001, 1001, "jane@work.example"),
            message("d-1001-1", Some(1001), None, "jane.doe@example.com"),
            message("d-5001-1", Some(1001), Some(5001), "jane@work.example"),
        ],
    )
    .await;

    assert_eq!(ingest_text(&app, &key, SES_EVENTS).await, counts(0, 0, 0, 6, 0, 2));
    let (once, profile) = export(&app, &account, "profile/1001").await;
    assert_eq!(ingest_text(&app, &key, SES_EVENTS).await, counts(0, 0, 0, 6, 0, 2));
    let (twice, _) = export(&app, &account, "profile/1001").await;

    for name in ["impressions", "clicks", "deliveries", "errors", "abuses", "unsubscribes"] {
        let records = records(&profile, name);
        assert_eq!(records.len(), 1, "{name}: {records:?}");
        let expected = if name == "errors" { "d-5001-1" } else { "d-1001-1" };
        assert_eq!(records[0]["destination"], expected, "{name}");
    }
    assert_eq!(records(&profile, "errors")[0]["subprofile"], "5001");
    assert!(records(&profile, "surveys").is_empty());
    let (_, subprofile) = export(&app, &account, "subprofile/5001").await;
    assert_eq!(records(&subprofile, "errors").len(), 1, "the bounce is the subprofile's");
    assert!(records(&subprofile, "impressions").is_empty());
    assert_eq!(String::from_utf8_lossy(&once), String::from_utf8_lossy(&twice), "loading the records twice");
}

#[tokio::test]
async fn posting_the_same_body_two_or_three_times_gives_the_same_exports_as_once() {
    let (app, account, key) = start();
    let email = "idem@example.net";
    let mut first_version = event("click", "m-701", Some(701), None, email, json!({"link":"https://shop.example/a"}));
    first_version["id"] = json!("ev-1");
    let mut second_version = event("click", "m-701", Some(701), None, email, json!({"link":"https://shop.example/b"}));
    second_version["id"] = json!("ev-1");
    let body = ndjson(&[
        profile(701, email),
        subprofile(7011, 701, "idem@work.example"),
        message("m-701", Some(701), None, email),
        message("m-7011", Some(701), Some(7011), "idem@work.example"),
        event("impression", "m-701", Some(701), None, email, json!({"ip":"198.51.100.1"})),
        event("impression", "m-701", Some(701), None, email, json!({"ip":"198.51.100.2"})),
        event("delivery", "m-7011", Some(701), Some(7011), "idem@work.example", json!({"attempt":1})),
        first_version,
        second_version,
    ]);
    let subjects = ["profile/701", "subprofile/7011", "email/idem%40example.net"];

    assert_eq!(ingest_text(&app, &key, &body).await, counts(1, 1, 2, 5, 0, 0));
    let mut once = Vec::new();
    for subject in subjects {
        once.push(export(&app, &account, subject).await);
    }
    for _ in 0..2 {
        assert_eq!(ingest_text(&app, &key, &body).await, counts(1, 1, 2, 5, 0, 0));
    }
    let mut thrice = Vec::new();
    for subject in subjects {
        thrice.push(export(&app, &account, subject).await);
    }

    for ((subject, (once_bytes, once_json)), (thrice_bytes, thrice_json)) in subjects.iter().zip(&once).zip(&thrice) {
        assert_eq!(once_json["data"], thrice_json["data"], "{subject}");
        assert_eq!(String::from_utf8_lossy(once_bytes), String::from_utf8_lossy(thrice_bytes), "{subject}");
    }
    let profile = &thrice[0].1;
    assert_eq!(ids(profile, "subprofiles"), ["7011"]);
    let mut destinations = ids(profile, "destinations");
    destinations.sort();
    assert_eq!(destinations, ["m-701", "m-7011"]);
    let mut ips: Vec<String> =
        records(profile, "impressions").iter().map(|e| e["data"]["ip"].as_str().expect("ip").to_owned()).collect();
    ips.sort();
    assert_eq!(ips, ["198.51.100.1", "198.51.100.2"], "events without an id, each once");
    let clicks = records(profile, "clicks");
    assert_eq!(clicks.len(), 1, "the event with an id, once: {clicks:?}");
    assert_eq!(clicks[0]["data"]["link"], "https://shop.example/b", "the later line with the id replaces the first");
    assert_eq!(records(profile, "deliveries").len(), 1);
}

#[tokio::test]
async fn erasing_a_profile_makes_it_and_its_subprofiles_unknown() {
    let (app, account, key) = start();
    ingest(
        &app,
        &key,
        &[
            profile(801, "eight@example.net"),
            subprofile(8011, 801, "eight@work.example"),
            message("m-801", Some(801), None, "eight@example.net"),
            message("m-8011", Some(801), Some(8011), "eight@work.example"),
        ],
    )
    .await;
    export(&app, &account, "profile/801").await;
    export(&app, &account, "subprofile/8011").await;

    let answer = ingest(&app, &key, &[erase("profile", json!(801))]).await;

    assert_eq!(answer, counts(0, 0, 0, 0, 1, 0));
    assert_unknown(&app, &account, "profile/801").await;
    assert_unknown(&app, &account, "subprofile/8011").await;
    let (_, other) = export(&app, &account, "profile/42").await;
    assert_eq!(ids(&other, "subprofiles"), ["4201"], "other subjects stay");
}

#[tokio::test]
async fn erasing_a_subprofile_takes_it_and_its_history_out_of_its_profiles_export() {
    let (app, account, key) = start();
    ingest(
        &app,
        &key,
        &[
            profile(802, "eight@example.net"),
            subprofile(8021, 802, "eight@work.example"),
            message("m-802", Some(802), None, "eight@example.net"),
            message("m-8021", Some(802), Some(8021), "eight@work.example"),
            event("impression", "m-802", Some(802), None, "eight@example.net", json!({"n":1})),
            event("impression", "m-8021", Some(802), Some(8021), "eight@work.example", json!({"n":2})),
            event("error", "m-8021", None, Some(8021), "eight@work.example", json!({"status":"550"})),
        ],
    )
    .await;
    let (_, before) = export(&app, &account, "profile/802").await;
    assert_eq!(ids(&before, "subprofiles"), ["8021"]);
    assert_eq!(ids(&before, "destinations").len(), 2);
    assert_eq!(records(&before, "impressions").len(), 2);
    assert_eq!(records(&before, "errors").len(), 1);

    let answer = ingest(&app, &key, &[erase("subprofile", json!(8021))]).await;

    assert_eq!(answer, counts(0, 0, 0, 0, 1, 0));
    let (_, after) = export(&app, &account, "profile/802").await;
    assert_eq!(ids(&after, "profile"), ["802"]);
    assert!(ids(&after, "subprofiles").is_empty(), "{after}");
    assert_eq!(ids(&after, "destinations"), ["m-802"], "{after}");
    let impressions = records(&after, "impressions");
    assert_eq!(impressions.len(), 1, "{after}");
    assert_eq!(impressions[0]["data"]["n"], 1);
    assert!(records(&after, "errors").is_empty(), "{after}");
    assert_unknown(&app, &account, "subprofile/8021").await;
}

#[tokio::test]
async fn erasing_an_address_empties_its_export_and_removes_the_profile_it_belonged_to() {
    let (app, account, key) = start();
    let email = "erase.me@example.net";
    ingest(
        &app,
        &key,
        &[
            profile(803, email),
            profile(804, "keep.me@example.net"),
            message("m-803", Some(803), None, email),
            message("m-guest", None, None, email),
            event("impression", "m-803", Some(803), None, email, json!({"n":1})),
            event("click", "m-guest", None, None, email, json!({"link":"https://shop.example/"})),
            message("m-804", Some(804), None, "keep.me@example.net"),
        ],
    )
    .await;
    let (_, before) = export(&app, &account, "email/erase.me%40example.net").await;
    assert_eq!(ids(&before, "destinations").len(), 2, "{before}");

    let answer = ingest(&app, &key, &[erase("email", json!(email))]).await;

    assert_eq!(answer, counts(0, 0, 0, 0, 1, 0));
    let (_, after) = export(&app, &account, "email/erase.me%40example.net").await;
    for name in HISTORY {
        assert!(records(&after, name).is_empty(), "{name} in {after}");
    }
    assert_unknown(&app, &account, "profile/803").await;
    let (_, kept) = export(&app, &account, "profile/804").await;
    assert_eq!(ids(&kept, "destinations"), ["m-804"], "other addresses stay");
}

#[tokio::test]
async fn erasing_what_is_not_there_answers_200_and_counts_the_lines() {
    let (app, account, key) = start();

    let answer = ingest(
        &app,
        &key,
        &[
            erase("profile", json!(999_001)),
            erase("subprofile", json!(999_002)),
            erase("email", json!("nobody@example.net")),
        ],
    )
    .await;

    assert_eq!(answer, counts(0, 0, 0, 0, 3, 0));
    let (_, sample) = export(&app, &account, "profile/42").await;
    assert_eq!(ids(&sample, "subprofiles"), ["4201"], "nothing else was erased");
}

#[tokio::test]
async fn a_message_naming_a_subprofile_follows_the_subprofile_to_its_new_profile() {
    let (app, account, key) = start();
    ingest(
        &app,
        &key,
        &[
            profile(1, "one@example.net"),
            profile(2, "two@example.net"),
            subprofile(10, 1, "ten@example.net"),
            message("m-10", Some(1), Some(10), "ten@example.net"),
            event("impression", "m-10", Some(1), Some(10), "ten@example.net", json!({"n":10})),
        ],
    )
    .await;
    let (_, first) = export(&app, &account, "profile/1").await;
    assert_eq!(ids(&first, "destinations"), ["m-10"]);
    assert_eq!(records(&first, "impressions").len(), 1);

    let answer = ingest(&app, &key, &[subprofile(10, 2, "ten@example.net")]).await;

    assert_eq!(answer, counts(0, 1, 0, 0, 0, 0));
    let (_, old) = export(&app, &account, "profile/1").await;
    assert!(ids(&old, "subprofiles").is_empty(), "{old}");
    assert!(ids(&old, "destinations").is_empty(), "{old}");
    assert!(records(&old, "impressions").is_empty(), "{old}");
    let (_, new) = export(&app, &account, "profile/2").await;
    assert_eq!(ids(&new, "subprofiles"), ["10"]);
    assert_eq!(ids(&new, "destinations"), ["m-10"], "exactly once: {new}");
    assert_eq!(records(&new, "impressions").len(), 1, "exactly once: {new}");
}

#[tokio::test]
async fn the_import_command_takes_ses_records_too_and_a_second_import_stores_nothing_new() {
    let (mut app, account) = TestApp::new(&[]);
    let path = app.data_dir().join("ses.ndjson");
    std::fs::write(&path, SES_EVENTS).expect("write");
    for _ in 0..2 {
        let output = app.cli(&["import", path.to_str().expect("path")]);
        assert!(output.status.success(), "import: {}", String::from_utf8_lossy(&output.stderr));
        let summary: Value = serde_json::from_slice(&output.stdout).expect("summary JSON");
        assert_eq!(summary, json!({"loaded": counts(0, 0, 0, 6, 0, 2)}));
    }
    app.spawn();
    // The sample's own open of jane.doe@example.com, and the SES open: two, not three.
    let (_, export) = export(&app, &account, "email/jane.doe%40example.com").await;
    let opens = records(&export, "impressions");
    assert_eq!(opens.len(), 2, "{opens:?}");
    assert_eq!(opens.iter().filter(|o| o["data"]["open"].is_object()).count(), 1);
}

#[tokio::test]
async fn a_line_of_an_account_that_never_was_or_was_deleted_refuses_the_body_naming_its_number() {
    let (app, account, key) = start();
    let created = app.create_account();
    assert_eq!(created.id, 2);
    let deleted = app.cli(&["account", "delete", "--account", "2"]);
    assert!(deleted.status.success(), "account delete: {}", String::from_utf8_lossy(&deleted.stderr));
    let mut of_deleted = profile(902, "nine@example.net");
    of_deleted["account"] = json!(2);
    let mut never_created = erase("profile", json!(42));
    never_created["account"] = json!(3);
    let mut ses_of_unknown: Value = serde_json::from_str(SES_EVENTS.lines().next().expect("a record")).expect("JSON");
    ses_of_unknown["mail"]["tags"]["account"] = json!(["4"]);

    for (what, bad) in [("deleted", of_deleted), ("never created", never_created), ("SES record", ses_of_unknown)] {
        // A blank line 2: the number counts the lines of the body.
        let body = format!("{}\n\n{bad}\n{}\n", profile(901, "nine@example.net"), erase("profile", json!(42)));

        let response = post(&app, Some(&key), Some(NDJSON), body.as_bytes()).await;

        assert_error(&response, 400, "line 3: no such account");
        assert_unknown(&app, &account, "profile/901").await;
        let (_, sample) = export(&app, &account, "profile/42").await;
        assert_eq!(ids(&sample, "profile"), ["42"], "{what}: the erase line on line 4 was applied");
    }
}

#[tokio::test]
async fn the_import_command_refuses_a_file_with_a_line_of_an_account_that_does_not_exist() {
    let (mut app, account) = TestApp::new(&[]);
    let path = app.data_dir().join("foreign.ndjson");
    let mut foreign = profile(904, "nine@example.net");
    foreign["account"] = json!(7);
    std::fs::write(&path, ndjson(&[profile(903, "nine@example.net"), foreign])).expect("write");

    let output = app.cli(&["import", path.to_str().expect("path")]);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2: no such account") && stderr.contains("nothing was loaded"), "{stderr}");
    app.spawn();
    assert_unknown(&app, &account, "profile/903").await;
}
