//! Each subject kind end to end with each delivery, the switch from attachment to link at the
//! limit, and the download link.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use mail_parser::{MessageParser, MimeHeaders};
use sha2::Sha256;

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
