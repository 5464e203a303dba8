//! Writes the export file of a request as a stream: records are read a page at a time and
//! serialised into a small buffer that is flushed to the export store, so memory stays flat
//! however large the subject's history is. The output is deterministic for the same data. The
//! builder writes the HTML report ([`html`]) in the same pass, from the same records. Each
//! section holds the subject store's records first, then the rows of the sources (the
//! platform's own databases) in the mapping's order, written as they come. A large MIME body
//! is never held whole: the store streams it when the writer reaches its message, and it goes
//! into the JSON chunk by chunk ([`json_string`]), and into the report up to
//! [`html::SHOWN_MIME`]. With [`build`] the writer keeps checkpoints in the request record (where
//! each section stands, the report's state, both files' writer checkpoints) and goes on from
//! the last one, so a build stopped at its deadline or killed continues instead of starting
//! again, and writes the same bytes.

mod checkpoint;
mod error;
mod escape;
pub mod html;
mod json_string;
mod mime;
mod records;
mod sink;

use anyhow::Context;

use crate::domain::{DataRequest, Event, EventKind, Message, Subject, Timestamp};
use crate::ports::{
    Clock, ExportFormat, ExportStore, ExportWriter, NoSources, RequestStore, SubjectData, SubjectSources,
};
use checkpoint::{CheckpointState, Position, resume};
pub use checkpoint::{Checkpoints, time_is_up};
pub use error::BuildError;
use error::Stop;
use html::{Expiry, HtmlReport};
use records::{event_out, profile_out, subprofile_out};
pub use sink::HtmlOutput;
use sink::{FLUSH_AT, HtmlSink, NoWriter, Sink, from_sources, write_pages};

/// What an export holds: its size, and the records of each section, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes.
    pub bytes: u64,
    /// Each section's name and record count.
    pub sections: Vec<(&'static str, u64)>,
    /// How many runs the build took (1 when it was never stopped or taken over at a
    /// checkpoint).
    pub runs: u32,
}

/// The HTML report as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HtmlWritten {
    /// Bytes.
    pub bytes: u64,
    /// The expiry the page states (the end of the build plus the time to keep): the one to
    /// store for the request.
    pub expires: Timestamp,
}

/// Writes the export of a request from the subject store alone to `writer` and completes it.
/// Messages sent and events that happened before `not_before` (the subject-data retention)
/// are left out, even while the store still holds them.
///
/// # Errors
/// When the subject data or the export store fails; the writer is dropped unfinished, so no
/// partial export becomes visible.
pub async fn write_export(
    subjects: &dyn SubjectData,
    requests: &dyn RequestStore,
    request: &DataRequest,
    writer: Box<dyn ExportWriter>,
    not_before: Option<Timestamp>,
) -> anyhow::Result<Written> {
    let parts = Parts { subjects, sources: &NoSources, requests, request, not_before };
    match write(parts, Start::Fresh(writer, None), None).await.map_err(BuildError::into_anyhow)? {
        BuildOutcome::Complete(written, _) => Ok(written),
        BuildOutcome::Suspended => anyhow::bail!("a build without a deadline stopped"),
    }
}

/// Writes the export of a request from the subject store and the sources to `writer` and, in
/// the same pass over the same records, its HTML report to `html`; completes both. Otherwise as
/// [`write_export`]; the retention applies to the store's records, not to the sources'.
///
/// # Errors
/// As [`write_export`], and when a source cannot be read to its end: no export is ever
/// complete with a source missing. The report is completed before the JSON, so a complete
/// JSON export always has its report.
pub async fn write_export_and_report(
    subjects: &dyn SubjectData,
    sources: &dyn SubjectSources,
    requests: &dyn RequestStore,
    request: &DataRequest,
    writer: Box<dyn ExportWriter>,
    html: HtmlOutput<'_>,
    not_before: Option<Timestamp>,
) -> anyhow::Result<(Written, HtmlWritten)> {
    let parts = Parts { subjects, sources, requests, request, not_before };
    match write(parts, Start::Fresh(writer, Some(html)), None).await.map_err(BuildError::into_anyhow)? {
        BuildOutcome::Complete(written, Some(report)) => Ok((written, report)),
        BuildOutcome::Complete(_, None) => anyhow::bail!("the HTML report was not written"),
        BuildOutcome::Suspended => anyhow::bail!("a build without a deadline stopped"),
    }
}

