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

mod escape;
pub mod html;
mod json_string;
mod mime;

use anyhow::Context;
use futures_util::TryStreamExt;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{
    DataRequest, Event, EventKind, Message, Mime, Profile, RequestId, Subject, Subprofile, Timestamp, Transition,
};
use crate::ports::{
    Clock, ExportFormat, ExportStore, ExportWriter, NoSources, Page, RequestStore, SourceReader, SourceRow,
    SubjectData, SubjectSources, UnfinishedGone, paged,
};
use html::{Expiry, HtmlReport, RenderedMessages};
use json_string::JsonString;

/// Bytes buffered before a part is handed to the store.
const FLUSH_AT: usize = 256 * 1024;
/// Bytes written between two updates of `available`.
const PROGRESS_EVERY: u64 = 1024 * 1024;
/// Time between two updates of `available` after the first. Each update is a store write that
/// waits for the store, so a fast build reports a few times a second, not every megabyte.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Serialize)]
struct ProfileOut<'a> {
    #[serde(rename = "ID")]
    id: String,
    fields: &'a Map<String, Value>,
    interests: &'a [String],
    database: String,
    email: &'a Option<String>,
    created: Timestamp,
    modified: Timestamp,
}

#[derive(Serialize)]
struct SubprofileOut<'a> {
    #[serde(rename = "ID")]
    id: String,
    profile: String,
    collection: String,
    email: &'a Option<String>,
    fields: &'a Map<String, Value>,
    created: Timestamp,
    modified: Timestamp,
}

/// A destination without its body, which follows as the last member, `mime`, written as it
/// streams in.
#[derive(Serialize)]
struct DestinationHead<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    mailing: &'a str,
    subject: &'a str,
    timestampsent: Timestamp,
    profile: Option<String>,
    subprofile: Option<String>,
    email: &'a str,
}

#[derive(Serialize)]
struct EventOut<'a> {
    destination: &'a Option<String>,
    timestamp: Timestamp,
    profile: Option<String>,
    subprofile: Option<String>,
    email: &'a Option<String>,
    data: &'a Map<String, Value>,
}

fn profile_out(p: &Profile) -> ProfileOut<'_> {
    ProfileOut {
        id: p.id.to_string(),
        fields: &p.fields,
        interests: &p.interests,
        database: p.database.to_string(),
        email: &p.email,
        created: p.created,
        modified: p.modified,
    }
}

fn subprofile_out(s: &Subprofile) -> SubprofileOut<'_> {
    SubprofileOut {
        id: s.id.to_string(),
        profile: s.profile.to_string(),
        collection: s.collection.to_string(),
        email: &s.email,
        fields: &s.fields,
        created: s.created,
        modified: s.modified,
    }
}

fn destination_head<M>(m: &Message<M>) -> DestinationHead<'_> {
    DestinationHead {
        id: &m.id,
        mailing: &m.mailing,
        subject: &m.subject,
        timestampsent: m.sent,
        profile: m.profile.map(|p| p.to_string()),
        subprofile: m.subprofile.map(|s| s.to_string()),
        email: &m.email,
    }
}

fn event_out(e: &Event) -> EventOut<'_> {
    EventOut {
        destination: &e.message,
        timestamp: e.time,
        profile: e.profile.map(|p| p.to_string()),
        subprofile: e.subprofile.map(|s| s.to_string()),
        email: &e.email,
        data: &e.data,
    }
}

/// How a record appears in the HTML report.
trait Render {
    fn render(&self, report: &mut HtmlReport);
}

impl Render for Profile {
    fn render(&self, report: &mut HtmlReport) {
        report.profile(self);
    }
}

impl Render for Subprofile {
    fn render(&self, report: &mut HtmlReport) {
        report.subprofile(self);
    }
}

impl Render for Event {
    fn render(&self, report: &mut HtmlReport) {
        report.event(self);
    }
}

impl Render for SourceRow {
    fn render(&self, report: &mut HtmlReport) {
        report.source_row(self);
    }
}

