//! A small emulator of the Lambda Runtime API: the function binary polls it for events exactly
//! as it polls AWS, and the test hands it events and reads back what the function answered.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

type Reply = oneshot::Sender<Result<Value, Value>>;

struct Invocation {
    id: String,
    event: Value,
    reply: Reply,
}

struct Shared {
    /// Each invocation's time, in milliseconds (the deadline the function is told).
    timeout_ms: Arc<std::sync::atomic::AtomicU64>,
    queue: Mutex<mpsc::Receiver<Invocation>>,
    pending: Mutex<HashMap<String, Reply>>,
    first_poll: Arc<std::sync::OnceLock<Instant>>,
}

/// One function binary under the emulated Runtime API.
pub struct Function {
    sender: mpsc::Sender<Invocation>,
    child: std::sync::Mutex<Child>,
    server: tokio::task::JoinHandle<()>,
    next_id: std::sync::atomic::AtomicU64,
    spawned: Instant,
    first_poll: Arc<std::sync::OnceLock<Instant>>,
    timeout_ms: Arc<std::sync::atomic::AtomicU64>,
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let _ = shared.first_poll.set(Instant::now());
    let Some(invocation) = shared.queue.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    shared.pending.lock().await.insert(invocation.id.clone(), invocation.reply);
    let mut headers = HeaderMap::new();
    let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
        + Duration::from_millis(shared.timeout_ms.load(std::sync::atomic::Ordering::SeqCst));
    let put = |headers: &mut HeaderMap, name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).expect("header"));
    };
    put(&mut headers, "lambda-runtime-aws-request-id", invocation.id);
    put(&mut headers, "lambda-runtime-deadline-ms", deadline.as_millis().to_string());
    put(
        &mut headers,
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:test".into(),
    );
    put(&mut headers, "lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0".into());
    put(&mut headers, "content-type", "application/json".into());
    (StatusCode::OK, headers, invocation.event.to_string())
}

async fn respond(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes, ok: bool) -> StatusCode {
    let value =
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    if let Some(reply) = shared.pending.lock().await.remove(&id) {
        let _ = reply.send(if ok { Ok(value) } else { Err(value) });
    }
    StatusCode::ACCEPTED
}

impl Function {
    /// Starts the function binary at `path` against a fresh Runtime API, with exactly the
    /// environment `env` (plus the variables the Lambda runtime itself sets).
    pub async fn start<'a>(path: &std::path::Path, env: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let (sender, receiver) = mpsc::channel(16);
        let first_poll = Arc::new(std::sync::OnceLock::new());
        let timeout_ms = Arc::new(std::sync::atomic::AtomicU64::new(300_000));
        let shared = Arc::new(Shared {
            timeout_ms: Arc::clone(&timeout_ms),
            queue: Mutex::new(receiver),
            pending: Mutex::new(HashMap::new()),
            first_poll: Arc::clone(&first_poll),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(|state, path, body| respond(state, path, body, true)),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(|state, path, body| respond(state, path, body, false)),
            )
            .route(
                "/2018-06-01/runtime/init/error",
                post(|body: Bytes| async move {
                    eprintln!("the function failed to start: {}", String::from_utf8_lossy(&body));
                    StatusCode::ACCEPTED
                }),
            )
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut command = Command::new(path);
        command.env_clear();
        command
            .envs(env)
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let spawned = Instant::now();
        let child = command.spawn().expect("starts the function");
        Self {
            sender,
            child: std::sync::Mutex::new(child),
            server,
            next_id: std::sync::atomic::AtomicU64::new(1),
            spawned,
            first_poll,
            timeout_ms,
        }
    }

    /// Sets the time each later invocation has (the function's configured timeout; 300 s
    /// unless set): the deadline the function is told.
    pub fn set_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.timeout_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Invokes the function as [`Function::invoke`] does, and tells how long it took to
    /// answer. Panics when the answer comes after the invocation's deadline: Lambda would
    /// have ended the invocation.
    pub async fn invoke_in_time(&self, event: Value) -> (Result<Value, Value>, Duration) {
        let timeout = Duration::from_millis(self.timeout_ms.load(std::sync::atomic::Ordering::SeqCst));
        let started = Instant::now();
        let answer = self.invoke(event).await;
        let took = started.elapsed();
        assert!(took < timeout, "the invocation ran {took:?}, past its {timeout:?} deadline");
        (answer, took)
    }

    /// How long the function took from spawn to its first request for work (its init), once
    /// it has asked.
    pub fn init_time(&self) -> Option<Duration> {
        self.first_poll.get().map(|at| at.duration_since(self.spawned))
    }

    /// The function process's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kb(&self) -> u64 {
        let Some(pid) = self.child.lock().ok().map(|child| child.id()) else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }

    /// Kills the function's process without warning (SIGKILL), as a timeout or a crash ends a
    /// Lambda invocation; an invocation in flight never answers.
    pub fn kill(&self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Invokes the function with an event: `Ok` with its response, `Err` with its error.
    pub async fn invoke(&self, event: Value) -> Result<Value, Value> {
        let id = format!("invocation-{}", self.next_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let (reply, answer) = oneshot::channel();
        self.sender.send(Invocation { id, event, reply }).await.expect("the emulator runs");
        let timeout = Duration::from_millis(self.timeout_ms.load(std::sync::atomic::Ordering::SeqCst));
        tokio::time::timeout(timeout.max(Duration::from_secs(110)) + Duration::from_secs(10), answer)
            .await
            .expect("the function answers in time")
            .expect("answer")
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.kill();
        self.server.abort();
    }
}
