//! Ingestion of subject data: the NDJSON lines of the design (profiles, subprofiles, messages,
//! events), erase lines (GDPR Art. 17) and Amazon SES event records, from a file
//! (`datarequest import`) or an HTTP body (`POST /ingest`). Every line is checked before
//! anything is stored, and every line is idempotent: loading the same lines again leaves the
//! store as it was.

use std::path::Path;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

pub use crate::domain::ndjson::{parse_line, parse_records};
use crate::domain::{Line, Record};
use crate::ports::SubjectData;

/// Records loaded per call to the store.
const BATCH: usize = 5_000;

/// What an ingestion stored, by line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = IngestSummary)]
#[serde(deny_unknown_fields)] // read by the schema: no other members
pub struct Summary {
    /// Profile lines.
    pub profiles: u64,
    /// Subprofile lines.
    pub subprofiles: u64,
    /// Message lines.
    pub messages: u64,
    /// Event lines (SES records that were kept included).
    pub events: u64,
    /// Erase lines.
    pub erased: u64,
    /// Lines read and not kept (SES records of other types, or without an `account` tag).
    pub skipped: u64,
}

impl Summary {
    /// Counts one line.
    pub fn count(&mut self, line: &Line) {
        match line {
            Line::Record(Record::Profile(_)) => self.profiles += 1,
            Line::Record(Record::Subprofile(_)) => self.subprofiles += 1,
            Line::Record(Record::Message(_)) => self.messages += 1,
            Line::Record(Record::Event(_)) => self.events += 1,
            Line::Erase(_) => self.erased += 1,
            Line::Skip => self.skipped += 1,
        }
    }
}

/// Why an import loaded nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line is not valid.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file or the store failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Stores lines in order: consecutive records in batches, erasures one by one.
struct Applier<'a> {
    store: &'a dyn SubjectData,
    batch: Vec<Record>,
}

impl Applier<'_> {
    async fn push(&mut self, line: Line) -> anyhow::Result<()> {
        match line {
            Line::Record(record) => {
                self.batch.push(record);
                if self.batch.len() >= BATCH {
                    self.flush().await?;
                }
            }
            Line::Erase(erasure) => {
                self.flush().await?;
                self.store.erase(&erasure).await?;
            }
            Line::Skip => {}
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.batch.is_empty() {
            self.store.load(&self.batch).await?;
            self.batch.clear();
        }
        Ok(())
    }
}

/// Stores checked lines in order. A failure midway leaves the lines before it stored; storing
/// the same lines again converges to the same data.
///
/// # Errors
/// When the store fails.
pub async fn apply(store: &dyn SubjectData, lines: Vec<Line>) -> anyhow::Result<()> {
    let mut applier = Applier { store, batch: Vec::with_capacity(BATCH.min(lines.len())) };
    for line in lines {
        applier.push(line).await?;
    }
    applier.flush().await
}

/// Parses every line of a body; the first bad line fails all of it.
///
/// # Errors
/// [`ImportError::BadLine`] naming the first bad line.
pub fn parse_body(body: &str) -> Result<(Vec<Line>, Summary), ImportError> {
    let mut summary = Summary::default();
    let mut lines = Vec::new();
    for (number, text) in body.lines().enumerate() {
        let parsed = parse_line(text).map_err(|reason| ImportError::BadLine { line: number as u64 + 1, reason })?;
        if let Some(line) = parsed {
            summary.count(&line);
            lines.push(line);
        }
    }
    Ok((lines, summary))
}

/// Imports a file into the store. `progress` is called now and then with the bytes read and
/// the file size, for both passes (the second pass counts from the size on, to twice it).
///
/// # Errors
/// [`ImportError::BadLine`] for the first bad line (nothing loaded), or a failure to read
/// the file or write the store.
pub async fn import_file(
    store: &dyn SubjectData,
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Summary, ImportError> {
    let size = tokio::fs::metadata(path).await.with_context(|| format!("reading {}", path.display()))?.len();
    pass(path, None, size, progress).await?;
    pass(path, Some(store), size, progress).await
}

async fn pass(
    path: &Path,
    store: Option<&dyn SubjectData>,
    size: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Summary, ImportError> {
    let file = tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
    let mut lines = BufReader::with_capacity(1 << 20, file);
    let offset = if store.is_some() { size } else { 0 };
    let mut summary = Summary::default();
    let mut applier = store.map(|store| Applier { store, batch: Vec::with_capacity(BATCH) });
    let mut text = String::new();
    let (mut number, mut read, mut reported) = (0u64, 0u64, 0u64);
    loop {
        text.clear();
        let n = match lines.read_line(&mut text).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(ImportError::BadLine { line: number + 1, reason: "not valid UTF-8".into() });
            }
            Err(e) => return Err(anyhow::Error::from(e).context("reading the file").into()),
        };
        if n == 0 {
            break;
        }
        number += 1;
        read += n as u64;
        let line = parse_line(&text).map_err(|reason| ImportError::BadLine { line: number, reason })?;
        if let Some(line) = line {
            summary.count(&line);
            if let Some(applier) = applier.as_mut() {
                applier.push(line).await?;
            }
        }
        if read - reported >= 4 << 20 {
            reported = read;
            progress(offset + read, size * 2);
        }
    }
    if let Some(applier) = applier.as_mut() {
        applier.flush().await?;
    }
    progress(offset + read, size * 2);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Erasure;

    #[test]
    fn erase_lines_name_exactly_one_subject() {
        let ok = |l: &str| parse_line(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(matches!(ok(r#"{"kind":"erase","account":1,"profile":42}"#), Some(Line::Erase(Erasure::Profile(..)))));
        assert!(matches!(
            ok(r#"{"kind":"erase","account":1,"subprofile":7}"#),
            Some(Line::Erase(Erasure::Subprofile(..)))
        ));
        assert!(matches!(
            ok(r#"{"kind":"erase","account":1,"email":"Jane@Example.com"}"#),
            Some(Line::Erase(Erasure::Email(..)))
        ));
        for bad in [
            r#"{"kind":"erase","account":1}"#,
            r#"{"kind":"erase","account":1,"profile":42,"email":"a@b.example"}"#,
            r#"{"kind":"erase","account":1,"email":"not an address"}"#,
            r#"{"kind":"erase","account":1,"profile":0}"#,
            r#"{"kind":"erase","account":1,"profile":42,"extra":true}"#,
        ] {
            assert!(parse_line(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn an_event_must_name_whom_it_concerns() {
        let line = r#"{"kind":"event","account":1,"type":"survey","time":"2025-01-01 00:00:00"}"#;
        assert_eq!(parse_line(line).err().as_deref(), Some("an event needs a profile, a subprofile or an email"));
    }

    #[test]
    fn a_body_is_refused_whole_at_its_first_bad_line() {
        let body = "{\"kind\":\"erase\",\"account\":1,\"profile\":1}\n\n{\"kind\":\"nothing\"}\n";
        match parse_body(body) {
            Err(ImportError::BadLine { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
    }
}
