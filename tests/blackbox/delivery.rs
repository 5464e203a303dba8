//! Each subject kind end to end with each delivery, the switch from attachment to link at the
//! limit, the download link, and web delivery's idle timeout against slow, stalled and silent
//! receivers.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use datarequest::adapters::webhook::HttpWebDelivery;
use datarequest::domain::{WebAddress, WebPolicy};
use datarequest::ports::{ExportFile, WebDelivery, WebhookHeaders};
use datarequest_tests::receiver::{Behaviour, SlowReceiver};
use hmac::{Hmac, Mac};
use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::helpers::{Account, Receiver, TestApp, section};

const SUBJECTS: [(&str, &str, &str); 3] = [
    ("profile/42", "profile", "x7k2mw9q"),
    ("subprofile/4201", "subprofile", "x7k2mw9q"),
    ("email/guest%40example.org", "email", "tx-0001"),
];

fn attachment_of(raw: &[u8]) -> (String, Vec<u8>) {
    let message = MessageParser::default().parse(raw).expect("the outbox holds a MIME message");
    let attachment = message.attachment(0).expect("the export is attached");
    (attachment.attachment_name().expect("a file name").to_owned(), attachment.contents().to_vec())
}

#[tokio::test]
async fn every_subject_kind_is_mailed_with_the_export_attached_byte_for_byte() {
    let (app, account) = TestApp::start(&[("DATAREQUEST_SENDER", "Privacy Desk <privacy@shop.example>")]);
    for (subject, kind, message_id) in SUBJECTS {
        let id = app.submit(subject, &account, Some("dpo@customer.example")).await;
        let status = app.wait_delivered(id, &account).await;
        assert_eq!(status["status"], "available", "{subject}: {status}");
        assert_eq!(status["delivery"]["method"], "attachment");

        let data = app.data(id, &account).await;
        let raw = app.outbox(id);
        let message = MessageParser::default().parse(&raw).expect("MIME");
        assert_eq!(message.to().and_then(|a| a.first()).and_then(|a| a.address()), Some("dpo@customer.example"));
        assert_eq!(message.from().and_then(|a| a.first()).and_then(|a| a.address()), Some("privacy@shop.example"));
        let (name, attached) = attachment_of(&raw);
        assert_eq!(name, format!("datarequest-{id}.json"));
        assert_eq!(attached, data, "{subject}: the attachment is the export");

        let export: serde_json::Value = serde_json::from_slice(&data).expect("JSON");
        assert_eq!(export["info"]["type"], kind);
        let destinations = section(&export, "destinations").expect("destinations");
        assert!(destinations.iter().any(|d| d["ID"] == message_id), "{subject} holds {message_id}");
        assert_eq!(status["available"].as_u64(), Some(data.len() as u64));
    }
}

fn verify_signature(account: &Account, headers: &axum::http::HeaderMap, body: &[u8]) {
    let id = headers["webhook-id"].to_str().expect("id");
    let timestamp = headers["webhook-timestamp"].to_str().expect("timestamp");
    let key = STANDARD.decode(account.secret.trim_start_matches("whsec_")).expect("key");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(headers["webhook-signature"].to_str().ok(), Some(expected.as_str()));
}

#[tokio::test]
async fn every_subject_kind_is_posted_to_a_web_address_signed_as_standard_webhooks() {
    let receiver = Receiver::start(&[]).await;
    let (app, account) = TestApp::start(&[]);
    for (n, (subject, kind, _)) in SUBJECTS.into_iter().enumerate() {
        let id = app.submit(subject, &account, Some(&receiver.url)).await;
        let status = app.wait_delivered(id, &account).await;
        assert_eq!(status["delivery"]["status"], "sent", "{status}");
        assert_eq!(status["delivery"]["method"], "web");
        let received = receiver.received();
        assert_eq!(received.len(), n + 1, "one POST per request");
        let post = &received[n];
        assert_eq!(post.headers["content-type"], "application/json");
        assert_eq!(post.headers["webhook-id"].to_str().ok(), Some(id.to_string().as_str()));
        verify_signature(&account, &post.headers, &post.body);
        assert_eq!(post.body, app.data(id, &account).await);
        let export: serde_json::Value = serde_json::from_slice(&post.body).expect("JSON");
        assert_eq!(export["info"]["type"], kind);
    }
}

