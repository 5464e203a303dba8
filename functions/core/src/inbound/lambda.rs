//! The Lambda adapter of the `ingest` function, whose one function has two doors: API Gateway
//! (HTTP API, payload 2.0) brings `POST /ingest`, served by the router; the ingest queue brings
//! SES event records as SQS batches, answered with the messages to deliver again. An event with
//! a `Records` array is a batch; anything else is an HTTP request.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use axum::Router;
use axum::http::header::SET_COOKIE;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Context, IntoResponse, RequestExt};
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tower::ServiceExt;

use crate::app::App;
use crate::inbound::http::{Routes, router};
use crate::inbound::sqs_ingest::handle_ingest_batch;

/// What the function answers, in the shape its caller expects.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum IngestAnswer {
    /// The messages of an SQS batch to deliver again.
    Batch(SqsBatchResponse),
    /// An HTTP API response.
    Http(Box<ApiGatewayV2httpResponse>),
}

/// The `ingest` function's two doors over one app.
#[derive(Clone)]
pub struct IngestFunction {
    app: App,
    routes: Router,
}

impl IngestFunction {
    /// The doors over `app`: its router's ingest part and the queue consumer.
    #[must_use]
    pub fn new(app: App) -> Self {
        let routes = router(app.clone(), Routes::Ingest);
        Self { app, routes }
    }

    /// Answers one invocation.
    ///
    /// # Errors
    /// When the event is neither an SQS batch nor an HTTP API request (a fixed reason: serde's
    /// messages quote what they refuse, and events hold personal data).
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<IngestAnswer, lambda_runtime::Error> {
        let LambdaEvent { payload, context } = event;
        if payload.get("Records").is_some_and(Value::is_array) {
            let batch: SqsEvent = serde_json::from_value(payload).map_err(|_| "the event is not an SQS batch")?;
            return Ok(IngestAnswer::Batch(handle_ingest_batch(&self.app, batch).await));
        }
        let request: ApiGatewayV2httpRequest =
            serde_json::from_value(payload).map_err(|_| "the event is neither an SQS batch nor an HTTP API request")?;
        Ok(IngestAnswer::Http(Box::new(serve(&self.routes, request, context).await)))
    }
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
