//! The worker on fakes: what each subject's export holds, and how delivery behaves when
//! messages come twice, fail, or meet the attachment limit.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use common::{section, section_names, world, world_with};
use datarequest::app::QueueOutcome as Outcome;
use datarequest::config::Settings;
use datarequest::domain::{
    DeliveryStatus, DownloadToken, EmailAddress, ProfileId, Report, RequestId, State, Subject, SubprofileId,
    Transition, WebAddress, WebPolicy,
};
use datarequest::ports::RequestStore;
use hmac::Mac;
use mail_parser::MimeHeaders;

fn profile(id: &str) -> Subject {
    Subject::Profile(ProfileId::parse(id).expect("id"))
}

fn email(address: &str) -> Subject {
    Subject::Email(EmailAddress::parse(address).expect("address"))
}

fn ids<'a>(records: &[&'a serde_json::Value], key: &str) -> Vec<&'a str> {
    records.iter().map(|r| r[key].as_str().unwrap_or("null")).collect()
}

/// Submits a request (queued, not yet handled).
async fn accept(world: &common::World, subject: Subject, report: Option<Report>) -> RequestId {
    world.app.submit(world.account, subject, report, &datarequest::app::Origin::default()).await.expect("accepted")
}

async fn build(world: &common::World, subject: Subject, report: Option<Report>) -> RequestId {
    let id = accept(world, subject, report).await;
    world.run_queue().await;
    id
}

#[tokio::test]
async fn messages_and_events_past_the_retention_never_reach_an_export() {
    // The fake clock stands at 2025-11-28 08:53:20; 57 days back is 2025-10-02 08:53:20.
    let mut settings = Settings::for_tests(common::PUBLIC_URL);
    settings.subject_retention = Some(Duration::from_secs(57 * 86_400));
    let world = world_with(settings).await;
    let id = build(&world, profile("42"), None).await;
    let export = world.export(id);

    assert_eq!(section(&export, "profile").map(|p| p.len()), Some(1), "profiles are kept");
    assert_eq!(section(&export, "subprofiles").map(|p| p.len()), Some(1));
    assert_eq!(ids(&section(&export, "destinations").expect("destinations"), "ID"), ["x7k2mw9q"]);
    for (name, count) in [
        ("impressions", 0),
        ("clicks", 0),
        ("deliveries", 0),
        ("errors", 1),
        ("abuses", 1),
        ("unsubscribes", 1),
        ("surveys", 0),
    ] {
        assert_eq!(section(&export, name).map(|s| s.len()), Some(count), "{name}");
    }
}

#[tokio::test]
async fn a_profile_export_holds_the_profile_its_subprofiles_and_every_message_and_event() {
    let world = world().await;
    let id = build(&world, profile("42"), None).await;
    let export = world.export(id);

    assert_eq!(export["info"], serde_json::json!({"type": "profile", "id": 42}));
    assert_eq!(
        section_names(&export),
        [
            "profile",
            "subprofiles",
            "destinations",
            "impressions",
            "clicks",
            "deliveries",
            "errors",
            "abuses",
            "unsubscribes",
            "surveys"
        ]
    );
    let profile = section(&export, "profile").expect("profile");
    assert_eq!(profile.len(), 1);
    assert_eq!(profile[0]["ID"], "42");
    assert_eq!(profile[0]["database"], "7");
    assert_eq!(profile[0]["fields"]["firstname"], "Jane");
    assert_eq!(profile[0]["interests"], serde_json::json!(["news", "offers"]));
    assert_eq!(profile[0]["created"], "2021-03-04 09:15:00");
    assert_eq!(ids(&section(&export, "subprofiles").expect("subprofiles"), "ID"), ["4201"]);
    let destinations = section(&export, "destinations").expect("destinations");
    assert_eq!(ids(&destinations, "ID"), ["b4icbaqjswyrb7tc", "x7k2mw9q"]);
    assert_eq!(destinations[1]["subprofile"], "4201");
    assert_eq!(destinations[0]["timestampsent"], "2025-10-01 07:00:00");
    assert!(destinations[0]["mime"].as_str().expect("mime").starts_with("From: Shop <news@shop.example>\r\n"));
    for (name, count) in [
        ("impressions", 1),
        ("clicks", 1),
        ("deliveries", 1),
        ("errors", 1),
        ("abuses", 1),
        ("unsubscribes", 1),
        ("surveys", 1),
    ] {
        assert_eq!(section(&export, name).expect(name).len(), count, "{name}");
    }
    assert_eq!(section(&export, "errors").expect("errors")[0]["destination"], "x7k2mw9q");
    assert_eq!(section(&export, "surveys").expect("surveys")[0]["data"]["answers"]["rating"], "4");
}

