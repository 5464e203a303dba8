//! Shared arrangement for the library's integration tests: an app on fakes with the sample
//! subject data and the fixture's token.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use datarequest::App;
use datarequest::adapters::memory::Fakes;
use datarequest::app::QueueOutcome as Outcome;
use datarequest::app::ingest::parse_records;
use datarequest::config::Settings;
use datarequest::domain::{AccessToken, AccountId, Record, RequestId, WebhookSecret};
use datarequest::ports::Accounts;

pub const SAMPLE: &str = include_str!("../fixtures/subjects-sample.ndjson");
pub const PUBLIC_URL: &str = "https://api.example.test";

pub fn sample_records() -> Vec<Record> {
    parse_records(SAMPLE).expect("sample lines are valid")
}

pub struct World {
    pub app: App,
    pub fakes: Fakes,
    pub account: AccountId,
    pub secret: WebhookSecret,
}

pub async fn world_with(settings: Settings) -> World {
    let (app, fakes) = datarequest::compose::memory(settings);
    let secret = WebhookSecret::generate();
    let token = AccessToken::parse("EXAMPLE_TOKEN").expect("fixture token parses");
    let account = fakes.accounts.create(&token.hash(), &secret).await.expect("account");
    datarequest::compose::ports(&app).subjects.load(&sample_records()).await.expect("sample loads");
    World { app, fakes, account, secret }
}

pub async fn world() -> World {
    world_with(Settings::for_tests(PUBLIC_URL)).await
}

impl World {
    /// Hands every queued message to the worker once; returns the outcomes.
    pub async fn run_queue(&self) -> Vec<(RequestId, Outcome)> {
        let mut outcomes = Vec::new();
        for id in self.fakes.queue.drain() {
            outcomes.push((id, self.app.handle_message(id, 1).await.expect("worker handles the message")));
        }
        outcomes
    }

    pub fn export(&self, id: RequestId) -> serde_json::Value {
        let bytes = self.fakes.exports.bytes(id).expect("the export exists");
        serde_json::from_slice(&bytes).expect("the export is JSON")
    }
}

/// The records of a section of an export (`None` when the section is absent).
pub fn section<'a>(export: &'a serde_json::Value, name: &str) -> Option<Vec<&'a serde_json::Value>> {
    export["data"].as_array()?.iter().find(|s| s[0] == name).map(|s| s.as_array().expect("array")[1..].iter().collect())
}

pub fn section_names(export: &serde_json::Value) -> Vec<String> {
    export["data"].as_array().expect("data").iter().map(|s| s[0].as_str().expect("name").to_owned()).collect()
}

/// A second account in the same world.
pub async fn second_account(world: &World) -> AccountId {
    let token = AccessToken::generate();
    world.fakes.accounts.create(&token.hash(), &WebhookSecret::generate()).await.expect("account")
}

/// What a test watches in the subject data the builder reads (see [`Watched`]).
#[async_trait::async_trait]
pub trait Watch: Send + Sync {
    /// Before the `page`-th page of messages is read (from 1); an error fails the read.
    async fn before_messages(&self, _page: usize, _cursor: Option<&str>) -> anyhow::Result<()> {
        Ok(())
    }

    /// A message body is about to be streamed.
    fn on_body(&self) {}
}

/// The real (in-memory) subject data, with a [`Watch`] on the reads of messages.
pub struct Watched<W> {
    pub inner: std::sync::Arc<dyn datarequest::ports::SubjectData>,
    pub watch: W,
    pages: std::sync::atomic::AtomicUsize,
}

impl<W> Watched<W> {
    pub fn new(inner: std::sync::Arc<dyn datarequest::ports::SubjectData>, watch: W) -> Self {
        Self { inner, watch, pages: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// The pages of messages asked for so far.
    pub fn pages(&self) -> usize {
        self.pages.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl<W: Watch> datarequest::ports::SubjectData for Watched<W> {
    async fn profile(
        &self,
        account: AccountId,
        id: datarequest::domain::ProfileId,
    ) -> anyhow::Result<Option<datarequest::domain::Profile>> {
        self.inner.profile(account, id).await
    }
    async fn subprofile(
        &self,
        account: AccountId,
        id: datarequest::domain::SubprofileId,
    ) -> anyhow::Result<Option<datarequest::domain::Subprofile>> {
        self.inner.subprofile(account, id).await
    }
    async fn subprofiles(
        &self,
        account: AccountId,
        id: datarequest::domain::ProfileId,
        cursor: Option<&str>,
    ) -> anyhow::Result<datarequest::ports::Page<datarequest::domain::Subprofile>> {
        self.inner.subprofiles(account, id, cursor).await
    }
    async fn messages(
        &self,
        account: AccountId,
        subject: &datarequest::domain::Subject,
        cursor: Option<&str>,
    ) -> anyhow::Result<datarequest::ports::Page<datarequest::domain::Message<datarequest::domain::Mime>>> {
        let page = self.pages.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.watch.before_messages(page, cursor).await?;
        self.inner.messages(account, subject, cursor).await
    }
    async fn mime(&self, body: &datarequest::domain::MimeRef) -> anyhow::Result<datarequest::ports::MimeChunks> {
        self.watch.on_body();
        self.inner.mime(body).await
    }
    async fn events(
        &self,
        account: AccountId,
        subject: &datarequest::domain::Subject,
        kind: datarequest::domain::EventKind,
        cursor: Option<&str>,
    ) -> anyhow::Result<datarequest::ports::Page<datarequest::domain::Event>> {
        self.inner.events(account, subject, kind, cursor).await
    }
    async fn load(&self, records: &[Record]) -> anyhow::Result<()> {
        self.inner.load(records).await
    }
    async fn erase(&self, erasure: &datarequest::domain::Erasure) -> anyhow::Result<()> {
        self.inner.erase(erasure).await
    }
}
