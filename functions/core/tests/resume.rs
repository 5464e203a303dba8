//! Resumable builds: a build stopped at its deadline, or killed after any checkpoint, goes on
//! from the last checkpoint it recorded and writes files byte for byte those of a build that
//! was never interrupted, on the in-memory stores and on SQLite with export files in a folder.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datarequest::adapters::folder::FolderExports;
use datarequest::adapters::memory::{FakeClock, MemoryExports, MemoryRequests, MemorySources, MemorySubjects};
use datarequest::adapters::sqlite::SqliteStore;
use datarequest::app::ingest::parse_records;
use datarequest::domain::{
    AccountId, DataRequest, ProfileId, RequestId, State, Subject, SubprofileId, Timestamp, Transition,
};
use datarequest::export::{self, BuildInputs, BuildOutcome as Outcome, Checkpoints, HtmlOutput};
use datarequest::ports::{
    ExportFile, ExportFormat, ExportStore, ExportWriter, KeyClaim, RequestStore, Served, SourceRow, SubjectData,
    WriteError,
};
use proptest::prelude::*;

/// Requests in memory, failing the `n`-th checkpoint from when it is armed: a build killed
/// after its writers kept bytes the record never learnt of.
#[derive(Default)]
struct Killing {
    inner: MemoryRequests,
    countdown: AtomicUsize,
}

impl Killing {
    fn kill_at_checkpoint(&self, n: usize) {
        self.countdown.store(n, Ordering::SeqCst);
    }
}

#[async_trait]
impl RequestStore for Killing {
    async fn claim_key(
        &self,
        account: AccountId,
        key: &str,
        claim: &KeyClaim,
        now: Timestamp,
    ) -> anyhow::Result<Option<KeyClaim>> {
        self.inner.claim_key(account, key, claim, now).await
    }

    async fn insert(&self, request: &DataRequest) -> anyhow::Result<bool> {
        self.inner.insert(request).await
    }

    async fn get(&self, id: RequestId) -> anyhow::Result<Option<DataRequest>> {
        self.inner.get(id).await
    }

