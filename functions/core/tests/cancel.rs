//! Cancelling a request on fakes: in every state it stops what is under way, deletes what was
//! made, records who cancelled, and a second cancel or another account's changes nothing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::world;
use datarequest::app::{Origin, QueueOutcome as Outcome};
use datarequest::domain::{
    AccessToken, AuditEvent, DeliveryStatus, EmailAddress, ProfileId, Report, RequestId, State, Subject, Transition,
    WebAddress, WebPolicy,
};
use datarequest::ports::{ExportFormat, RequestStore, SubjectData};

fn origin() -> Origin {
    let token = AccessToken::parse("EXAMPLE_TOKEN").expect("fixture token parses");
    Origin { key: None, version: "v2", token: Some(token.hash()) }
}

async fn accept(world: &common::World, subject: Subject, report: Option<Report>) -> RequestId {
    world.app.submit(world.account, subject, report, &Origin::default()).await.expect("accepted")
}

fn profile() -> Subject {
    Subject::Profile(ProfileId::parse("42").expect("id"))
}

fn mail_to() -> Option<Report> {
    Some(Report::Email(EmailAddress::parse("dpo@customer.example").expect("address")))
}

async fn stored(world: &common::World, id: RequestId) -> datarequest::domain::DataRequest {
    world.fakes.requests.get(id).await.expect("store").expect("request")
}

fn no_files(world: &common::World, id: RequestId) {
    for format in ExportFormat::ALL {
        assert_eq!(world.fakes.exports.bytes_of(id, format), None, "the {format:?} file is gone");
    }
    assert_eq!(world.fakes.exports.unfinished(id), 0, "no unfinished file is kept");
}

async fn cancellations(world: &common::World, id: RequestId) -> Vec<AuditEvent> {
    let log = world.app.log(world.account, id).await.expect("log").unwrap_or_default();
    log.into_iter().map(|entry| entry.event).filter(|event| matches!(event, AuditEvent::Cancelled { .. })).collect()
}

#[tokio::test]
async fn an_accepted_request_cancelled_is_never_built_and_the_log_names_the_account_and_token() {
    let world = world().await;
    let id = accept(&world, profile(), mail_to()).await;

    let cancelled = world.app.cancel(world.account, id, &origin()).await.expect("cancels").expect("found");
    assert_eq!((cancelled.state, cancelled.reason.as_deref()), (State::Cancelled, Some("cancelled")));
    assert_eq!(world.run_queue().await, [(id, Outcome::Done)], "the queued message finds nothing to do");

    no_files(&world, id);
    assert!(world.fakes.mailer.sent().is_empty(), "nothing is delivered");
    let token = datarequest::domain::audit::token_id(&origin().token.expect("token"));
    assert_eq!(
        cancellations(&world, id).await,
        [AuditEvent::Cancelled { account: world.account.get(), version: "v2".into(), token }]
    );

    // Again: the same answer, and nothing more is recorded.
    let again = world.app.cancel(world.account, id, &origin()).await.expect("cancels").expect("found");
    assert_eq!(again, cancelled);
    assert_eq!(cancellations(&world, id).await.len(), 1);
}

#[tokio::test]
async fn another_accounts_request_cannot_be_cancelled_and_answers_like_an_unknown_one() {
    let world = world().await;
    let id = accept(&world, profile(), None).await;
    let stranger = common::second_account(&world).await;

    assert_eq!(world.app.cancel(stranger, id, &origin()).await.expect("answers"), None);
    assert_eq!(world.app.cancel(stranger, RequestId::random(), &origin()).await.expect("answers"), None);
    assert_eq!(stored(&world, id).await.state, State::Accepted, "left alone");
    world.run_queue().await;
    assert_eq!(stored(&world, id).await.state, State::Built);
    assert!(cancellations(&world, id).await.is_empty());
}

#[tokio::test]
async fn a_built_export_whose_delivery_waits_is_not_delivered_after_its_cancel() {
    let world = world().await;
    let target = WebAddress::parse("https://hooks.customer.example/gdpr", WebPolicy::PublicOnly).expect("address");
    world.fakes.web.answer(&[503]);
    let id = accept(&world, profile(), Some(Report::Web(target))).await;
    assert!(matches!(world.app.handle_message(id, 1).await.expect("handled"), Outcome::RetryAfter(_)));
    assert_eq!(stored(&world, id).await.delivery.status, DeliveryStatus::Pending);

    world.app.cancel(world.account, id, &origin()).await.expect("cancels");
    assert_eq!(world.app.handle_message(id, 2).await.expect("handled"), Outcome::Done);

    assert_eq!(world.fakes.web.posted().len(), 1, "only the attempt before the cancel");
    no_files(&world, id);
    assert_eq!(stored(&world, id).await.state, State::Cancelled);
}

#[tokio::test]
async fn a_delivered_export_cancelled_loses_its_files() {
    let world = world().await;
    let id = accept(&world, profile(), mail_to()).await;
    world.run_queue().await;
    assert_eq!(stored(&world, id).await.state, State::Delivered);
    assert!(world.fakes.exports.bytes(id).is_some());

    world.app.cancel(world.account, id, &origin()).await.expect("cancels");
    no_files(&world, id);
    let request = stored(&world, id).await;
    assert_eq!((request.state, request.report), (State::Cancelled, None), "the report address goes too");
}

