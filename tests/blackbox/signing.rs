//! The Copernica signing profile end to end: keys made by `datarequest signing-key create`, an
//! account switched with `datarequest account signing`, and its web deliveries verified by an
//! independent verifier (`tests/verify_copernica.py`, Python's `cryptography`) against the
//! public key of the printed TXT record; a tampered body, a wrong key and a missing header each
//! fail it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::helpers::{Received, Receiver, TestApp};

const KEY_ID: &str = "dr1._domainkey.shop.test";
const OTHER_KEY_ID: &str = "dr2._domainkey.shop.test";

/// The Python of the test venv that `infra/emulator.sh` installs (with `cryptography`).
fn python() -> PathBuf {
    let venvs = std::env::var("DATAREQUEST_VENVS")
        .map_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv")), PathBuf::from);
    let python = venvs.join("emulator/bin/python");
    assert!(python.exists(), "{} is missing: run ./infra/emulator.sh start once to install it", python.display());
    python
}

/// What the independent verifier says of a received call: `Ok(signing string)` or
/// `Err(why it refused)`.
pub fn verify(post: &Received, headers: &[(String, String)], body: &[u8], txt: &str) -> Result<String, String> {
    let call = json!({
        "method": "POST",
        "target": post.target,
        "headers": headers.iter().map(|(n, v)| (n.clone(), Value::from(v.as_str()))).collect::<serde_json::Map<_, _>>(),
        "body": STANDARD.encode(body),
        "txt": txt,
        "copernica_id": "account_1",
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/verify_copernica.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs the verifier");
    child.stdin.take().expect("stdin").write_all(call.to_string().as_bytes()).expect("writes the call");
    let output = child.wait_with_output().expect("the verifier ends");
    let answer: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("verifier: {}", String::from_utf8_lossy(&output.stderr)));
    match answer["ok"].as_bool() {
        Some(true) if output.status.success() => Ok(answer["signing_string"].as_str().expect("string").to_owned()),
        _ => Err(answer["error"].as_str().unwrap_or_default().to_owned()),
    }
}

/// The received headers as (lower-case name, value) pairs.
pub fn pairs(post: &Received) -> Vec<(String, String)> {
    post.headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ASCII").to_owned())).collect()
}

pub fn header<'a>(post: &'a Received, name: &str) -> &'a str {
    post.headers.get(name).map_or("", |v| v.to_str().expect("ASCII"))
}

