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
