//! The local server under floods: connections that send nothing, or a head a byte at a time,
//! or stay idle after a request are closed within the header timeout; idle connections past the
//! connection bound give way to clients that send requests; `POST /ingest` reads only so many
//! bodies at once, and a body that stops sending ends its request. The timeouts are set short
//! through their variables; every wait is bounded, with generous slack for a loaded machine.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Account, TestApp};

/// Slack on top of a timeout before a test gives up.
const SLACK: Duration = Duration::from_secs(8);

fn address(app: &TestApp) -> String {
    app.url.strip_prefix("http://").expect("an http:// address").to_owned()
}

/// Reads until the server closes the connection (end of file or reset), at most `within`;
/// returns how long that took, or `None` when the connection was still open.
async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads a response head (or an interim `100 Continue`) off a bare connection: the status and
/// the head's text.
async fn read_head(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(SLACK, stream.read(&mut byte)).await.expect("an answer in time").expect("read");
        assert!(n > 0, "the server closed without an answer: {}", String::from_utf8_lossy(&received));
        received.push(byte[0]);
    }
    let head = String::from_utf8(received).expect("an ASCII head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, head)
}

/// The value of a header in a head's text.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The status path of a request of the account.
async fn status_path(app: &TestApp, account: &Account) -> String {
    let id = app.submit("profile/42", account, None).await;
    format!("/v1/datarequest/{id}/status?access_token={}", account.token)
}

#[tokio::test]
async fn silent_slowloris_and_idle_keep_alive_connections_are_closed_within_the_header_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let (app, account) = TestApp::start(&[("DATAREQUEST_HEADER_TIMEOUT_SECS", "2")]);
    let path = status_path(&app, &account).await;
    let address = address(&app);

    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(&address).await.expect("connect"));
    }
    // Slowloris: a head that never ends, one byte every 100 ms, until the server hangs up.
    let mut slow = Vec::new();
    for _ in 0..5 {
        let (reader, mut writer) = TcpStream::connect(&address).await.expect("connect").into_split();
        let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nX-Padding: ");
        slow.push((
            reader,
            tokio::spawn(async move {
                let bytes = head.into_bytes().into_iter().chain(std::iter::repeat(b'a'));
                for byte in bytes.take(600) {
                    if writer.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }),
        ));
    }
    // Keep-alive: one whole request answered, then nothing.
    let mut kept = TcpStream::connect(&address).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
    kept.write_all(request.as_bytes()).await.expect("write");
    let (status, head) = read_head(&mut kept).await;
    assert_eq!(status, 200, "{head}");

    let within = TIMEOUT + SLACK;
    for mut stream in silent {
        let closed = closed_within(&mut stream, within).await;
        assert!(closed.is_some(), "a connection that sent nothing was still open after {within:?}");
    }
    for (mut reader, writer) in slow {
        let closed = closed_within(&mut reader, within).await;
        writer.abort();
        // 600 bytes at 10 a second would take a minute: the server cut it off, not the end.
        assert!(closed.is_some(), "a slowloris connection was still open after {within:?}");
    }
    let closed = closed_within(&mut kept, within).await;
    assert!(closed.is_some(), "an idle keep-alive connection was still open after {within:?}");

    // The server itself is fine.
    assert_eq!(app.get(&path).await.status, 200);
}

#[tokio::test]
async fn status_gets_keep_answering_while_six_times_the_connection_bound_is_held_idle() {
    const BOUND: usize = 50;
    const HELD: usize = 300;
    // A long header timeout: only the bound can make room within the test.
    let (app, account) =
        TestApp::start(&[("DATAREQUEST_MAX_CONNECTIONS", "50"), ("DATAREQUEST_HEADER_TIMEOUT_SECS", "120")]);
    let path = status_path(&app, &account).await;
    let address = address(&app);

    let mut idle = Vec::new();
    for _ in 0..HELD {
        idle.push(TcpStream::connect(&address).await.expect("connect"));
    }
    // The server serves at most the bound: the oldest idle connections are closed for newer ones.
    let watchers: Vec<_> = idle
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let closed = closed_within(&mut stream, SLACK).await.is_some();
                (closed, stream)
            })
        })
        .collect();
    let mut open = Vec::new();
    for watcher in watchers {
        let (closed, stream) = watcher.await.expect("watcher");
        if !closed {
            open.push(stream);
        }
    }
    assert!(open.len() <= BOUND, "{} idle connections still open with a bound of {BOUND}", open.len());
    assert!(open.len() >= BOUND / 2, "only {} idle connections kept: the bound is not {BOUND}", open.len());

    // While they are held, a client that sends its requests is answered, each on a new connection.
    for _ in 0..10 {
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
        let answered = tokio::time::timeout(SLACK, client.get(format!("{}{path}", app.url)).send()).await;
        let response = answered.expect("a status GET answered while idle connections are held").expect("answer");
        assert_eq!(response.status().as_u16(), 200);
        let status: Value = response.json().await.expect("JSON");
        assert!(status["state"].is_string(), "{status}");
    }
    drop(open);
}