#[tokio::test]
async fn a_subprofile_export_holds_only_the_subprofile_and_its_own_messages_and_events() {
    let world = world().await;
    let id = build(&world, Subject::Subprofile(SubprofileId::parse("4201").expect("id")), None).await;
    let export = world.export(id);
    assert_eq!(export["info"], serde_json::json!({"type": "subprofile", "id": 4201}));
    assert!(section(&export, "profile").is_none());
    assert_eq!(ids(&section(&export, "subprofiles").expect("subprofiles"), "ID"), ["4201"]);
    assert_eq!(ids(&section(&export, "destinations").expect("destinations"), "ID"), ["x7k2mw9q"]);
    assert_eq!(section(&export, "errors").expect("errors").len(), 1);
    for name in ["impressions", "clicks", "deliveries", "abuses", "unsubscribes", "surveys"] {
        assert!(section(&export, name).expect(name).is_empty(), "{name}");
    }
}

#[tokio::test]
async fn e_mail_exports_match_the_address_case_insensitively_and_hold_no_profile_records() {
    let world = world().await;
    let guest = world.export(build(&world, email("guest@example.org"), None).await);
    assert_eq!(guest["info"], serde_json::json!({"type": "email", "id": "guest@example.org"}));
    assert_eq!(ids(&section(&guest, "destinations").expect("destinations"), "ID"), ["tx-0001"]);
    assert!(section(&guest, "profile").is_none() && section(&guest, "subprofiles").is_none());

    let jane = world.export(build(&world, email("JANE.Doe@Example.com"), None).await);
    assert_eq!(section_names(&jane)[0], "destinations");
    assert_eq!(ids(&section(&jane, "destinations").expect("destinations"), "ID"), ["b4icbaqjswyrb7tc"]);
    for name in ["impressions", "clicks", "deliveries", "abuses", "unsubscribes", "surveys"] {
        assert_eq!(section(&jane, name).expect(name).len(), 1, "{name}");
    }
    assert!(section(&jane, "errors").expect("errors").is_empty(), "the bounce went to another address");
}

