//! Fault injection on the local server, shared by the black-box test (a short run) and
//! `bench faults` (a long one): requests for subjects of mixed sizes are built and delivered
//! while the server is killed (SIGKILL) at random moments and started again, and while the
//! queue hands messages out twice (held messages made visible again, so a second worker takes
//! them while the first still runs), and while some requests are cancelled at random moments
//! (waiting, building, delivering or delivered). Afterwards no request may be lost: every one not
//! cancelled must end delivered, with an export byte-identical to a build of the same subject
//! without faults, and every cancelled one must end cancelled, with no file left of it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `datarequest serve` on a free loopback port.
pub struct Server {
    child: Child,
    /// Its base URL.
    pub url: String,
}

impl Server {
    /// Starts `command` (the `datarequest` binary with its environment) as `serve` on this data
    /// dir, its log appended to `server.log` there, and waits until it listens.
    pub fn spawn(mut command: Command, data_dir: &Path) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("server.log")).expect("log");
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starts datarequest serve");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Datarequest listening on ") {
                    let _ = sender.send(url.to_owned());
                }
            }
        });
        let url = receiver.recv_timeout(Duration::from_secs(30)).expect("the server announces its address");
        Self { child, url }
    }

    /// Kills it without warning (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes an import file of profile 77 of account 1 with a long history: `messages` mails of
/// about 48 KB and `events` events.
pub fn write_big_subject(path: &Path, messages: usize, events: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let profile = serde_json::json!({"kind":"profile","account":1,"id":77,"database":7,"email":"big@example.com",
        "fields":{"firstname":"Big"},"interests":[],"created":"2020-01-01 00:00:00","modified":"2020-01-01 00:00:00"});
    writeln!(file, "{profile}").expect("write");
    let body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(820);
    for n in 0..messages {
        let mime = format!("From: Shop <news@shop.example>\r\nTo: big@example.com\r\nSubject: Mail {n}\r\n\r\n{body}");
        let line = serde_json::json!({"kind":"message","account":1,"id":format!("m-{n:05}"),"profile":77,"subprofile":null,
            "email":"big@example.com","mailing":"1","subject":format!("Mail {n}"),
            "sent":format!("2024-01-01 00:{:02}:{:02}", (n / 60) % 60, n % 60),"mime":mime});
        writeln!(file, "{line}").expect("write");
    }
    for n in 0..events {
        let line = serde_json::json!({"kind":"event","account":1,"type":"impression","message":format!("m-{:05}", n % messages),
            "profile":77,"subprofile":null,"email":"big@example.com","time":format!("2024-02-01 00:00:{:02}", n % 60),
            "data":{"n":n}});
        writeln!(file, "{line}").expect("write");
    }
    file.flush().expect("flush");
}

/// What a run does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Rounds of requests; after each the server may be killed and started again.
    pub rounds: usize,
    /// Requests submitted per round.
    pub per_round: usize,
    /// The seed of the random choices (subjects, pauses, kills, duplicates, cancellations).
    pub seed: u64,
    /// One request in this many is cancelled right after it was submitted, and as often a
    /// round ends by cancelling an earlier request (0: none is).
    pub cancel_one_in: usize,
}

/// What a run did; it panics instead when a request was lost or an export differs.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Requests checked (the references not counted).
    pub requests: usize,
    /// Times the server was killed.
    pub kills: usize,
    /// Queue messages handed out twice.
    pub duplicated: usize,
    /// Requests cancelled.
    pub cancelled: usize,
    /// How long the run took, the references included.
    pub elapsed: Duration,
}

/// A small deterministic generator, so a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n.max(1) as u64).expect("small")
    }
}

/// Makes every held queue message visible at once: each is handed out again.
fn duplicate_held_messages(data_dir: &Path) -> usize {
    let db = rusqlite::Connection::open(data_dir.join("datarequest.sqlite3")).expect("database");
    db.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    db.execute("UPDATE queue SET visible_at = 0 WHERE receives > 0", []).expect("update")
}

struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    async fn submit(&self, url: &str, subject: &str) -> u64 {
        let body = serde_json::json!({"report": "dpo@customer.example"}).to_string();
        let response = self
            .http
            .post(format!("{url}/v3/{subject}/datarequest?access_token={}", self.token))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 201, "POST {subject}");
        let created: Value = response.json().await.expect("JSON");
        created["id"].as_u64().expect("id")
    }

    /// Waits until the request is delivered (or its delivery failed), at most `limit`.
    async fn delivered(&self, url: &str, id: u64, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let status: Value = self
                .http
                .get(format!("{url}/v1/datarequest/{id}/status?access_token={}", self.token))
                .send()
                .await
                .expect("the server answers")
                .json()
                .await
                .expect("JSON");
            if status["state"] == "delivered" || status["state"] == "failed" || status["delivery"]["status"] == "failed"
            {
                return status;
            }
            assert!(start.elapsed() < limit, "request {id} is not delivered: {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cancels a request; it must answer `200` with the status of a cancelled request.
    async fn cancel(&self, url: &str, id: u64) {
        let response = self
            .http
            .delete(format!("{url}/v2/datarequest/{id}?access_token={}", self.token))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 200, "DELETE {id}");
        let status: Value = response.json().await.expect("JSON");
        assert_eq!(status["state"], "cancelled", "DELETE {id}: {status}");
    }

    async fn status(&self, url: &str, id: u64) -> Value {
        let response = self
            .http
            .get(format!("{url}/v1/datarequest/{id}/status?access_token={}", self.token))
            .send()
            .await
            .expect("the server answers");
        response.json().await.expect("JSON")
    }

    async fn data(&self, url: &str, id: u64) -> Vec<u8> {
        let response = self
            .http
            .get(format!("{url}/v1/datarequest/{id}/data?access_token={}", self.token))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 200, "GET /data of {id}");
        response.bytes().await.expect("body").to_vec()
    }
}

