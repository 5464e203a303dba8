//! Random sequences of subject-data writes (loads and erasures over a handful of subjects, in
//! any order: records before their subprofile, subprofiles moving between profiles, events
//! with and without ids, addresses in other cases, MIME bodies small and large enough to be
//! streamed from the store) and the exports of every subject, for the property that the same
//! writes give byte-identical exports on every store, and that writing each line twice changes
//! nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datarequest::adapters::memory::{MemoryExports, MemoryRequests};
use datarequest::app::ingest::parse_line;
use datarequest::domain::{AccountId, DataRequest, Line, RequestId, Subject, Timestamp};
use datarequest::ports::{ExportFormat, ExportStore, SubjectData};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};

const PROFILES: [u64; 3] = [1, 2, 3];
const SUBPROFILES: [u64; 3] = [10, 11, 12];
const EMAILS: [&str; 3] = ["ann@example.com", "bob@example.com", "cy@example.com"];
const KINDS: [&str; 3] = ["impression", "click", "survey"];

/// The size of a large body in the generated writes: above the 128 KiB a store reads with its
/// page, and compressing to more than the 32 KiB a page reads from the bucket.
const LARGE_MIME: usize = 140 * 1024;

/// About `bytes` of text that compresses poorly (so that it stays large in the bucket), in
/// CRLF lines, with characters of every UTF-8 width and what JSON escapes.
pub fn varied_text(seed: u64, bytes: usize) -> String {
    const ALPHABET: [&str; 12] = ["a", "Q", "7", " ", "é", "€", "𝄞", "\"", "\\", "\t", "ß", "z"];
    let mut state = seed;
    let mut text = String::with_capacity(bytes + 8);
    while text.len() < bytes {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        text.push_str(ALPHABET[(state >> 33) as usize % ALPHABET.len()]);
        if (state >> 20).is_multiple_of(70) {
            text.push_str("\r\n");
        }
    }
    text
}

/// One write, as a line of the ingestion format without its account.
#[derive(Debug, Clone)]
pub struct Op(Value);

fn time(n: u8) -> String {
    format!("2025-0{}-01 0{}:00:00", 1 + n % 3, n % 4)
}

fn email(n: usize, upper: bool) -> String {
    let e = EMAILS[n % EMAILS.len()];
    if upper { e.to_ascii_uppercase() } else { e.to_owned() }
}

fn op() -> impl Strategy<Value = Op> {
    let profile = (0..3usize, proptest::option::of((0..3usize, any::<bool>()))).prop_map(|(p, e)| {
        json!({"kind":"profile","id":PROFILES[p],"database":1,"email":e.map(|(n, u)| email(n, u)),
            "fields":{"v":p},"created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"})
    });
    let subprofile = (0..3usize, 0..3usize, proptest::option::of((0..3usize, any::<bool>()))).prop_map(|(s, p, e)| {
        json!({"kind":"subprofile","id":SUBPROFILES[s],"profile":PROFILES[p],"collection":1,
            "email":e.map(|(n, u)| email(n, u)),"created":"2024-01-01 00:00:00","modified":"2024-01-01 00:00:00"})
    });
    let owner = (proptest::option::of(0..3usize), proptest::option::of(0..3usize), 0..3usize, any::<bool>());
    let message = (0..4u8, owner.clone(), 0..6u8, 0..3u8).prop_map(|(id, (p, s, e, u), t, body)| {
        // Body 2 is large: above what every store reads with its page.
        let text = if body == 2 { varied_text(u64::from(id), LARGE_MIME) } else { format!("body {body}") };
        json!({"kind":"message","id":format!("m{id}"),"profile":p.map(|p| PROFILES[p]),
            "subprofile":s.map(|s| SUBPROFILES[s]),"email":email(e, u),"mailing":"1","subject":format!("s{body}"),
            "sent":time(t),"mime":format!("Subject: s{body}\r\n\r\n{text} of m{id}")})
    });
    let event = (0..3usize, proptest::option::of(0..2u8), proptest::option::of(0..4u8), owner, 0..6u8, 0..3u8)
        .prop_map(|(k, id, m, (p, s, e, u), t, d)| {
            let mut line = json!({"kind":"event","type":KINDS[k],"message":m.map(|m| format!("m{m}")),
                "profile":p.map(|p| PROFILES[p]),"subprofile":s.map(|s| SUBPROFILES[s]),
                "email":email(e, u),"time":time(t),"data":{"d":d}});
            if let Some(id) = id {
                line["id"] = json!(format!("e{id}"));
            }
            line
        });
    let erase = prop_oneof![
        (0..3usize).prop_map(|p| json!({"kind":"erase","profile":PROFILES[p]})),
        (0..3usize).prop_map(|s| json!({"kind":"erase","subprofile":SUBPROFILES[s]})),
        (0..3usize, any::<bool>()).prop_map(|(e, u)| json!({"kind":"erase","email":email(e, u)})),
    ];
    prop_oneof![2 => profile, 3 => subprofile, 4 => message, 4 => event, 1 => erase].prop_map(Op)
}