#[tokio::test]
async fn the_same_data_gives_the_same_bytes() {
    let world = world().await;
    let first = build(&world, profile("42"), None).await;
    let second = build(&world, profile("42"), None).await;
    assert_ne!(first, second);
    assert_eq!(world.fakes.exports.bytes(first), world.fakes.exports.bytes(second));
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_request_and_another_call_under_it_is_refused() {
    let world = world().await;
    let key = datarequest::app::Origin {
        key: Some(datarequest::domain::IdempotencyKey::parse("retry-7").expect("key")),
        ..datarequest::app::Origin::default()
    };
    let report = || Report::parse("dpo@customer.example", datarequest::domain::WebPolicy::PublicOnly).ok();
    let first = world.app.submit(world.account, profile("42"), report(), &key).await.expect("accepted");
    let again = world.app.submit(world.account, profile("42"), report(), &key).await.expect("accepted");
    assert_eq!(first, again);
    assert_eq!(world.fakes.queue.drain(), [first], "one request, queued once");
    for (subject, report, what) in
        [(email("jane.doe@example.com"), report(), "subject"), (profile("42"), None, "report")]
    {
        let error = world.app.submit(world.account, subject, report, &key).await.err();
        assert!(matches!(error, Some(datarequest::app::SubmitError::KeyConflict(w)) if w == what), "{what}: {error:?}");
    }
    // Another account's key of the same text is its own.
    let other = common::second_account(&world).await;
    let theirs = world.app.submit(other, profile("42"), report(), &key).await;
    assert!(matches!(theirs, Err(datarequest::app::SubmitError::NoSuchProfile)), "profile 42 is not theirs");
    // A key older than 24 hours names nothing any more.
    world.fakes.clock.advance(std::time::Duration::from_secs(24 * 3600 + 1));
    let later = world.app.submit(world.account, profile("42"), report(), &key).await.expect("accepted");
    assert_ne!(later, first);
}

#[tokio::test]
async fn a_call_refused_for_its_subject_leaves_its_idempotency_key_unused() {
    let world = world().await;
    let key = datarequest::app::Origin {
        key: Some(datarequest::domain::IdempotencyKey::parse("first-try").expect("key")),
        ..datarequest::app::Origin::default()
    };
    let refused = world.app.submit(world.account, profile("43"), None, &key).await.err();
    assert!(matches!(refused, Some(datarequest::app::SubmitError::NoSuchProfile)), "{refused:?}");
    let accepted = world.app.submit(world.account, profile("42"), None, &key).await.expect("accepted under the key");
    assert_eq!(world.fakes.queue.drain(), [accepted]);
}

#[tokio::test]
async fn an_unknown_or_foreign_profile_is_no_entity() {
    let world = world().await;
    let other = datarequest::domain::AccountId::try_from(world.account.get() + 1).expect("id");
    for (account, subject) in [(world.account, profile("43")), (other, profile("42"))] {
        let error = world.app.submit(account, subject, None, &datarequest::app::Origin::default()).await.err();
        assert!(matches!(error, Some(datarequest::app::SubmitError::NoSuchProfile)), "{error:?}");
    }
    assert!(world.fakes.queue.drain().is_empty());
}

#[tokio::test]
async fn a_request_that_cannot_be_queued_is_marked_failed_not_left_waiting() {
    let world = world().await;
    world.fakes.queue.fail(true);
    let error = world.app.submit(world.account, profile("42"), None, &datarequest::app::Origin::default()).await;
    assert!(error.is_err());
    // The one stored request is failed with a reason.
    let failed = world.fakes.requests.unfinished().await.expect("list");
    assert!(failed.is_empty(), "nothing is left accepted: {failed:?}");
}

#[tokio::test]
async fn the_export_is_attached_up_to_the_limit_and_linked_above_it() {
    let probe = world().await;
    let size = probe.fakes.exports.bytes(build(&probe, profile("42"), None).await).expect("export").len() as u64;
    let report = Report::Email(EmailAddress::parse("dpo@customer.example").expect("address"));

    for (limit, attached) in [(size, true), (size - 1, false)] {
        let mut settings = Settings::for_tests(common::PUBLIC_URL);
        settings.attachment_limit = limit;
        let world = world_with(settings).await;
        let id = build(&world, profile("42"), Some(report.clone())).await;
        let sent = world.fakes.mailer.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to.as_str(), "dpo@customer.example");
        let message = mail_parser::MessageParser::default().parse(&sent[0].raw).expect("MIME");
        assert_eq!(message.subject(), Some(format!("Your data request {id}").as_str()));
        // Named by the request, so a mail sent again after a crash is the same message.
        let domain = world.app.settings().sender.email.domain();
        assert_eq!(message.message_id(), Some(format!("datarequest-{id}@{domain}").as_str()));
        if attached {
            let attachment = message.attachment(0).expect("an attachment");
            assert_eq!(attachment.attachment_name(), Some(format!("datarequest-{id}.json").as_str()));
            assert_eq!(attachment.contents(), world.fakes.exports.bytes(id).expect("export").as_slice());
        } else {
            assert_eq!(message.attachment_count(), 0);
            let text = message.body_text(0).expect("text");
            let prefix = format!("{}/v1/datarequest/{id}/download?token=", common::PUBLIC_URL);
            let token = text.split(&prefix).nth(1).expect("a link").split_whitespace().next().expect("token");
            let request =
                datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
            let expires = request.expires.expect("expiry");
            let checked = DownloadToken::verify(&world.app.settings().link_secret, id, token, world.app.now());
            assert_eq!(checked.map(|t| t.expires()), Ok(expires), "the link dies with the file");
        }
        let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
        assert_eq!(request.state, State::Delivered);
        assert_eq!(request.delivery.method.as_deref(), Some(if attached { "attachment" } else { "link" }));
    }
}