/// Runs a command of the app that prints JSON; asserts it succeeds.
fn json_of(app: &TestApp, args: &[&str]) -> Value {
    let output = app.cli(args);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[tokio::test]
async fn a_copernica_profile_delivery_verifies_independently_against_the_printed_txt_record() {
    let receiver = Receiver::start(&[500]).await;
    // The retry comes more than a second later, so its Date differs.
    let env = [("DATAREQUEST_SIGNING_KEYS", KEY_ID), ("DATAREQUEST_DELIVERY_BACKOFF_SECS", "1.2")];
    let (mut app, account) = TestApp::new(&env);
    let created = json_of(&app, &["signing-key", "create", "--key-id", KEY_ID]);
    assert_eq!(created["key_id"], KEY_ID);
    let txt = created["txt"].as_str().expect("txt").to_owned();
    assert!(txt.starts_with("v=DKIM1; k=rsa; p="), "{txt}");
    let other = json_of(&app, &["signing-key", "create", "--key-id", OTHER_KEY_ID]);
    let wrong_txt = other["txt"].as_str().expect("txt").to_owned();
    let key_file = app.data_dir().join("signing-keys.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).expect("the key file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the service's user reads the keys");
    }
    let switched = json_of(&app, &["account", "signing", "--account", "1", "copernica"]);
    assert_eq!(switched, json!({"account": 1, "signing": "copernica"}));
    app.spawn();

    let target = format!("{}?shop=7&tag=a%20b", receiver.url);
    let id = app.submit("profile/42", &account, Some(&target)).await;
    let status = app.wait_delivered(id, &account).await;
    assert_eq!(status["delivery"]["status"], "sent", "{status}");
    assert_eq!(status["delivery"]["attempts"], 2, "the first answer was 500");
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let export = app.data(id, &account).await;
    let port = receiver.url.trim_start_matches("http://127.0.0.1:").split('/').next().expect("port").to_owned();

    for post in &received {
        assert_eq!(post.body, export, "the body is the export, unchanged");
        assert_eq!(post.target, "/hook?shop=7&tag=a%20b");
        assert!(post.headers.get("webhook-signature").is_none(), "no Standard Webhooks headers");
        let signing_string = verify(post, &pairs(post), &post.body, &txt).expect("the delivery verifies");
        let expected = format!(
            "(request-target): post /hook?shop=7&tag=a%20b\nhost: 127.0.0.1:{port}\ndate: {}\n\
             content-length: {}\ncontent-type: application/json\nx-copernica-id: account_1\ndigest: {}",
            header(post, "date"),
            export.len(),
            header(post, "digest")
        );
        assert_eq!(signing_string, expected);
        let signature = header(post, "signature");
        assert!(
            signature.starts_with(&format!(
                "keyId=\"{KEY_ID}\",algorithm=\"rsa-sha256\",headers=\"(request-target) host date content-length \
                 content-type x-copernica-id digest\",signature=\""
            )),
            "{signature}"
        );
        assert!(header(post, "date").ends_with(" GMT"), "an IMF-fixdate");
        assert_eq!(header(post, "x-nonce").len(), 32);
    }
    let (first, retry) = (&received[0], &received[1]);
    assert_ne!(header(first, "x-nonce"), header(retry, "x-nonce"), "the retry has its own nonce");
    assert_ne!(header(first, "date"), header(retry, "date"), "and its own date");
    assert_ne!(header(first, "signature"), header(retry, "signature"), "so it is signed anew");

    // A tampered body fails on its digest; with a digest made to match, on the signature.
    let post = &received[1];
    let mut tampered = post.body.clone();
    tampered[1] ^= 0x20;
    assert_eq!(verify(post, &pairs(post), &tampered, &txt), Err("the digest does not match the body".into()));
    let rehashed: Vec<(String, String)> = pairs(post)
        .into_iter()
        .map(|(n, v)| {
            use sha2::Digest;
            let digest = format!("SHA-256={}", STANDARD.encode(sha2::Sha256::digest(&tampered)));
            if n == "digest" { (n, digest) } else { (n, v) }
        })
        .collect();
    assert_eq!(verify(post, &rehashed, &tampered, &txt), Err("the signature does not verify".into()));
    // Another key's TXT record does not verify it.
    assert_eq!(verify(post, &pairs(post), &post.body, &wrong_txt), Err("the signature does not verify".into()));
    // Nor does a call without one of the signed headers.
    for missing in ["date", "host", "x-copernica-id", "content-type"] {
        let without: Vec<_> = pairs(post).into_iter().filter(|(n, _)| n != missing).collect();
        let refused = verify(post, &without, &post.body, &txt).expect_err("a header is missing");
        assert!(refused.contains("missing") || refused.contains("X-Copernica-ID"), "{missing}: {refused}");
    }
    // Another account id in X-Copernica-ID, resigned by nobody, does not pass either.
    let foreign: Vec<_> = pairs(post)
        .into_iter()
        .map(|(n, v)| if n == "x-copernica-id" { (n, "account_2".to_owned()) } else { (n, v) })
        .collect();
    assert!(verify(post, &foreign, &post.body, &txt).is_err());
    assert!(key_file.exists());
}

#[tokio::test]
async fn an_operator_switches_an_account_between_the_two_profiles_without_a_restart() {
    let receiver = Receiver::start(&[]).await;
    let (mut app, account) = TestApp::new(&[("DATAREQUEST_SIGNING_KEYS", KEY_ID)]);
    json_of(&app, &["signing-key", "create", "--key-id", KEY_ID]);
    app.spawn();

    let id = app.submit("profile/42", &account, Some(&receiver.url)).await;
    assert_eq!(app.wait_delivered(id, &account).await["delivery"]["status"], "sent");
    json_of(&app, &["account", "signing", "--account", "1", "copernica"]);
    let id = app.submit("profile/42", &account, Some(&receiver.url)).await;
    assert_eq!(app.wait_delivered(id, &account).await["delivery"]["status"], "sent");
    json_of(&app, &["account", "signing", "--account", "1", "standard-webhooks"]);
    let id = app.submit("profile/42", &account, Some(&receiver.url)).await;
    assert_eq!(app.wait_delivered(id, &account).await["delivery"]["status"], "sent");

    let received = receiver.received();
    let kinds: Vec<(bool, bool)> = received
        .iter()
        .map(|p| (p.headers.contains_key("webhook-signature"), p.headers.contains_key("signature")))
        .collect();
    assert_eq!(kinds, [(true, false), (false, true), (true, false)], "standard by default, then as switched");
}

#[tokio::test]
async fn without_a_configured_key_a_copernica_delivery_fails_with_a_reason_and_bad_commands_are_refused() {
    let receiver = Receiver::start(&[]).await;
    let (mut app, account) = TestApp::new(&[("DATAREQUEST_DELIVERY_ATTEMPTS", "1")]);
    json_of(&app, &["account", "signing", "--account", "1", "copernica"]);
    for args in [
        &["account", "signing", "--account", "99", "copernica"][..],
        &["account", "signing", "--account", "1", "Copernica"],
        &["signing-key", "create", "--key-id", "not a dns name"],
        &["signing-key", "delete", "--key-id", KEY_ID],
    ] {
        assert!(!app.cli(args).status.success(), "{args:?} is refused");
    }
    json_of(&app, &["signing-key", "create", "--key-id", KEY_ID]);
    assert!(!app.cli(&["signing-key", "create", "--key-id", KEY_ID]).status.success(), "an id is taken once");
    app.spawn();

    let id = app.submit("profile/42", &account, Some(&receiver.url)).await;
    let status = app.wait_delivered(id, &account).await;
    assert_eq!(status["delivery"]["status"], "failed");
    assert_eq!(
        status["delivery"]["error"],
        "no signing key is configured for the copernica profile (DATAREQUEST_SIGNING_KEYS)"
    );
    assert!(receiver.received().is_empty(), "nothing unsigned was sent");
}

#[test]
fn a_server_configured_with_a_key_it_does_not_hold_refuses_to_start_naming_the_variable() {
    let (app, _) = TestApp::new(&[("DATAREQUEST_SIGNING_KEYS", KEY_ID)]);
    let mut command = app.command();
    command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(app.data_dir());
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("starts");
    let start = std::time::Instant::now();
    while child.try_wait().expect("waits").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the server started without its signing key");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("ends");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATAREQUEST_SIGNING_KEYS") && stderr.contains(KEY_ID), "{stderr}");
}

