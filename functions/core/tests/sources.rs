//! The export and the intake with sources (on fakes): rows appended after the store's records,
//! subjects that only a source knows, and a source that fails the build.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{section, world};
use datarequest::app::{Origin, SubmitError};
use datarequest::domain::{ProfileId, RequestId, State, Subject};
use datarequest::ports::{ExportFormat, SourceError, SourceRow};
use serde_json::json;

fn profile(id: &str) -> Subject {
    Subject::Profile(ProfileId::parse(id).expect("id"))
}

fn row(source: &str, members: &[(&str, serde_json::Value)]) -> SourceRow {
    SourceRow {
        source: Arc::from(source),
        columns: members.iter().map(|(name, _)| (*name).to_owned()).collect::<Vec<_>>().into(),
        values: members.iter().map(|(_, value)| value.clone().into()).collect(),
    }
}

#[tokio::test]
async fn a_section_holds_the_stores_records_first_then_each_sources_rows_as_they_come() {
    let world = world().await;
    let sources = &world.fakes.sources;
    let shop = row("shop", &[("ID", json!("shop-1")), ("subject", json!("<b>Sale</b>")), ("amount", json!("12.50"))]);
    let crm = row("crm", &[("ID", json!(7)), ("timestampsent", json!("2026-01-02 03:04:05")), ("tags", json!(["a"]))]);
    sources.add(world.account, profile("42"), "destinations", shop);
    sources.add(world.account, profile("42"), "destinations", crm);
    sources.add(world.account, profile("42"), "clicks", row("shop", &[("link", json!(null))]));

    let id = world.app.submit(world.account, profile("42"), None, &Origin::default()).await.expect("accepted");
    world.run_queue().await;

    let export = world.export(id);
    let destinations = section(&export, "destinations").expect("destinations");
    let n = destinations.len();
    assert!(n > 2, "the store's messages come too");
    assert!(destinations[..n - 2].iter().all(|m| m["mime"].is_string()), "the store's records come first");
    assert_eq!(*destinations[n - 2], json!({"ID": "shop-1", "subject": "<b>Sale</b>", "amount": "12.50"}));
    assert_eq!(*destinations[n - 1], json!({"ID": 7, "timestampsent": "2026-01-02 03:04:05", "tags": ["a"]}));
    let bytes = String::from_utf8(world.fakes.exports.bytes(id).expect("export")).expect("utf-8");
    let in_order = r#"{"ID":7,"timestampsent":"2026-01-02 03:04:05","tags":["a"]}]"#;
    assert!(bytes.contains(in_order), "members keep the columns' order, and the section ends with the last source");
    assert_eq!(section(&export, "clicks").expect("clicks").last().map(|c| (*c).clone()), Some(json!({"link": null})));

    let html = String::from_utf8(world.fakes.exports.bytes_of(id, ExportFormat::Html).expect("report")).expect("utf-8");
    assert!(html.contains("From shop"), "the report shows the source's rows");
    assert!(html.contains("&lt;b&gt;Sale&lt;/b&gt;") && !html.contains("<b>Sale</b>"), "escaped");
    assert!(html.contains("2026-01-02 03:04:05 UTC"), "a source's time counts in the summary's range");
}

#[tokio::test]
async fn sections_of_the_platforms_own_follow_copernicas_in_the_json_and_in_the_report_in_any_kind() {
    let world = world().await;
    let sources = &world.fakes.sources;
    let address = datarequest::domain::EmailAddress::parse("jane@example.com").expect("address");
    let email = Subject::Email(address);
    sources.add(world.account, email.clone(), "subscriptions", row("shop", &[("list", json!("News"))]));
    sources.add(world.account, email.clone(), "consents", row("crm", &[("given", json!("2024-01-01 00:00:00"))]));
    sources.add(world.account, profile("42"), "subscriptions", row("shop", &[("list", json!("Deals"))]));

    let id = world.app.submit(world.account, email, None, &Origin::default()).await.expect("accepted");
    world.run_queue().await;

    let export = world.export(id);
    let names: Vec<&str> =
        export["data"].as_array().expect("data").iter().map(|s| s[0].as_str().expect("name")).collect();
    let mut expected = datarequest::domain::SubjectKind::Email.standard_sections().to_vec();
    expected.extend(["consents", "subscriptions"]);
    assert_eq!(names, expected, "Copernica's sections first, then the platform's own alphabetically");
    assert_eq!(section(&export, "subscriptions").expect("subscriptions"), [&json!({"list": "News"})]);
    assert_eq!(section(&export, "consents").expect("consents"), [&json!({"given": "2024-01-01 00:00:00"})]);
    let html = String::from_utf8(world.fakes.exports.bytes_of(id, ExportFormat::Html).expect("report")).expect("utf-8");
    assert!(html.contains("<section id=\"subscriptions\"><h2>subscriptions"), "under its own name");
    assert!(html.contains("News") && !html.contains("Deals"), "only the subject's rows");
}

