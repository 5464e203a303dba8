//! Another account's requests and subjects behave exactly like ones that do not exist.

use crate::helpers::{TestApp, section};

#[tokio::test]
async fn a_foreign_request_looks_exactly_like_an_unknown_one() {
    let (app, owner) = TestApp::start(&[]);
    let stranger = app.create_account();
    let id = app.submit("profile/42", &owner, None).await;
    app.wait_for(id, &owner, |s| s["status"] == "available").await;
    let unknown = if id == 1_000_000_000_000_001 { id + 1 } else { 1_000_000_000_000_001 };

    for suffix in ["/status", "", "/data"] {
        let foreign = app.get(&format!("/v1/datarequest/{id}{suffix}?access_token={}", stranger.token)).await;
        let missing = app.get(&format!("/v1/datarequest/{unknown}{suffix}?access_token={}", stranger.token)).await;
        assert_eq!(foreign.status, missing.status, "{suffix}");
        assert_eq!(foreign.bytes, missing.bytes, "{suffix}");
        assert_eq!(foreign.header("content-type"), Some("application/json"));
    }
    let status = app.get(&format!("/v1/datarequest/{id}/status?access_token={}", stranger.token)).await.json();
    assert_eq!(
        status,
        serde_json::json!({"status": "not available", "available": 0, "content-type": "application/json"})
    );
    // The owner still sees it.
    assert_eq!(app.status(id, &owner).await["status"], "available");
}

#[tokio::test]
async fn a_foreign_subject_is_refused_exactly_like_an_unknown_one() {
    let (app, owner) = TestApp::start(&[]);
    let stranger = app.create_account();
    for subject in ["profile/42", "subprofile/4201"] {
        let path = |token: &str, subject: &str| format!("/v1/{subject}/datarequest?access_token={token}");
        let foreign = app.request("POST", &path(&stranger.token, subject), &[], None).await;
        let missing = app.request("POST", &path(&owner.token, &subject.replace("42", "999")), &[], None).await;
        assert_eq!((foreign.status, missing.status), (400, 400));
        assert_eq!(foreign.bytes, missing.bytes);
        assert_eq!(foreign.json()["error"]["message"], crate::helpers::unknown_text(subject));
    }
    // An e-mail request of another account finds none of the owner's messages.
    let id = app.submit("email/jane.doe%40example.com", &stranger, None).await;
    app.wait_for(id, &stranger, |s| s["status"] == "available").await;
    let export: serde_json::Value = serde_json::from_slice(&app.data(id, &stranger).await).expect("JSON");
    for name in ["destinations", "impressions", "clicks", "deliveries", "errors", "abuses", "unsubscribes", "surveys"] {
        assert_eq!(section(&export, name).expect(name).len(), 0, "{name} of another account leaked");
    }
    let own = app.submit("email/jane.doe%40example.com", &owner, None).await;
    app.wait_for(own, &owner, |s| s["status"] == "available").await;
    let export: serde_json::Value = serde_json::from_slice(&app.data(own, &owner).await).expect("JSON");
    assert_eq!(section(&export, "destinations").expect("destinations").len(), 1);
}
