//! A web address that reads POSTed bodies at a set pace, on a raw socket so nothing buffers the
//! body ahead of the pace: what a slow, stalled or silent receiver looks like to web delivery.
//! It keeps what it saw of the last request (length, SHA-256 of the body, when the body was
//! read in full and when the sender hung up) rather than the body, so a benchmark's figures
//! do not carry the body's memory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// What the receiver does with a request.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Reads the whole body, then answers `200`.
    Answer,
    /// Reads the whole body and never answers (keeps the connection open).
    NeverAnswer,
    /// Reads `after` bytes of the body, stops reading for `pause`, then reads on until the
    /// sender hangs up or the body is complete (and then answers `200`).
    Stall { after: u64, pause: Duration },
}

/// What the receiver saw of the last request.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The request's `Content-Length`.
    pub content_length: Option<u64>,
    /// Body bytes read.
    pub bytes: u64,
    /// SHA-256 of the body bytes read, once the body is complete.
    pub sha256: Option<[u8; 32]>,
    /// When the body was read in full.
    pub finished: Option<Instant>,
    /// When the sender closed the connection (or it failed) before an answer was sent.
    pub hung_up: Option<Instant>,
}

/// A receiver on a free loopback port; its URL is `http://127.0.0.1:<port>/hook`.
pub struct SlowReceiver {
    pub url: String,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

/// Bytes asked of the socket at a time; a small read keeps the pace even.
const READ: usize = 16 * 1024;

impl SlowReceiver {
    /// Starts a receiver that reads bodies at `bytes_per_second` (`None`: as fast as it can).
    pub async fn start(bytes_per_second: Option<u64>, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, bytes_per_second, behaviour, Arc::clone(&shared)));
            }
        });
        Self { url, seen, task }
    }

    /// What was seen so far of the last request.
    pub fn seen(&self) -> Seen {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits up to `limit` for `done` to hold of what was seen; returns what was seen then.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.seen();
            if done(&seen) || Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for SlowReceiver {
    fn drop(&mut self) {
        // Aborting the accept loop drops its `JoinSet`, which aborts every connection.
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, rate: Option<u64>, behaviour: Behaviour, seen: Arc<Mutex<Seen>>) {
    let update = |change: &dyn Fn(&mut Seen)| change(&mut seen.lock().expect("lock"));
    update(&|s| *s = Seen::default());
    let hung_up = || update(&|s| s.hung_up = Some(Instant::now()));

    // The request head; whatever follows it in the same read is the start of the body.
    let mut head = Vec::new();
    let mut buf = vec![0u8; READ];
    let end = loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return hung_up(),
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let length = String::from_utf8_lossy(&head[..end]).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<u64>().ok())?
    });
    let length = length.expect("a Content-Length");
    update(&|s| s.content_length = Some(length));

    let mut hash = Sha256::new();
    let mut read = (head.len() - end) as u64;
    hash.update(&head[end..]);
    update(&|s| s.bytes = read);
    let start = Instant::now();
    let mut stalled = false;
    while read < length {
        if let Behaviour::Stall { after, pause } = behaviour
            && !stalled
            && read >= after
        {
            stalled = true;
            tokio::time::sleep(pause).await;
        }
        if let Some(rate) = rate {
            tokio::time::sleep_until(start + Duration::from_secs_f64(read as f64 / rate as f64)).await;
        }
        let want = usize::try_from(length - read).unwrap_or(READ).min(READ);
        match stream.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => return hung_up(),
            Ok(n) => {
                hash.update(&buf[..n]);
                read += n as u64;
                update(&|s| s.bytes = read);
            }
        }
    }
    let digest: [u8; 32] = hash.finalize().into();
    update(&|s| {
        s.sha256 = Some(digest);
        s.finished = Some(Instant::now());
    });

    if matches!(behaviour, Behaviour::NeverAnswer) {
        // Silent, but notices when the sender gives up.
        let _ = stream.read(&mut buf).await;
        return hung_up();
    }
    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    if stream.write_all(answer).await.is_err() {
        hung_up();
    }
}