/// Batches of messages' articles that may be rendering at once.
const RENDERING: usize = 2;
/// Bytes of message sources a batch gathers before it is rendered.
const BATCH: usize = 256 * 1024;

/// The HTML report being written beside the JSON.
struct HtmlSink<'a> {
    writer: Box<dyn ExportWriter>,
    report: HtmlReport,
    clock: &'a dyn Clock,
    ttl: std::time::Duration,
    /// Messages gathered for the next batch, with the bytes of their sources.
    batch: Vec<(Message<()>, Vec<u8>, bool)>,
    batch_bytes: usize,
    /// Batches of articles rendering on blocking threads, oldest first, with their messages'
    /// send times. Parsing and escaping a message for the report costs about as much as all
    /// the rest of its build, so it runs beside the JSON instead of after it; in batches, so
    /// that handing work over costs little.
    rendering: std::collections::VecDeque<(Vec<Timestamp>, tokio::task::JoinHandle<RenderedMessages>)>,
    /// Buffers of batches written, for the next batches to render into.
    spare: Vec<RenderedMessages>,
}

impl HtmlSink<'_> {
    fn new<'a>(out: HtmlOutput<'a>, report: HtmlReport) -> HtmlSink<'a> {
        HtmlSink {
            writer: out.writer,
            report,
            clock: out.clock,
            ttl: out.ttl,
            batch: Vec::new(),
            batch_bytes: 0,
            rendering: std::collections::VecDeque::with_capacity(RENDERING),
            spare: Vec::with_capacity(RENDERING),
        }
    }

    /// Adds a message with the `source` its article shows. Its article is rendered in a batch
    /// on a blocking thread while the build goes on, and reaches the page in order, before
    /// anything added after it.
    async fn message(&mut self, head: Message<()>, source: Vec<u8>, cut: bool) -> anyhow::Result<()> {
        self.batch_bytes += source.len();
        self.batch.push((head, source, cut));
        if self.batch_bytes >= BATCH {
            self.render_batch().await?;
        }
        Ok(())
    }

    /// Hands the gathered messages to a blocking thread, once fewer than [`RENDERING`]
    /// batches are rendering.
    async fn render_batch(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.rendering.len() >= RENDERING {
            self.settle_one().await?;
        }
        let batch = std::mem::take(&mut self.batch);
        let mut articles = self.spare.pop().unwrap_or_default();
        let source = std::mem::take(&mut self.batch_bytes);
        let sent = batch.iter().map(|(m, _, _)| m.sent).collect();
        let job = tokio::task::spawn_blocking(move || {
            articles.reuse(source);
            for (m, source, cut) in &batch {
                articles.render(m, source, *cut);
            }
            articles
        });
        self.rendering.push_back((sent, job));
        Ok(())
    }

    async fn settle_one(&mut self) -> anyhow::Result<()> {
        if let Some((sent, job)) = self.rendering.pop_front() {
            let articles = job.await.context("rendering messages for the report")?;
            self.report.rendered_messages(&sent);
            self.flush().await?;
            self.writer.write(articles.html()).await?;
            self.spare.push(articles);
        }
        Ok(())
    }

    /// Adds every article gathered or rendering to the page: before anything else is added
    /// to it, and before the page's state is taken.
    async fn settle(&mut self) -> anyhow::Result<()> {
        self.render_batch().await?;
        while !self.rendering.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.report.pending().is_empty() {
            self.writer.write(self.report.pending()).await?;
            self.report.clear();
        }
        Ok(())
    }
}

/// Whether a run that must stop at `stop_at` has reached it.
#[must_use]
pub fn time_is_up(stop_at: Option<std::time::Instant>) -> bool {
    stop_at.is_some_and(|at| at.elapsed() > Duration::ZERO)
}