#[tokio::test]
async fn an_empty_export_mailed_as_a_link_opens_with_the_sentence_too_and_its_request_counts_nothing() {
    let mut settings = Settings::for_tests(common::PUBLIC_URL);
    settings.attachment_limit = 1;
    let world = world_with(settings).await;
    let report = Report::Email(EmailAddress::parse("dpo@customer.example").expect("address"));
    let id = build(&world, email("nobody@nowhere.example"), Some(report)).await;

    let sent = world.fakes.mailer.sent();
    let message = mail_parser::MessageParser::default().parse(&sent[0].raw).expect("MIME");
    assert_eq!(message.attachment_count(), 0, "linked");
    let text = message.body_text(0).expect("text");
    assert!(text.starts_with("We hold no data about this subject.\r\n\r\nThe data you requested"), "{text}");
    let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert!(request.holds_nothing());
    assert_eq!(request.records.len(), 8, "every section of an e-mail export, counted: {:?}", request.records);
}

#[tokio::test]
async fn the_audit_log_tells_what_happened_and_when_without_personal_data() {
    let world = world().await;
    let token = datarequest::domain::AccessToken::parse("EXAMPLE_TOKEN").expect("token").hash();
    let origin = datarequest::app::Origin { version: "v2", token: Some(token), ..datarequest::app::Origin::default() };
    let report = Report::Email(EmailAddress::parse("dpo@customer.example").expect("address"));
    let id = world.app.submit(world.account, profile("42"), Some(report), &origin).await.expect("accepted");
    world.run_queue().await;
    world.fakes.clock.advance(Duration::from_secs(8 * 86_400));
    assert_eq!(world.app.sweep_expired().await.expect("swept"), 1);

    let log = world.app.log(world.account, id).await.expect("log").expect("the owner's log");
    let events: Vec<serde_json::Value> = log.iter().map(|e| serde_json::to_value(e).expect("JSON")).collect();
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().expect("event")).collect();
    assert_eq!(names, ["received", "build_started", "built", "delivery", "expired"]);
    assert_eq!(events[0]["version"], "v2");
    assert_eq!(events[0]["token"], token.to_hex()[..12]);
    assert_eq!(events[0]["subject"], "profile");
    assert_eq!(events[0]["report"]["method"], "email");
    assert_eq!(events[2]["records"]["destinations"], 2);
    assert_eq!(events[2]["records"]["errors"], 1);
    let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert!(events[2]["bytes"].as_u64().is_some_and(|b| b > 1000), "{}", events[2]);
    assert_eq!(request.state, State::Expired);
    assert_eq!(events[3]["outcome"], "sent");
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
    let text = serde_json::to_string(&log).expect("JSON");
    for personal in ["dpo@customer.example", "jane", "EXAMPLE_TOKEN"] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    let stranger = common::second_account(&world).await;
    assert_eq!(world.app.log(stranger, id).await.expect("log"), None, "another account sees nothing");
}

#[tokio::test]
async fn a_duplicate_or_late_message_never_sends_a_second_mail() {
    let world = world().await;
    let report = Report::Email(EmailAddress::parse("dpo@customer.example").expect("address"));
    let id = build(&world, profile("42"), Some(report)).await;
    assert_eq!(world.app.handle_message(id, 2).await.expect("handled"), Outcome::Done);
    assert_eq!(world.app.handle_message(id, 3).await.expect("handled"), Outcome::Done);
    assert_eq!(world.fakes.mailer.sent().len(), 1);
}

