//! Lambda function `ingest`: subject data through two doors of one function. API Gateway (HTTP
//! API, payload 2.0) brings `POST /ingest`, served by the router; the ingest queue brings SES
//! event records as SQS batches, answered with the messages to deliver again. An event with a
//! `Records` array is a batch; anything else is an HTTP request.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use axum::Router;
use axum::http::header::SET_COOKIE;
use datarequest::App;
use datarequest::adapters::aws;
use datarequest::http::{Part, router};
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Context, IntoResponse, RequestExt};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tower::ServiceExt;

/// What the function answers, in the shape its caller expects.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Answer {
    Batch(SqsBatchResponse),
    Http(Box<ApiGatewayV2httpResponse>),
}

async fn handle(app: &App, routes: &Router, event: LambdaEvent<Value>) -> Result<Answer, Error> {
    let LambdaEvent { payload, context } = event;
    // Serde's messages quote what they refuse, and events hold personal data: fixed reasons.
    if payload.get("Records").is_some_and(Value::is_array) {
        let batch: SqsEvent = serde_json::from_value(payload).map_err(|_| "the event is not an SQS batch")?;
        return Ok(Answer::Batch(aws::handle_ingest_batch(app, batch).await));
    }
    let request: ApiGatewayV2httpRequest =
        serde_json::from_value(payload).map_err(|_| "the event is neither an SQS batch nor an HTTP API request")?;
    Ok(Answer::Http(Box::new(serve(routes, request, context).await)))
}

/// One HTTP API request through the router, as `lambda_http::run` would serve it.
async fn serve(routes: &Router, request: ApiGatewayV2httpRequest, context: Context) -> ApiGatewayV2httpResponse {
    let request = lambda_http::Request::from(LambdaRequest::ApiGatewayV2(request)).with_lambda_context(context);
    let Ok(response) = routes.clone().oneshot(request).await;
    let (parts, body) = response.into_response().await.into_parts();
    let mut headers = parts.headers;
    // HTTP APIs take cookies apart from the headers.
    let cookies = headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
    headers.remove(SET_COOKIE);
    let mut answer = ApiGatewayV2httpResponse::default();
    answer.status_code = i64::from(parts.status.as_u16());
    answer.headers = headers;
    answer.cookies = cookies;
    answer.is_base64_encoded = matches!(body, Body::Binary(_));
    answer.body = (!matches!(body, Body::Empty)).then_some(body);
    answer
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (app, _) = aws::app_from_env().await?;
    let routes = router(app.clone(), Part::Ingest);
    let (app, routes) = (&app, &routes);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move { handle(app, routes, event).await }))
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use datarequest::adapters::memory;
    use datarequest::config::Settings;
    use serde_json::json;

    use super::*;

    const SQS_EVENT: &str = include_str!("../../core/tests/fixtures/ses/sqs-ingest-event.json");

    async fn answer(app: &App, payload: Value) -> Value {
        let routes = router(app.clone(), Part::Ingest);
        let answer = handle(app, &routes, LambdaEvent::new(payload, Context::default())).await.expect("answers");
        serde_json::to_value(answer).expect("serializes")
    }

    #[tokio::test]
    async fn an_sqs_batch_is_answered_with_its_failed_messages() {
        let (app, _) = memory::app(Settings::for_tests("https://api.example.test"));
        let answer = answer(&app, serde_json::from_str(SQS_EVENT).expect("fixture")).await;
        assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "9e1c7a52-0000-4000-8000-0000000000ff"}]}));
    }

    #[tokio::test]
    async fn an_http_api_request_is_answered_as_an_http_api_response() {
        let (app, fakes) = memory::app(Settings::for_tests("https://api.example.test"));
        let key = datarequest::app::create_ingest_key(&*fakes.accounts).await.expect("key");
        let body = r#"{"kind":"erase","account":1,"profile":77}"#;

        let answer = answer(&app, datarequest_tests::events::ingest_event(key.expose(), body)).await;

        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert_eq!(answer["isBase64Encoded"], false);
        assert_eq!(answer["headers"]["content-type"], "application/json");
        let summary: Value = serde_json::from_str(answer["body"].as_str().expect("text body")).expect("JSON");
        assert_eq!(summary["erased"], 1);
    }
}