/// Sequences of 1 to `max` writes.
pub fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..=max)
}

/// A fresh account id for every use, so that runs share a store without meeting.
pub fn fresh_account() -> AccountId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let base = std::process::id() as u64 % 1000 * 1_000_000;
    AccountId::try_from(base + NEXT.fetch_add(1, Ordering::SeqCst)).expect("account id")
}

/// Writes `ops` for `account`, each `times` times in a row.
pub async fn write(store: &dyn SubjectData, account: AccountId, ops: &[Op], times: usize) {
    let mut lines = Vec::new();
    for Op(op) in ops {
        let mut op = op.clone();
        op["account"] = json!(account.get());
        let line: Line = parse_line(&op.to_string()).expect("generated lines are valid").expect("a line");
        for _ in 0..times {
            lines.push(line.clone());
        }
    }
    store.apply(lines).await.expect("the store takes the lines");
}

/// Every subject the writes can touch.
pub fn subjects() -> Vec<Subject> {
    let mut all = Vec::new();
    for p in PROFILES {
        all.push(Subject::from_parts("profile", &p.to_string()).expect("subject"));
    }
    for s in SUBPROFILES {
        all.push(Subject::from_parts("subprofile", &s.to_string()).expect("subject"));
    }
    for e in EMAILS {
        all.push(Subject::from_parts("email", e).expect("subject"));
    }
    all
}

/// The export of every subject of `account`, as text.
pub async fn exports(store: &dyn SubjectData, account: AccountId) -> Vec<String> {
    let (requests, files) = (MemoryRequests::default(), MemoryExports::default());
    let mut all = Vec::new();
    for subject in subjects() {
        let request = DataRequest::accepted(RequestId::random(), account, subject, None, Timestamp::now());
        let writer = files.create(request.id, ExportFormat::Json).await.expect("writer");
        datarequest::export::write_export(store, &requests, &request, writer, None).await.expect("export");
        all.push(String::from_utf8(files.bytes(request.id).expect("written")).expect("UTF-8"));
    }
    all
}

/// Runs `cases` random sequences through `check`, printing the seed of a failure (set
/// `PROPERTY_SEED` to run that seed again).
pub fn run(cases: u32, max_ops: usize, check: impl Fn(Vec<Op>) -> Result<(), TestCaseError>) {
    let seed: u64 = std::env::var("PROPERTY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand_seed);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    if let Err(failure) = runner.run(&ops(max_ops), check) {
        panic!("property failed with PROPERTY_SEED={seed}: {failure}");
    }
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
}

/// Checks that every store, given `ops` once, and given each op twice, exports the same bytes
/// for every subject, and that a sequence without erasures written twice over exports the same
/// as written once.
pub async fn same_everywhere(stores: &[(&str, Arc<dyn SubjectData>)], ops: &[Op]) -> Result<(), TestCaseError> {
    let erases = ops.iter().any(|Op(op)| op["kind"] == "erase");
    let mut reference: Option<(String, Vec<String>)> = None;
    for (name, store) in stores {
        let mut runs = vec![(format!("{name}, once"), 1usize, 1usize), (format!("{name}, each line twice"), 2, 1)];
        if !erases {
            runs.push((format!("{name}, the whole sequence twice"), 1, 2));
        }
        for (label, times, rounds) in runs {
            let account = fresh_account();
            for _ in 0..rounds {
                write(&**store, account, ops, times).await;
            }
            let got = exports(&**store, account).await;
            match &reference {
                None => reference = Some((label, got)),
                Some((first, expected)) => {
                    for (n, (want, have)) in expected.iter().zip(&got).enumerate() {
                        prop_assert_eq!(want, have, "subject {} differs: {} vs {}", n, first, label);
                    }
                }
            }
        }
    }
    Ok(())
}