#[tokio::test]
async fn a_delivery_claimed_by_another_worker_is_left_to_it() {
    let world = world().await;
    let report = Report::Email(EmailAddress::parse("dpo@customer.example").expect("address"));
    let id = accept(&world, profile("42"), Some(report)).await;
    world.fakes.mailer.fail_next(1);
    assert!(matches!(world.app.handle_message(id, 1).await.expect("handled"), Outcome::RetryAfter(_)));
    // Another worker claims the retry first: this message comes back once that claim ran out
    // (the claimer may die mid-delivery), it is never dropped.
    let now = world.app.now();
    let claim = Transition::ClaimDelivery { now, until: now.plus_seconds(60) };
    assert!(datarequest::compose::ports(&world.app).requests.update(id, &claim).await.expect("update"));
    assert_eq!(world.app.handle_message(id, 2).await.expect("handled"), Outcome::RetryAfter(Duration::from_secs(61)));
    assert!(world.fakes.mailer.sent().is_empty());
    let stored = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!(stored.delivery.status, DeliveryStatus::Sending, "left to the claimer");
    // Its claim runs out (it died): the next message takes over and sends once.
    world.fakes.clock.advance(Duration::from_secs(61));
    assert_eq!(world.app.handle_message(id, 3).await.expect("handled"), Outcome::Done);
    assert_eq!(world.fakes.mailer.sent().len(), 1);
}

#[tokio::test]
async fn a_request_of_an_account_deleted_before_its_build_fails_and_builds_nothing() {
    use datarequest::ports::Accounts;
    let world = world().await;
    let report = Report::Email(EmailAddress::parse("dpo@customer.example").expect("address"));
    let id = accept(&world, profile("42"), Some(report)).await;
    assert!(world.fakes.accounts.delete_account(world.account).await.expect("deleted"));
    assert_eq!(world.app.handle_message(id, 1).await.expect("handled"), Outcome::Done);
    let stored = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!(stored.state, State::Failed);
    assert_eq!(stored.reason.as_deref(), Some(datarequest::app::ACCOUNT_DELETED));
    assert!(world.fakes.exports.bytes(id).is_none(), "nothing was built");
    assert!(world.fakes.mailer.sent().is_empty(), "nothing was delivered");
}

#[tokio::test]
async fn a_built_export_of_an_account_deleted_before_its_delivery_is_never_delivered() {
    use datarequest::ports::Accounts;
    let world = world().await;
    let report = Report::Email(EmailAddress::parse("dpo@customer.example").expect("address"));
    let id = accept(&world, profile("42"), Some(report)).await;
    // The first attempt fails; the account goes before the retry.
    world.fakes.mailer.fail_next(1);
    assert!(matches!(world.app.handle_message(id, 1).await.expect("handled"), Outcome::RetryAfter(_)));
    assert!(world.fakes.accounts.delete_account(world.account).await.expect("deleted"));
    world.fakes.clock.advance(Duration::from_secs(3600));
    assert_eq!(world.app.handle_message(id, 2).await.expect("handled"), Outcome::Done);
    assert!(world.fakes.mailer.sent().is_empty(), "nothing was delivered");
    let stored = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!(stored.delivery.status, DeliveryStatus::Failed);
    assert_eq!(stored.delivery.error.as_deref(), Some(datarequest::app::ACCOUNT_DELETED));
}

