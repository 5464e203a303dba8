//! What the source tests on a real database server (`postgres`, `mysql`) share: a database
//! name of each test's own, the requests and exports they settle, `sources check` run with a
//! mapping of the test's, and a relay that can cut the server off.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Account, TestApp, binary, section};

/// A database name no other test (of this run or another) uses.
pub fn unique_name() -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    format!(
        "shop_{}_{}_{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").subsec_nanos()
    )
}

/// The server's superuser URL and the reading account (`user:password`), from the variables
/// `url` and `reader` that `script start` printed.
pub fn server(url: &str, reader: &str, what: &str, script: &str) -> (reqwest::Url, String) {
    let missing = |variable: &str| {
        panic!(
            "the {what} source tests need a running server, and {variable} is not set: run ./infra/test.sh, \
             or `./infra/{script} start` and export the lines it prints"
        )
    };
    let admin = std::env::var(url).unwrap_or_else(|_| missing(url));
    let reader = std::env::var(reader).unwrap_or_else(|_| missing(reader));
    (reqwest::Url::parse(&admin).unwrap_or_else(|_| panic!("{url} is a URL")), reader)
}

/// POSTs a data request and waits until it is built (or failed); returns its final status.
pub async fn settle(app: &TestApp, account: &Account, subject: &str) -> (u64, Value) {
    let id = app.submit(subject, account, None).await;
    let status =
        app.wait_for(id, account, |s| matches!(s["state"].as_str(), Some("built" | "delivered" | "failed"))).await;
    (id, status)
}

/// The export of a new data request for `subject`.
pub async fn export(app: &TestApp, account: &Account, subject: &str) -> Value {
    let (id, status) = settle(app, account, subject).await;
    assert_ne!(status["state"], "failed", "{subject}: {status}");
    serde_json::from_slice(&app.data(id, account).await).expect("JSON")
}

pub fn records(export: &Value, name: &str) -> Vec<Value> {
    section(export, name).unwrap_or_else(|| panic!("no section {name} in {export}"))
}

pub fn column(records: &[Value], name: &str) -> Vec<Value> {
    records.iter().map(|r| r[name].clone()).collect()
}

/// After a concurrent transaction changed Ana's name and first subject and added a mail while
/// build `id` was under way: the build holds the rows of its snapshot, the next the new ones.
pub async fn assert_snapshot_held(app: &TestApp, account: &Account, id: u64) {
    let status = app.wait_for(id, account, |s| matches!(s["state"].as_str(), Some("built" | "failed"))).await;
    assert_eq!(status["state"], "built", "{status}");
    let during: Value = serde_json::from_slice(&app.data(id, account).await).expect("JSON");

    assert_eq!(column(&records(&during, "profile"), "name"), [json!("Ana Silva")]);
    assert_eq!(
        records(&during, "destinations"),
        [
            json!({"ID": "shop-7001-1", "subject": "Spring sale: 20% off"}),
            json!({"ID": "shop-7001-2", "subject": "Your invoice 2025-114"})
        ],
        "the snapshot of the build's start, not the rows committed during it"
    );

    let after = export(app, account, "profile/7001").await;
    assert_eq!(column(&records(&after, "profile"), "name"), [json!("Ana Changed")]);
    assert_eq!(
        column(&records(&after, "destinations"), "subject"),
        [json!("New"), json!("Changed"), json!("Your invoice 2025-114")]
    );
}

/// An e-mail request for `subject` (an address that is SQL if pasted) finds no record.
pub async fn assert_finds_nothing(app: &TestApp, account: &Account, subject: &str) -> Value {
    let export = export(app, account, subject).await;
    for name in ["destinations", "impressions", "clicks", "deliveries", "errors", "abuses", "unsubscribes", "surveys"] {
        assert_eq!(records(&export, name), Vec::<Value>::new(), "{subject} {name}");
    }
    export
}

/// The request for Ana failed at its one attempt because a query ran past its time limit
/// (the server's words for it hold `limit`); no export is served.
pub async fn assert_timed_out(app: &TestApp, account: &Account, limit: &str) {
    let (id, status) = settle(app, account, "profile/7001").await;
    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["reason"].as_str().expect("reason");
    assert!(reason.contains(r#"source "shop" (profile, destinations)"#) && reason.contains(limit), "{reason}");
    let response = app.get(&format!("/v1/datarequest/{id}/data?access_token={}", account.token)).await;
    assert_eq!(response.status, 404, "no export is complete with a source missing");
}

/// Three exports of Ana by a mapping whose profile query selects its connection's id as
/// `connection`: the POSTs' existence checks and the builds all used one pooled connection.
pub async fn assert_one_pooled_connection(app: &TestApp, account: &Account) {
    let mut seen = Vec::new();
    for _ in 0..3 {
        let export = export(app, account, "profile/7001").await;
        seen.extend(column(&records(&export, "profile"), "connection"));
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|c| *c == seen[0]), "one connection served every POST and build: {seen:?}");
}

/// A server reading the shop through `relay` (with one build attempt) once the relay is cut:
/// builds fail naming the source, a POST that must ask the source whether its subject exists
/// gets a 500, and `serve` refuses to start.
pub async fn assert_cut_off(app: &TestApp, account: &Account, relay: &Relay) {
    assert_eq!(records(&export(app, account, "profile/7001").await, "profile").len(), 1, "reachable at first");

    relay.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (_, status) = settle(app, account, "profile/42").await;
    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["reason"].as_str().expect("reason");
    assert!(reason.contains(r#"source "shop""#) && reason.contains("could not connect"), "{reason}");
    let path = format!("/v1/profile/7001/datarequest?access_token={}", account.token);
    let response = app.request("POST", &path, &[("content-type", "application/json")], Some(b"[]")).await;
    assert_eq!(
        response.status,
        500,
        "whether a subject exists cannot be known: {}",
        String::from_utf8_lossy(&response.bytes)
    );

    let served = app.cli(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!served.status.success(), "serve must not start with a source it cannot reach");
    let printed = String::from_utf8_lossy(&served.stdout);
    assert!(printed.contains(r#"source "shop": could not connect"#), "{printed}");
}

/// `datarequest sources check` with a mapping and, in the variable `url_env`, a connection
/// string of its own.
pub fn sources_check(mapping: &str, url_env: &str, url: &str) -> Output {
    Command::new(binary("datarequest"))
        .env_clear()
        .env("DATAREQUEST_SOURCES_TOML", mapping)
        .env(url_env, url)
        .args(["sources", "check"])
        .output()
        .expect("runs datarequest")
}

/// A TCP relay to a database server that can be cut, as a network or a server going away, and
/// opened again.
pub struct Relay {
    /// Where the relay listens.
    pub port: u16,
    open: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    pub async fn to(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (open, mut opened) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        // While cut, a connection is closed as soon as it is made.
                        if let Ok((mut inbound, _)) = accepted && *opened.borrow() {
                            links.spawn(async move {
                                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                                }
                            });
                        }
                    }
                    changed = opened.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        // Every open link is cut.
                        links.abort_all();
                    }
                }
            }
            links.abort_all();
        });
        Self { port, open }
    }

    pub fn cut(&self) {
        let _ = self.open.send(false);
    }

    pub fn open(&self) {
        let _ = self.open.send(true);
    }
}

// Two threads: the relay keeps relaying while the test waits for the server to start.