    async fn update(&self, id: RequestId, transition: &Transition) -> anyhow::Result<bool> {
        if matches!(transition, Transition::Checkpoint { .. })
            && self.countdown.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) == Ok(1)
        {
            anyhow::bail!("killed");
        }
        self.inner.update(id, transition).await
    }

    async fn expiring(&self, now: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>> {
        self.inner.expiring(now, limit).await
    }

    async fn stuck(&self, before: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>> {
        self.inner.stuck(before, limit).await
    }

    async fn unfinished(&self) -> anyhow::Result<Vec<RequestId>> {
        self.inner.unfinished().await
    }
}

/// A subject's data: subprofiles, messages with bodies of the given sizes, events, and
/// source rows per section.
#[derive(Debug, Clone)]
struct Data {
    subprofiles: usize,
    bodies: Vec<usize>,
    events: Vec<(usize, u32)>,
    rows: Vec<(usize, u32)>,
}

fn lines(data: &Data) -> String {
    let mut out = String::from(
        r#"{"kind":"profile","account":1,"id":42,"database":7,"email":"jane@example.com","fields":{"name":"Jane \"J\" Doe"},"interests":["news"],"created":"2021-03-04 09:15:00","modified":"2025-06-01 12:00:00"}"#,
    );
    out.push('\n');
    for n in 0..data.subprofiles {
        out.push_str(&format!(
            r#"{{"kind":"subprofile","account":1,"id":{},"profile":42,"collection":3,"email":"jane{n}@work.example","fields":{{"n":{n}}},"created":"2022-01-10 08:00:00","modified":"2022-01-10 08:00:00"}}"#,
            4200 + n
        ));
        out.push('\n');
    }
    let line = "Grüße \\\"quoted\\\" \\\\ € 𝄞 \\r\\n";
    for (n, size) in data.bodies.iter().enumerate() {
        let body = line.repeat(size / line.len() + 1);
        out.push_str(&format!(
            r#"{{"kind":"message","account":1,"id":"m{n}","profile":42,"subprofile":null,"email":"jane@example.com","mailing":"7","subject":"Mail {n}","sent":"2025-10-01 07:{:02}:00","mime":"Subject: {n}\r\n\r\n{body}"}}"#,
            n % 60
        ));
        out.push('\n');
    }
    let kinds = ["delivery", "impression", "click", "error"];
    for (n, (kind, minute)) in data.events.iter().enumerate() {
        out.push_str(&format!(
            r#"{{"kind":"event","account":1,"type":"{}","message":"m0","profile":42,"subprofile":null,"email":"jane@example.com","time":"2025-10-02 08:{:02}:00","data":{{"n":{n}}}}}"#,
            kinds[kind % kinds.len()],
            minute % 60
        ));
        out.push('\n');
    }
    out
}

fn sources(data: &Data, account: AccountId, subject: &Subject) -> MemorySources {
    let sources = MemorySources::default();
    let sections = ["profile", "subprofiles", "destinations", "clicks", "subscriptions"];
    let columns: Arc<[String]> = vec!["n".to_owned(), "text".to_owned()].into();
    for (section, n) in &data.rows {
        let values = vec![serde_json::json!(n).into(), serde_json::json!(format!("row {n} <b>&</b>")).into()];
        let row = SourceRow { source: "shop".into(), columns: Arc::clone(&columns), values };
        sources.add(account, subject.clone(), sections[section % sections.len()], row);
    }
    sources
}

/// How one run of the build goes: checkpoints every `every` bytes; stops at its first
/// checkpoint when `stop`; killed at its `kill`-th checkpoint when set.
#[derive(Debug, Clone, Copy)]
struct Run {
    every: u64,
    stop: bool,
    kill: Option<usize>,
}

fn data() -> impl Strategy<Value = Data> {
    (
        0usize..5,
        proptest::collection::vec(prop_oneof![0usize..400, 1_000usize..6_000, Just(140_000usize)], 0..7),
        proptest::collection::vec((0usize..4, 0u32..60), 0..12),
        proptest::collection::vec((0usize..5, 0u32..1_000), 0..6),
    )
        .prop_map(|(subprofiles, bodies, events, rows)| Data { subprofiles, bodies, events, rows })
}

fn runs() -> impl Strategy<Value = Vec<Run>> {
    let run = (1u64..20_000, any::<bool>(), proptest::option::of(1usize..4)).prop_map(|(every, stop, kill)| Run {
        every,
        stop,
        kill,
    });
    proptest::collection::vec(run, 1..6)
}

struct Stores {
    subjects: Box<dyn SubjectData>,
    exports: Box<dyn ExportStore>,
    reference: Box<dyn ExportStore>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Stores {
    Stores {
        subjects: Box::new(MemorySubjects::default()),
        exports: Box::new(MemoryExports::default()),
        reference: Box::new(MemoryExports::default()),
        _dir: None,
    }
}

fn sqlite() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    Stores {
        subjects: Box::new(SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap()),
        exports: Box::new(FolderExports::new(dir.path().join("exports")).unwrap()),
        reference: Box::new(FolderExports::new(dir.path().join("reference")).unwrap()),
        _dir: Some(dir),
    }
}

fn build_of<'a>(
    stores: &'a Stores,
    sources: &'a MemorySources,
    requests: &'a dyn RequestStore,
    clock: &'a FakeClock,
    ttl: Duration,
) -> BuildInputs<'a> {
    BuildInputs {
        subjects: &*stores.subjects,
        sources,
        requests,
        exports: &*stores.exports,
        clock,
        ttl,
        not_before: None,
    }
}

async fn read(store: &dyn ExportStore, id: RequestId, format: ExportFormat) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut file = store.open(id, format).await.unwrap().expect("the file is complete");
    let mut bytes = Vec::new();
    file.reader.read_to_end(&mut bytes).await.unwrap();
    bytes
}