#[tokio::test]
async fn web_delivery_retries_failures_refuses_redirects_and_reports_the_outcome() {
    let flaky = Receiver::start(&[500, 503]).await;
    let redirecting = Receiver::start(&[302, 302, 302]).await;
    let (app, account) = TestApp::start(&[("DATAREQUEST_DELIVERY_ATTEMPTS", "3")]);

    let id = app.submit("profile/42", &account, Some(&flaky.url)).await;
    let status = app.wait_delivered(id, &account).await;
    assert_eq!(status["delivery"]["status"], "sent");
    assert_eq!(status["delivery"]["attempts"], 3);
    assert_eq!(flaky.received().len(), 3);

    let id = app.submit("profile/42", &account, Some(&redirecting.url)).await;
    let status = app.wait_delivered(id, &account).await;
    assert_eq!(status["delivery"]["status"], "failed");
    assert_eq!(status["delivery"]["attempts"], 3);
    assert_eq!(status["delivery"]["error"], "the web address answered HTTP 302");
    assert_eq!(status["status"], "available", "the export can still be fetched");
    assert_eq!(redirecting.received().len(), 3, "the redirect target was never called");
}

async fn export_size(subject: &str) -> u64 {
    let (app, account) = TestApp::start(&[]);
    let id = app.submit(subject, &account, None).await;
    let status = app.wait_for(id, &account, |s| s["status"] == "available").await;
    status["available"].as_u64().expect("size")
}

fn link_in(app: &TestApp, id: u64) -> String {
    let raw = app.outbox(id);
    let message = MessageParser::default().parse(&raw).expect("MIME");
    assert_eq!(message.attachment_count(), 0, "nothing is attached above the limit");
    crate::helpers::mailed_link(app, id)
}

#[tokio::test]
async fn above_the_attachment_limit_the_mail_holds_a_signed_link_that_needs_no_access_token() {
    let size = export_size("profile/42").await;

    let limit = size.to_string();
    let (app, account) = TestApp::start(&[("DATAREQUEST_ATTACHMENT_LIMIT", &limit)]);
    let id = app.submit("profile/42", &account, Some("dpo@customer.example")).await;
    assert_eq!(app.wait_delivered(id, &account).await["delivery"]["method"], "attachment", "at the limit: attached");

    let limit = (size - 1).to_string();
    let (app, account) = TestApp::start(&[("DATAREQUEST_ATTACHMENT_LIMIT", &limit)]);
    let id = app.submit("profile/42", &account, Some("dpo@customer.example")).await;
    let status = app.wait_delivered(id, &account).await;
    assert_eq!(status["delivery"]["method"], "link", "one byte over: linked");
    let link = link_in(&app, id);
    let prefix = format!("{}/v1/datarequest/{id}/download?token=", app.url);
    assert!(link.starts_with(&prefix), "{link}");

    let download = app.client.get(&link).send().await.expect("download");
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/json");
    assert_eq!(download.bytes().await.expect("body").to_vec(), app.data(id, &account).await);

    // Tampered: another request's id, a changed signature, a changed expiry.
    let token = link.split("token=").nth(1).expect("token").to_owned();
    let (expires, signature) = token.split_once('.').expect("expiry.signature");
    let mut flipped = signature.to_owned();
    let last = if flipped.ends_with('A') { "B" } else { "A" };
    flipped.replace_range(flipped.len() - 1.., last);
    let later: u64 = expires.parse::<u64>().expect("expiry") + 3600;
    for path in [
        format!("/v1/datarequest/{}/download?token={token}", id + 1),
        format!("/v1/datarequest/{id}/download?token={expires}.{flipped}"),
        format!("/v1/datarequest/{id}/download?token={later}.{signature}"),
        format!("/v1/datarequest/{id}/download"),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status, 400, "{path}");
        assert_eq!(response.json()["error"]["message"], "Invalid or expired download token");
    }

    // Expired: correctly signed with the service's key, but its time has passed.
    let secret = std::fs::read_to_string(app.data_dir().join("link-secret")).expect("link secret");
    let past = 1_700_000_000u64;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.trim().as_bytes()).expect("hmac");
    mac.update(format!("download.{id}.{past}").as_bytes());
    let stale = format!("{past}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    let response = app.get(&format!("/v1/datarequest/{id}/download?token={stale}")).await;
    assert_eq!(response.status, 400);
    // The same scheme with a future expiry would pass: the refusal is the expiry, not the form.
    let future = expires.parse::<u64>().expect("expiry");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.trim().as_bytes()).expect("hmac");
    mac.update(format!("download.{id}.{future}").as_bytes());
    let fresh = format!("{future}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    assert_eq!(fresh, token);
}

// Web delivery under an idle timeout: `HttpWebDelivery` itself against raw-socket receivers that
// read at a set pace, stop reading, or never answer.