#[tokio::test]
async fn a_subject_only_a_source_knows_is_accepted_and_an_unknown_one_is_not() {
    let world = world().await;
    world.fakes.sources.know(world.account, profile("9001"));
    world.fakes.sources.add(world.account, profile("9001"), "profile", row("shop", &[("ID", json!(9001))]));

    let id = world.app.submit(world.account, profile("9001"), None, &Origin::default()).await.expect("accepted");
    world.run_queue().await;
    assert_eq!(section(&world.export(id), "profile").map(|p| p.len()), Some(1));

    let unknown = world.app.submit(world.account, profile("9002"), None, &Origin::default()).await;
    assert!(matches!(unknown, Err(SubmitError::NoSuchProfile)), "{unknown:?}");
}

/// Makes the shop's clicks of profiles fail with `what` and submits a request for profile 42.
async fn failing_clicks(world: &common::World, what: &str, permanent: bool) -> RequestId {
    world.fakes.sources.fail(SourceError {
        source_name: "shop".into(),
        kind: Some("profile"),
        section: Some("clicks".into()),
        what: what.into(),
        permanent,
    });
    world.app.submit(world.account, profile("42"), None, &Origin::default()).await.expect("accepted")
}

#[tokio::test]
async fn a_failing_source_fails_the_build_with_a_reason_naming_it_and_leaves_no_export() {
    let world = world().await;
    let id = failing_clicks(&world, "canceling statement due to statement timeout (SQLSTATE 57014)", false).await;
    let attempts = world.app.settings().build_attempts;
    assert!(world.app.handle_message(id, 1).await.is_err(), "an early attempt fails, to be retried");
    world.app.handle_message(id, attempts).await.expect("the last attempt settles the request");

    let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!(request.state, State::Failed);
    assert_eq!(
        request.reason.as_deref(),
        Some(
            "the export could not be built: source \"shop\" (profile, clicks): canceling statement due to statement \
             timeout (SQLSTATE 57014)"
        )
    );
    assert!(world.fakes.exports.bytes(id).is_none(), "no export is complete with a source missing");
}

#[tokio::test]
async fn a_build_waiting_to_be_tried_again_shows_why_and_clears_it_once_built() {
    let world = world().await;
    let id = failing_clicks(&world, "could not connect: connection refused", false).await;
    let attempts = world.app.settings().build_attempts;
    assert!(world.app.handle_message(id, 1).await.is_err(), "to be retried");

    let requests = datarequest::compose::ports(&world.app).requests;
    let waiting = requests.get(id).await.expect("store").expect("request");
    assert_eq!(waiting.state, State::Building);
    assert_eq!(
        waiting.reason.as_deref(),
        Some(
            format!(
                "the export could not be built yet; attempt 1 of {attempts} failed, trying again: source \"shop\" \
                 (profile, clicks): could not connect: connection refused"
            )
            .as_str()
        )
    );

    world.fakes.sources.recover();
    world.app.handle_message(id, 2).await.expect("built at the second attempt");
    let built = requests.get(id).await.expect("store").expect("request");
    assert_eq!((built.state, built.reason), (State::Built, None));
}

#[tokio::test]
async fn a_query_the_source_refuses_fails_the_build_at_its_first_attempt() {
    let world = world().await;
    let id = failing_clicks(&world, "permission denied for table events (SQLSTATE 42501)", true).await;

    world.app.handle_message(id, 1).await.expect("the first attempt settles the request");

    let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!(request.state, State::Failed);
    assert!(request.reason.is_some_and(|r| r.ends_with("permission denied for table events (SQLSTATE 42501)")));
}
