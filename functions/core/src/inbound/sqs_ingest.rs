//! The ingest function's queue side: a batch of SQS messages, each one record of subject data
//! (an SES event record, raw or in the SNS notification that carried it, or a line of the
//! design's format). A body that does not parse fails alone, so SQS retries it and then moves
//! it to the ingest dead-letter queue; the good records of the batch are stored together, in
//! order. A record of an account that does not exist (never created, or deleted: SES events of
//! mails sent before the deletion keep coming) is skipped, logged by its message id and not
//! retried: nobody could make it succeed, as nobody can answer for an SES record that arrives
//! without an `account` tag. Bodies hold personal data: logs name message ids and reasons,
//! never a body.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use crate::app::App;
use crate::app::ingest::{Summary, parse_line};
use crate::domain::Line;

/// A reason with its quoted parts left out: serde quotes the values it refuses, and those come
/// from the body.
fn redacted(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    for (i, part) in reason.split('"').enumerate() {
        out.push_str(if i % 2 == 0 { part } else { "…" });
        out.push('"');
    }
    out.pop();
    out
}

fn failure(message_id: &str) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = message_id.to_owned();
    failure
}

/// Handles a batch of ingest messages; the response lists the messages to deliver again.
/// Skipped records (SES events that are not kept) succeed; every record is idempotent, so a
/// failed store reports all of the batch's stored records and they are simply sent again.
pub async fn handle_ingest_batch(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut lines = Vec::with_capacity(event.records.len());
    let mut stored = Vec::with_capacity(event.records.len());
    let mut summary = Summary::default();
    for message in &event.records {
        let id = message.message_id.as_deref().unwrap_or_default();
        match parse_line(message.body.as_deref().unwrap_or_default()) {
            Ok(Some(line)) => {
                summary.count(&line);
                if line != Line::Skip {
                    lines.push(line);
                    stored.push(id);
                }
            }
            Ok(None) => {
                tracing::warn!(message_id = %id, reason = "the body is empty", "unreadable ingest message");
                response.batch_item_failures.push(failure(id));
            }
            Err(reason) => {
                tracing::warn!(message_id = %id, reason = %redacted(&reason), "unreadable ingest message");
                response.batch_item_failures.push(failure(id));
            }
        }
    }
    if lines.is_empty() {
        return response;
    }
    match app.ingest_lines(lines).await {
        Ok(left_out) => {
            for position in &left_out {
                let id = stored.get(*position).copied().unwrap_or_default();
                tracing::warn!(message_id = %id, reason = "no such account", "ingest message skipped");
            }
            tracing::info!(
                profiles = summary.profiles,
                subprofiles = summary.subprofiles,
                messages = summary.messages,
                events = summary.events,
                erased = summary.erased,
                skipped = summary.skipped,
                no_such_account = left_out.len(),
                "ingested"
            );
        }
        Err(error) => {
            tracing::error!(messages = stored.len(), error = format!("{error:#}"), "storing ingest messages failed");
            for id in stored {
                tracing::warn!(message_id = %id, "ingest message not stored");
                response.batch_item_failures.push(failure(id));
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::config::Settings;
    use crate::domain::{
        AccountId, Erasure, Event, EventKind, Message, Mime, MimeRef, Profile, ProfileId, Record, Subject, Subprofile,
        SubprofileId,
    };
    use crate::ports::{MimeChunks, Page, SubjectData};

    const EVENT: &str = include_str!("../../tests/fixtures/ses/sqs-ingest-event.json");
    const UNREADABLE: &str = "9e1c7a52-0000-4000-8000-0000000000ff";

    fn event() -> SqsEvent {
        serde_json::from_str(EVENT).expect("the fixture is an SQS event")
    }

    /// An app on fakes with account 1, which the fixture's records name.
    async fn with_account() -> App {
        let (app, _) = crate::compose::memory(Settings::for_tests("https://api.example.test"));
        let created = app.create_account().await.expect("account");
        assert_eq!(created.account.get(), 1);
        app
    }

    fn failed(response: &SqsBatchResponse) -> Vec<&str> {
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
    }

    async fn events(app: &App, subject: &Subject, kind: EventKind) -> Vec<Event> {
        let account = AccountId::try_from(1).expect("account");
        app.subjects.events(account, subject, kind, None).await.expect("events").items
    }

    /// Every stored event of the fixture's subject, by kind: (profile 1001, subprofile 5001).
    async fn stored(app: &App) -> Vec<(EventKind, usize, usize)> {
        let profile = Subject::Profile(ProfileId::parse("1001").expect("id"));
        let subprofile = Subject::Subprofile(SubprofileId::parse("5001").expect("id"));
        let mut all = Vec::new();
        for kind in EventKind::ALL {
            let (p, s) = (events(app, &profile, kind).await.len(), events(app, &subprofile, kind).await.len());
            if p + s > 0 {
                all.push((kind, p, s));
            }
        }
        all
    }

    #[tokio::test]
    async fn only_the_unreadable_message_fails_and_the_kept_records_are_stored() {
        let app = with_account().await;

        let response = handle_ingest_batch(&app, event()).await;

        assert_eq!(failed(&response), [UNREADABLE]);
        // The open and the click name profile 1001; the bounce names subprofile 5001 (which the
        // empty store does not link to a profile yet). The Send is not kept.
        assert_eq!(
            stored(&app).await,
            [(EventKind::Impression, 1, 0), (EventKind::Click, 1, 0), (EventKind::Error, 0, 1)]
        );
        let open = events(&app, &Subject::Profile(ProfileId::parse("1001").expect("id")), EventKind::Impression).await;
        assert_eq!(open[0].message.as_deref(), Some("d-1001-1"));
        let bounce =
            events(&app, &Subject::Subprofile(SubprofileId::parse("5001").expect("id")), EventKind::Error).await;
        assert_eq!(bounce[0].message.as_deref(), Some("d-5001-1"));
    }

    #[tokio::test]
    async fn handling_the_same_batch_again_stores_nothing_more() {
        let app = with_account().await;
        let first = handle_ingest_batch(&app, event()).await;
        let before = stored(&app).await;

        let again = handle_ingest_batch(&app, event()).await;

        assert_eq!(failed(&again), failed(&first));
        assert_eq!(stored(&app).await, before);
    }

    #[tokio::test]
    async fn a_batch_of_design_lines_is_stored_in_order() {
        let app = with_account().await;
        let mut event = event();
        event.records.truncate(2);
        event.records[0].body =
            Some(r#"{"kind":"event","account":1,"type":"click","profile":1001,"time":"2025-01-01 00:00:00"}"#.into());
        // The erasure comes after the click: the batch ends with nothing of the profile.
        event.records[1].body = Some(r#"{"kind":"erase","account":1,"profile":1001}"#.into());

        let response = handle_ingest_batch(&app, event).await;

        assert!(response.batch_item_failures.is_empty());
        assert_eq!(stored(&app).await, []);
    }

    #[tokio::test]
    async fn records_of_an_account_that_does_not_exist_are_skipped_and_not_sent_again() {
        let app = with_account().await;
        let mut event = event();
        event.records.truncate(3);
        let click = |account: u64| {
            format!(
                r#"{{"kind":"event","account":{account},"type":"click","profile":1001,"time":"2025-01-01 00:00:00"}}"#
            )
        };
        event.records[0].body = Some(click(1));
        event.records[1].body = Some(click(2));
        event.records[2].body = Some(click(3));
        assert!(app.operator().delete_account(AccountId::try_from(1).expect("id"), true).await.expect("deleted"));
        let second = app.create_account().await.expect("account").account;
        assert_eq!(second.get(), 2);

        let response = handle_ingest_batch(&app, event).await;

        // Account 1 is deleted and account 3 was never created: their records are not stored,
        // and not retried either; account 2's is stored.
        assert!(response.batch_item_failures.is_empty(), "{:?}", failed(&response));
        assert_eq!(stored(&app).await, []);
        let profile = Subject::Profile(ProfileId::parse("1001").expect("id"));
        let clicks = app.subjects.events(second, &profile, EventKind::Click, None).await.expect("events").items;
        assert_eq!(clicks.len(), 1);
    }

    #[test]
    fn a_logged_reason_leaves_out_the_values_it_quotes() {
        let reason = r#"invalid type: string "jane@example.com", expected u64 at column 30"#;
        assert_eq!(redacted(reason), r#"invalid type: string "…", expected u64 at column 30"#);
        assert_eq!(redacted("a message needs a non-empty id and email"), "a message needs a non-empty id and email");
    }

    /// A subject store that is down.
    struct Down;

    #[async_trait]
    impl SubjectData for Down {
        async fn profile(&self, _: AccountId, _: ProfileId) -> anyhow::Result<Option<Profile>> {
            anyhow::bail!("down")
        }
        async fn subprofile(&self, _: AccountId, _: SubprofileId) -> anyhow::Result<Option<Subprofile>> {
            anyhow::bail!("down")
        }
        async fn subprofiles(&self, _: AccountId, _: ProfileId, _: Option<&str>) -> anyhow::Result<Page<Subprofile>> {
            anyhow::bail!("down")
        }
        async fn messages(&self, _: AccountId, _: &Subject, _: Option<&str>) -> anyhow::Result<Page<Message<Mime>>> {
            anyhow::bail!("down")
        }
        async fn mime(&self, _: &MimeRef) -> anyhow::Result<MimeChunks> {
            anyhow::bail!("down")
        }
        async fn events(
            &self,
            _: AccountId,
            _: &Subject,
            _: EventKind,
            _: Option<&str>,
        ) -> anyhow::Result<Page<Event>> {
            anyhow::bail!("down")
        }
        async fn load(&self, _: &[Record]) -> anyhow::Result<()> {
            anyhow::bail!("down")
        }
        async fn erase(&self, _: &Erasure) -> anyhow::Result<()> {
            anyhow::bail!("down")
        }
    }

    #[tokio::test]
    async fn a_storage_failure_fails_every_record_to_store_but_not_the_skipped_one() {
        let mut app = with_account().await;
        app.subjects = Arc::new(Down);

        let response = handle_ingest_batch(&app, event()).await;

        assert_eq!(
            failed(&response),
            [
                UNREADABLE,
                "9e1c7a52-0000-4000-8000-000000000000",
                "9e1c7a52-0000-4000-8000-000000000001",
                "9e1c7a52-0000-4000-8000-000000000002",
            ]
        );
    }
}
