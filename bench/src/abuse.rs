//! `bench abuse`: the release `datarequest serve` under floods, at its default limits.
//!
//! - status GETs (8 clients on keep-alive connections, one after the other each) with no attack,
//!   then while 10,000 idle connections and 50 slowloris connections (a head a byte a second)
//!   are held: an attacker whose connection the server closes opens another a second later
//!   (`bench abuse SECONDS`: that many seconds later); p50, p99 and errors of each;
//! - the server's peak RSS while 50 clients each send a `POST /ingest` body slowly (1 MiB a
//!   second, up to 7 MiB of a declared 8 MiB, then nothing), again a second after the server
//!   closed one.
//!
//! The attackers run in this process: it needs about 10,100 open files (`ulimit -n`); with a
//! lower limit the flood is made smaller and the figure says so.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Report, spawn_announcing};

/// Idle connections of the flood.
const IDLE: usize = 10_000;
/// Slowloris connections of the flood.
const SLOWLORIS: usize = 50;
/// Clients sending slow ingest bodies.
const SLOW_BODIES: usize = 50;
/// Status GETs measured in each phase, over all clients.
const GETS: usize = 4_000;
/// Concurrent GET clients.
const CLIENTS: usize = 8;

/// Runs the figures against a fresh data dir under `work`.
///
/// # Errors
/// When the server does not start or a phase cannot be set up.
pub async fn run(release: &Path, work: &Path, report: &mut Report, reconnect: Duration) -> anyhow::Result<()> {
    let files = open_file_limit().unwrap_or(1024);
    // The GET clients, the slowloris connections and some spare files besides the idle ones.
    let idle = IDLE.min(usize::try_from(files).unwrap_or(usize::MAX).saturating_sub(SLOWLORIS + 200));
    if idle < IDLE {
        println!("  open-file limit {files}: {idle} idle connections instead of {IDLE} (raise `ulimit -n`)");
    }

    let data = work.join("abuse");
    let (mut server, url, token, _) = start(release, &data)?;
    let result = async {
        let client = reqwest::Client::new();
        let created: serde_json::Value =
            client.post(format!("{url}/v1/profile/1001/datarequest?access_token={token}")).send().await?.json().await?;
        let id = created["id"].as_u64().context("id")?;
        let status = format!("{url}/v1/datarequest/{id}/status?access_token={token}");
        let address = url.strip_prefix("http://").context("address")?.to_owned();

        let calm = gets(&status).await;
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let mut attackers = Vec::new();
        for _ in 0..idle {
            attackers.push(tokio::spawn(idle_attacker(address.clone(), stop.clone(), held.clone(), reconnect)));
        }
        for _ in 0..SLOWLORIS {
            attackers.push(tokio::spawn(slowloris(address.clone(), stop.clone(), reconnect)));
        }
        // Until the attackers have opened their connections.
        let start = Instant::now();
        while held.load(Ordering::Relaxed) < idle && start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let opened = held.load(Ordering::Relaxed);
        let attacked = gets(&status).await;
        stop.store(true, Ordering::Relaxed);
        for attacker in attackers {
            attacker.abort();
        }
        let flood_rss = peak_rss_mb(server.id());
        anyhow::Ok((calm, attacked, opened, flood_rss))
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    let (calm, attacked, opened, flood_rss) = result?;
    println!("  status GETs, no attack: p50 {:.2} ms, p99 {:.2} ms, {} errors", calm.p50_ms, calm.p99_ms, calm.errors);
    println!(
        "  status GETs, {opened} idle + {SLOWLORIS} slowloris connections held: p50 {:.2} ms, p99 {:.2} ms, {} errors; server peak RSS {flood_rss:.1} MB",
        attacked.p50_ms, attacked.p99_ms, attacked.errors
    );
    let ratio = attacked.p99_ms / calm.p99_ms;
    report.row(
        &format!(
            "local server, status GETs under {idle} idle + {SLOWLORIS} slowloris connections (reconnecting after {:.0} s)",
            reconnect.as_secs_f64()
        ),
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, {} errors of {GETS}; unattacked p50 {:.2} ms (server peak RSS {flood_rss:.1} MB)",
            attacked.p50_ms, attacked.p99_ms, attacked.errors, calm.p50_ms
        ),
        format!("unattacked p99 {:.2} ms", calm.p99_ms),
        ratio,
        "<= 5x unattacked p99, no error",
        ratio <= 5.0 && attacked.errors == 0 && calm.errors == 0,
    );

    // A fresh server, so that its peak RSS is that of the slow bodies.
    let data = work.join("abuse-ingest");
    let (mut server, url, _, key) = start(release, &data)?;
    let result = async {
        let address = url.strip_prefix("http://").context("address")?.to_owned();
        let before = peak_rss_mb(server.id());
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        for _ in 0..SLOW_BODIES {
            let (address, key, stop, refused) = (address.clone(), key.clone(), stop.clone(), refused.clone());
            senders.push(tokio::spawn(slow_body(address, key, stop, refused)));
        }
        // 7 MiB at 1 MiB a second, and some seconds of holding after.
        tokio::time::sleep(Duration::from_secs(12)).await;
        stop.store(true, Ordering::Relaxed);
        for sender in senders {
            sender.abort();
        }
        anyhow::Ok((before, peak_rss_mb(server.id()), refused.load(Ordering::Relaxed)))
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    let (before, peak, refused) = result?;
    report.row(
        &format!("local server peak RSS, {SLOW_BODIES} slow `POST /ingest` bodies of up to 7 MiB"),
        format!("{peak:.1} MB (idle {before:.1} MB; {refused} bodies refused with 503 in 12 s)"),
        "128 MB".to_owned(),
        peak / 128.0,
        "<= 128 MB",
        peak <= 128.0,
    );
    Ok(())
}

/// Starts `datarequest serve --demo` at its default limits on a fresh data dir with an ingest
/// key: the process, its URL, the demo account's token and the key.
fn start(release: &Path, data: &Path) -> anyhow::Result<(std::process::Child, String, String, String)> {
    std::fs::create_dir_all(data)?;
    let output =
        Command::new(release.join("datarequest")).args(["ingest-key", "create", "--data-dir"]).arg(data).output()?;
    anyhow::ensure!(output.status.success(), "ingest-key create: {}", String::from_utf8_lossy(&output.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let key = printed["ingest_key"].as_str().context("ingest_key")?.to_owned();
    let mut serve = Command::new(release.join("datarequest"));
    serve
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "error")
        .env(datarequest::config::RATE_LIMIT_PER_MINUTE, "0");
    let (server, lines) = spawn_announcing(serve, "Datarequest listening on")?;
    let url = lines.last().and_then(|l| l.strip_prefix("Datarequest listening on ")).context("address")?.to_owned();
    let token = lines.iter().find_map(|l| l.strip_prefix("TOKEN=")).context("token")?.to_owned();
    Ok((server, url, token, key))
}

/// Latencies of status GETs.
struct Latencies {
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// [`GETS`] status GETs from [`CLIENTS`] clients, each on its own keep-alive connection.
async fn gets(url: &str) -> Latencies {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let url = url.to_owned();
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
            let (mut times, mut errors) = (Vec::new(), 0);
            for _ in 0..GETS / CLIENTS {
                let start = Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                times.push(start.elapsed().as_secs_f64() * 1000.0);
                errors += usize::from(!ok);
            }
            (times, errors)
        }));
    }
    let (mut times, mut errors) = (Vec::new(), 0);
    for client in clients {
        match client.await {
            Ok((t, e)) => {
                times.extend(t);
                errors += e;
            }
            Err(_) => errors += GETS / CLIENTS,
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times.get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1))).copied();
    Latencies { p50_ms: at(0.5).unwrap_or(f64::NAN), p99_ms: at(0.99).unwrap_or(f64::NAN), errors }
}

