//! The real `ingest` binary under the Runtime API emulator, on both of its doors: an SQS batch
//! of SES event records from the ingest queue, and `POST /ingest` as an API Gateway HTTP API
//! event, with DynamoDB read back through the adapter.

use datarequest::adapters::aws::{DynamoDbAccounts, DynamoDbSubjects};
use datarequest::domain::{AccountId, EventKind, ProfileId, Subject, SubprofileId};
use datarequest::ports::SubjectData;
use serde_json::{Value, json};

use datarequest_tests::events::ingest_event;
use datarequest_tests::runtime::Function;

use super::Env;
use crate::helpers::binary;

const SQS_EVENT: &str = include_str!("../../../functions/core/tests/fixtures/ses/sqs-ingest-event.json");

const PROFILE: &str = r#"{"kind":"profile","account":1,"id":77,"database":1,"email":"p77@example.com","created":"2025-01-01 00:00:00","modified":"2025-01-01 00:00:00"}"#;
const MESSAGE: &str = r#"{"kind":"message","account":1,"id":"m77","profile":77,"email":"p77@example.com","mailing":"1","subject":"Hi","sent":"2025-01-02 00:00:00","mime":"Subject: Hi\r\n\r\nHello"}"#;

async fn start(env: &Env) -> Function {
    Function::start(&binary("ingest"), env.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))).await
}

fn subjects(env: &Env, clients: &datarequest::adapters::aws::Clients) -> DynamoDbSubjects {
    let resources = env.resources();
    DynamoDbSubjects::new(
        clients.dynamodb.clone(),
        resources.subjects_table,
        clients.s3.clone(),
        resources.exports_bucket,
    )
}

/// The stored events of the fixture's subject, by kind, that there are any of:
/// (kind, of profile 1001, of subprofile 5001).
async fn stored_events(store: &DynamoDbSubjects) -> Vec<(EventKind, usize, usize)> {
    let account = AccountId::try_from(1).expect("account");
    let profile = Subject::Profile(ProfileId::parse("1001").expect("id"));
    let subprofile = Subject::Subprofile(SubprofileId::parse("5001").expect("id"));
    let count = |subject: Subject, kind: EventKind| async move {
        let (mut total, mut cursor) = (0, None::<String>);
        loop {
            let page = store.events(account, &subject, kind, cursor.as_deref()).await.expect("events");
            total += page.items.len();
            match page.next {
                Some(next) => cursor = Some(next),
                None => return total,
            }
        }
    };
    let mut all = Vec::new();
    for kind in EventKind::ALL {
        let (p, s) = (count(profile.clone(), kind).await, count(subprofile.clone(), kind).await);
        if p + s > 0 {
            all.push((kind, p, s));
        }
    }
    all
}

/// The operator's commands on the emulator's accounts table, with account 1 created: the
/// lines name it, and lines of an account that does not exist are not stored.
async fn operator(env: &Env, clients: &datarequest::adapters::aws::Clients) -> datarequest::app::Operator {
    let accounts = DynamoDbAccounts::new(clients.dynamodb.clone(), env.resources().accounts_table);
    // Only the accounts table matters here; the other stores are fakes.
    let operator = datarequest::app::Operator::new(datarequest::app::OperatorStores {
        accounts: std::sync::Arc::new(accounts),
        subjects: std::sync::Arc::new(datarequest::adapters::memory::MemorySubjects::default()),
        requests: std::sync::Arc::new(datarequest::adapters::memory::MemoryRequests::default()),
        exports: std::sync::Arc::new(datarequest::adapters::memory::MemoryExports::default()),
        mailer: std::sync::Arc::new(datarequest::adapters::memory::MemoryMailer::default()),
        signing_keys: None,
    });
    let created = operator.create_account().await.expect("account");
    assert_eq!(created.account.get(), 1, "the lines name account 1");
    operator
}

fn body_of(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().expect("a text body")).expect("a JSON body")
}

#[tokio::test]
async fn the_ingest_function_stores_kept_ses_records_from_the_queue_and_fails_only_the_unreadable_one() {
    let env = Env::provision();
    let clients = env.clients().await;
    let store = subjects(&env, &clients);
    operator(&env, &clients).await;
    let ingest = start(&env).await;
    let event: Value = serde_json::from_str(SQS_EVENT).expect("fixture");
    let last = event["Records"][4]["messageId"].clone();

    let answer = ingest.invoke(event.clone()).await.expect("ingest answers");

    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": last}]}));
    // The open and the click name profile 1001, the bounce subprofile 5001; the Send is skipped.
    let expected = vec![(EventKind::Impression, 1, 0), (EventKind::Click, 1, 0), (EventKind::Error, 0, 1)];
    assert_eq!(stored_events(&store).await, expected);

    // SQS delivers at least once: the same batch again stores nothing more.
    let again = ingest.invoke(event).await.expect("ingest answers");
    assert_eq!(again, answer);
    assert_eq!(stored_events(&store).await, expected);
}

#[tokio::test]
async fn post_ingest_through_the_http_api_stores_lines_and_refuses_a_wrong_key_or_a_bad_line() {
    let env = Env::provision();
    let clients = env.clients().await;
    let key = operator(&env, &clients).await.create_ingest_key().await.expect("ingest key");
    let ingest = start(&env).await;

    let ok = ingest.invoke(ingest_event(key.expose(), &format!("{PROFILE}\n{MESSAGE}\n"))).await.expect("answers");
    assert_eq!(ok["statusCode"], 200, "{ok}");
    assert_eq!(ok["headers"]["content-type"], "application/json");
    assert_eq!(
        body_of(&ok),
        json!({"profiles": 1, "subprofiles": 0, "messages": 1, "events": 0, "erased": 0, "skipped": 0})
    );
    let store = subjects(&env, &clients);
    let account = AccountId::try_from(1).expect("account");
    let profile = store.profile(account, ProfileId::parse("77").expect("id")).await.expect("profile");
    assert!(profile.is_some(), "the profile is stored");
    let messages =
        store.messages(account, &Subject::Profile(ProfileId::parse("77").expect("id")), None).await.expect("messages");
    assert_eq!(messages.items.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m77"]);

    let wrong = ingest.invoke(ingest_event("not-the-key", PROFILE)).await.expect("answers");
    assert_eq!(wrong["statusCode"], 401, "{wrong}");
    assert!(body_of(&wrong)["error"]["message"].is_string(), "{wrong}");

    let bad = ingest.invoke(ingest_event(key.expose(), &format!("{PROFILE}\n{{\"kind\":\"nothing\"}}\n"))).await;
    let bad = bad.expect("answers");
    assert_eq!(bad["statusCode"], 400, "{bad}");
    let message = body_of(&bad)["error"]["message"].as_str().expect("a message").to_owned();
    assert!(message.contains("line 2"), "{message}");

    // Account 2 was never created: the body is refused at its line, and its first line (a
    // new profile of account 1) is not stored either.
    let ours = PROFILE.replace(r#""id":77"#, r#""id":79"#);
    let foreign = PROFILE.replace(r#""account":1"#, r#""account":2"#);
    let unknown = ingest.invoke(ingest_event(key.expose(), &format!("{ours}\n{foreign}\n"))).await;
    let unknown = unknown.expect("answers");
    assert_eq!(unknown["statusCode"], 400, "{unknown}");
    assert_eq!(body_of(&unknown), json!({"error": {"message": "line 2: no such account"}}));
    let never = store.profile(account, ProfileId::parse("79").expect("id")).await.expect("profile");
    assert!(never.is_none(), "nothing of a refused body is stored");
}
