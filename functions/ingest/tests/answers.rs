//! The `ingest` function's answers, in the shape each of its callers expects.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use datarequest::App;
use datarequest::compose;
use datarequest::config::Settings;
use datarequest::inbound::lambda::IngestFunction;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

const SQS_EVENT: &str = include_str!("../../core/tests/fixtures/ses/sqs-ingest-event.json");

async fn answer(app: &App, payload: Value) -> Value {
    let function = IngestFunction::new(app.clone());
    let answer = function.handle(LambdaEvent::new(payload, Context::default())).await.expect("answers");
    serde_json::to_value(answer).expect("serializes")
}

#[tokio::test]
async fn an_sqs_batch_is_answered_with_its_failed_messages() {
    let (app, _) = compose::memory(Settings::for_tests("https://api.example.test"));
    let answer = answer(&app, serde_json::from_str(SQS_EVENT).expect("fixture")).await;
    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "9e1c7a52-0000-4000-8000-0000000000ff"}]}));
}

#[tokio::test]
async fn an_http_api_request_is_answered_as_an_http_api_response() {
    let (app, _) = compose::memory(Settings::for_tests("https://api.example.test"));
    let key = app.operator().create_ingest_key().await.expect("key");
    let account = app.operator().create_account().await.expect("account").account;
    let body = format!(r#"{{"kind":"erase","account":{account},"profile":77}}"#);

    let answer = answer(&app, datarequest_tests::events::ingest_event(key.expose(), &body)).await;

    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["isBase64Encoded"], false);
    assert_eq!(answer["headers"]["content-type"], "application/json");
    let summary: Value = serde_json::from_str(answer["body"].as_str().expect("text body")).expect("JSON");
    assert_eq!(summary["erased"], 1);
}
