//! Tokens and accounts through the operator's command and the real server: a token added works,
//! a revoked one stops (for a new request at once, for reads within a second), a deleted
//! account's tokens and links stop; and a client that keeps sending wrong tokens is refused with
//! `429` before any lookup, counted by its own address behind a trusted proxy.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Account, Response, TestApp, request_data};

/// The slack allowed above the token cache's second, for the scheduler of a busy machine.
const SLACK: Duration = Duration::from_millis(500);

fn json(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[tokio::test]
async fn a_token_is_added_revoked_and_an_account_deleted_with_the_operators_command() {
    // Above a one-byte attachment limit the mail holds a download link.
    let (mut app, account) = TestApp::new(&[("DATAREQUEST_ATTACHMENT_LIMIT", "1")]);
    let id = account.id.to_string();
    let added = json(&app.cli(&["account", "token", "add", "--account", &id]));
    let second =
        crate::helpers::Account { token: added["token"].as_str().expect("token").to_owned(), ..account.clone() };
    let third = json(&app.cli(&["account", "token", "add", "--account", &id]));
    assert_ne!(added["token"], third["token"]);
    let revoked =
        json(&app.cli(&["account", "token", "revoke", "--account", &id, third["token"].as_str().expect("token")]));
    assert_eq!(revoked["revoked"], true);
    let again = app.cli(&["account", "token", "revoke", "--account", &id, third["token"].as_str().expect("token")]);
    assert!(!again.status.success(), "revoking twice says there is no such token");
    let wrong_account = app.cli(&["account", "token", "revoke", "--account", "99", &account.token]);
    assert!(!wrong_account.status.success(), "a token is revoked only by its own account");
    app.spawn();

    assert_eq!(request_data(&app, &second, "profile/42").await.status, 201, "an added token works at once");
    let revoked_token =
        crate::helpers::Account { token: third["token"].as_str().expect("token").to_owned(), ..account.clone() };
    crate::helpers::assert_refused_token(&request_data(&app, &revoked_token, "profile/42").await);

    // A request with a mailed link, then the account goes.
    let request = app.submit("profile/42", &account, Some("dpo@customer.example")).await;
    app.wait_delivered(request, &account).await;
    let link = crate::helpers::mailed_link(&app, request);
    assert_eq!(app.client.get(&link).send().await.expect("download").status(), 200);
    let deleted = json(&app.cli(&["account", "delete", "--account", &id]));
    assert_eq!(deleted["deleted"].as_u64(), Some(account.id));
    assert!(
        !app.cli(&["account", "token", "add", "--account", &id]).status.success(),
        "a deleted account takes no token"
    );
    // A new request is checked against the store: refused at once, in the running server.
    for who in [&account, &second] {
        crate::helpers::assert_refused_token(&request_data(&app, who, "profile/42").await);
    }
    // And after a restart nothing of the account works.
    app.kill();
    app.spawn();
    for who in [&account, &second] {
        crate::helpers::assert_refused_token(&request_data(&app, who, "profile/42").await);
    }
    let link = link.replacen(&link[..link.find("/v").expect("path")], &app.url, 1);
    let response = app.client.get(&link).send().await.expect("download");
    assert_eq!(response.status(), 400, "the mailed link is dead");
}

#[tokio::test]
async fn a_client_that_keeps_failing_to_authenticate_gets_429_before_any_lookup() {
    let (app, account) = TestApp::start(&[("DATAREQUEST_AUTH_FAILURES_PER_MINUTE", "3")]);
    // Stay clear of a minute boundary, where the window starts afresh.
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() % 60;
    if second >= 50 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - second)).await;
    }
    let wrong = "/v1/datarequest/1234567890123456/status?access_token=0000000000000000000000000000000000000000000000000000000000000000";
    for _ in 0..3 {
        let response = app.get(wrong).await;
        assert_eq!(response.status, 400);
    }
    let status = format!("/v1/datarequest/1234567890123456/status?access_token={}", account.token);
    for path in [wrong, status.as_str()] {
        let response = app.get(path).await;
        assert_eq!(response.status, 429, "{path}");
        let retry: u64 = response.header("retry-after").expect("Retry-After").parse().expect("seconds");
        assert!((1..=60).contains(&retry));
        assert!(response.json()["error"]["message"].as_str().is_some_and(|m| m.starts_with("Too many failed")));
    }
    // Good tokens never count.
    let (calm, owner) = TestApp::start(&[("DATAREQUEST_AUTH_FAILURES_PER_MINUTE", "3")]);
    for _ in 0..10 {
        let path = format!("/v1/datarequest/1234567890123456/status?access_token={}", owner.token);
        assert_eq!(calm.get(&path).await.status, 200);
    }
}

fn status_path(account: &Account) -> String {
    format!("/v1/datarequest/1234567890123456/status?access_token={}", account.token)
}

