//! API Gateway HTTP API (payload 2.0) events as the Lambda functions receive them, made from
//! the fixture of the core's handler tests.

use serde_json::{Value, json};

const POST_EVENT: &str = include_str!("../functions/core/tests/fixtures/apigw-v2-post-profile-datarequest.json");

/// `POST /ingest` with an ingest key and an NDJSON body.
pub fn ingest_event(key: &str, body: &str) -> Value {
    let mut event: Value = serde_json::from_str(POST_EVENT).expect("the fixture is JSON");
    event["rawPath"] = json!("/ingest");
    event["routeKey"] = json!("POST /ingest");
    event["requestContext"]["routeKey"] = json!("POST /ingest");
    event["requestContext"]["http"]["path"] = json!("/ingest");
    event["rawQueryString"] = json!("");
    event["queryStringParameters"] = json!({});
    event["pathParameters"] = json!({});
    event["headers"]["authorization"] = json!(format!("Bearer {key}"));
    event["headers"]["content-type"] = json!("application/x-ndjson");
    event["headers"]["content-length"] = json!(body.len().to_string());
    event["body"] = json!(body);
    event["isBase64Encoded"] = json!(false);
    event
}