#[tokio::test]
async fn web_delivery_is_signed_retried_with_back_off_and_shows_its_outcome() {
    let world = world().await;
    let target = WebAddress::parse("https://hooks.customer.example/gdpr", WebPolicy::PublicOnly).expect("address");
    world.fakes.web.answer(&[500, 503]);
    let id = accept(&world, profile("42"), Some(Report::Web(target))).await;

    let first = world.app.handle_message(id, 1).await.expect("handled");
    let second = world.app.handle_message(id, 2).await.expect("handled");
    let base = world.app.settings().delivery_backoff;
    assert_eq!((first, second), (Outcome::RetryAfter(base), Outcome::RetryAfter(base * 2)));
    let pending = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!(pending.delivery.status, DeliveryStatus::Pending);
    assert_eq!(pending.delivery.error.as_deref(), Some("the web address answered HTTP 503"));
    assert_eq!(world.app.handle_message(id, 3).await.expect("handled"), Outcome::Done);

    let posted = world.fakes.web.posted();
    assert_eq!(posted.len(), 3);
    let last = &posted[2];
    assert_eq!(last.target, "https://hooks.customer.example/gdpr");
    assert_eq!(last.body, world.fakes.exports.bytes(id).expect("export"));
    assert_eq!(last.headers.get("webhook-id"), Some(id.to_string().as_str()));
    // Verify as a receiver does: HMAC-SHA256 of "id.timestamp.body" with the decoded secret.
    let key = base64::engine::general_purpose::STANDARD
        .decode(world.secret.expose().trim_start_matches("whsec_"))
        .expect("base64 key");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    let (webhook_id, timestamp) = (last.headers.get("webhook-id"), last.headers.get("webhook-timestamp"));
    mac.update(format!("{}.{}.", webhook_id.unwrap_or_default(), timestamp.unwrap_or_default()).as_bytes());
    mac.update(&last.body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(last.headers.get("webhook-signature"), Some(format!("v1,{expected}").as_str()));
    let done = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!((done.state, done.delivery.status, done.delivery.attempts), (State::Delivered, DeliveryStatus::Sent, 3));
}

#[tokio::test]
async fn web_delivery_gives_up_after_the_last_attempt_but_the_export_stays_available() {
    let mut settings = Settings::for_tests(common::PUBLIC_URL);
    settings.delivery_attempts = 2;
    let world = world_with(settings).await;
    world.fakes.web.answer(&[500, 302, 200]);
    let target = WebAddress::parse("https://hooks.customer.example/gdpr", WebPolicy::PublicOnly).expect("address");
    let id = accept(&world, profile("42"), Some(Report::Web(target))).await;
    assert!(matches!(world.app.handle_message(id, 1).await.expect("handled"), Outcome::RetryAfter(_)));
    assert_eq!(world.app.handle_message(id, 2).await.expect("handled"), Outcome::Done);
    assert_eq!(world.app.handle_message(id, 3).await.expect("handled"), Outcome::Done);
    assert_eq!(world.fakes.web.posted().len(), 2, "no attempt after the last");
    let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!(request.state, State::Built);
    assert_eq!(request.delivery.status, DeliveryStatus::Failed);
    assert_eq!(request.delivery.error.as_deref(), Some("the web address answered HTTP 302"));
}

#[tokio::test]
async fn exports_expire_after_their_time_and_their_files_are_deleted() {
    let world = world().await;
    let id = build(&world, profile("42"), None).await;
    let ttl = world.app.settings().export_ttl;
    world.fakes.clock.advance(ttl - Duration::from_secs(1));
    assert_eq!(world.app.sweep_expired().await.expect("sweep"), 0);
    let alive = world.app.find(world.account, id).await.expect("find").expect("request");
    assert_eq!(alive.state, State::Built);

    world.fakes.clock.advance(Duration::from_secs(1));
    assert_eq!(world.app.sweep_expired().await.expect("sweep"), 1);
    assert!(world.fakes.exports.bytes(id).is_none());
    let expired = world.app.find(world.account, id).await.expect("find").expect("request");
    assert_eq!(expired.state, State::Expired);
    assert_eq!(expired.state.copernica_status(), "not available");
}

#[tokio::test]
async fn a_build_that_keeps_failing_ends_failed_with_its_reason_on_the_last_receive() {
    let world = world().await;
    let id = accept(&world, profile("42"), None).await;
    // Corrupt the subject data source for this request: a subject whose cursor breaks paging
    // is hard to arrange, so point the request at an account whose data store fails instead.
    let broken = datarequest::compose::rewire(
        &world.app,
        datarequest::compose::Ports {
            subjects: std::sync::Arc::new(FailingSubjects),
            ..datarequest::compose::ports(&world.app)
        },
    );
    let attempts = broken.settings().build_attempts;
    for receive in 1..attempts {
        assert!(broken.handle_message(id, receive).await.is_err(), "receive {receive} is retried");
    }
    assert_eq!(broken.handle_message(id, attempts).await.expect("handled"), Outcome::Done);
    let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!(request.state, State::Failed);
    assert_eq!(request.reason.as_deref(), Some("the export could not be built"));
    assert!(world.fakes.exports.bytes(id).is_none(), "no partial export is visible");
}

#[tokio::test]
async fn a_build_held_by_a_live_builder_comes_back_after_its_lease_and_a_dead_ones_is_taken_over() {
    let world = world().await;
    let id = accept(&world, profile("42"), None).await;
    // Another builder started it and holds it for a minute.
    let now = world.app.now();
    let start = Transition::StartBuild { now, lease_until: now.plus_seconds(60) };
    assert!(datarequest::compose::ports(&world.app).requests.update(id, &start).await.expect("update"));
    assert_eq!(world.app.handle_message(id, 1).await.expect("handled"), Outcome::RetryAfter(Duration::from_secs(61)));
    assert!(world.fakes.exports.bytes(id).is_none(), "not built a second time while held");
    // It died without renewing: once its lease ran out the message takes the build over.
    world.fakes.clock.advance(Duration::from_secs(60));
    assert_eq!(world.app.handle_message(id, 2).await.expect("handled"), Outcome::Done);
    let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!((request.state, request.lease_until), (State::Built, None));
    assert!(world.fakes.exports.bytes(id).is_some());
}

#[tokio::test]
async fn a_request_whose_message_was_lost_is_queued_again_once_per_bound_until_built() {
    let world = world().await;
    let id = accept(&world, profile("42"), None).await;
    assert_eq!(world.fakes.queue.drain(), [id], "queued once at intake; this message is lost");
    assert_eq!(world.app.requeue_stuck().await.expect("sweep"), 0, "not stuck yet");
    world.fakes.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(world.app.requeue_stuck().await.expect("sweep"), 1);
    assert_eq!(world.app.requeue_stuck().await.expect("sweep"), 0, "queued once, not once per sweep");
    assert_eq!(world.fakes.queue.drain(), [id]);
    world.fakes.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(world.app.requeue_stuck().await.expect("sweep"), 1, "lost again: queued again");
    world.run_queue().await;
    world.fakes.clock.advance(Duration::from_secs(3_600));
    assert_eq!(world.app.requeue_stuck().await.expect("sweep"), 0, "built: nothing to do");
}

struct FailingSubjects;

#[async_trait::async_trait]
impl datarequest::ports::SubjectData for FailingSubjects {
    async fn profile(
        &self,
        _: datarequest::domain::AccountId,
        _: ProfileId,
    ) -> anyhow::Result<Option<datarequest::domain::Profile>> {
        anyhow::bail!("the subject store is down")
    }
    async fn subprofile(
        &self,
        _: datarequest::domain::AccountId,
        _: SubprofileId,
    ) -> anyhow::Result<Option<datarequest::domain::Subprofile>> {
        anyhow::bail!("the subject store is down")
    }
    async fn subprofiles(
        &self,
        _: datarequest::domain::AccountId,
        _: ProfileId,
        _: Option<&str>,
    ) -> anyhow::Result<datarequest::ports::Page<datarequest::domain::Subprofile>> {
        anyhow::bail!("the subject store is down")
    }
    async fn messages(
        &self,
        _: datarequest::domain::AccountId,
        _: &Subject,
        _: Option<&str>,
    ) -> anyhow::Result<datarequest::ports::Page<datarequest::domain::Message<datarequest::domain::Mime>>> {
        anyhow::bail!("the subject store is down")
    }
    async fn mime(&self, _: &datarequest::domain::MimeRef) -> anyhow::Result<datarequest::ports::MimeChunks> {
        anyhow::bail!("the subject store is down")
    }
    async fn events(
        &self,
        _: datarequest::domain::AccountId,
        _: &Subject,
        _: datarequest::domain::EventKind,
        _: Option<&str>,
    ) -> anyhow::Result<datarequest::ports::Page<datarequest::domain::Event>> {
        anyhow::bail!("the subject store is down")
    }
    async fn load(&self, _: &[datarequest::domain::Record]) -> anyhow::Result<()> {
        anyhow::bail!("the subject store is down")
    }

    async fn erase(&self, _: &datarequest::domain::Erasure) -> anyhow::Result<()> {
        anyhow::bail!("the subject store is down")
    }
}

#[tokio::test]
async fn a_store_failing_after_the_first_page_fails_the_build_and_shows_no_partial_export() {
    let world = world().await;
    // Four more messages, so profile 42's destinations span three pages of the fake store.
    let lines: String = (1..=4)
        .map(|n| {
            format!(
                "{}\n",
                r#"{"kind":"message","account":1,"id":"extraN","profile":42,"subprofile":null,"email":"jane.doe@example.com","mailing":"9","subject":"Extra N","sent":"2025-11-0N 07:00:00","mime":"Subject: Extra N\r\n\r\nHello"}"#
                    .replace('N', &n.to_string())
            )
        })
        .collect();
    let more = datarequest::app::ingest::parse_records(&lines).expect("valid lines");
    assert_eq!(more.len(), 4);
    datarequest::compose::ports(&world.app).subjects.load(&more).await.expect("loads");
    let id = accept(&world, profile("42"), None).await;
    let subjects = std::sync::Arc::new(common::Watched::new(
        datarequest::compose::ports(&world.app).subjects.clone(),
        FailingLaterPages,
    ));
    let broken = datarequest::compose::rewire(
        &world.app,
        datarequest::compose::Ports { subjects: subjects.clone(), ..datarequest::compose::ports(&world.app) },
    );
    assert!(broken.handle_message(id, 1).await.is_err(), "the failed read fails the attempt");
    assert!(subjects.pages() >= 2, "the first page was read and written, the second failed");
    assert!(world.fakes.exports.bytes(id).is_none(), "no partial export is visible");
    let request = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_ne!(request.state, State::Built);

    // The next receive, on a working store, builds the whole export.
    assert_eq!(world.app.handle_message(id, 2).await.expect("handled"), Outcome::Done);
    assert!(section(&world.export(id), "destinations").is_some_and(|d| d.len() == 6), "every page");
}

/// Every page of messages after the first fails.
struct FailingLaterPages;

#[async_trait::async_trait]
impl common::Watch for FailingLaterPages {
    async fn before_messages(&self, _: usize, cursor: Option<&str>) -> anyhow::Result<()> {
        anyhow::ensure!(cursor.is_none(), "the subject store went down");
        Ok(())
    }
}

/// Sources whose read erases the request being built (as an erasure arriving mid-build does).
struct EraseMidway(std::sync::Arc<dyn RequestStore>, RequestId);

#[async_trait::async_trait]
impl datarequest::ports::SubjectSources for EraseMidway {
    async fn exists(&self, _: datarequest::domain::AccountId, _: &Subject) -> anyhow::Result<bool> {
        Ok(false)
    }

    async fn read(
        &self,
        _: datarequest::domain::AccountId,
        _: &Subject,
    ) -> Result<Box<dyn datarequest::ports::SourceReader>, datarequest::ports::SourceError> {
        let erased = self.0.update(self.1, &datarequest::domain::Transition::Erase).await;
        assert!(erased.expect("the store answers"), "the request is erased mid-build");
        Ok(Box::new(datarequest::ports::NoRows))
    }
}

#[tokio::test]
async fn a_request_erased_while_it_builds_leaves_no_file_behind() {
    let world = world().await;
    let profile = Subject::Profile(ProfileId::parse("42").expect("id"));
    let id = accept(&world, profile, None).await;
    let ports = datarequest::compose::ports(&world.app);
    let sources = std::sync::Arc::new(EraseMidway(ports.requests.clone(), id));
    let app = datarequest::compose::rewire(&world.app, datarequest::compose::Ports { sources, ..ports });

    assert_eq!(app.handle_message(id, 1).await.expect("handled"), Outcome::Done);

    for format in datarequest::ports::ExportFormat::ALL {
        assert_eq!(world.fakes.exports.bytes_of(id, format), None, "the {format:?} file went with the request");
    }
    let request = world.fakes.requests.get(id).await.expect("store").expect("request");
    assert_eq!(request.state, State::Expired);
}
