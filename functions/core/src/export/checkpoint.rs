//! Checkpoints: where a build stands, as the request record keeps it, when a run must stop,
//! and how a build goes on from its last checkpoint.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::html::{self, HtmlReport};
use crate::domain::DataRequest;
use crate::ports::{ExportFormat, ExportStore, ExportWriter};

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
    /// [`super::BuildOutcome::Suspended`] for a continuation to go on from it.
    pub stop_at: Option<std::time::Instant>,
    /// The end of the build lease this builder holds (unix seconds; its renewals update it):
    /// a checkpoint is recorded only while the lease is still this builder's.
    pub lease: &'a AtomicI64,
}

/// Where the writing of an export stands: the section, and within it the store's page and
/// record, or the sources' row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Position {
    /// The section, by its place in the export.
    pub(super) section: usize,
    /// Whether the store's records of the section are all written (the sources' come next).
    pub(super) store_done: bool,
    /// The cursor of the store's page being written (`None`: the first).
    pub(super) page: Option<String>,
    /// The page's records written or left out.
    pub(super) skip: usize,
    /// The sources' rows of the section written.
    pub(super) rows: u64,
}

impl Position {
    /// After the last of `sections`: every section is written, the files are left to complete.
    pub(super) fn ended(sections: usize) -> Self {
        Self { section: sections, store_done: true, ..Self::default() }
    }
}

/// A build's checkpoint, as the request record keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckpointState {
    /// The JSON writer's checkpoint.
    pub(super) json: String,
    /// The report writer's checkpoint and where the report stands.
    pub(super) html: Option<(String, html::ReportState)>,
    /// Bytes of the JSON written.
    pub(super) written: u64,
    /// Where the build goes on.
    pub(super) at: Position,
    /// Records in each section opened so far.
    pub(super) counts: Vec<u64>,
    /// Runs of the build before this one.
    pub(super) runs: u32,
}

/// A checkpoint read back, with its files' writers going on from it.
pub(super) type Resumed =
    (Box<CheckpointState>, Box<dyn ExportWriter>, Option<(Box<dyn ExportWriter>, Box<HtmlReport>)>);

/// Reads a build's checkpoint and resumes its files' writers.
/// `sections` are the export's, in order.
pub(super) async fn resume(
    exports: &dyn ExportStore,
    request: &DataRequest,
    sections: &[&'static str],
    text: &str,
) -> anyhow::Result<Resumed> {
    let state: Box<CheckpointState> = serde_json::from_str(text).context("reading the checkpoint")?;
    let json = exports.resume(request.id, ExportFormat::Json, &state.json).await?;
    let html = match &state.html {
        Some((writer, report)) => {
            let writer = exports.resume(request.id, ExportFormat::Html, writer).await?;
            Some((writer, Box::new(HtmlReport::resume(request.id, &request.subject, sections, report.clone())?)))
        }
        None => None,
    };
    Ok((state, json, html))
}