#[tokio::test]
async fn with_two_keys_configured_the_newer_signs_and_the_old_one_is_then_retired() {
    let receiver = Receiver::start(&[]).await;
    // The new key first: which one signs follows when each was made, not the order named.
    let (mut app, account) = TestApp::new(&[("DATAREQUEST_SIGNING_KEYS", &format!("{OTHER_KEY_ID},{KEY_ID}"))]);
    let old = json_of(&app, &["signing-key", "create", "--key-id", KEY_ID]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let new = json_of(&app, &["signing-key", "create", "--key-id", OTHER_KEY_ID]);
    assert_ne!(old["txt"], new["txt"], "each key has its own public key");
    json_of(&app, &["account", "signing", "--account", "1", "copernica"]);
    app.spawn();

    let id = app.submit("profile/42", &account, Some(&receiver.url)).await;
    assert_eq!(app.wait_delivered(id, &account).await["delivery"]["status"], "sent");
    let post = &receiver.received()[0];
    assert!(header(post, "signature").starts_with(&format!("keyId=\"{OTHER_KEY_ID}\"")), "the newer key signs");
    let new_txt = new["txt"].as_str().expect("txt");
    assert!(verify(post, &pairs(post), &post.body, new_txt).is_ok());
    assert!(verify(post, &pairs(post), &post.body, old["txt"].as_str().expect("txt")).is_err());

    assert_eq!(json_of(&app, &["signing-key", "delete", "--key-id", KEY_ID]), json!({"deleted": KEY_ID}));
    let keys = std::fs::read_to_string(app.data_dir().join("signing-keys.json")).expect("the key file");
    assert!(!keys.contains(KEY_ID) && keys.contains(OTHER_KEY_ID), "only the new key is left");
}