/// How a build keeps checkpoints in its request record, and when it must stop.
#[derive(Clone, Copy)]
pub struct Checkpoints<'a> {
    /// Bytes between two checkpoints, at most (plus one record).
    pub every: u64,
    /// When to stop at the next record: a checkpoint is taken, and the build ends
    /// [`BuildOutcome::Suspended`] for a continuation to go on from it.
    pub stop_at: Option<std::time::Instant>,
    /// The end of the build lease this builder holds (unix seconds; its renewals update it):
    /// a checkpoint is recorded only while the lease is still this builder's.
    pub lease: &'a AtomicI64,
}

/// Where the writing of an export stands: the section, and within it the store's page and
/// record, or the sources' row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    /// The section, by its place in the export.
    section: usize,
    /// Whether the store's records of the section are all written (the sources' come next).
    store_done: bool,
    /// The cursor of the store's page being written (`None`: the first).
    page: Option<String>,
    /// The page's records written or left out.
    skip: usize,
    /// The sources' rows of the section written.
    rows: u64,
}

/// A build's checkpoint, as the request record keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// The JSON writer's checkpoint.
    json: String,
    /// The report writer's checkpoint and where the report stands.
    html: Option<(String, html::ReportState)>,
    /// Bytes of the JSON written.
    written: u64,
    /// Where the build goes on.
    at: Position,
    /// Records in each section opened so far.
    counts: Vec<u64>,
    /// Runs of the build before this one.
    runs: u32,
}

/// The error that ends a build at a checkpoint before its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the build stopped at a checkpoint before its deadline")]
struct Suspended;

/// The buffered output of one export, reporting progress and keeping checkpoints as it goes.
struct Sink<'a> {
    /// Where the bodies of messages are read from.
    subjects: &'a dyn SubjectData,
    writer: Box<dyn ExportWriter>,
    buffer: Vec<u8>,
    written: u64,
    reported: u64,
    reported_at: Option<std::time::Instant>,
    requests: &'a dyn RequestStore,
    id: RequestId,
    /// The export's sections, in order.
    names: Vec<&'static str>,
    counts: Vec<(&'static str, u64)>,
    html: Option<HtmlSink<'a>>,
    /// Where the writing stands, for a checkpoint.
    at: Position,
    checkpoints: Option<Checkpoints<'a>>,
    /// Where the next checkpoint is due.
    next_checkpoint: u64,
    /// Whether a checkpoint is due at the next record's end.
    due: bool,
    /// Records since the clock was last read.
    since_clock: u32,
    runs: u32,
}

