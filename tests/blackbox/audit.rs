//! The audit log of a request through the real server: what happened, when, by which token,
//! downloads with the client's network, and nothing of the subject or the report address.

use sha2::Digest;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_owner_reads_the_log_of_a_request_and_nobody_else_does() {
    let (app, account) = TestApp::start(&[]);
    let id = app.submit("profile/42", &account, Some("dpo@customer.example")).await;
    app.wait_delivered(id, &account).await;
    let _ = app.data(id, &account).await;

    let path = |version: &str, token: &str| format!("/{version}/datarequest/{id}/log?access_token={token}");
    let response = app.get(&path("v3", &account.token)).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.bytes));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["id"].as_u64(), Some(id));
    let log = body["log"].as_array().expect("log");
    let names: Vec<&str> = log.iter().map(|e| e["event"].as_str().expect("event")).collect();
    assert_eq!(names, ["received", "build_started", "built", "delivery", "download"]);
    let token_hash = sha2::Sha256::digest(account.token.as_bytes());
    let token_id: String = token_hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    assert_eq!(log[0]["token"], token_id, "the token by its short id");
    assert_eq!(log[0]["version"], "v3", "the version of the POST");
    assert_eq!(log[3]["outcome"], "sent");
    assert_eq!(log[4]["route"], "data");
    assert_eq!(log[4]["client"], "127.0.0.0/24", "the client's network, not its address");
    let text = String::from_utf8_lossy(&response.bytes);
    for personal in ["dpo@customer.example", "jane", account.token.as_str()] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }

    let stranger = app.create_account();
    for (path, who) in [
        (path("v1", &stranger.token), "another account"),
        (format!("/v1/datarequest/1234567890123456/log?access_token={}", account.token), "an unknown id"),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status, 400, "{who}");
        assert_eq!(response.json(), serde_json::json!({"error": {"message": "No entity with supplied ID"}}), "{who}");
    }
}
