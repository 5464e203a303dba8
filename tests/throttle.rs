//! A proxy in front of the AWS emulator that answers some of the calls with a throttling error
//! instead of forwarding them: what a busy AWS looks like to the SDK clients. Every `every`-th
//! call is refused with `503` and a `ThrottlingException` body (the SDKs retry both a throttle
//! and a `503`); the others go through unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

struct Shared {
    target: String,
    every: u64,
    calls: AtomicU64,
    refused: AtomicU64,
    client: reqwest::Client,
}

/// The proxy on a free loopback port.
pub struct ThrottlingProxy {
    /// Its URL, to use as `AWS_ENDPOINT_URL`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ThrottlingProxy {
    /// Forwards to `target` (the emulator's URL), refusing every `every`-th call.
    pub async fn start(target: &str, every: u64) -> Self {
        let shared = Arc::new(Shared {
            target: target.trim_end_matches('/').to_owned(),
            every: every.max(2),
            calls: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            client: reqwest::Client::new(),
        });
        let app = axum::Router::new().fallback(forward).with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// How many calls it refused so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let call = shared.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if call % shared.every == 0 {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
        let headers = [("x-amzn-errortype", "ThrottlingException"), ("content-type", "application/x-amz-json-1.0")];
        return (StatusCode::SERVICE_UNAVAILABLE, headers, body).into_response();
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    let answer = shared
        .client
        .request(parts.method.clone(), format!("{}{path}", shared.target))
        .headers(headers)
        .body(body)
        .send()
        .await;
    match answer {
        Ok(answer) => {
            let status = answer.status();
            let mut headers = HeaderMap::new();
            for (name, value) in answer.headers() {
                if name != axum::http::header::TRANSFER_ENCODING && name != axum::http::header::CONTENT_LENGTH {
                    headers.insert(name.clone(), value.clone());
                }
            }
            let bytes: Bytes = answer.bytes().await.unwrap_or_default();
            (status, headers, bytes).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