#[tokio::test]
async fn slowloris_connections_past_the_bound_are_closed_at_once_not_after_the_header_timeout() {
    let (app, _) = TestApp::start(&[("DATAREQUEST_MAX_CONNECTIONS", "5"), ("DATAREQUEST_HEADER_TIMEOUT_SECS", "120")]);
    let address = address(&app);
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        let head = format!("GET /v1/datarequest/1/status HTTP/1.1\r\nHost: {address}\r\nX-Padding: aaa");
        stream.write_all(head.as_bytes()).await.expect("write");
        slow.push(stream);
    }
    // Five newer connections take their places: the partial heads are not waited for.
    let mut newer = Vec::new();
    for _ in 0..5 {
        newer.push(TcpStream::connect(&address).await.expect("connect"));
    }
    for mut stream in slow {
        let closed = closed_within(&mut stream, SLACK).await;
        assert!(closed.is_some(), "a slowloris connection past the bound was still open after {SLACK:?}");
    }
    drop(newer);
}

/// A data dir with the sample subjects, an ingest key, and the server started with `env`.
fn start_with_key(env: &[(&str, &str)]) -> (TestApp, String) {
    let (mut app, _) = TestApp::new(env);
    let output = app.cli(&["ingest-key", "create"]);
    assert!(output.status.success(), "ingest-key create: {}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("ingest-key JSON");
    let key = printed["ingest_key"].as_str().expect("ingest_key").to_owned();
    app.spawn();
    (app, key)
}

/// Opens a connection and sends the head of a `POST /ingest` of `length` bytes that waits for
/// `100 Continue`.
async fn ingest_head(app: &TestApp, key: &str, length: usize) -> TcpStream {
    let address = address(app);
    let mut stream = TcpStream::connect(&address).await.expect("connect");
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write the head");
    stream
}

/// The first bytes of an NDJSON body, the rest of which never comes.
const PARTIAL: &[u8] = b"{\"kind\":\"profile\",\"account\":1,";

#[tokio::test]
async fn an_ingest_body_past_the_cap_gets_503_with_retry_after_before_it_is_read() {
    let (app, key) = start_with_key(&[("DATAREQUEST_INGEST_BODIES", "2")]);
    // Two bodies being read: the server asked for each (100 Continue) and got a few bytes.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = ingest_head(&app, &key, 1024 * 1024).await;
        let (status, head) = read_head(&mut stream).await;
        assert_eq!(status, 100, "{head}");
        stream.write_all(PARTIAL).await.expect("write");
        held.push(stream);
    }

    let mut third = ingest_head(&app, &key, 1024 * 1024).await;
    let (status, head) = read_head(&mut third).await;
    assert_eq!(status, 503, "{head}");
    assert_eq!(header(&head, "retry-after"), Some("5"), "{head}");
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    let mut body = Vec::new();
    let _ = tokio::time::timeout(SLACK, third.read_to_end(&mut body)).await.expect("the connection is closed");
    let error: Value = serde_json::from_slice(&body).expect("a JSON body");
    let message = error["error"]["message"].as_str().expect("Copernica's error shape");
    assert!(message.contains("retry after 5 seconds"), "{message}");
    assert_eq!(error.as_object().map(serde_json::Map::len), Some(1), "{error}");

    // When the held bodies go away, a body is read again.
    drop(held);
    let line = "{\"kind\":\"erase\",\"account\":1,\"email\":\"nobody@example.com\"}\n";
    let start = Instant::now();
    loop {
        let response = app
            .request(
                "POST",
                "/ingest",
                &[("authorization", &format!("Bearer {key}")), ("content-type", "application/x-ndjson")],
                Some(line.as_bytes()),
            )
            .await;
        if response.status == 200 {
            break;
        }
        assert_eq!(response.status, 503, "{}", String::from_utf8_lossy(&response.bytes));
        assert!(start.elapsed() < SLACK, "the cap's places were not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_body_that_sends_nothing_for_the_idle_timeout_ends_its_request_and_gives_back_its_place() {
    const IDLE: Duration = Duration::from_secs(2);
    let (app, key) = start_with_key(&[("DATAREQUEST_INGEST_BODIES", "1"), ("DATAREQUEST_BODY_IDLE_TIMEOUT_SECS", "2")]);
    let mut stalled = ingest_head(&app, &key, 1024 * 1024).await;
    let (status, head) = read_head(&mut stalled).await;
    assert_eq!(status, 100, "{head}");
    stalled.write_all(PARTIAL).await.expect("write");

    let start = Instant::now();
    let (status, head) = read_head(&mut stalled).await;
    let waited = start.elapsed();
    assert_eq!(status, 400, "{head}");
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    assert!(waited >= IDLE - Duration::from_millis(300), "answered after {waited:?}, before the idle timeout");
    assert!(closed_within(&mut stalled, SLACK).await.is_some(), "the connection stayed open");

    // Its place is free again.
    let line = "{\"kind\":\"erase\",\"account\":1,\"email\":\"nobody@example.com\"}\n";
    let response = app
        .request(
            "POST",
            "/ingest",
            &[("authorization", &format!("Bearer {key}")), ("content-type", "application/x-ndjson")],
            Some(line.as_bytes()),
        )
        .await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.bytes));
}