impl Sink<'_> {
    async fn flush_if_full(&mut self) -> anyhow::Result<()> {
        if self.buffer.len() >= FLUSH_AT {
            self.flush().await?;
        }
        if let Some(html) = &mut self.html
            && html.report.pending().len() >= FLUSH_AT
        {
            html.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.writer.write(&self.buffer).await?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        if let Some(plan) = &self.checkpoints {
            self.due |= time_is_up(plan.stop_at);
        }
        if self.written - self.reported >= PROGRESS_EVERY
            && self.reported_at.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL)
        {
            self.reported = self.written;
            self.reported_at = Some(std::time::Instant::now());
            self.requests.update(self.id, &Transition::Progress { written: self.written }).await?;
        }
        Ok(())
    }

    /// At the end of a record: takes a checkpoint when one is due, and stops the build there
    /// when its time is up.
    async fn after_record(&mut self) -> anyhow::Result<()> {
        self.due |= self.written + self.buffer.len() as u64 >= self.next_checkpoint;
        if !self.due {
            // Records that come slowly (a source's rows) fill no buffer: look at the clock too.
            self.since_clock += 1;
            if self.since_clock < 64 {
                return Ok(());
            }
            self.since_clock = 0;
            if !time_is_up(self.checkpoints.as_ref().and_then(|plan| plan.stop_at)) {
                return Ok(());
            }
        }
        let Some(plan) = &self.checkpoints else { return Ok(()) };
        let stop = time_is_up(plan.stop_at);
        let held = Timestamp::from_unix(plan.lease.load(Ordering::Relaxed));
        let every = plan.every;
        self.flush().await?;
        let json = self.writer.checkpoint().await?;
        let html = match &mut self.html {
            Some(html) => {
                html.settle().await?;
                html.flush().await?;
                Some((html.writer.checkpoint().await?, html.report.state()))
            }
            None => None,
        };
        let state = State {
            json,
            html,
            written: self.written,
            at: self.at.clone(),
            counts: self.counts.iter().map(|(_, count)| *count).collect(),
            runs: self.runs,
        };
        let checkpoint =
            Transition::Checkpoint { held, written: self.written, checkpoint: serde_json::to_string(&state)? };
        anyhow::ensure!(self.requests.update(self.id, &checkpoint).await?, "another builder took the build over");
        self.reported = self.written;
        self.next_checkpoint = self.written.saturating_add(every);
        self.due = false;
        if stop {
            return Err(Suspended.into());
        }
        Ok(())
    }

    /// Opens the section at `index`, whose position starts at its beginning.
    fn open_section(&mut self, index: usize) {
        let name = self.names[index];
        if let Some(html) = &mut self.html {
            html.report.open_section(name);
        }
        self.counts.push((name, 0));
        if index > 0 {
            self.buffer.push(b',');
        }
        self.at = Position { section: index, ..Position::default() };
        self.buffer.extend_from_slice(b"[\"");
        self.buffer.extend_from_slice(name.as_bytes());
        self.buffer.push(b'"');
    }

    fn counted(&mut self) {
        if let Some((_, count)) = self.counts.last_mut() {
            *count += 1;
        }
    }

    async fn record<T: Serialize>(&mut self, record: &T) -> anyhow::Result<()> {
        self.buffer.push(b',');
        serde_json::to_writer(&mut self.buffer, record)?;
        self.counted();
        self.flush_if_full().await
    }

    /// Writes a record to the JSON as `record` and to the HTML report from its `source`.
    async fn item<R: Render, T: Serialize>(&mut self, source: &R, record: &T) -> anyhow::Result<()> {
        if let Some(html) = &mut self.html {
            html.settle().await?;
            source.render(&mut html.report);
        }
        self.record(record).await
    }

    /// Writes a message to the JSON, its body streamed from the store when it was left there,
    /// and to the HTML report with the first [`html::SHOWN_MIME`] bytes of its body. The JSON
    /// is byte for byte what serde_json writes for the whole record.
    async fn message(&mut self, m: Message<Mime>) -> anyhow::Result<()> {
        self.buffer.push(b',');
        serde_json::to_writer(&mut self.buffer, &destination_head(&m))?;
        // The head is an object: its closing brace makes way for the last member.
        self.buffer.pop();
        self.buffer.extend_from_slice(b",\"mime\":\"");
        let mut string = JsonString::default();
        let Message { account, id, profile, subprofile, email, mailing, subject, sent, mime } = m;
        let head = Message { account, id, profile, subprofile, email, mailing, subject, sent, mime: () };
        match mime {
            Mime::Text(text) => {
                string.push_str(&mut self.buffer, &text);
                if let Some(html) = &mut self.html {
                    // The report takes the body itself, unless it shows only the start of it.
                    let cut = text.len() > html::SHOWN_MIME;
                    let shown = if cut { text.as_bytes()[..html::SHOWN_MIME].to_vec() } else { text.into_bytes() };
                    html.message(head, shown, cut).await?;
                }
            }
            Mime::Stored(body) => {
                let showing = self.html.is_some();
                let (mut shown, mut cut) = (Vec::new(), false);
                let mut chunks = self.subjects.mime(&body).await.context("opening a MIME body")?;
                while let Some(chunk) = chunks.try_next().await.context("reading a MIME body")? {
                    if showing {
                        let take = html::SHOWN_MIME.saturating_sub(shown.len()).min(chunk.len());
                        shown.extend_from_slice(&chunk[..take]);
                        cut |= take < chunk.len();
                    }
                    string.push(&mut self.buffer, &chunk)?;
                    self.flush_if_full().await?;
                }
                string.finish()?;
                if let Some(html) = &mut self.html {
                    html.message(head, shown, cut).await?;
                }
            }
        }
        self.buffer.extend_from_slice(b"\"}");
        self.counted();
        self.flush_if_full().await
    }

    async fn close_section(&mut self) -> anyhow::Result<()> {
        if let Some(html) = &mut self.html {
            html.settle().await?;
            html.report.close_section();
        }
        self.buffer.push(b']');
        Ok(())
    }

    /// Marks the store's only record of a section (a profile, a subprofile) written.
    async fn single_written(&mut self) -> anyhow::Result<()> {
        self.at.store_done = true;
        self.after_record().await
    }
}