/// `len` bytes that differ all along, so a lost, repeated or reordered chunk changes the digest.
fn export_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn sha256(bytes: &[u8]) -> Option<[u8; 32]> {
    Some(Sha256::digest(bytes).into())
}

/// POSTs `bytes` to the receiver under an idle timeout of `timeout`; the result and how long
/// the POST took.
async fn post_timed(receiver: &SlowReceiver, bytes: &[u8], timeout: Duration) -> (anyhow::Result<u16>, Duration) {
    let delivery = HttpWebDelivery::new(WebPolicy::AllowPrivate, timeout).expect("client");
    let target = WebAddress::parse(&receiver.url, WebPolicy::AllowPrivate).expect("address");
    let headers = WebhookHeaders::standard("1".into(), 1_700_000_000, "v1,x".into());
    let file = ExportFile { len: bytes.len() as u64, reader: Box::pin(std::io::Cursor::new(bytes.to_vec())) };
    let start = Instant::now();
    // A hang is a failure of its own, not a stuck test run.
    let posted = tokio::time::timeout(Duration::from_secs(30), delivery.post(&target, &headers, file))
        .await
        .expect("the POST ends by itself");
    (posted, start.elapsed())
}

#[tokio::test]
async fn web_delivery_reaches_a_slow_receiver_however_much_longer_than_the_timeout_it_takes() {
    // 20 MB at 5 MB/s: 4 s in all, twice the timeout. The receiver must read what the
    // connection holds in flight (on loopback about 4 MB of the sender's socket buffer) well
    // within the timeout, or a steady receiver would look stalled.
    let timeout = Duration::from_secs(2);
    let bytes = export_bytes(20_000_000);
    let receiver = SlowReceiver::start(Some(5_000_000), Behaviour::Answer).await;

    let (posted, elapsed) = post_timed(&receiver, &bytes, timeout).await;

    assert_eq!(posted.expect("delivered"), 200);
    assert!(elapsed > timeout * 3 / 2, "the receiver's pace made the POST outlast the timeout: {elapsed:?}");
    let seen = receiver.seen();
    assert_eq!(seen.content_length, Some(bytes.len() as u64));
    assert_eq!(seen.bytes, bytes.len() as u64);
    assert_eq!(seen.sha256, sha256(&bytes), "the body arrives byte for byte");
}

#[tokio::test]
async fn web_delivery_gives_up_on_a_receiver_that_stops_reading_after_the_idle_timeout() {
    let timeout = Duration::from_secs(1);
    let pause = Duration::from_secs(3);
    let bytes = export_bytes(16_000_000);
    let receiver = SlowReceiver::start(None, Behaviour::Stall { after: 256 * 1024, pause }).await;

    let (posted, elapsed) = post_timed(&receiver, &bytes, timeout).await;

    let error = posted.expect_err("a stalled receiver fails the delivery").to_string();
    assert_eq!(error, "the web address did not answer in time");
    assert!(elapsed >= timeout && elapsed < pause, "given up after the idle timeout: {elapsed:?}");
    // The connection is closed, not left pushing the rest: reading on, the receiver meets its end.
    let seen = receiver.wait_for(Duration::from_secs(10), |s| s.hung_up.is_some()).await;
    assert!(seen.hung_up.is_some(), "the sender hung up: {seen:?}");
    assert!(seen.bytes < bytes.len() as u64, "the body was cut short: {seen:?}");
}

#[tokio::test]
async fn web_delivery_gives_up_on_a_receiver_that_reads_everything_but_never_answers() {
    let timeout = Duration::from_secs(1);
    let bytes = export_bytes(1_000_000);
    let receiver = SlowReceiver::start(None, Behaviour::NeverAnswer).await;

    let (posted, elapsed) = post_timed(&receiver, &bytes, timeout).await;
    let failed = Instant::now();

    let error = posted.expect_err("a silent receiver fails the delivery").to_string();
    assert_eq!(error, "the web address did not answer in time");
    assert!(elapsed >= timeout && elapsed < 3 * timeout, "given up after the idle timeout: {elapsed:?}");
    let seen = receiver.seen();
    assert_eq!(seen.sha256, sha256(&bytes), "the whole body was read");
    let finished = seen.finished.expect("the whole body was read");
    assert!(failed - finished >= timeout - Duration::from_millis(250), "the answer was waited for: {seen:?}");
    let seen = receiver.wait_for(Duration::from_secs(5), |s| s.hung_up.is_some()).await;
    assert!(seen.hung_up.is_some(), "the sender hung up: {seen:?}");
}
