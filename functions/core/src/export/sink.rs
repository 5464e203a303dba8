//! The buffered output of a build: the JSON export and the HTML report beside it, written as
//! records come, with progress and checkpoints kept on the way.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::TryStreamExt;
use serde::Serialize;

use super::checkpoint::{CheckpointState, Checkpoints, Position, time_is_up};
use super::error::{BuildError, Stop};
use super::html::{self, HtmlReport, RenderedMessages};
use super::json_string::JsonString;
use super::records::{Render, destination_head};
use crate::domain::{Message, Mime, RequestId, State, Timestamp, Transition};
use crate::ports::{Clock, ExportWriter, RequestStore, SourceReader, SubjectData, WriteError};

/// Bytes buffered before a part is handed to the store.
pub(super) const FLUSH_AT: usize = 256 * 1024;
/// Bytes written between two updates of `available`.
const PROGRESS_EVERY: u64 = 1024 * 1024;
/// Time between two updates of `available` after the first. Each update is a store write that
/// waits for the store, so a fast build reports a few times a second, not every megabyte.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Batches of messages' articles that may be rendering at once.
const RENDERING: usize = 2;
/// Bytes of message sources a batch gathers before it is rendered.
pub(super) const BATCH: usize = 256 * 1024;

/// The HTML report being written beside the JSON.
pub(super) struct HtmlSink<'a> {
    pub(super) writer: Box<dyn ExportWriter>,
    pub(super) report: HtmlReport,
    pub(super) clock: &'a dyn Clock,
    pub(super) ttl: std::time::Duration,
    /// Messages gathered for the next batch, with the bytes of their sources.
    pub(super) batch: Vec<(Message<()>, Vec<u8>, bool)>,
    pub(super) batch_bytes: usize,
    /// Batches of articles rendering on blocking threads, oldest first, with their messages'
    /// send times. Parsing and escaping a message for the report costs about as much as all
    /// the rest of its build, so it runs beside the JSON instead of after it; in batches, so
    /// that handing work over costs little.
    pub(super) rendering: std::collections::VecDeque<(Vec<Timestamp>, tokio::task::JoinHandle<RenderedMessages>)>,
    /// Buffers of batches written, for the next batches to render into.
    pub(super) spare: Vec<RenderedMessages>,
}

