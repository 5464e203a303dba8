//! Tokens and accounts through the operator's command and the real server: a token added works,
//! a revoked one stops, a deleted account's tokens and links stop; and a client that keeps
//! sending wrong tokens is refused with `429` before any lookup.

use serde_json::Value;

use crate::helpers::{TestApp, request_data};

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
    // The running server trusts tokens it looked up for at most a minute; after a restart
    // nothing of the account works.
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
