//! The HTML report end to end: served by the real binary with its policy, mailed beside the
//! JSON, and, built from hostile data, rendered by a real browser (headless Chromium) that must
//! run none of it and load nothing. `infra/test.sh` installs Chromium; without it the browser
//! test fails, it does not skip.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;

use crate::helpers::{Account, TestApp};

/// The policy's directives the report must be served with.
const DIRECTIVES: [&str; 6] = [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
];

async fn report(app: &TestApp, id: u64, account: &Account) -> crate::helpers::Response {
    app.get(&format!("/v1/datarequest/{id}/data?format=html&access_token={}", account.token)).await
}

#[tokio::test]
async fn the_report_is_served_as_html_with_a_strict_policy_and_mailed_beside_the_json() {
    let (app, account) = TestApp::start(&[]);
    let id = app.submit("profile/42", &account, Some("dpo@customer.example")).await;
    app.wait_delivered(id, &account).await;

    let response = report(&app, id, &account).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    let policy = response.header("content-security-policy").expect("a Content-Security-Policy");
    for directive in DIRECTIVES {
        assert!(policy.split(';').any(|d| d.trim() == directive), "{directive} in {policy}");
    }
    let page = String::from_utf8(response.bytes.clone()).expect("UTF-8");
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("Profile 42"), "{page:.300}");
    assert_eq!(
        app.get(&format!("/v1/datarequest/{id}/data?format=json&access_token={}", account.token)).await.bytes,
        app.data(id, &account).await
    );

    let refused = app.get(&format!("/v1/datarequest/{id}/data?format=pdf&access_token={}", account.token)).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert_eq!(refused.json(), json!({"error": {"message": "Parameter 'format' must be json or html"}}));

    let raw = app.outbox(id);
    let mail = MessageParser::default().parse(&raw).expect("MIME");
    assert_eq!(mail.attachment_count(), 2, "the JSON and the report");
    let attached = mail.attachment(1).expect("the report");
    assert_eq!(attached.attachment_name(), Some(format!("datarequest-{id}.html").as_str()));
    assert_eq!(attached.contents(), response.bytes.as_slice(), "the attachment is the served report");
}

/// A loopback HTTP listener that records every connection made to it: the hostile data points
/// here, so a page that loaded anything would show up.
struct Listener {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = [0u8; 2048];
                let n = stream.read(&mut head).unwrap_or(0);
                let line = String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or("(no request line)").to_owned();
                log.lock().expect("lock").push(line);
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Self { base, seen }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

/// Markup that would run script, change the page or load from `base` if it were not escaped.
fn payloads(base: &str) -> Vec<String> {
    vec![
        "<script>document.title='pwned'</script>".into(),
        "\"><img src=x onerror=alert(1)>".into(),
        "</td></tr></table><h1>x</h1>".into(),
        format!("<img src=\"{base}/img.png\" onerror=\"document.title='pwned'\">"),
        format!("<script src=\"{base}/script.js\"></script>"),
        format!("<link rel=\"stylesheet\" href=\"{base}/style.css\">"),
        format!("<iframe src=\"{base}/frame.html\"></iframe>"),
        format!("<style>@import url({base}/import.css); body {{ background: url({base}/bg.png) }}</style>"),
        format!("<meta http-equiv=\"refresh\" content=\"0;url={base}/refresh\">"),
        format!("<base href=\"{base}/\"><a href=\"relative\">x</a>"),
        format!("</pre></details></article></section></main><svg onload=\"fetch('{base}/svg')\"></svg>"),
        format!("<form action=\"{base}/form\"><button>go</button></form>"),
        format!(
            "<object data=\"{base}/object\"></object><embed src=\"{base}/embed\"><video poster=\"{base}/poster.png\"></video>"
        ),
    ]
}

/// A profile, a subprofile, a message and an event of every kind, with `payloads` in every
/// place the data reaches the page: fields and their names, interests, MIME headers (plain and
/// encoded), the text and HTML parts, an attachment's name, event details.
fn hostile_lines(payloads: &[String]) -> String {
    let all = payloads.join(" ");
    let fields: serde_json::Map<String, serde_json::Value> =
        payloads.iter().enumerate().map(|(i, p)| (format!("{p}{i}"), json!(p))).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&payloads[0]);
    let mime = format!(
        "From: {p0} <news@shop.example>\r\nTo: hostile@example.com\r\nSubject: =?utf-8?b?{encoded}?=\r\n\
         X-Note: {p2}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n\
         --inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{all}\r\n\
         --inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>{all}</body></html>\r\n--inner--\r\n\
         --outer\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"{p3}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--outer--\r\n",
        p0 = payloads[0],
        p2 = payloads[2],
        p3 = payloads[3].replace('"', "'"),
    );
    let mut lines = vec![
        json!({"kind": "profile", "account": 1, "id": 9001, "database": 7, "email": "hostile@example.com",
               "fields": fields, "interests": payloads, "created": "2024-01-01 08:00:00", "modified": "2024-01-02 08:00:00"}),
        json!({"kind": "subprofile", "account": 1, "id": 900_101, "profile": 9001, "collection": 3,
               "email": "hostile@work.example", "fields": fields, "created": "2024-01-03 08:00:00", "modified": "2024-01-03 08:00:00"}),
        json!({"kind": "message", "account": 1, "id": payloads[2], "profile": 9001, "subprofile": null,
               "email": "hostile@example.com", "mailing": payloads[1], "subject": payloads[0],
               "sent": "2024-02-01 07:00:00", "mime": mime}),
    ];
    for (i, kind) in ["impression", "click", "delivery", "error", "abuse", "unsubscribe", "survey"].iter().enumerate() {
        lines.push(json!({"kind": "event", "account": 1, "type": kind, "message": payloads[i % payloads.len()],
                          "profile": 9001, "subprofile": 900_101, "email": "hostile@example.com",
                          "time": format!("2024-02-0{} 09:00:00", i + 1), "data": {"ip": payloads[1], "useragent": payloads[0],
                          "link": payloads[(i + 3) % payloads.len()], "nested": fields}}));
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

const NO_CHROMIUM: &str = "Chromium is needed for this test and was not found as `chromium` on PATH: run \
                           ./infra/test.sh (it installs it with `apt-get install -y chromium`) or install it";

/// Loads `page` in headless Chromium and returns the DOM after the load, and how long it took.
/// Every host name but 127.0.0.1 fails to resolve, so the only place a request can go is the
/// test's listener.
fn dump_dom(page: &Path) -> (String, Duration) {
    let profile = tempfile::tempdir().expect("profile dir");
    let start = Instant::now();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{NO_CHROMIUM} ({e})"));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = stdout.read_to_string(&mut dom);
        dom
    });
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (reader.join().expect("reader"), start.elapsed())
}