/// The files of a request in the data dir: its export and report, their unfinished files, and
/// its kept mail.
fn files_of(data_dir: &Path, id: u64) -> Vec<String> {
    let mut found = Vec::new();
    for folder in ["exports", "outbox"] {
        for entry in std::fs::read_dir(data_dir.join(folder)).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{id}.")) || name.starts_with(&format!(".{id}.")) {
                found.push(format!("{folder}/{name}"));
            }
        }
    }
    found
}

/// Runs `plan` against the data dir, whose account holds `token` and `subjects`; `command`
/// makes the `datarequest` command with its environment (each start of the server takes one).
///
/// # Panics
/// When a request is lost, ends otherwise than delivered (or, cancelled, otherwise than
/// cancelled and without files), or its export differs from the reference build of its
/// subject (the message names the request and the seed).
pub async fn run(
    command: impl Fn() -> Command,
    data_dir: &Path,
    token: &str,
    subjects: &[&str],
    plan: Plan,
) -> Summary {
    let start = Instant::now();
    let mut rng = Rng(plan.seed | 1);
    let client = Client { http: reqwest::Client::new(), token: token.to_owned() };
    let mut server = Server::spawn(command(), data_dir);
    let limit = Duration::from_secs(60 + 2 * plan.rounds as u64);

    // The reference: each subject built once, without faults.
    let mut reference = HashMap::new();
    for subject in subjects {
        let id = client.submit(&server.url, subject).await;
        client.delivered(&server.url, id, limit).await;
        reference.insert(*subject, client.data(&server.url, id).await);
    }

    let mut requests = Vec::new();
    let mut cancelled = std::collections::HashSet::new();
    let (mut kills, mut duplicated) = (0, 0);
    for round in 0..plan.rounds {
        for _ in 0..plan.per_round {
            let subject = subjects[rng.below(subjects.len())];
            let id = client.submit(&server.url, subject).await;
            requests.push((subject, id));
            if plan.cancel_one_in > 0 && rng.below(plan.cancel_one_in) == 0 {
                client.cancel(&server.url, id).await;
                cancelled.insert(id);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(400) as u64)).await;
        if plan.cancel_one_in > 0 && rng.below(plan.cancel_one_in) == 0 {
            // An earlier request: waiting, building, being delivered or delivered by now.
            let (_, id) = requests[rng.below(requests.len())];
            if cancelled.insert(id) {
                client.cancel(&server.url, id).await;
            }
        }
        if rng.below(2) == 0 {
            duplicated += duplicate_held_messages(data_dir);
            tokio::time::sleep(Duration::from_millis(rng.below(200) as u64)).await;
        }
        if round % 2 == 1 || rng.below(3) == 0 {
            server.kill();
            kills += 1;
            server = Server::spawn(command(), data_dir);
        }
    }

    for (subject, id) in &requests {
        if cancelled.contains(id) {
            continue;
        }
        let status = client.delivered(&server.url, *id, limit).await;
        assert_eq!(status["state"], "delivered", "request {id} for {subject} (seed {}): {status}", plan.seed);
        let data = client.data(&server.url, *id).await;
        assert!(data == reference[subject], "request {id} for {subject}: not the reference bytes (seed {})", plan.seed);
        let mail = data_dir.join("outbox").join(format!("{id}.eml"));
        assert!(mail.exists(), "request {id}: its mail went out");
    }
    // Every request not cancelled was delivered: no build of a cancelled one is under way.
    for id in &cancelled {
        let status = client.status(&server.url, *id).await;
        assert_eq!(status["state"], "cancelled", "request {id} (seed {}): {status}", plan.seed);
        let waited = Instant::now();
        while !files_of(data_dir, *id).is_empty() {
            let left = files_of(data_dir, *id);
            assert!(waited.elapsed() < Duration::from_secs(5), "request {id} (seed {}) left {left:?}", plan.seed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Summary { requests: requests.len(), kills, duplicated, cancelled: cancelled.len(), elapsed: start.elapsed() }
}