/// Holds one connection that sends nothing; when the server closes it, opens another
/// `reconnect` later.
async fn idle_attacker(address: String, stop: Arc<AtomicBool>, held: Arc<AtomicUsize>, reconnect: Duration) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut stream) = TcpStream::connect(&address).await {
            if first {
                held.fetch_add(1, Ordering::Relaxed);
                first = false;
            }
            let mut buffer = [0u8; 512];
            while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
        }
        tokio::time::sleep(reconnect).await;
    }
}

/// Holds one connection that sends a head that never ends, a byte a second; when the server
/// closes it, opens another `reconnect` later.
async fn slowloris(address: String, stop: Arc<AtomicBool>, reconnect: Duration) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut stream) = TcpStream::connect(&address).await {
            let head = format!("GET /v1/datarequest/1/status HTTP/1.1\r\nHost: {address}\r\nX-Padding: ");
            for byte in head.bytes().chain(std::iter::repeat(b'a')) {
                if stop.load(Ordering::Relaxed) || stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        tokio::time::sleep(reconnect).await;
    }
}

/// Sends `POST /ingest` bodies of a declared 8 MiB at 1 MiB a second, stopping after 7 MiB;
/// when the server answers or closes, starts another a second later.
async fn slow_body(address: String, key: String, stop: Arc<AtomicBool>, refused: Arc<AtomicUsize>) {
    const MIB: usize = 1024 * 1024;
    let chunk = vec![b' '; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(&address).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let (mut reader, mut writer) = stream.into_split();
        let head = format!(
            "POST /ingest HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
            8 * MIB
        );
        let sending = async {
            if writer.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..7 * MIB / chunk.len() {
                if writer.write_all(&chunk).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(62)).await;
            }
            std::future::pending::<()>().await;
        };
        let answered = async {
            let mut buffer = [0u8; 1024];
            let n = reader.read(&mut buffer).await.unwrap_or(0);
            if buffer[..n].starts_with(b"HTTP/1.1 503") {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        };
        tokio::select! {
            () = sending => {}
            () = answered => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The soft limit of open files of this process.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// The peak resident set of a process, in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb * 1024.0 / 1_000_000.0)
}