/// How often an element opens in serialised DOM (`<name` followed by a space or `>`).
fn elements(dom: &str, name: &str) -> usize {
    dom.matches(&format!("<{name} ")).count() + dom.matches(&format!("<{name}>")).count()
}

#[tokio::test]
async fn a_report_of_hostile_data_runs_and_loads_nothing_in_a_real_browser() {
    let listener = Listener::start();
    let payloads = payloads(&listener.base);
    let (mut app, account) = TestApp::new(&[]);
    let file = app.data_dir().join("hostile.ndjson");
    std::fs::write(&file, hostile_lines(&payloads)).expect("write");
    let output = app.cli(&["import", file.to_str().expect("path")]);
    assert!(output.status.success(), "import: {}", String::from_utf8_lossy(&output.stderr));
    app.spawn();
    let id = app.submit("profile/9001", &account, None).await;
    app.wait_for(id, &account, |s| s["status"] == "available").await;
    let page = report(&app, id, &account).await;
    assert_eq!(page.status, 200);
    let pages = tempfile::tempdir().expect("dir");
    let report_file = pages.path().join("report.html");
    std::fs::write(&report_file, &page.bytes).expect("write");

    // The harness sees what it must: in a page that is not escaped, script runs and a request
    // to the listener arrives.
    let control = pages.path().join("control.html");
    let markup = format!(
        "<!DOCTYPE html><title>control</title><script>document.title='ran'</script><img src=\"{}/control.png\">",
        listener.base
    );
    std::fs::write(&control, markup).expect("write");
    let (dom, _) = dump_dom(&control);
    assert!(dom.contains("<title>ran</title>"), "script runs in the control page: {dom}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        listener.take().iter().any(|l| l.starts_with("GET /control.png")),
        "the listener sees the control's request"
    );

    let (dom, took) = dump_dom(&report_file);
    eprintln!("chromium rendered the hostile report ({} bytes) in {took:?}", page.bytes.len());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(listener.take(), Vec::<String>::new(), "the report made no request");
    let title = format!("<title>Your data: profile 9001 (data request {id})</title>");
    assert!(dom.contains(&title), "the title is unchanged: {:.400}", &dom[dom.find("<title>").unwrap_or(0)..]);
    for (name, count) in [("h1", 1), ("meta", 4), ("style", 1), ("a", 10), ("main", 1), ("body", 1)] {
        assert_eq!(elements(&dom, name), count, "<{name}> elements: only the page's own");
    }
    for name in ["img", "script", "iframe", "link", "svg", "base", "form", "button", "object", "embed", "video"] {
        assert_eq!(elements(&dom, name), 0, "no <{name}> element");
    }
    assert!(dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"), "the payload is shown as text");
    assert!(dom.contains("&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;h1&gt;x&lt;/h1&gt;"));
    assert!(dom.contains("\"&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(dom.contains("Messages sent") && dom.contains("Opens"), "the page rendered its sections");
}
