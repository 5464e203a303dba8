//! The HTML report on fakes: the builder writes it beside the JSON from the same records, the
//! delivery mail attaches or links it, and `/data` and `/download` serve it with its policy.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{section, section_names, world, world_with};
use datarequest::config::Settings;
use datarequest::domain::{EmailAddress, ProfileId, Report, RequestId, Subject};
use datarequest::inbound::http::{Routes, router};
use datarequest::ports::ExportFormat;
use http_body_util::BodyExt;
use mail_parser::MimeHeaders;
use tower::ServiceExt;

fn profile(id: &str) -> Subject {
    Subject::Profile(ProfileId::parse(id).expect("id"))
}

async fn build(world: &common::World, subject: Subject, report: Option<Report>) -> RequestId {
    let origin = datarequest::app::Origin::default();
    let id = world.app.submit(world.account, subject, report, &origin).await.expect("accepted");
    world.run_queue().await;
    id
}

fn html(world: &common::World, id: RequestId) -> String {
    let bytes = world.fakes.exports.bytes_of(id, ExportFormat::Html).expect("the report exists");
    String::from_utf8(bytes).expect("UTF-8")
}

fn dpo() -> Report {
    Report::Email(EmailAddress::parse("dpo@customer.example").expect("address"))
}

#[tokio::test]
async fn every_build_writes_a_report_of_the_same_records_stating_the_requests_expiry() {
    let world = world().await;
    for subject in [profile("42"), Subject::Email(EmailAddress::parse("jane.doe@example.com").expect("address"))] {
        let id = build(&world, subject, None).await;
        let export = world.export(id);
        let page = html(&world, id);
        let summary = &page[page.find("class=\"summary\"").expect("a summary")..];
        for name in section_names(&export) {
            let count = section(&export, &name).expect("section").len();
            let row = format!("<td>{name}</td><td class=\"count\">{count}</td>");
            assert!(summary.contains(&row), "{name} with {count} records in the summary");
        }
        let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
        let expires = request.expires.expect("an expiry");
        assert!(summary.contains(&format!("{expires} UTC, 7 days after it was built")), "{summary}");
    }
}

#[tokio::test]
async fn the_report_is_attached_beside_the_json_while_both_fit_and_linked_otherwise() {
    let probe = world().await;
    let id = build(&probe, profile("42"), None).await;
    let json = probe.fakes.exports.bytes(id).expect("export").len() as u64;
    let page = probe.fakes.exports.bytes_of(id, ExportFormat::Html).expect("report").len() as u64;

    for (limit, attachments, links) in [(json + page, 2, 0), (json + page - 1, 1, 1), (json - 1, 0, 2)] {
        let mut settings = Settings::for_tests(common::PUBLIC_URL);
        settings.attachment_limit = limit;
        let world = world_with(settings).await;
        let id = build(&world, profile("42"), Some(dpo())).await;
        let sent = world.fakes.mailer.sent();
        let message = mail_parser::MessageParser::default().parse(&sent[0].raw).expect("MIME");
        assert_eq!(message.attachment_count(), attachments, "limit {limit}");
        if attachments == 2 {
            let report = message.attachment(1).expect("the report");
            assert_eq!(report.attachment_name(), Some(format!("datarequest-{id}.html").as_str()));
            let kind = report.content_type().expect("type");
            assert_eq!((kind.ctype(), kind.subtype()), ("text", Some("html")));
            assert_eq!(report.contents(), world.fakes.exports.bytes_of(id, ExportFormat::Html).expect("report"));
        }
        let text = message.body_text(0).expect("text").into_owned();
        let prefix = format!("{}/v1/datarequest/{id}/download?token=", common::PUBLIC_URL);
        let found: Vec<&str> = text.split(&prefix).skip(1).filter_map(|rest| rest.split_whitespace().next()).collect();
        assert_eq!(found.len(), links, "{text}");
        if links > 0 {
            assert!(found.last().expect("a link").ends_with("&format=html"), "the report's link: {text}");
        }
        if links == 2 {
            assert!(!found[0].contains("format="), "the JSON's link first");
        }
    }
}

async fn get(app: &datarequest::App, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let request =
        Request::get(uri).header("authorization", "Bearer EXAMPLE_TOKEN").body(Body::empty()).expect("request");
    let response = router(app.clone(), Routes::Status).oneshot(request).await.expect("router answers");
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.expect("body").to_bytes().to_vec())
}

#[tokio::test]
async fn data_serves_the_report_with_a_policy_that_lets_it_load_and_run_nothing() {
    let world = world().await;
    let id = build(&world, profile("42"), None).await;

    let (status, headers, body) = get(&world.app, &format!("/v2/datarequest/{id}/data?format=html")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().expect("ASCII");
    for directive in
        ["default-src 'none'", "img-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"]
    {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(body, world.fakes.exports.bytes_of(id, ExportFormat::Html).expect("report"));

    for query in ["", "?format=json"] {
        let (status, headers, body) = get(&world.app, &format!("/v2/datarequest/{id}/data{query}")).await;
        assert_eq!((status, headers["content-type"].to_str().ok()), (StatusCode::OK, Some("application/json")));
        assert_eq!(body, world.fakes.exports.bytes(id).expect("export"), "{query}");
    }
    for bad in ["xml", "HTML", "", "json&format=html"] {
        let (status, _, body) = get(&world.app, &format!("/v2/datarequest/{id}/data?format={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert!(body["error"]["message"].as_str().expect("message").contains("format"), "{bad}: {body}");
    }
}

#[tokio::test]
async fn the_mails_report_link_gives_the_report() {
    let mut settings = Settings::for_tests(common::PUBLIC_URL);
    settings.attachment_limit = 1;
    let world = world_with(settings).await;
    let id = build(&world, profile("42"), Some(dpo())).await;
    let sent = world.fakes.mailer.sent();
    let message = mail_parser::MessageParser::default().parse(&sent[0].raw).expect("MIME");
    let text = message.body_text(0).expect("text").into_owned();
    let link = text
        .split_whitespace()
        .find(|word| word.ends_with("&format=html"))
        .expect("the report's link")
        .trim_start_matches(common::PUBLIC_URL);

    let (status, headers, body) = get(&world.app, link).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(headers["content-security-policy"].to_str().expect("ASCII").starts_with("default-src 'none'"));
    assert_eq!(headers["content-disposition"], format!("inline; filename=\"datarequest-{id}.html\"").as_str());
    assert_eq!(body, world.fakes.exports.bytes_of(id, ExportFormat::Html).expect("report"));
    let json_link = link.trim_end_matches("&format=html");
    let (status, headers, _) = get(&world.app, json_link).await;
    assert_eq!((status, headers["content-type"].to_str().ok()), (StatusCode::OK, Some("application/json")));
}