/// Appends the sources' rows of a section, as they come, after the first `skip` (written
/// before a checkpoint).
async fn from_sources(sink: &mut Sink<'_>, read: &mut dyn SourceReader, section: &'static str) -> anyhow::Result<()> {
    sink.at.store_done = true;
    let mut skip = sink.at.rows;
    while let Some(rows) = read.next(section).await? {
        for row in &rows {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            sink.item(row, row).await?;
            sink.at.rows += 1;
            sink.after_record().await?;
        }
    }
    Ok(())
}

/// Pages read ahead of the writer. Reading the store and writing the export run side by
/// side; at most this many pages wait, one more is being read and one written.
const READ_AHEAD: usize = 2;

/// Pages through a list from where the sink's position stands, writing each record kept by
/// `keep` as `convert` makes it (or with `write`, an async call on the sink and the record),
/// until the last page. The pages come from `fetch`, a call for the page at a cursor, or from
/// `stream(pages)`, a call for the pages from a cursor on ([`crate::ports::Pages`]). A reader
/// takes pages into a short queue while the writer drains it, so neither waits for the other's
/// every page. The position moves with each record, so a checkpoint can be taken after any.
macro_rules! write_pages {
    ($sink:expr, stream($pages:expr), $keep:expr, |$s:ident, $item:ident| $write:expr) => {{
        let (pages, mut queue) = tokio::sync::mpsc::channel(READ_AHEAD);
        let (first, mut skip) =
            if $sink.at.store_done { (None, usize::MAX) } else { ($sink.at.page.clone(), $sink.at.skip) };
        let done = $sink.at.store_done;
        let read = async move {
            if done {
                return anyhow::Ok(());
            }
            let mut cursor: Option<String> = first.clone();
            let mut stream = $pages(first);
            while let Some(page) = stream.try_next().await? {
                let page: Page<_> = page;
                let this = std::mem::replace(&mut cursor, page.next);
                // A closed queue means the writer failed; its error is the one to report.
                if pages.send((this, page.items)).await.is_err() || cursor.is_none() {
                    break;
                }
            }
            anyhow::Ok(())
        };
        let sink = &mut $sink;
        let write = async move {
            while let Some((page, items)) = queue.recv().await {
                sink.at.page = page;
                sink.at.skip = std::mem::take(&mut skip);
                for (index, $item) in items.into_iter().enumerate().skip(sink.at.skip) {
                    if $keep(&$item) {
                        let $s = &mut *sink;
                        $write.await?;
                    }
                    sink.at.skip = index + 1;
                    sink.after_record().await?;
                }
            }
            anyhow::Ok(())
        };
        let (read, written) = tokio::join!(read, write);
        written?;
        read?;
    }};
    ($sink:expr, stream($pages:expr), $keep:expr, $convert:expr) => {
        write_pages!($sink, stream($pages), $keep, |sink, item| sink.item(&item, &$convert(&item)))
    };
    ($sink:expr, $fetch:expr, $keep:expr, $($write:tt)*) => {
        write_pages!(
            $sink,
            stream(|first| paged(first, move |cursor: Option<String>| async move { $fetch(cursor.as_deref()).await })),
            $keep,
            $($write)*
        )
    };
}

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