/// How a build run ended.
#[derive(Debug)]
pub enum BuildOutcome {
    /// Both files are complete.
    Complete(Written, Option<HtmlWritten>),
    /// The run stopped at a checkpoint before its deadline; a continuation goes on from it.
    Suspended,
}

/// What one build reads and where it keeps its files and its record.
pub struct BuildInputs<'a> {
    /// The subject store.
    pub subjects: &'a dyn SubjectData,
    /// The platform's own databases.
    pub sources: &'a dyn SubjectSources,
    /// The request records (progress and checkpoints).
    pub requests: &'a dyn RequestStore,
    /// Where the files go.
    pub exports: &'a dyn ExportStore,
    /// The clock that dates the report.
    pub clock: &'a dyn Clock,
    /// How long the files are kept after the build.
    pub ttl: std::time::Duration,
    /// The subject-data retention: older messages and events are left out.
    pub not_before: Option<Timestamp>,
}

/// Builds the export of a request and its HTML report, going on from the request's checkpoint
/// when it has one, and keeping checkpoints as [`Checkpoints`] says: the files are byte for
/// byte those an uninterrupted build writes from the same data. A checkpoint whose files are
/// gone (kept a day at most) is given up: the build starts again from its first byte.
///
/// # Errors
/// As [`write_export_and_report`]: [`BuildError::Source`] when a source failed,
/// [`BuildError::LeaseLost`] when another builder took the build over,
/// [`BuildError::Withdrawn`] when the request was cancelled or erased meanwhile (its unfinished
/// files are discarded), and [`BuildError::CheckpointGone`] when the files of a build started
/// afresh are gone as well.
pub async fn build(
    build: &BuildInputs<'_>,
    request: &DataRequest,
    checkpoints: Checkpoints<'_>,
) -> Result<BuildOutcome, BuildError> {
    let parts = Parts {
        subjects: build.subjects,
        sources: build.sources,
        requests: build.requests,
        request,
        not_before: build.not_before,
    };
    let html_output = |writer| HtmlOutput { writer, clock: build.clock, ttl: build.ttl };
    if let Some(text) = &request.checkpoint {
        let sections = build.sources.sections(request.subject.kind());
        match resume(build.exports, request, &sections, text).await {
            Ok((state, json, html)) => {
                let html = html.map(|(writer, report)| (html_output(writer), report));
                match write(parts, Start::Resumed(state, json, html), Some(checkpoints)).await {
                    Err(BuildError::CheckpointGone) => {
                        tracing::warn!("the checkpoint's files are gone; building again");
                    }
                    done => return done,
                }
            }
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "the checkpoint could not be resumed; building again");
            }
        }
        // A file a killed run completed (without recording so) goes: it is written again.
        build.exports.delete(request.id).await.context("removing the files of a build given up")?;
    }
    let json = build.exports.create(request.id, ExportFormat::Json).await.context("starting the export")?;
    let html = build.exports.create(request.id, ExportFormat::Html).await.context("starting the HTML report")?;
    write(parts, Start::Fresh(json, Some(html_output(html))), Some(checkpoints)).await
}

/// The writers' checkpoints (store-specific text) in a build's checkpoint: the unfinished
/// files it still needs. Empty when the text is not a build checkpoint.
#[must_use]
pub fn writer_checkpoints(checkpoint: &str) -> Vec<String> {
    match serde_json::from_str::<CheckpointState>(checkpoint) {
        Ok(state) => std::iter::once(state.json).chain(state.html.map(|(writer, _)| writer)).collect(),
        Err(_) => Vec::new(),
    }
}

/// What a build reads.
#[derive(Clone, Copy)]
struct Parts<'a> {
    subjects: &'a dyn SubjectData,
    sources: &'a dyn SubjectSources,
    requests: &'a dyn RequestStore,
    request: &'a DataRequest,
    not_before: Option<Timestamp>,
}