/// Builds the export once uninterrupted and once run by run as `plan` says (then without
/// interruptions until the build is complete); returns both files of each, and how many runs
/// it took.
async fn build_both(stores: &Stores, data: &Data, plan: &[Run]) -> ([Vec<u8>; 2], [Vec<u8>; 2], u32) {
    let account = AccountId::try_from(1).unwrap();
    let subject = Subject::Profile(ProfileId::try_from(42).unwrap());
    stores.subjects.load(&parse_records(&lines(data)).unwrap()).await.unwrap();
    let sources = sources(data, account, &subject);
    let clock = FakeClock::at(Timestamp::from_unix(1_750_000_000));
    let ttl = Duration::from_secs(7 * 86_400);
    let id = RequestId::random();
    let created = Timestamp::from_unix(1_700_000_000);
    let request = DataRequest::accepted(id, account, subject, None, created);

    let requests = Killing::default();
    requests.insert(&request).await.unwrap();
    let writer = stores.reference.create(id, ExportFormat::Json).await.unwrap();
    let html =
        HtmlOutput { writer: stores.reference.create(id, ExportFormat::Html).await.unwrap(), clock: &clock, ttl };
    export::write_export_and_report(&*stores.subjects, &sources, &requests, &request, writer, html, None)
        .await
        .unwrap();

    let build = build_of(stores, &sources, &requests, &clock, ttl);
    let mut runs = 0u32;
    loop {
        let now = created.plus_seconds(100 * i64::from(runs));
        let lease = now.plus_seconds(60);
        assert!(requests.update(id, &Transition::StartBuild { now, lease_until: lease }).await.unwrap());
        let stored = requests.get(id).await.unwrap().unwrap();
        let run = plan.get(runs as usize).copied().unwrap_or(Run { every: u64::MAX, stop: false, kill: None });
        runs += 1;
        requests.kill_at_checkpoint(run.kill.unwrap_or(0));
        let held = AtomicI64::new(lease.unix());
        let checkpoints = Checkpoints { every: run.every, stop_at: run.stop.then(Instant::now), lease: &held };
        match export::build(&build, &stored, checkpoints).await {
            Ok(Outcome::Complete(written, _)) => {
                // A killed run's checkpoints may never have been recorded: it cannot count.
                let killed = plan.iter().any(|run| run.kill.is_some());
                assert!(written.runs <= runs && (killed || written.runs == runs), "{} of {runs} runs", written.runs);
                break;
            }
            Ok(Outcome::Suspended) => assert!(run.stop, "only a run told to stop stops"),
            Err(error) => assert!(run.kill.is_some(), "only a killed run fails: {error:#}"),
        }
        assert!(runs as usize <= plan.len(), "an uninterrupted run completes the build");
        let stored = requests.get(id).await.unwrap().unwrap();
        assert_eq!(stored.state, State::Building);
    }
    let expected = [
        read(&*stores.reference, id, ExportFormat::Json).await,
        read(&*stores.reference, id, ExportFormat::Html).await,
    ];
    let got =
        [read(&*stores.exports, id, ExportFormat::Json).await, read(&*stores.exports, id, ExportFormat::Html).await];
    (expected, got, runs)
}

fn check(stores: &Stores, data: &Data, plan: &[Run]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (expected, got, runs) = runtime.block_on(build_both(stores, data, plan));
    prop_assert!(got[0] == expected[0], "the JSON differs after {} runs", runs);
    prop_assert!(got[1] == expected[1], "the HTML report differs after {} runs", runs);
    // A first run told to stop stops at its first checkpoint, which comes within `every`
    // bytes of records: a larger export takes more than one run.
    if plan[0].stop && plan[0].kill.is_none() && expected[0].len() as u64 > 2 * plan[0].every + 4_096 {
        prop_assert!(runs > 1, "a stopped build took one run");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_build_resumed_from_its_checkpoints_writes_the_same_bytes_in_memory(data in data(), plan in runs()) {
        check(&memory(), &data, &plan)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn a_build_resumed_from_its_checkpoints_writes_the_same_bytes_on_sqlite_and_files(data in data(), plan in runs()) {
        check(&sqlite(), &data, &plan)?;
    }
}

/// A subprofile's export resumes too (its only store record is the subprofile itself).
#[test]
fn a_subprofile_build_resumes_after_every_record() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let stores = memory();
        let data = Data { subprofiles: 2, bodies: vec![10, 20], events: vec![(0, 1)], rows: vec![] };
        stores.subjects.load(&parse_records(&lines(&data)).unwrap()).await.unwrap();
        let account = AccountId::try_from(1).unwrap();
        let subject = Subject::Subprofile(SubprofileId::try_from(4201).unwrap());
        let request = DataRequest::accepted(RequestId::random(), account, subject, None, Timestamp::from_unix(1));
        let requests = MemoryRequests::default();
        requests.insert(&request).await.unwrap();
        let clock = FakeClock::at(Timestamp::from_unix(1_750_000_000));
        let sources = MemorySources::default();
        let build = build_of(&stores, &sources, &requests, &clock, Duration::from_secs(60));
        let mut runs = 0;
        loop {
            runs += 1;
            let now = Timestamp::from_unix(100 * runs);
            let lease_until = now.plus_seconds(60);
            assert!(requests.update(request.id, &Transition::StartBuild { now, lease_until }).await.unwrap());
            let stored = requests.get(request.id).await.unwrap().unwrap();
            let held = AtomicI64::new(lease_until.unix());
            let checkpoints = Checkpoints { every: 1, stop_at: Some(Instant::now()), lease: &held };
            if let Outcome::Complete(written, _) = export::build(&build, &stored, checkpoints).await.unwrap() {
                assert_eq!(written.sections.iter().map(|(_, n)| n).sum::<u64>(), 1, "the subprofile alone");
                break;
            }
        }
        assert_eq!(runs, 3, "one run per record, then one with the time to complete the files");
    });
}

/// Exports in memory whose writers say completing a file takes an hour.
#[derive(Default)]
struct SlowToComplete(MemoryExports);

struct SlowWriter(Box<dyn ExportWriter>);