#[tokio::test]
async fn a_request_that_expired_stays_expired_when_cancelled() {
    let world = world().await;
    let id = accept(&world, profile(), None).await;
    world.run_queue().await;
    world.app.expire(id).await.expect("expires");
    let answer = world.app.cancel(world.account, id, &origin()).await.expect("answers").expect("found");
    assert_eq!(answer.state, State::Expired);
    assert!(cancellations(&world, id).await.is_empty());
}

#[tokio::test]
async fn a_request_past_its_expiry_but_not_yet_swept_is_expired_not_cancelled() {
    let world = world().await;
    let id = accept(&world, profile(), None).await;
    world.run_queue().await;
    world.fakes.clock.advance(world.app.settings().export_ttl + std::time::Duration::from_secs(1));
    let answer = world.app.cancel(world.account, id, &origin()).await.expect("answers").expect("found");
    assert_eq!(answer.state, State::Expired);
    no_files(&world, id);
}

#[tokio::test]
async fn a_request_that_failed_stays_failed_when_cancelled() {
    let world = world().await;
    let id = accept(&world, profile(), None).await;
    assert!(world.fakes.requests.update(id, &Transition::Fail { reason: "r".into() }).await.expect("fails"));
    let answer = world.app.cancel(world.account, id, &origin()).await.expect("answers").expect("found");
    assert_eq!(answer.state, State::Failed);
    assert!(cancellations(&world, id).await.is_empty());
}

/// Counts the message bodies the builder streams (each one it writes), and cancels the
/// request when the builder's reader fetches the `cancel_at`-th page of messages.
struct CancelAtPage {
    requests: Arc<dyn RequestStore>,
    id: RequestId,
    cancel_at: usize,
    bodies: AtomicUsize,
    bodies_at_cancel: AtomicUsize,
}

#[async_trait::async_trait]
impl common::Watch for CancelAtPage {
    async fn before_messages(&self, page: usize, _: Option<&str>) -> anyhow::Result<()> {
        if page == self.cancel_at {
            self.bodies_at_cancel.store(self.bodies.load(Ordering::SeqCst), Ordering::SeqCst);
            assert!(self.requests.update(self.id, &Transition::Cancel).await.expect("store"), "cancelled mid-build");
        }
        Ok(())
    }

    fn on_body(&self) {
        self.bodies.fetch_add(1, Ordering::SeqCst);
    }
}

/// Builds an export of 40 messages (in pages of 2) that is cancelled when the builder's reader
/// fetches the sixth page; returns the world, the request, and the messages written before
/// the cancel and in all.
async fn cancelled_at_the_sixth_page(checkpoint_every: u64) -> (common::World, RequestId, usize, usize) {
    let mut settings = datarequest::config::Settings::for_tests(common::PUBLIC_URL);
    settings.checkpoint_every = checkpoint_every;
    let world = common::world_with(settings).await;
    let body = "Lorem ipsum dolor sit amet.\r\n".repeat(40);
    let lines: String = (0..40)
        .map(|n| {
            let line = serde_json::json!({"kind":"message","account":1,"id":format!("long-{n:02}"),"profile":null,
                "subprofile":null,"email":"long@example.com","mailing":"1","subject":"s",
                "sent":format!("2025-01-01 00:00:{n:02}"),"mime":format!("Subject: {n}\r\n\r\n{body}")});
            format!("{line}\n")
        })
        .collect();
    let records = datarequest::app::ingest::parse_records(&lines).expect("valid");
    world.fakes.subjects.load(&records).await.expect("loads");
    let id = accept(&world, Subject::Email(EmailAddress::parse("long@example.com").expect("address")), mail_to()).await;
    let ports = datarequest::compose::ports(&world.app);
    let watch = CancelAtPage {
        requests: ports.requests.clone(),
        id,
        cancel_at: 6,
        bodies: AtomicUsize::new(0),
        bodies_at_cancel: AtomicUsize::new(0),
    };
    let subjects = Arc::new(common::Watched::new(ports.subjects.clone(), watch));
    let app =
        datarequest::compose::rewire(&world.app, datarequest::compose::Ports { subjects: subjects.clone(), ..ports });

    assert_eq!(app.handle_message(id, 1).await.expect("handled"), Outcome::Done);

    assert!(subjects.pages() <= 6 + 2, "the reader stopped too");
    assert!(world.fakes.mailer.sent().is_empty(), "nothing is delivered");
    assert_eq!(stored(&world, id).await.state, State::Cancelled);
    let (at_cancel, written) =
        (subjects.watch.bodies_at_cancel.load(Ordering::SeqCst), subjects.watch.bodies.load(Ordering::SeqCst));
    (world, id, at_cancel, written)
}

#[tokio::test]
async fn a_build_under_way_stops_within_one_page_of_its_cancel() {
    // No checkpoint in 64 MiB: only the look before each page can stop it.
    let (world, id, at_cancel, written) = cancelled_at_the_sixth_page(64 << 20).await;
    // Each message written streams its body once; the fake's pages hold 2 messages.
    assert!(at_cancel >= 2, "the build was under way: {at_cancel} messages written");
    assert!(written <= at_cancel + 2, "{written} messages written, {at_cancel} of them before the cancel");
    no_files(&world, id);
}

#[tokio::test]
async fn a_build_that_kept_checkpoints_discards_its_unfinished_files_when_cancelled() {
    // A checkpoint after every record: the unfinished files are kept for a resume, until the
    // refused checkpoint after the cancel stops the build.
    let (world, id, at_cancel, written) = cancelled_at_the_sixth_page(1).await;
    assert!(written <= at_cancel + 1, "{written} messages written, {at_cancel} of them before the cancel");
    no_files(&world, id);
}