/// How a build run starts: with new files, or from a checkpoint.
enum Start<'a> {
    Fresh(Box<dyn ExportWriter>, Option<HtmlOutput<'a>>),
    Resumed(Box<CheckpointState>, Box<dyn ExportWriter>, Option<(HtmlOutput<'a>, Box<HtmlReport>)>),
}

async fn write(
    parts: Parts<'_>,
    start: Start<'_>,
    checkpoints: Option<Checkpoints<'_>>,
) -> Result<BuildOutcome, BuildError> {
    let Parts { subjects, sources, requests, request, not_before } = parts;
    let kept = |time: Timestamp| not_before.is_none_or(|limit| time >= limit);
    let names = sources.sections(request.subject.kind());
    let every = checkpoints.as_ref().map_or(u64::MAX, |plan| plan.every);
    let mut sink = Sink {
        subjects,
        writer: Box::new(NoWriter),
        buffer: Vec::with_capacity(FLUSH_AT + 64 * 1024),
        written: 0,
        reported: 0,
        reported_at: None,
        requests,
        id: request.id,
        names: names.clone(),
        counts: Vec::with_capacity(names.len()),
        html: None,
        at: Position::default(),
        checkpoints,
        next_checkpoint: every,
        due: false,
        pace: sink::Pace::default(),
        runs: 1,
    };
    let account = request.account;
    let subject = &request.subject;
    // Every source's snapshot starts now, before the first record is written.
    let mut read = sources.read(account, subject).await?;
    let resumed = match start {
        Start::Fresh(writer, html) => {
            sink.writer = writer;
            sink.html = html.map(|out| HtmlSink::new(out, HtmlReport::start(request.id, subject)));
            sink.buffer.extend_from_slice(b"{\"info\":");
            let info = serde_json::json!({"type": subject.kind().as_str(), "id": subject.info_id()});
            serde_json::to_writer(&mut sink.buffer, &info)?;
            sink.buffer.extend_from_slice(b",\"data\":[");
            false
        }
        Start::Resumed(state, writer, html) => {
            // A checkpoint is taken within a section, or after the last one (the files left
            // to complete).
            let within = state.at.section < names.len() && state.counts.len() == state.at.section + 1;
            let at_end = state.at == Position::ended(names.len()) && state.counts.len() == names.len();
            if !(within || at_end) {
                return Err(anyhow::anyhow!("the checkpoint does not fit this export").into());
            }
            sink.writer = writer;
            sink.html = html.map(|(out, report)| HtmlSink::new(out, *report));
            (sink.written, sink.reported) = (state.written, state.written);
            sink.next_checkpoint = state.written.saturating_add(every);
            sink.counts = names.iter().copied().zip(state.counts).collect();
            sink.runs = state.runs + 1;
            // The sources are read again from a new snapshot: their rows of the sections
            // already written are passed over.
            for name in &names[..state.at.section] {
                while read.next(name).await?.is_some() {}
            }
            sink.at = state.at;
            true
        }
    };
    let first = sink.at.section;
    let result = async {
        for (index, &name) in names.iter().enumerate().skip(first) {
            if !(resumed && index == first) {
                sink.open_section(index);
            }
            match (name, subject) {
                ("profile", Subject::Profile(id)) if !sink.at.store_done => {
                    if let Some(profile) = subjects.profile(account, *id).await? {
                        sink.item(&profile, &profile_out(&profile)).await?;
                    }
                    sink.single_written().await?;
                }
                ("subprofiles", Subject::Profile(id)) => {
                    write_pages!(sink, |c| subjects.subprofiles(account, *id, c), |_| true, subprofile_out);
                }
                ("subprofiles", Subject::Subprofile(id)) if !sink.at.store_done => {
                    if let Some(subprofile) = subjects.subprofile(account, *id).await? {
                        sink.item(&subprofile, &subprofile_out(&subprofile)).await?;
                    }
                    sink.single_written().await?;
                }
                ("destinations", _) => {
                    write_pages!(
                        sink,
                        |c| subjects.messages(account, subject, c),
                        |m: &Message<_>| kept(m.sent),
                        |s, m| s.message(m)
                    );
                }
                _ => {
                    if let Some(kind) = EventKind::ALL.into_iter().find(|kind| kind.section() == name) {
                        write_pages!(
                            sink,
                            stream(|first| subjects.event_pages(account, subject, kind, first)),
                            |e: &Event| kept(e.time),
                            event_out
                        );
                    }
                }
            }
            from_sources(&mut sink, &mut *read, name).await?;
            sink.close_section().await?;
        }
        Ok::<(), Stop>(())
    }
    .await;
    match result {
        Ok(()) => {}
        Err(Stop::Suspended) => return Ok(BuildOutcome::Suspended),
        Err(Stop::Failed(BuildError::Withdrawn)) => {
            sink.discard().await?;
            return Err(BuildError::Withdrawn);
        }
        Err(Stop::Failed(error)) => return Err(error),
    }
    // Every source must have ended its read cleanly before the export may complete.
    read.finish().await?;
    // Completing the files is the last step, and not always a short one (S3 assembles the
    // parts): when the time left cannot hold it, a continuation does it. A run that went on
    // from such a checkpoint completes them whatever its time, or no run ever would.
    if first < names.len() && !sink.can_finish_in_time() {
        sink.at = Position::ended(names.len());
        match sink.checkpoint(true).await {
            Ok(()) => {}
            Err(Stop::Suspended) => return Ok(BuildOutcome::Suspended),
            Err(Stop::Failed(error)) => return Err(error),
        }
    }
    sink.buffer.extend_from_slice(b"]}");
    sink.flush().await?;
    let report = match sink.html.take() {
        Some(mut html) => {
            // The summary is written last, when the counts are known; the page shows it first.
            let built = html.clock.now();
            let expires = built.plus_seconds(i64::try_from(html.ttl.as_secs()).unwrap_or(i64::MAX));
            html.settle().await?;
            html.report.finish(built, Some(Expiry { at: expires, after: html.ttl }));
            html.flush().await?;
            Some(HtmlWritten { bytes: html.writer.finish().await?, expires })
        }
        None => None,
    };
    let size = sink.writer.finish().await?;
    debug_assert_eq!(size, sink.written);
    Ok(BuildOutcome::Complete(Written { bytes: size, sections: sink.counts, runs: sink.runs }, report))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use serde::Serialize;

    use std::sync::atomic::AtomicI64;

    use super::sink::BATCH;
    use super::*;
    use crate::adapters::memory::{FakeClock, MemoryExports, MemoryRequests, MemorySubjects};
    use crate::domain::{AccountId, EmailAddress, Record, RequestId, Transition};
    use crate::ports::{ExportFormat, ExportStore};

    /// A destination as the writer wrote it before bodies were streamed: the whole record
    /// through serde_json. Exports must stay byte for byte the same.
    #[derive(Serialize)]
    struct WholeDestination<'a> {
        #[serde(rename = "ID")]
        id: &'a str,
        mailing: &'a str,
        subject: &'a str,
        timestampsent: Timestamp,
        profile: Option<String>,
        subprofile: Option<String>,
        email: &'a str,
        mime: &'a str,
    }

    fn message(n: usize, mime: String) -> Message {
        Message {
            account: AccountId::try_from(1).unwrap(),
            id: format!("m-{n}"),
            profile: None,
            subprofile: None,
            email: "Jane@Example.com".into(),
            mailing: "7".into(),
            subject: format!("Mail \"{n}\""),
            sent: Timestamp::from_unix(1_700_000_000 + i64::try_from(n).unwrap()),
            mime,
        }
    }

    /// Bodies of every size around the stores' limits, rich in what JSON escapes.
    fn bodies() -> Vec<String> {
        let line = "Grüße \"quoted\" back\\slash\ttab € 𝄞 \u{1}\r\n";
        [0, 1, 5, 200, 5_000, 140_000, (1 << 20) + 3_000]
            .into_iter()
            .map(|bytes| format!("Subject: x\r\n\r\n{}", line.repeat(bytes / line.len() + 1)))
            .collect()
    }

    async fn exported(messages: &[Message]) -> (Vec<u8>, String) {
        let store = MemorySubjects::default();
        store.load(&messages.iter().cloned().map(Record::Message).collect::<Vec<_>>()).await.unwrap();
        let subject = Subject::Email(EmailAddress::parse("jane@example.com").unwrap());
        let request = DataRequest::accepted(
            RequestId::random(),
            AccountId::try_from(1).unwrap(),
            subject,
            None,
            Timestamp::now(),
        );
        let (requests, files) = (MemoryRequests::default(), MemoryExports::default());
        let clock = FakeClock::at(Timestamp::from_unix(1_750_000_000));
        let html = HtmlOutput {
            writer: files.create(request.id, ExportFormat::Html).await.unwrap(),
            clock: &clock,
            ttl: std::time::Duration::from_secs(86_400),
        };
        let writer = files.create(request.id, ExportFormat::Json).await.unwrap();
        write_export_and_report(&store, &NoSources, &requests, &request, writer, html, None).await.unwrap();
        let report = String::from_utf8(files.bytes_of(request.id, ExportFormat::Html).unwrap()).unwrap();
        (files.bytes(request.id).unwrap(), report)
    }

    #[tokio::test]
    async fn streamed_bodies_export_byte_for_byte_as_serde_json_writes_whole_records() {
        let messages: Vec<Message> = bodies().into_iter().enumerate().map(|(n, mime)| message(n, mime)).collect();
        let (json, _) = exported(&messages).await;

        let mut expected = br#"{"info":{"id":"jane@example.com","type":"email"},"data":[["destinations""#.to_vec();
        for m in &messages {
            expected.push(b',');
            let whole = WholeDestination {
                id: &m.id,
                mailing: &m.mailing,
                subject: &m.subject,
                timestampsent: m.sent,
                profile: None,
                subprofile: None,
                email: &m.email,
                mime: &m.mime,
            };
            serde_json::to_writer(&mut expected, &whole).unwrap();
        }
        expected.push(b']');
        for kind in EventKind::ALL {
            expected.extend_from_slice(format!(",[\"{}\"]", kind.section()).as_bytes());
        }
        expected.extend_from_slice(b"]}");
        let differs = json.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(json.len().min(expected.len()));
        assert!(
            json == expected,
            "the export differs from serde_json's at byte {differs}: {:?} instead of {:?}",
            String::from_utf8_lossy(&json[differs.saturating_sub(40)..(differs + 40).min(json.len())]),
            String::from_utf8_lossy(&expected[differs.saturating_sub(40)..(differs + 40).min(expected.len())]),
        );
    }

    #[tokio::test]
    async fn the_report_shows_a_large_message_from_its_first_mib_and_says_so() {
        let text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n";
        let large = format!(
            "Subject: Large\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nFIRST LINE\r\n{}LAST LINE\r\n",
            text.repeat((3 << 20) / text.len())
        );
        let small = "Subject: Small\r\nContent-Type: text/plain\r\n\r\nSMALL BODY\r\n".to_owned();
        let (json, report) = exported(&[message(1, large.clone()), message(2, small)]).await;

        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed["data"][0][1]["mime"].as_str(), Some(large.as_str()), "the JSON holds it whole");
        assert!(report.contains("FIRST LINE") && !report.contains("LAST LINE"), "the page shows the first MiB");
        assert_eq!(report.matches("This message is larger than shown").count(), 1, "only the large one is cut");
        assert!(report.contains("SMALL BODY"));
        assert!(report.len() < 2 << 20, "the page stays small: {} bytes", report.len());
        // Articles are written straight to the file, after what the page had pending: they
        // come under their section's heading, in order, and before the next section.
        let at = |text: &str| report.find(text).unwrap_or_else(|| panic!("{text} is in the page"));
        assert!(at("Messages sent") < at("FIRST LINE") && at("FIRST LINE") < at("SMALL BODY"));
        assert!(at("SMALL BODY") < at("<section id=\"impressions\""), "the next section follows the articles");
    }

    #[tokio::test]
    async fn every_article_is_in_the_report_once_and_in_order_across_batches() {
        // Twelve sources of 100 KB: several batches, so each buffer is rendered into again.
        let filler = "<p>Plain & \"quoted\" text</p>\r\n".repeat(100_000 / 32);
        let messages: Vec<Message> = (0..12)
            .map(|n| message(n, format!("Subject: x\r\nContent-Type: text/html\r\n\r\nMARK-{n:02}-\r\n{filler}")))
            .collect();
        assert!(messages.iter().map(|m| m.mime.len()).sum::<usize>() > 4 * BATCH);
        let (_, report) = exported(&messages).await;

        let marks: Vec<&str> = report.match_indices("MARK-").map(|(at, _)| &report[at..at + 7]).collect();
        let expected: Vec<String> = (0..12).map(|n| format!("MARK-{n:02}")).collect();
        assert_eq!(marks, expected, "each article once, in send order");
        assert_eq!(report.matches("Plain &amp; &quot;quoted&quot; text").count(), 12 * (100_000 / 32));
    }

    /// A store with three mails to an address, and a request for that address.
    async fn three_mails() -> (MemorySubjects, DataRequest) {
        let store = MemorySubjects::default();
        let messages: Vec<Record> =
            (0..3).map(|n| Record::Message(message(n, "Subject: x\r\n\r\nbody".into()))).collect();
        store.load(&messages).await.unwrap();
        let subject = Subject::Email(EmailAddress::parse("jane@example.com").unwrap());
        let id = RequestId::random();
        (store, DataRequest::accepted(id, AccountId::try_from(1).unwrap(), subject, None, Timestamp::now()))
    }

    fn inputs<'a>(
        store: &'a MemorySubjects,
        requests: &'a MemoryRequests,
        files: &'a MemoryExports,
        clock: &'a FakeClock,
    ) -> BuildInputs<'a> {
        let ttl = std::time::Duration::from_secs(86_400);
        BuildInputs { subjects: store, sources: &NoSources, requests, exports: files, clock, ttl, not_before: None }
    }

    #[tokio::test]
    async fn a_checkpoint_the_request_record_refuses_is_a_lost_lease() {
        let (store, request) = three_mails().await;
        // Another builder holds the request: no checkpoint of this one can be recorded.
        let (requests, files) = (MemoryRequests::default(), MemoryExports::default());
        requests.insert(&request).await.unwrap();
        let other = Transition::StartBuild { now: Timestamp::now(), lease_until: Timestamp::from_unix(1_750_000_000) };
        assert!(requests.update(request.id, &other).await.unwrap());
        let clock = FakeClock::at(Timestamp::from_unix(1_750_000_000));
        let inputs = inputs(&store, &requests, &files, &clock);
        let lease = AtomicI64::new(1_750_000_600);
        let checkpoints = Checkpoints { every: 1, stop_at: None, lease: &lease };
        let outcome = build(&inputs, &request, checkpoints).await;
        assert!(matches!(outcome, Err(BuildError::LeaseLost)), "{outcome:?}");
        assert!(files.bytes(request.id).is_none(), "nothing is published");
    }

    #[tokio::test]
    async fn a_request_withdrawn_before_a_page_stops_the_build_and_its_files_go() {
        let (store, request) = three_mails().await;
        let (requests, files) = (MemoryRequests::default(), MemoryExports::default());
        requests.insert(&request).await.unwrap();
        let lease_until = Timestamp::from_unix(1_750_000_600);
        assert!(
            requests.update(request.id, &Transition::StartBuild { now: Timestamp::now(), lease_until }).await.unwrap()
        );
        assert!(requests.update(request.id, &Transition::Cancel).await.unwrap());
        let clock = FakeClock::at(Timestamp::from_unix(1_750_000_000));
        let inputs = inputs(&store, &requests, &files, &clock);
        let lease = AtomicI64::new(lease_until.unix());
        let checkpoints = Checkpoints { every: 1, stop_at: None, lease: &lease };
        let outcome = build(&inputs, &request, checkpoints).await;
        assert!(matches!(outcome, Err(BuildError::Withdrawn)), "{outcome:?}");
        assert!(files.bytes(request.id).is_none(), "nothing is published");
        assert_eq!(files.unfinished(request.id), 0, "nothing unfinished is kept");
    }
}