#[async_trait]
impl ExportWriter for SlowWriter {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.0.write(bytes).await
    }

    async fn checkpoint(&mut self) -> Result<String, WriteError> {
        self.0.checkpoint().await
    }

    fn finish_cost(&self) -> Duration {
        Duration::from_secs(3_600)
    }

    async fn discard(self: Box<Self>) -> Result<(), WriteError> {
        self.0.discard().await
    }

    async fn finish(self: Box<Self>) -> Result<u64, WriteError> {
        self.0.finish().await
    }
}

#[async_trait]
impl ExportStore for SlowToComplete {
    async fn create(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Box<dyn ExportWriter>> {
        Ok(Box::new(SlowWriter(self.0.create(id, format).await?)))
    }

    async fn resume(&self, id: RequestId, format: ExportFormat, at: &str) -> Result<Box<dyn ExportWriter>, WriteError> {
        Ok(Box::new(SlowWriter(self.0.resume(id, format, at).await?)))
    }

    async fn open(&self, id: RequestId, format: ExportFormat) -> anyhow::Result<Option<ExportFile>> {
        self.0.open(id, format).await
    }

    async fn serve(&self, id: RequestId, format: ExportFormat, ttl: Duration) -> anyhow::Result<Option<Served>> {
        self.0.serve(id, format, ttl).await
    }

    async fn delete(&self, id: RequestId) -> anyhow::Result<()> {
        self.0.delete(id).await
    }

    async fn discard(&self, id: RequestId, format: ExportFormat, checkpoint: &str) -> anyhow::Result<()> {
        self.0.discard(id, format, checkpoint).await
    }
}

/// A run whose time left cannot hold the completion of its files writes every record, takes a
/// checkpoint after the last section and stops; the continuation only completes the files,
/// whatever its own time left, and they are byte for byte an uninterrupted build's.
#[test]
fn a_run_without_the_time_to_complete_its_files_leaves_that_to_a_continuation() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let stores = Stores {
            subjects: Box::new(MemorySubjects::default()),
            exports: Box::new(SlowToComplete::default()),
            reference: Box::new(MemoryExports::default()),
            _dir: None,
        };
        let data = Data { subprofiles: 2, bodies: vec![10, 140_000], events: vec![(0, 1), (2, 3)], rows: vec![(1, 7)] };
        stores.subjects.load(&parse_records(&lines(&data)).unwrap()).await.unwrap();
        let account = AccountId::try_from(1).unwrap();
        let subject = Subject::Profile(ProfileId::try_from(42).unwrap());
        let sources = sources(&data, account, &subject);
        let request = DataRequest::accepted(RequestId::random(), account, subject, None, Timestamp::from_unix(1));
        let requests = MemoryRequests::default();
        requests.insert(&request).await.unwrap();
        let clock = FakeClock::at(Timestamp::from_unix(1_750_000_000));
        let ttl = Duration::from_secs(60);
        let writer = stores.reference.create(request.id, ExportFormat::Json).await.unwrap();
        let html = HtmlOutput {
            writer: stores.reference.create(request.id, ExportFormat::Html).await.unwrap(),
            clock: &clock,
            ttl,
        };
        export::write_export_and_report(&*stores.subjects, &sources, &requests, &request, writer, html, None)
            .await
            .unwrap();

        let build = build_of(&stores, &sources, &requests, &clock, ttl);
        let mut outcomes = Vec::new();
        for run in 1..=3 {
            let now = Timestamp::from_unix(100 * run);
            let lease_until = now.plus_seconds(60);
            assert!(requests.update(request.id, &Transition::StartBuild { now, lease_until }).await.unwrap());
            let stored = requests.get(request.id).await.unwrap().unwrap();
            let held = AtomicI64::new(lease_until.unix());
            // Ten minutes: plenty for the records, not for the hour the completion would take.
            let stop_at = Some(Instant::now() + Duration::from_secs(600));
            let checkpoints = Checkpoints { every: u64::MAX, stop_at, lease: &held };
            let outcome = export::build(&build, &stored, checkpoints).await.unwrap();
            let complete = matches!(outcome, Outcome::Complete(..));
            outcomes.push(complete);
            if complete {
                break;
            }
            assert!(
                stores.exports.open(request.id, ExportFormat::Json).await.unwrap().is_none(),
                "a suspended build has published nothing"
            );
        }
        assert_eq!(outcomes, [false, true], "the first run stops before completing, the second completes");
        for format in [ExportFormat::Json, ExportFormat::Html] {
            assert!(
                read(&*stores.exports, request.id, format).await == read(&*stores.reference, request.id, format).await,
                "{format:?} differs"
            );
        }
    });
}