impl HtmlSink<'_> {
    pub(super) fn new<'a>(out: HtmlOutput<'a>, report: HtmlReport) -> HtmlSink<'a> {
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
    pub(super) async fn message(&mut self, head: Message<()>, source: Vec<u8>, cut: bool) -> Result<(), BuildError> {
        self.batch_bytes += source.len();
        self.batch.push((head, source, cut));
        if self.batch_bytes >= BATCH {
            self.render_batch().await?;
        }
        Ok(())
    }

    /// Hands the gathered messages to a blocking thread, once fewer than [`RENDERING`]
    /// batches are rendering.
    pub(super) async fn render_batch(&mut self) -> Result<(), BuildError> {
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

    pub(super) async fn settle_one(&mut self) -> Result<(), BuildError> {
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
    pub(super) async fn settle(&mut self) -> Result<(), BuildError> {
        self.render_batch().await?;
        while !self.rendering.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    pub(super) async fn flush(&mut self) -> Result<(), BuildError> {
        if !self.report.pending().is_empty() {
            self.writer.write(self.report.pending()).await?;
            self.report.clear();
        }
        Ok(())
    }
}

/// The buffered output of one export, reporting progress and keeping checkpoints as it goes.
pub(super) struct Sink<'a> {
    /// Where the bodies of messages are read from.
    pub(super) subjects: &'a dyn SubjectData,
    pub(super) writer: Box<dyn ExportWriter>,
    pub(super) buffer: Vec<u8>,
    pub(super) written: u64,
    pub(super) reported: u64,
    pub(super) reported_at: Option<std::time::Instant>,
    pub(super) requests: &'a dyn RequestStore,
    pub(super) id: RequestId,
    /// The export's sections, in order.
    pub(super) names: Vec<&'static str>,
    pub(super) counts: Vec<(&'static str, u64)>,
    pub(super) html: Option<HtmlSink<'a>>,
    /// Where the writing stands, for a checkpoint.
    pub(super) at: Position,
    pub(super) checkpoints: Option<Checkpoints<'a>>,
    /// Where the next checkpoint is due.
    pub(super) next_checkpoint: u64,
    /// Whether a checkpoint is due at the next record's end.
    pub(super) due: bool,
    /// How long this run's records take (for a run that must stop).
    pub(super) pace: Pace,
    pub(super) runs: u32,
}

/// How long the records of a run take to write, for a run that must stop in time.
#[derive(Debug, Default)]
pub(super) struct Pace {
    /// When the record being written started.
    started: Option<Instant>,
    /// The longest a record of this run took.
    slowest: Duration,
}

impl Pace {
    /// At `now`, the end of a record: whether the run must stop here to stop by `stop_at`. It
    /// must when its time is up, or when the next record would end after it if it took as
    /// long as the slowest of this run did: a record cannot be cut, so the time left after the
    /// stop is kept for the checkpoint, not for a record.
    pub(super) fn stops(&mut self, now: Instant, stop_at: Instant) -> bool {
        if let Some(started) = self.started {
            self.slowest = self.slowest.max(now.saturating_duration_since(started));
        }
        self.started = Some(now);
        now.checked_add(self.slowest).is_none_or(|next_ends| next_ends >= stop_at)
    }
}

impl Sink<'_> {
    pub(super) async fn flush_if_full(&mut self) -> Result<(), BuildError> {
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

    pub(super) async fn flush(&mut self) -> Result<(), BuildError> {
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
    pub(super) async fn after_record(&mut self) -> Result<(), Stop> {
        self.due |= self.written + self.buffer.len() as u64 >= self.next_checkpoint;
        let stop = self.time_to_stop();
        if !self.due && !stop {
            return Ok(());
        }
        self.checkpoint(stop).await
    }

    /// Whether the run must stop at the end of this record (see [`Pace::stops`]).
    fn time_to_stop(&mut self) -> bool {
        let Some(stop_at) = self.checkpoints.as_ref().and_then(|plan| plan.stop_at) else { return false };
        self.pace.stops(Instant::now(), stop_at)
    }

    /// Takes a checkpoint where the writing stands (without a plan of checkpoints: none), and
    /// ends the run there when `stop` says so.
    pub(super) async fn checkpoint(&mut self, stop: bool) -> Result<(), Stop> {
        let Some(plan) = &self.checkpoints else { return Ok(()) };
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
        let state = CheckpointState {
            json,
            html,
            written: self.written,
            at: self.at.clone(),
            counts: self.counts.iter().map(|(_, count)| *count).collect(),
            runs: self.runs,
        };
        let checkpoint =
            Transition::Checkpoint { held, written: self.written, checkpoint: serde_json::to_string(&state)? };
        if !self.requests.update(self.id, &checkpoint).await? {
            self.still_wanted().await?;
            return Err(BuildError::LeaseLost.into());
        }
        self.reported = self.written;
        self.next_checkpoint = self.written.saturating_add(every);
        self.due = false;
        if stop {
            return Err(Stop::Suspended);
        }
        Ok(())
    }

    /// Whether the files can be completed before the run's time is up: what is left to write,
    /// and the writers' own estimates of completing (always, for a run without a deadline).
    pub(super) fn can_finish_in_time(&self) -> bool {
        let Some(stop_at) = self.checkpoints.as_ref().and_then(|plan| plan.stop_at) else { return true };
        let html = self.html.as_ref().map_or(Duration::ZERO, |html| html.writer.finish_cost());
        let cost = self.writer.finish_cost().saturating_add(html);
        Instant::now().checked_add(cost).is_some_and(|done| done <= stop_at)
    }

    /// Whether the request is still to be built: a build keeping checkpoints in its request
    /// record looks before each page it writes, so a request cancelled or erased meanwhile
    /// stops it within one page ([`BuildError::Withdrawn`]).
    pub(super) async fn still_wanted(&mut self) -> Result<(), BuildError> {
        if self.checkpoints.is_none() {
            return Ok(());
        }
        match self.requests.get(self.id).await? {
            Some(request) if request.state == State::Building => Ok(()),
            _ => Err(BuildError::Withdrawn),
        }
    }

    /// Gives both files up: the request was withdrawn.
    pub(super) async fn discard(&mut self) -> Result<(), BuildError> {
        std::mem::replace(&mut self.writer, Box::new(NoWriter)).discard().await?;
        if let Some(html) = self.html.take() {
            html.writer.discard().await?;
        }
        Ok(())
    }

    /// Opens the section at `index`, whose position starts at its beginning.
    pub(super) fn open_section(&mut self, index: usize) {
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

    pub(super) fn counted(&mut self) {
        if let Some((_, count)) = self.counts.last_mut() {
            *count += 1;
        }
    }

    pub(super) async fn record<T: Serialize>(&mut self, record: &T) -> Result<(), BuildError> {
        self.buffer.push(b',');
        serde_json::to_writer(&mut self.buffer, record)?;
        self.counted();
        self.flush_if_full().await
    }

    /// Writes a record to the JSON as `record` and to the HTML report from its `source`.
    pub(super) async fn item<R: Render, T: Serialize>(&mut self, source: &R, record: &T) -> Result<(), BuildError> {
        if let Some(html) = &mut self.html {
            html.settle().await?;
            source.render(&mut html.report);
        }
        self.record(record).await
    }

    /// Writes a message to the JSON, its body streamed from the store when it was left there,
    /// and to the HTML report with the first [`html::SHOWN_MIME`] bytes of its body. The JSON
    /// is byte for byte what serde_json writes for the whole record.
    pub(super) async fn message(&mut self, m: Message<Mime>) -> Result<(), BuildError> {
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
                    string.push(&mut self.buffer, &chunk).map_err(anyhow::Error::from)?;
                    self.flush_if_full().await?;
                }
                string.finish().map_err(anyhow::Error::from)?;
                if let Some(html) = &mut self.html {
                    html.message(head, shown, cut).await?;
                }
            }
        }
        self.buffer.extend_from_slice(b"\"}");
        self.counted();
        self.flush_if_full().await
    }

    pub(super) async fn close_section(&mut self) -> Result<(), BuildError> {
        if let Some(html) = &mut self.html {
            html.settle().await?;
            html.report.close_section();
        }
        self.buffer.push(b']');
        Ok(())
    }

    /// Marks the store's only record of a section (a profile, a subprofile) written.
    pub(super) async fn single_written(&mut self) -> Result<(), Stop> {
        self.at.store_done = true;
        self.after_record().await
    }
}

/// Appends the sources' rows of a section, as they come, after the first `skip` (written
/// before a checkpoint).
pub(super) async fn from_sources(
    sink: &mut Sink<'_>,
    read: &mut dyn SourceReader,
    section: &'static str,
) -> Result<(), Stop> {
    sink.at.store_done = true;
    let mut skip = sink.at.rows;
    while let Some(rows) = read.next(section).await? {
        sink.still_wanted().await?;
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
pub(super) const READ_AHEAD: usize = 2;

/// Pages through a list from where the sink's position stands, writing each record kept by
/// `keep` as `convert` makes it (or with `write`, an async call on the sink and the record),
/// until the last page, looking before each page whether the request is still wanted
/// ([`Sink::still_wanted`]). The pages come from `fetch`, a call for the page at a cursor, or from
/// `stream(pages)`, a call for the pages from a cursor on ([`crate::ports::Pages`]). A reader
/// takes pages into a short queue while the writer drains it, so neither waits for the other's
/// every page. The position moves with each record, so a checkpoint can be taken after any.
macro_rules! write_pages {
    ($sink:expr, stream($pages:expr), $keep:expr, |$s:ident, $item:ident| $write:expr) => {{
        let (pages, mut queue) = tokio::sync::mpsc::channel($crate::export::sink::READ_AHEAD);
        let (first, mut skip) =
            if $sink.at.store_done { (None, usize::MAX) } else { ($sink.at.page.clone(), $sink.at.skip) };
        let done = $sink.at.store_done;
        let read = async move {
            if done {
                return anyhow::Ok(());
            }
            let mut cursor: Option<String> = first.clone();
            let mut stream = $pages(first);
            while let Some(page) = futures_util::TryStreamExt::try_next(&mut stream).await? {
                let page: $crate::ports::Page<_> = page;
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
                sink.still_wanted().await?;
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
            Ok::<(), $crate::export::error::Stop>(())
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
            stream(|first| $crate::ports::paged(first, move |cursor: Option<String>| async move { $fetch(cursor.as_deref()).await })),
            $keep,
            $($write)*
        )
    };
}
pub(super) use write_pages;

/// Where the HTML report goes, and what dates it.
pub struct HtmlOutput<'a> {
    /// The report's writer.
    pub writer: Box<dyn ExportWriter>,
    /// The clock that dates the build.
    pub clock: &'a dyn Clock,
    /// How long the files are kept after the build.
    pub ttl: std::time::Duration,
}

/// The writer a sink holds until its own is in place.
pub(super) struct NoWriter;

#[async_trait::async_trait]
impl ExportWriter for NoWriter {
    async fn write(&mut self, _: &[u8]) -> Result<(), WriteError> {
        Err(anyhow::anyhow!("no export writer").into())
    }

    async fn checkpoint(&mut self) -> Result<String, WriteError> {
        Err(anyhow::anyhow!("no export writer").into())
    }

    async fn finish(self: Box<Self>) -> Result<u64, WriteError> {
        Err(anyhow::anyhow!("no export writer").into())
    }

    async fn discard(self: Box<Self>) -> Result<(), WriteError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_stops_one_record_early_when_the_next_could_end_after_its_time() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let stop_at = at(100);
        let mut pace = Pace::default();
        assert!(!pace.stops(at(0), stop_at), "the first record starts");
        assert!(!pace.stops(at(10), stop_at), "10 ms a record: the next ends at 20 ms");
        // A slow record: the next could take as long and end at 110 ms, after the stop, though
        // the time is not up yet.
        assert!(pace.stops(at(60), stop_at));
        let mut fast = Pace::default();
        for ms in [0, 10, 20, 30, 40, 50, 60, 70, 80] {
            assert!(!fast.stops(at(ms), stop_at), "{ms} ms: the next ends at {} ms", ms + 10);
        }
        assert!(fast.stops(at(90), stop_at), "the next would end just at the stop");
        assert!(Pace::default().stops(at(100), stop_at), "the time is up");
    }
}
