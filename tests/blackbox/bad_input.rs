//! Bad input of every kind gets `400` with Copernica's error shape: never a 5xx, never a panic.

use crate::helpers::TestApp;

type Headers<'a> = Vec<(&'a str, &'a str)>;

struct Case {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    message: Option<&'static str>,
}

fn case(method: &'static str, path: impl Into<String>) -> Case {
    Case { method, path: path.into(), headers: Vec::new(), body: None, message: None }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn json(self, body: &str) -> Self {
        let mut case = self.header("content-type", "application/json");
        case.body = Some(body.as_bytes().to_vec());
        case
    }
    fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers.push(("content-type", content_type.to_owned()));
        self.body = Some(body);
        self
    }
    fn says(mut self, message: &'static str) -> Self {
        self.message = Some(message);
        self
    }
}

#[tokio::test]
async fn at_least_thirty_distinct_bad_inputs_each_get_400_in_copernicas_shape() {
    // Production policy: only https:// to public addresses.
    let (app, account) = TestApp::start(&[("DATAREQUEST_WEBHOOK_ALLOW_PRIVATE", "false")]);
    let t = account.token.clone();
    let post = |subject: &str| format!("/v1/{subject}/datarequest?access_token={t}");
    let cases = vec![
        // Paths and methods.
        case("POST", format!("/v5/profile/42/datarequest?access_token={t}")).says("Invalid method"),
        case("POST", format!("/V1/profile/42/datarequest?access_token={t}")).says("Invalid method"),
        case("PUT", post("profile/42")).says("Invalid method"),
        case("DELETE", format!("/v1/datarequest/1234567890123456/status?access_token={t}")).says("Invalid method"),
        case("DELETE", format!("/v1/datarequest/1234567890123456?access_token={t}")).says("No entity with supplied ID"),
        case("DELETE", format!("/v1/datarequest/abc?access_token={t}")).says("No entity with supplied ID"),
        case("DELETE", format!("/v5/datarequest/1234567890123456?access_token={t}")).says("Invalid method"),
        case("DELETE", "/v1/datarequest/1234567890123456?access_token=short").says("Invalid access token"),
        case("GET", post("profile/42")).says("Invalid method"),
        case("POST", format!("/v1/datarequest/1234567890123456/status?access_token={t}")).says("Invalid method"),
        case("GET", format!("/v1/datarequest/1234567890123456/unknown?access_token={t}")).says("Invalid method"),
        case("GET", "/").says("Invalid method"),
        case("POST", post("profile/42/")).says("Invalid method"),
        // Ids.
        case("POST", post("profile/0")).says("No entity with supplied ID"),
        case("POST", post("profile/abc")).says("No entity with supplied ID"),
        case("POST", post("profile/042")).says("No entity with supplied ID"),
        case("POST", post("profile/4.2")).says("No entity with supplied ID"),
        case("POST", post("profile/-1")).says("No entity with supplied ID"),
        case("POST", post("profile/99999999999999999999")).says("No entity with supplied ID"),
        case("POST", format!("/v1/profile/abc/data?access_token={t}")).says("No entity with supplied ID"),
        case("POST", post("subprofile/0x10")).says("No subprofile with supplied ID"),
        case("POST", post("subprofile/0")).says("No subprofile with supplied ID"),
        case("POST", post("profile/%2042")).says("No entity with supplied ID"),
        case("GET", format!("/v1/datarequest/abc/status?access_token={t}")),
        case("GET", format!("/v1/datarequest/9007199254740992/status?access_token={t}")),
        case("GET", format!("/v1/datarequest/1234567890123456?access_token={t}")).says("No entity with supplied ID"),
        case("GET", format!("/v1/datarequest/1234567890123456/data?access_token={t}"))
            .says("No entity with supplied ID"),
        case("POST", post("profile/43")).says("No entity with supplied ID"),
        case("POST", post("subprofile/42")).says("No subprofile with supplied ID"),
        case("POST", format!("/v1/subprofile/42/data?access_token={t}")).says("No subprofile with supplied ID"),
        // E-mail subjects.
        case("POST", post("email/not-an-address")),
        case("POST", post("email/jane%40example.com%0D%0ABcc:%20x%40evil.example")),
        case("POST", post("email/%FF%FE%40example.com")),
        case("POST", post("email/jane%40localhost")),
        // Tokens.
        case("POST", "/v1/profile/42/datarequest").says("Invalid access token"),
        case(
            "POST",
            "/v1/profile/42/datarequest?access_token=0000000000000000000000000000000000000000000000000000000000000000",
        )
        .says("Invalid access token"),
        case("POST", "/v1/profile/42/datarequest?access_token=short").says("Invalid access token"),
        case("POST", "/v1/profile/42/datarequest")
            .header("authorization", format!("Basic {t}"))
            .says("Invalid access token"),
        case("POST", "/v1/profile/42/datarequest").header("authorization", "Bearer").says("Invalid access token"),
        case("POST", post("profile/42"))
            .header("authorization", "Bearer someoneelsestoken")
            .says("Invalid access token"),
        case("GET", "/v1/datarequest/1234567890123456/status").says("Invalid access token"),
        case("GET", "/v1/datarequest/1234567890123456/status?access_token=").says("Invalid access token"),
        case("POST", format!("/v1/profile/42/datarequest?access_token={t}&access_token=x{t}"))
            .says("Invalid access token"),
        // Query parameters.
        case("POST", format!("{}&report=a%40b.example&report=c%40d.example", post("profile/42")))
            .says("Parameter 'report' is given twice with different values"),
        // Reports.
        case("POST", format!("{}&report=dpo", post("profile/42")))
            .says("report must be an e-mail address or an https:// web address"),
        case("POST", format!("{}&report=ftp%3A%2F%2Fhooks.example.com%2F", post("profile/42"))),
        case("POST", post("profile/42")).json(r#"{"report":"http://hooks.example.com/"}"#),
        case("POST", post("profile/42")).json(r#"{"report":"https://127.0.0.1/hook"}"#),
        case("POST", post("profile/42")).json(r#"{"report":"https://169.254.169.254/latest/meta-data"}"#),
        case("POST", post("profile/42")).json(r#"{"report":"https://[::1]/hook"}"#),
        case("POST", post("profile/42")).json(r#"{"report":"https://localhost/hook"}"#),
        case("POST", post("profile/42")).json(r#"{"report":"https://user:pw@hooks.example.com/"}"#),
        case("POST", post("profile/42")).json(r#"{"report":"dpo@customer.example\r\nBcc: x@evil.example"}"#),
        case("POST", format!("{}&report=a%40b.example", post("profile/42"))).json(r#"{"report":"c@d.example"}"#),
        // Bodies.
        case("POST", post("profile/42")).json(r#"{"report":"#).says("The request body is not valid JSON"),
        case("POST", post("profile/42")).json(r#"{"report":42}"#).says("report must be a string"),
        case("POST", post("profile/42")).json(r#""a@b.example""#).says("The request body must be a JSON object"),
        case("POST", post("profile/42")).json("[1,2]").says("The request body must be a JSON object"),
        case("POST", post("profile/42"))
            .body("application/x-www-form-urlencoded", b"report=a%40b.example&report=dpo".to_vec()),
        case("POST", post("profile/42")).body("text/plain", b"hello".to_vec()),
        case("POST", post("profile/42")).body("application/json", vec![b' '; 70 * 1024]),
        case("POST", post("profile/42")).body("application/json", b"{\"report\":\"\xff\"}".to_vec()),
        // Download links.
        case("GET", "/v1/datarequest/1234567890123456/download").says("Invalid or expired download token"),
        case("GET", "/v1/datarequest/1234567890123456/download?token=garbage")
            .says("Invalid or expired download token"),
        case("GET", "/v1/datarequest/1234567890123456/download?token=9999999999.AAAA")
            .says("Invalid or expired download token"),
    ];
    assert!(cases.len() >= 30);
    let mut distinct = std::collections::HashSet::new();
    for case in &cases {
        let headers: Vec<(&str, &str)> = case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = app.request(case.method, &case.path, &headers, case.body.as_deref()).await;
        let what = format!(
            "{} {} {:?} {:?}",
            case.method,
            case.path,
            case.headers,
            case.body.as_deref().map(String::from_utf8_lossy)
        );
        assert_eq!(response.status, 400, "{what}: {}", String::from_utf8_lossy(&response.bytes));
        assert_eq!(response.header("content-type"), Some("application/json"), "{what}");
        let body = response.json();
        let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: no message in {body}"));
        assert!(!message.is_empty(), "{what}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{what}: only `error`");
        assert_eq!(body["error"].as_object().map(|o| o.len()), Some(1), "{what}: only `message`");
        if let Some(expected) = case.message {
            assert_eq!(message, expected, "{what}");
        }
        assert!(!message.contains("evil.example") && !message.contains(&t), "{what}: the message echoes input");
        distinct.insert(what);
    }
    assert_eq!(distinct.len(), cases.len(), "every case is distinct");
    // Nothing was accepted along the way.
    assert!(!app.data_dir().join("outbox").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false));
}

#[tokio::test]
async fn every_accepted_body_form_works_including_the_official_clients_empty_array() {
    let (app, account) = TestApp::start(&[]);
    let t = &account.token;
    let path = format!("/v1/profile/42/datarequest?access_token={t}");
    let forms: Vec<(Headers, Option<&[u8]>)> = vec![
        (vec![("content-type", "application/json")], Some(b"[]")),
        (vec![("content-type", "application/json")], Some(b"{}")),
        (vec![("content-type", "application/json")], Some(br#"{"report":"dpo@customer.example"}"#)),
        (vec![("content-type", "application/json; charset=utf-8")], Some(br#"{"report":null}"#)),
        (vec![("content-type", "application/x-www-form-urlencoded")], Some(b"report=dpo%40customer.example")),
        (vec![("content-type", "application/x-www-form-urlencoded")], Some(br#"{"report":"dpo@customer.example"}"#)),
        (vec![], None),
    ];
    for (headers, body) in forms {
        let response = app.request("POST", &path, &headers, body).await;
        assert_eq!(response.status, 201, "{headers:?} {body:?}: {}", String::from_utf8_lossy(&response.bytes));
        let id = response.json()["id"].as_u64().expect("id");
        assert_eq!(response.header("content-type"), Some("application/json"));
        let raw = format!("{id}");
        assert_eq!(response.header("x-created"), Some(raw.as_str()));
    }
    let with_query = format!("{path}&report=dpo%40customer.example");
    let response = app.request("POST", &with_query, &[("authorization", &format!("Bearer {t}"))], None).await;
    assert_eq!(response.status, 201);
    let bearer_only = "/v4/email/JANE.DOE%40example.com/datarequest";
    let response = app.request("POST", bearer_only, &[("authorization", &format!("bearer {t}"))], None).await;
    assert_eq!(response.status, 201);
    assert!(
        response.header("location").is_some_and(|l| l.ends_with(&format!("/v4/datarequest/{}", response.json()["id"])))
    );
}

#[tokio::test]
async fn unknown_parameters_and_members_are_ignored_as_copernica_ignores_them() {
    let (app, account) = TestApp::start(&[]);
    let t = &account.token;
    let json: Headers = vec![("content-type", "application/json")];
    let form: Headers = vec![("content-type", "application/x-www-form-urlencoded")];
    let accepted: Vec<(String, &Headers, Option<&[u8]>)> = vec![
        (format!("/v1/profile/42/datarequest?access_token={t}&foo=bar&limit=10"), &json, Some(b"[]")),
        (format!("/v1/profile/42/datarequest?access_token={t}&access_token={t}"), &json, Some(b"[]")),
        (format!("/v1/profile/42/datarequest?access_token={t}"), &json, Some(br#"{"reprot":"x","extra":[1]}"#)),
        (
            format!("/v1/profile/42/datarequest?access_token={t}"),
            &json,
            Some(br#"{"report":"dpo@customer.example","x":1}"#),
        ),
        (format!("/v1/profile/42/datarequest?access_token={t}"), &form, Some(b"report=dpo%40customer.example&x=1")),
        (format!("/v1/profile/42/datarequest?access_token={t}&report=a%40b.example&report=a%40b.example"), &json, None),
    ];
    for (path, headers, body) in accepted {
        let response = app.request("POST", &path, headers, body).await;
        assert_eq!(response.status, 201, "{path}: {}", String::from_utf8_lossy(&response.bytes));
    }
    let status = app.get(&format!("/v1/datarequest/1234567890123456/status?access_token={t}&report=x&y=1")).await;
    assert_eq!(status.status, 200);
}

#[tokio::test]
async fn copernicas_documented_call_forms_create_requests_like_the_datarequest_routes() {
    let (app, account) = TestApp::start(&[]);
    let t = &account.token;
    for (version, subject) in [("v1", "profile/42"), ("v2", "subprofile/4201"), ("v4", "email/jane.doe%40example.com")]
    {
        let path = format!("/{version}/{subject}/data?access_token={t}");
        let response = app.request("POST", &path, &[("content-type", "application/json")], Some(b"[]")).await;
        assert_eq!(response.status, 201, "{path}: {}", String::from_utf8_lossy(&response.bytes));
        let id = response.json()["id"].as_u64().expect("id");
        assert_eq!(response.header("x-created"), Some(id.to_string().as_str()));
        let location = response.header("location").expect("Location").to_owned();
        assert!(location.ends_with(&format!("/{version}/datarequest/{id}")), "{location}");
        assert_eq!(response.header("x-location"), Some(location.as_str()));
        assert_eq!(response.header("content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn a_post_repeated_with_its_idempotency_key_answers_the_same_and_creates_nothing() {
    let (app, account) = TestApp::start(&[]);
    let path = format!("/v2/profile/42/datarequest?access_token={}", account.token);
    let key = [("content-type", "application/json"), ("idempotency-key", "order-42 retry")];
    let body: &[u8] = br#"{"report":"dpo@customer.example"}"#;
    let first = app.request("POST", &path, &key, Some(body)).await;
    assert_eq!(first.status, 201);
    // Also through Copernica's documented form of the same call.
    let data_path = format!("/v2/profile/42/data?access_token={}", account.token);
    for path in [&path, &path, &data_path] {
        let again = app.request("POST", path, &key, Some(body)).await;
        assert_eq!(again.status, 201);
        assert_eq!(again.bytes, first.bytes, "the same id");
        for header in ["x-created", "location", "x-location", "content-type"] {
            assert_eq!(again.header(header), first.header(header), "{header}");
        }
    }
    let other = app.request("POST", &path, &[("content-type", "application/json")], Some(body)).await;
    assert_ne!(other.bytes, first.bytes, "without the key it is a new request");
    let id = first.json()["id"].as_u64().expect("id");
    let status = app.get(&format!("/v2/datarequest/{id}/status?access_token={}", account.token)).await;
    assert_eq!(status.status, 200);

    let conflicts = [
        (format!("/v2/email/jane.doe@example.com/datarequest?access_token={}", account.token), body, "subject"),
        (path.clone(), br#"{"report":"someone@else.example"}"#.as_slice(), "report"),
        (path.clone(), b"[]".as_slice(), "report"),
    ];
    for (path, body, what) in conflicts {
        let response = app.request("POST", &path, &key, Some(body)).await;
        assert_eq!(response.status, 400, "{what}");
        let message = response.json()["error"]["message"].as_str().expect("message").to_owned();
        assert!(message.contains("Idempotency-Key") && message.contains(what), "{message}");
    }
    for bad in ["", &"k".repeat(256)] {
        let response = app.request("POST", &path, &[("idempotency-key", bad)], None).await;
        assert_eq!(response.status, 400, "{bad:?}");
        assert_eq!(response.json()["error"]["message"], "Idempotency-Key must be 1 to 255 printable ASCII characters");
    }
}

#[tokio::test]
async fn a_post_refused_for_its_subject_leaves_its_idempotency_key_for_a_post_that_succeeds() {
    let (app, account) = TestApp::start(&[]);
    let key = [("content-type", "application/json"), ("idempotency-key", "first-try")];
    let unknown = format!("/v1/profile/43/datarequest?access_token={}", account.token);
    let refused = app.request("POST", &unknown, &key, Some(b"[]")).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["message"], "No entity with supplied ID");
    let known = format!("/v1/profile/42/datarequest?access_token={}", account.token);
    let accepted = app.request("POST", &known, &key, Some(b"[]")).await;
    assert_eq!(accepted.status, 201, "{}", String::from_utf8_lossy(&accepted.bytes));
}

#[tokio::test]
async fn every_answer_says_nosniff() {
    let (app, account) = TestApp::start(&[]);
    let id = app.submit("profile/42", &account, None).await;
    app.wait_for(id, &account, |s| s["status"] == "available").await;
    let token = &account.token;
    for path in [
        format!("/v1/datarequest/{id}?access_token={token}"),
        format!("/v1/datarequest/{id}/data?access_token={token}"),
        format!("/v1/datarequest/{id}/status?access_token={token}"),
        format!("/v1/datarequest/{id}/status?access_token=wrong"),
        "/v1/nowhere".to_owned(),
        "/openapi.json".to_owned(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"), "{path}: {}", response.status);
    }
    let refused = crate::helpers::request_data(&app, &account, "profile/43").await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"), "a refused POST");
}

#[tokio::test]
async fn over_the_rate_limit_a_post_gets_429_with_retry_after_in_copernicas_shape() {
    let (app, account) = TestApp::start(&[("DATAREQUEST_RATE_LIMIT_PER_MINUTE", "2")]);
    let path = format!("/v1/profile/42/datarequest?access_token={}", account.token);
    // Stay clear of a minute boundary, where the window starts afresh.
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() % 60;
    if second >= 55 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - second)).await;
    }
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let response = app.request("POST", &path, &[], None).await;
        statuses.push(response.status);
        last = Some(response);
    }
    assert_eq!(statuses, [201, 201, 429]);
    let response = last.expect("a response");
    let retry: u64 = response.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry));
    assert_eq!(response.header("content-type"), Some("application/json"));
    let message = response.json()["error"]["message"].as_str().expect("message").to_owned();
    assert!(message.starts_with("Too many data requests"), "{message}");
    // GETs are not limited.
    let status = app.get(&format!("/v1/datarequest/1234567890123456/status?access_token={}", account.token)).await;
    assert_eq!(status.status, 200);
}
