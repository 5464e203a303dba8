//! `POST /ingest` through the router: a store that fails midway answers `503`, and sending the
//! same body again converges to the data one clean call leaves.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use datarequest::domain::{
    AccountId, Erasure, Event, EventKind, Message, Mime, MimeRef, Profile, ProfileId, Record, Subject,
};
use datarequest::domain::{Subprofile, SubprofileId};
use datarequest::inbound::http::{Routes, router};
use datarequest::ports::{MimeChunks, Page, SubjectData};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Passes everything to the store but refuses erasures.
struct NoErasures(Arc<dyn SubjectData>);

#[async_trait]
impl SubjectData for NoErasures {
    async fn profile(&self, a: AccountId, id: ProfileId) -> anyhow::Result<Option<Profile>> {
        self.0.profile(a, id).await
    }
    async fn subprofile(&self, a: AccountId, id: SubprofileId) -> anyhow::Result<Option<Subprofile>> {
        self.0.subprofile(a, id).await
    }
    async fn subprofiles(&self, a: AccountId, p: ProfileId, c: Option<&str>) -> anyhow::Result<Page<Subprofile>> {
        self.0.subprofiles(a, p, c).await
    }
    async fn messages(&self, a: AccountId, s: &Subject, c: Option<&str>) -> anyhow::Result<Page<Message<Mime>>> {
        self.0.messages(a, s, c).await
    }
    async fn mime(&self, body: &MimeRef) -> anyhow::Result<MimeChunks> {
        self.0.mime(body).await
    }
    async fn events(&self, a: AccountId, s: &Subject, k: EventKind, c: Option<&str>) -> anyhow::Result<Page<Event>> {
        self.0.events(a, s, k, c).await
    }
    async fn load(&self, records: &[Record]) -> anyhow::Result<()> {
        self.0.load(records).await
    }
    async fn erase(&self, _: &Erasure) -> anyhow::Result<()> {
        anyhow::bail!("the subject store is down")
    }
}

async fn post(app: &datarequest::App, key: &str, body: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::post("/ingest")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/x-ndjson")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = router(app.clone(), Routes::Ingest).oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

#[tokio::test]
async fn a_store_failing_midway_answers_503_and_the_same_body_again_converges() {
    let world = common::world().await;
    let key = world.app.operator().create_ingest_key().await.expect("key");
    let body = concat!(
        r#"{"kind":"profile","account":1,"id":77,"database":1,"created":"2025-01-01 00:00:00","modified":"2025-01-01 00:00:00"}"#,
        "\n",
        r#"{"kind":"erase","account":1,"profile":42}"#,
        "\n",
        r#"{"kind":"profile","account":1,"id":78,"database":1,"created":"2025-01-01 00:00:00","modified":"2025-01-01 00:00:00"}"#,
        "\n"
    );
    let failing = datarequest::compose::rewire(
        &world.app,
        datarequest::compose::Ports {
            subjects: Arc::new(NoErasures(datarequest::compose::ports(&world.app).subjects.clone())),
            ..datarequest::compose::ports(&world.app)
        },
    );
    let (status, answer) = post(&failing, key.expose(), body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.contains("down")), "the cause is not shown");
    let account = world.account;
    let found = |id: &str| {
        let subjects = datarequest::compose::ports(&world.app).subjects.clone();
        let id = ProfileId::parse(id).expect("id");
        async move { subjects.profile(account, id).await.expect("store").is_some() }
    };
    assert!(found("77").await && found("42").await && !found("78").await, "stored up to the failure");

    let (status, answer) = post(&world.app, key.expose(), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({"profiles":2,"subprofiles":0,"messages":0,"events":0,"erased":1,"skipped":0})
    );
    assert!(found("77").await && !found("42").await && found("78").await, "as one clean call leaves it");
}