/// Where the HTML report goes, and what dates it.
pub struct HtmlOutput<'a> {
    /// The report's writer.
    pub writer: Box<dyn ExportWriter>,
    /// The clock that dates the build.
    pub clock: &'a dyn Clock,
    /// How long the files are kept after the build.
    pub ttl: std::time::Duration,
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
    match write(parts, Start::Fresh(writer, None), None).await? {
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
    match write(parts, Start::Fresh(writer, Some(html)), None).await? {
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
/// As [`write_export_and_report`], and when another builder took the build over.
pub async fn build(
    build: &BuildInputs<'_>,
    request: &DataRequest,
    checkpoints: Checkpoints<'_>,
) -> anyhow::Result<BuildOutcome> {
    let parts = Parts {
        subjects: build.subjects,
        sources: build.sources,
        requests: build.requests,
        request,
        not_before: build.not_before,
    };
    let html_output = |writer| HtmlOutput { writer, clock: build.clock, ttl: build.ttl };
    if let Some(text) = &request.checkpoint {
        match resume(build.exports, request, text).await {
            Ok((state, json, html)) => {
                let html = html.map(|(writer, report)| (html_output(writer), report));
                match write(parts, Start::Resumed(state, json, html), Some(checkpoints)).await {
                    Err(error) if error.downcast_ref::<UnfinishedGone>().is_some() => {
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
    match serde_json::from_str::<State>(checkpoint) {
        Ok(state) => std::iter::once(state.json).chain(state.html.map(|(writer, _)| writer)).collect(),
        Err(_) => Vec::new(),
    }
}

type Resumed = (Box<State>, Box<dyn ExportWriter>, Option<(Box<dyn ExportWriter>, Box<HtmlReport>)>);

async fn resume(exports: &dyn ExportStore, request: &DataRequest, text: &str) -> anyhow::Result<Resumed> {
    let state: Box<State> = serde_json::from_str(text).context("reading the checkpoint")?;
    let json = exports.resume(request.id, ExportFormat::Json, &state.json).await?;
    let html = match &state.html {
        Some((writer, report)) => {
            let writer = exports.resume(request.id, ExportFormat::Html, writer).await?;
            Some((writer, Box::new(HtmlReport::resume(request.id, &request.subject, report.clone())?)))
        }
        None => None,
    };
    Ok((state, json, html))
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
    Resumed(Box<State>, Box<dyn ExportWriter>, Option<(HtmlOutput<'a>, Box<HtmlReport>)>),
}

async fn write(
    parts: Parts<'_>,
    start: Start<'_>,
    checkpoints: Option<Checkpoints<'_>>,
) -> anyhow::Result<BuildOutcome> {
    let Parts { subjects, sources, requests, request, not_before } = parts;
    let kept = |time: Timestamp| not_before.is_none_or(|limit| time >= limit);
    let names = html::sections_of(&request.subject);
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
        since_clock: 0,
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
            anyhow::ensure!(
                state.at.section < names.len() && state.counts.len() == state.at.section + 1,
                "the checkpoint does not fit this export"
            );
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
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = result {
        return match error.downcast::<Suspended>() {
            Ok(Suspended) => Ok(BuildOutcome::Suspended),
            Err(error) => Err(error),
        };
    }
    // Every source must have ended its read cleanly before the export may complete.
    read.finish().await?;
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

/// The writer a sink holds until its own is in place.
struct NoWriter;

#[async_trait::async_trait]
impl ExportWriter for NoWriter {
    async fn write(&mut self, _: &[u8]) -> anyhow::Result<()> {
        anyhow::bail!("no export writer")
    }

    async fn checkpoint(&mut self) -> anyhow::Result<String> {
        anyhow::bail!("no export writer")
    }

    async fn finish(self: Box<Self>) -> anyhow::Result<u64> {
        anyhow::bail!("no export writer")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;
    use crate::adapters::memory::{FakeClock, MemoryExports, MemoryRequests, MemorySubjects};
    use crate::domain::{AccountId, EmailAddress, Record};
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
}
