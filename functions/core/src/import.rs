//! Import of subject data in the NDJSON format of the design, one record a line. The file is
//! read twice as a stream: first every line is checked, and only when all are valid are they
//! loaded, in batches. A bad line is reported with its number and reason, and nothing from
//! that file is loaded.

use std::path::Path;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::domain::Record;
use crate::ports::SubjectData;

/// Records loaded per call to the store.
const BATCH: usize = 500;

/// What an import loaded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Profiles.
    pub profiles: u64,
    /// Subprofiles.
    pub subprofiles: u64,
    /// Messages.
    pub messages: u64,
    /// Events.
    pub events: u64,
}

impl Summary {
    fn count(&mut self, record: &Record) {
        match record {
            Record::Profile(_) => self.profiles += 1,
            Record::Subprofile(_) => self.subprofiles += 1,
            Record::Message(_) => self.messages += 1,
            Record::Event(_) => self.events += 1,
        }
    }
}

/// Why an import loaded nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line is not a valid record.
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

/// Parses one line; blank lines are `None`.
///
/// # Errors
/// The reason a line is not a valid record.
pub fn parse_line(line: &str) -> Result<Option<Record>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let record: Record = serde_json::from_str(line).map_err(|e| {
        let text = e.to_string();
        // serde_json appends " at line 1 column N"; the column helps, the line does not.
        text.replace(" at line 1 column", " at column")
    })?;
    if let Record::Message(m) = &record
        && (m.id.is_empty() || m.email.is_empty())
    {
        return Err("a message needs a non-empty id and email".into());
    }
    Ok(Some(record))
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
    let mut batch = Vec::with_capacity(BATCH);
    let mut line = String::new();
    let (mut number, mut read, mut reported) = (0u64, 0u64, 0u64);
    loop {
        line.clear();
        let n = match lines.read_line(&mut line).await {
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
        let record = parse_line(&line).map_err(|reason| ImportError::BadLine { line: number, reason })?;
        if let Some(record) = record {
            summary.count(&record);
            if store.is_some() {
                batch.push(record);
            }
        }
        if let Some(store) = store
            && batch.len() >= BATCH
        {
            store.load(&batch).await?;
            batch.clear();
        }
        if read - reported >= 4 << 20 {
            reported = read;
            progress(offset + read, size * 2);
        }
    }
    if let Some(store) = store
        && !batch.is_empty()
    {
        store.load(&batch).await?;
    }
    progress(offset + read, size * 2);
    Ok(summary)
}