/// Runs the operator's command while reading with `account`'s token all along (so the server's
/// cache is refreshed up to the moment the store changes), and goes on reading until a read is
/// refused. Returns the time from the command's end to that refusal (zero when one was refused
/// before it ended).
async fn first_refused_read_around(app: &TestApp, account: &Account, args: &[&str]) -> Duration {
    let mut command = app.command();
    command.args(args).arg("--data-dir").arg(app.data_dir());
    let running = tokio::task::spawn_blocking(move || (command.output().expect("runs datarequest"), Instant::now()));
    let start = Instant::now();
    let refused_at = loop {
        let response = app.get(&status_path(account)).await;
        if response.status == 400 {
            crate::helpers::assert_refused_token(&response);
            break Instant::now();
        }
        assert_eq!(response.status, 200);
        assert!(start.elapsed() < Duration::from_secs(10), "the token still reads after 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (output, ended) = running.await.expect("the command ran");
    json(&output);
    refused_at.saturating_duration_since(ended)
}

fn add_token(app: &TestApp, account: &Account) -> Account {
    let added = json(&app.cli(&["account", "token", "add", "--account", &account.id.to_string()]));
    Account { token: added["token"].as_str().expect("token").to_owned(), ..account.clone() }
}

/// A server whose reads trust a looked-up token for 30 s: what a new request does is seen apart
/// from the cache.
const LONG_CACHE: [(&str, &str); 1] = [("DATAREQUEST_TOKEN_CACHE_SECS", "30")];

#[tokio::test]
async fn a_token_revoked_with_the_command_submits_nothing_at_once_whatever_the_cache_holds() {
    let (app, account) = TestApp::start(&LONG_CACHE);
    let doomed = add_token(&app, &account);
    assert_eq!(request_data(&app, &doomed, "profile/42").await.status, 201);
    assert_eq!(app.get(&status_path(&doomed)).await.status, 200, "the cache holds the token now");
    let id = account.id.to_string();
    assert_eq!(json(&app.cli(&["account", "token", "revoke", "--account", &id, &doomed.token]))["revoked"], true);

    crate::helpers::assert_refused_token(&request_data(&app, &doomed, "profile/42").await);
    assert_eq!(request_data(&app, &account, "profile/42").await.status, 201, "the account's other token works");
}

#[tokio::test]
async fn a_deleted_accounts_token_never_gets_a_201_whatever_the_cache_holds() {
    let (app, account) = TestApp::start(&LONG_CACHE);
    assert_eq!(request_data(&app, &account, "profile/42").await.status, 201);
    assert_eq!(app.get(&status_path(&account)).await.status, 200, "the cache holds the token now");
    let deleted = json(&app.cli(&["account", "delete", "--account", &account.id.to_string()]));
    assert_eq!(deleted["deleted"].as_u64(), Some(account.id));

    let posts: Vec<Response> =
        futures_util::future::join_all((0..5).map(|_| request_data(&app, &account, "profile/42"))).await;
    for response in &posts {
        crate::helpers::assert_refused_token(response);
    }
}

#[tokio::test]
async fn a_token_revoked_with_the_command_reads_nothing_a_second_after_it() {
    let (app, account) = TestApp::start(&[]);
    let doomed = add_token(&app, &account);
    let id = account.id.to_string();
    let revoke = ["account", "token", "revoke", "--account", &id, &doomed.token];
    let took = first_refused_read_around(&app, &doomed, &revoke).await;
    eprintln!("revoked token: first refused read {} ms after the command ended", took.as_millis());
    assert!(took <= Duration::from_secs(1) + SLACK, "a read was allowed {took:?} after the revocation");
    // Once refused, always refused.
    for _ in 0..3 {
        crate::helpers::assert_refused_token(&app.get(&status_path(&doomed)).await);
    }
}

#[tokio::test]
async fn a_deleted_accounts_token_reads_nothing_a_second_after_the_command() {
    let (app, account) = TestApp::start(&[]);
    let id = account.id.to_string();
    let took = first_refused_read_around(&app, &account, &["account", "delete", "--account", &id]).await;
    eprintln!("deleted account: first refused read {} ms after the command ended", took.as_millis());
    assert!(took <= Duration::from_secs(1) + SLACK, "a read was allowed {took:?} after the deletion");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_failure_count() {
    let env = [("DATAREQUEST_AUTH_FAILURES_PER_MINUTE", "3"), ("DATAREQUEST_TRUSTED_PROXIES", "127.0.0.1")];
    let (app, account) = TestApp::start(&env);
    // Stay clear of a minute boundary, where the window starts afresh.
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() % 60;
    if second >= 50 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
    let wrong = "/v1/datarequest/1234567890123456/status?access_token=0000000000000000000000000000000000000000000000000000000000000000";
    let from = |client: &'static str| [("x-forwarded-for", client)];
    for _ in 0..3 {
        assert_eq!(app.request("GET", wrong, &from("198.51.100.1"), None).await.status, 400);
    }
    let good = status_path(&account);
    assert_eq!(app.request("GET", &good, &from("198.51.100.1"), None).await.status, 429, "the guesser is locked out");
    // A forged address left of the guesser's own does not get it out.
    assert_eq!(app.request("GET", &good, &from("203.0.113.5, 198.51.100.1"), None).await.status, 429);
    assert_eq!(app.request("GET", &good, &from("198.51.100.2"), None).await.status, 200, "another client is not");
    assert_eq!(request_data(&app, &account, "profile/42").await.status, 201, "nor the proxy's own calls");
    // The audit log names the forwarded client's network, not the proxy's.
    let id = app.submit("profile/42", &account, None).await;
    app.wait_for(id, &account, |s| s["status"] == "available").await;
    let data = format!("/v1/datarequest/{id}/data?access_token={}", account.token);
    assert_eq!(app.request("GET", &data, &from("198.51.100.2"), None).await.status, 200);
    let log = app.get(&format!("/v1/datarequest/{id}/log?access_token={}", account.token)).await.json();
    let download = log["log"].as_array().expect("log").iter().find(|e| e["event"] == "download").cloned();
    assert_eq!(download.expect("a download")["client"], "198.51.100.0/24");

    // Without the setting the header is not believed: the address is the peer's.
    let (plain, owner) = TestApp::start(&[("DATAREQUEST_AUTH_FAILURES_PER_MINUTE", "3")]);
    for _ in 0..3 {
        assert_eq!(plain.request("GET", wrong, &from("198.51.100.1"), None).await.status, 400);
    }
    assert_eq!(plain.request("GET", &status_path(&owner), &from("198.51.100.2"), None).await.status, 429);
}
