//! `TestApp`: the real `datarequest` binary on a fresh temp data dir and a free port, driven
//! over HTTP and through its command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use datarequest_tests::faults::Server;

pub const SAMPLE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../functions/core/tests/fixtures/subjects-sample.ndjson");

/// The binary built next to this test (the test command builds every binary first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}

/// An account as `datarequest account create` prints it.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: u64,
    pub token: String,
    pub secret: String,
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub url: String,
    env: Vec<(String, String)>,
    server: Option<Server>,
    pub client: reqwest::Client,
}

pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.bytes)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    /// A data dir with one account (id 1) holding the sample subjects, and no server yet.
    pub fn new(env: &[(&str, &str)]) -> (Self, Account) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if !env.iter().any(|(k, _)| k == "DATAREQUEST_WEBHOOK_ALLOW_PRIVATE") {
            env.push(("DATAREQUEST_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()));
        }
        if !env.iter().any(|(k, _)| k == "DATAREQUEST_DELIVERY_BACKOFF_SECS") {
            env.push(("DATAREQUEST_DELIVERY_BACKOFF_SECS".into(), "0.1".into()));
        }
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let app = Self { dir, url: String::new(), env, server: None, client };
        let account = app.create_account();
        assert_eq!(account.id, 1, "the sample data belongs to account 1");
        let output = app.cli(&["import", SAMPLE]);
        assert!(output.status.success(), "import: {}", String::from_utf8_lossy(&output.stderr));
        (app, account)
    }

    /// Starts with the sample data and a running server.
    pub fn start(env: &[(&str, &str)]) -> (Self, Account) {
        let (mut app, account) = Self::new(env);
        app.spawn();
        (app, account)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `datarequest` command with this app's environment.
    pub fn command(&self) -> Command {
        let mut command = Command::new(binary("datarequest"));
        command.env_clear().env("RUST_LOG", "info");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    /// Runs a subcommand against this data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = self.command();
        command.args(args).arg("--data-dir").arg(self.data_dir());
        command.output().expect("runs datarequest")
    }

    pub fn create_account(&self) -> Account {
        let output = self.cli(&["account", "create"]);
        assert!(output.status.success(), "account create: {}", String::from_utf8_lossy(&output.stderr));
        let json: Value = serde_json::from_slice(&output.stdout).expect("account JSON");
        Account {
            id: json["account"].as_u64().expect("account"),
            token: json["token"].as_str().expect("token").to_owned(),
            secret: json["webhook_secret"].as_str().expect("secret").to_owned(),
        }
    }

    /// Starts the server on a free port and waits until it listens.
    pub fn spawn(&mut self) {
        let server = Server::spawn(self.command(), self.data_dir());
        self.url.clone_from(&server.url);
        self.server = Some(server);
    }

    /// Kills the server without warning (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_vec());
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body").to_vec();
        Response { status, headers, bytes }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], None).await
    }

    /// POSTs a JSON body for a subject path like `profile/42`; returns the new request id.
    pub async fn submit(&self, subject: &str, account: &Account, report: Option<&str>) -> u64 {
        let body = match report {
            Some(report) => serde_json::json!({ "report": report }).to_string(),
            None => "[]".to_owned(),
        };
        let path = format!("/v3/{subject}/datarequest?access_token={}", account.token);
        let response =
            self.request("POST", &path, &[("content-type", "application/json")], Some(body.as_bytes())).await;
        assert_eq!(response.status, 201, "{}", String::from_utf8_lossy(&response.bytes));
        response.json()["id"].as_u64().expect("id")
    }

    pub async fn status(&self, id: u64, account: &Account) -> Value {
        self.get(&format!("/v1/datarequest/{id}/status?access_token={}", account.token)).await.json()
    }

    /// Polls the status until `done` holds (at most 60 s).
    pub async fn wait_for(&self, id: u64, account: &Account, mut done: impl FnMut(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let status = self.status(id, account).await;
            if done(&status) {
                return status;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "gave up waiting; last status {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_delivered(&self, id: u64, account: &Account) -> Value {
        self.wait_for(id, account, |s| s["state"] == "delivered" || s["delivery"]["status"] == "failed").await
    }

    pub async fn data(&self, id: u64, account: &Account) -> Vec<u8> {
        let response = self.get(&format!("/v2/datarequest/{id}/data?access_token={}", account.token)).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("application/json"));
        response.bytes
    }

    pub fn outbox(&self, id: u64) -> Vec<u8> {
        std::fs::read(self.data_dir().join("outbox").join(format!("{id}.eml")))
            .expect("the delivery mail is in the outbox")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One POST received by [`Receiver`].
#[derive(Debug, Clone)]
pub struct Received {
    /// The request target: the path and query as received.
    pub target: String,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

/// A web address that records what is POSTed to it and answers with programmed statuses.
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers with `statuses` in turn, then 200 (a 302 carries a Location; a 0 never answers).
    pub async fn start(statuses: &[u16]) -> Self {
        use axum::routing::post;
        let received = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(statuses.iter().rev().copied().collect::<Vec<u16>>()));
        let (log, answers) = (Arc::clone(&received), Arc::clone(&queue));
        let app = axum::Router::new().route(
            "/hook",
            post(move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (log, answers) = (Arc::clone(&log), Arc::clone(&answers));
                async move {
                    let target = uri.path_and_query().map(ToString::to_string).unwrap_or_default();
                    log.lock().expect("lock").push(Received { target, headers, body: body.to_vec() });
                    let status = answers.lock().expect("lock").pop().unwrap_or(200);
                    if status == 0 {
                        std::future::pending::<()>().await;
                    }
                    let status = axum::http::StatusCode::from_u16(status).expect("status");
                    (status, [("location", "http://127.0.0.1:1/elsewhere")], "")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, received, task }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The records of a section of an export.
/// POSTs a data request for `subject` (`profile/42`, `email/…`) with the official client's
/// empty body.
pub async fn request_data(app: &TestApp, account: &Account, subject: &str) -> Response {
    let path = format!("/v1/{subject}/datarequest?access_token={}", account.token);
    app.request("POST", &path, &[("content-type", "application/json")], Some(b"[]")).await
}

/// Asserts the answer to an unknown, revoked or deleted account's token.
pub fn assert_refused_token(response: &Response) {
    assert_eq!(response.status, 400, "{}", String::from_utf8_lossy(&response.bytes));
    assert_eq!(response.json(), serde_json::json!({"error": {"message": "Invalid access token"}}));
}

/// The download link of the export in a request's delivery mail (sent above the attachment
/// limit), as a full URL.
pub fn mailed_link(app: &TestApp, id: u64) -> String {
    let raw = app.outbox(id);
    let message = mail_parser::MessageParser::default().parse(&raw).expect("MIME");
    let text = message.body_text(0).expect("text").into_owned();
    text.split_whitespace()
        .find(|w| w.contains("/download?token=") && !w.contains("format=html"))
        .expect("a download link")
        .to_owned()
}

/// Copernica's text for a subject that does not exist in the caller's account.
pub fn unknown_text(subject: &str) -> &'static str {
    if subject.starts_with("subprofile/") { "No subprofile with supplied ID" } else { "No entity with supplied ID" }
}

/// Asserts that a data request for `subject` is refused as for an id that never existed.
pub async fn assert_unknown(app: &TestApp, account: &Account, subject: &str) {
    let response = request_data(app, account, subject).await;
    assert_eq!(response.status, 400, "{subject}: {}", String::from_utf8_lossy(&response.bytes));
    assert_eq!(response.header("content-type"), Some("application/json"), "{subject}");
    assert_eq!(response.json(), serde_json::json!({"error": {"message": unknown_text(subject)}}), "{subject}");
}

pub fn section(export: &Value, name: &str) -> Option<Vec<Value>> {
    export["data"].as_array()?.iter().find(|s| s[0] == name).map(|s| s.as_array().expect("array")[1..].to_vec())
}
