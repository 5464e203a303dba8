//! Handler tests: real API Gateway HTTP API (payload 2.0) and SQS event JSON, as the Lambda
//! functions receive them, fed through `lambda_http` into the router.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use datarequest::domain::build_message;
use datarequest::domain::{DataRequest, RequestId, State, Subject};
use datarequest::inbound::http::{Routes, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

const POST_PROFILE: &str = include_str!("fixtures/apigw-v2-post-profile-datarequest.json");
const GET_STATUS: &str = include_str!("fixtures/apigw-v2-get-datarequest-status.json");
const SQS_BUILD: &str = include_str!("fixtures/sqs-build-event.json");

async fn send(
    app: &datarequest::App,
    part: Routes,
    event: &str,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let request = lambda_http::request::from_str(event).expect("fixture is an API Gateway event");
    let request = request.map(Body::new);
    let response = router(app.clone(), part).oneshot(request).await.expect("router answers");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (parts.status, parts.headers, json)
}

#[tokio::test]
async fn the_post_event_creates_a_request_with_copernica_headers_and_queues_it() {
    let world = common::world().await;
    let (status, headers, body) = send(&world.app, Routes::Intake, POST_PROFILE).await;

    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["content-type"], "application/json");
    let id = body["id"].as_u64().expect("numeric id");
    assert_eq!(headers["x-created"].to_str().ok(), Some(id.to_string().as_str()));
    let location = format!("{}/v1/datarequest/{id}", common::PUBLIC_URL);
    assert_eq!(headers["location"].to_str().ok(), Some(location.as_str()));
    assert_eq!(headers["x-location"].to_str().ok(), Some(location.as_str()));
    let queued = world.fakes.queue.drain();
    assert_eq!(queued.iter().map(|id| id.get()).collect::<Vec<_>>(), vec![id]);
    let stored = datarequest::compose::ports(&world.app).requests.get(queued[0]).await.expect("store").expect("stored");
    assert_eq!(stored.subject, Subject::Profile(datarequest::domain::ProfileId::parse("42").expect("id")));
    assert_eq!(stored.report.map(|r| r.to_string()).as_deref(), Some("dpo@customer.example"));
}

/// The status fixture turned into the `DELETE` of request `id`, as API Gateway sends it.
fn delete_event(id: RequestId) -> String {
    let mut event: serde_json::Value = serde_json::from_str(GET_STATUS).expect("fixture");
    let path = format!("/v3/datarequest/{id}");
    event["rawPath"] = path.clone().into();
    event["routeKey"] = "DELETE /{version}/datarequest/{id}".into();
    event["requestContext"]["routeKey"] = "DELETE /{version}/datarequest/{id}".into();
    event["requestContext"]["http"]["method"] = "DELETE".into();
    event["requestContext"]["http"]["path"] = path.into();
    event["pathParameters"] = serde_json::json!({"version": "v3", "id": id.to_string()});
    event.to_string()
}

#[tokio::test]
async fn the_intake_function_serves_the_delete_that_cancels_a_request_and_the_status_function_does_not() {
    let world = common::world().await;
    let (_, _, created) = send(&world.app, Routes::Intake, POST_PROFILE).await;
    let id = RequestId::try_from(created["id"].as_u64().expect("id")).expect("request id");

    let (status, _, body) = send(&world.app, Routes::Status, &delete_event(id)).await;
    assert_eq!((status, &body["error"]["message"]), (StatusCode::BAD_REQUEST, &"Invalid method".into()));
    let (status, headers, body) = send(&world.app, Routes::Intake, &delete_event(id)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!((&body["status"], &body["state"]), (&"not available".into(), &"cancelled".into()));
    let stored = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("stored");
    assert_eq!(stored.state, State::Cancelled);
}

#[tokio::test]
async fn the_intake_function_refuses_get_routes_as_an_invalid_method() {
    let world = common::world().await;
    let (status, _, body) = send(&world.app, Routes::Intake, GET_STATUS).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "Invalid method");
    let (status, _, _) = send(&world.app, Routes::Status, POST_PROFILE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_status_event_follows_a_request_from_unknown_to_pending_to_available() {
    let world = common::world().await;
    let (status, headers, body) = send(&world.app, Routes::Status, GET_STATUS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        serde_json::json!({"status": "not available", "available": 0, "content-type": "application/json"})
    );

    let id = RequestId::parse("4815162342").expect("fixture id");
    let subject = Subject::Profile(datarequest::domain::ProfileId::parse("42").expect("id"));
    let request = DataRequest::accepted(id, world.account, subject, None, world.app.now());
    assert!(datarequest::compose::ports(&world.app).requests.insert(&request).await.expect("insert"));
    let (_, _, body) = send(&world.app, Routes::Status, GET_STATUS).await;
    assert_eq!(body["status"], "pending");
    assert_eq!(body["state"], "accepted");

    // The SQS fixture carries the same id to the builder.
    let event: serde_json::Value = serde_json::from_str(SQS_BUILD).expect("SQS event");
    let message = event["Records"][0]["body"].as_str().expect("body");
    let queued = build_message::parse(message).expect("a build message");
    assert_eq!(queued, id);
    world.app.handle_message(queued, 1).await.expect("builds");

    let (_, _, body) = send(&world.app, Routes::Status, GET_STATUS).await;
    assert_eq!(body["status"], "available");
    assert_eq!(body["state"], "built");
    let size = world.fakes.exports.bytes(id).expect("export").len() as u64;
    assert_eq!(body["available"], size);
    let stored = datarequest::compose::ports(&world.app).requests.get(id).await.expect("store").expect("request");
    assert_eq!(stored.state, State::Built);
}

#[test]
fn build_messages_round_trip_and_junk_is_refused() {
    let id = RequestId::random();
    assert_eq!(build_message::parse(&build_message::body(id)), Ok(id));
    for junk in ["", "{}", "[]", r#"{"request":42}"#, r#"{"request":"0"}"#, r#"{"request":"1","x":1}"#] {
        assert!(build_message::parse(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn the_committed_openapi_document_is_the_one_the_server_serves() {
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../../openapi.json")).expect("openapi.json is JSON");
    assert_eq!(
        committed,
        datarequest::inbound::http::openapi::document(),
        "regenerate it: datarequest openapi > openapi.json"
    );
    let paths = committed["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), 4 * 11 + 1, "every route under every version, and /ingest");
    assert!(paths.contains_key("/v3/profile/{id}/data") && paths.contains_key("/v1/email/{email}/data"));
    assert!(paths.contains_key("/ingest"));
}

#[tokio::test]
async fn every_operation_of_the_openapi_document_is_a_route_of_the_router() {
    let world = common::world().await;
    let document = datarequest::inbound::http::openapi::document();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            operations
                .push((method.to_uppercase(), path.replace("{id}", "1").replace("{email}", "jane%40example.com")));
        }
    }
    // An undocumented path answers as Copernica does, so the check below can tell.
    operations.push(("POST".into(), "/v5/profile/1/datarequest".into()));

    let mut unrouted = Vec::new();
    for (method, uri) in &operations {
        let request =
            axum::http::Request::builder().method(method.as_str()).uri(uri).body(Body::empty()).expect("request");
        let response = router(world.app.clone(), Routes::All).oneshot(request).await.expect("router answers");
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        if body["error"]["message"] == "Invalid method" {
            unrouted.push(format!("{method} {uri}"));
        }
    }

    assert_eq!(unrouted, ["POST /v5/profile/1/datarequest"], "documented operations the router does not serve");
}
