//! Ingestion of subject data: the NDJSON lines of the design (profiles, subprofiles, messages,
//! events), erase lines (GDPR Art. 17) and Amazon SES event records, from a file
//! (`datarequest import`) or an HTTP body (`POST /ingest`). Every line is checked before
//! anything is stored, and every line is idempotent: loading the same lines again leaves the
//! store as it was.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tracing::instrument;

use super::App;
use super::erase::Eraser;
pub use crate::domain::ndjson::{parse_line, parse_records};
use crate::domain::{AccountId, Line, Record};
use crate::ports::Accounts;

/// Lines of a file applied at once (one transaction on SQLite): a file of any size is never
/// held whole, and the database is never held for long.
const CHUNK: usize = 5_000;

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

/// A body of lines, checked: the lines to apply, their counts, and the first line of each
/// account they name.
struct Checked {
    lines: Vec<Line>,
    summary: Summary,
    first_lines: HashMap<AccountId, u64>,
}

/// Parses every line of a body; the first bad line fails all of it.
///
/// # Errors
/// [`ImportError::BadLine`] naming the first bad line.
fn check_body(body: &str) -> Result<Checked, ImportError> {
    let mut checked = Checked { lines: Vec::new(), summary: Summary::default(), first_lines: HashMap::new() };
    for (number, text) in (1..).zip(body.lines()) {
        let parsed = parse_line(text).map_err(|reason| ImportError::BadLine { line: number, reason })?;
        if let Some(line) = parsed {
            checked.summary.count(&line);
            if let Some(account) = line.account() {
                checked.first_lines.entry(account).or_insert(number);
            }
            checked.lines.push(line);
        }
    }
    Ok(checked)
}

/// Accounts looked up at once.
const LOOKUPS: usize = 16;

/// The accounts of `accounts` that do not exist (never created, or deleted).
async fn missing(
    store: &dyn Accounts,
    accounts: impl IntoIterator<Item = AccountId>,
) -> anyhow::Result<HashSet<AccountId>> {
    let found: Vec<(AccountId, bool)> = futures_util::stream::iter(accounts)
        .map(|account| async move { Ok::<_, anyhow::Error>((account, store.exists(account).await?)) })
        .buffer_unordered(LOOKUPS)
        .try_collect()
        .await?;
    Ok(found.into_iter().filter(|(_, exists)| !exists).map(|(account, _)| account).collect())
}

/// The reason a line naming an account that does not exist is refused.
pub const NO_SUCH_ACCOUNT: &str = "no such account";

impl App {
    /// Stores an NDJSON body of subject data (`POST /ingest`), all or nothing as far as the
    /// store allows: every line is parsed and every account it names looked up before anything
    /// is stored, then the lines are applied in order ([`SubjectData::apply`]: one transaction
    /// on SQLite; in batches on DynamoDB, where a failure midway leaves the lines before it).
    ///
    /// # Errors
    /// [`ImportError::BadLine`] for the first line that is not valid or names an account that
    /// does not exist (nothing stored); [`ImportError::Unexpected`] when a store failed (on
    /// SQLite nothing was stored; elsewhere the lines before the failure may have been, and
    /// sending the same body again converges).
    #[instrument(skip_all, fields(bytes = body.len()))]
    pub async fn ingest(&self, body: &str) -> Result<Summary, ImportError> {
        let Checked { lines, summary, first_lines } = check_body(body)?;
        let missing = missing(&*self.accounts, first_lines.keys().copied()).await?;
        if let Some(line) = missing.iter().filter_map(|account| first_lines.get(account)).min() {
            return Err(ImportError::BadLine { line: *line, reason: NO_SUCH_ACCOUNT.into() });
        }
        self.eraser().apply(lines).await?;
        Ok(summary)
    }

    /// Stores checked lines of subject data that arrived one by one (the ingest queue, the
    /// demo), in order, but for the lines naming an account that does not exist (never created,
    /// or deleted): those are left out. Returns their positions in `lines`.
    ///
    /// # Errors
    /// When a store fails; see [`SubjectData::apply`] for what is then stored.
    #[instrument(skip_all, fields(lines = lines.len()))]
    pub async fn ingest_lines(&self, mut lines: Vec<Line>) -> anyhow::Result<Vec<usize>> {
        let accounts: HashSet<AccountId> = lines.iter().filter_map(Line::account).collect();
        let missing = missing(&*self.accounts, accounts).await?;
        let mut left_out = Vec::new();
        if !missing.is_empty() {
            let mut position = 0;
            lines.retain(|line| {
                let keep = line.account().is_none_or(|account| !missing.contains(&account));
                if !keep {
                    left_out.push(position);
                }
                position += 1;
                keep
            });
        }
        self.eraser().apply(lines).await?;
        Ok(left_out)
    }
}

/// Imports a file into the store, in two passes over it: the first checks every line and
/// looks up every account the lines name, the second applies the lines in chunks of
/// [`CHUNK`] (each one transaction on SQLite), so a file of any size is never held whole.
/// `progress` is called now and then with the bytes read and the file size, for both passes
/// (the second pass counts from the size on, to twice it).
///
/// # Errors
/// [`ImportError::BadLine`] for the first bad line or the first line naming an account that
/// does not exist (nothing loaded), or a failure to read the file or write the store (the
/// chunks before it stay loaded; importing the file again converges).
pub(crate) async fn import_file(
    accounts: &dyn Accounts,
    store: &Eraser<'_>,
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Summary, ImportError> {
    let size = tokio::fs::metadata(path).await.with_context(|| format!("reading {}", path.display()))?.len();
    let mut first_lines = HashMap::new();
    pass(path, Pass::Check(&mut first_lines), size, progress).await?;
    let missing = missing(accounts, first_lines.keys().copied()).await?;
    if let Some(line) = missing.iter().filter_map(|account| first_lines.get(account)).min() {
        return Err(ImportError::BadLine { line: *line, reason: NO_SUCH_ACCOUNT.into() });
    }
    pass(path, Pass::Apply(store), size, progress).await
}

/// What a pass over a file does with its lines.
enum Pass<'a> {
    /// Notes the first line of each account.
    Check(&'a mut HashMap<AccountId, u64>),
    /// Stores them (erase lines reach the copies of their subjects' data too).
    Apply(&'a Eraser<'a>),
}

async fn pass(
    path: &Path,
    mut work: Pass<'_>,
    size: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Summary, ImportError> {
    let file = tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?;
    let mut lines = BufReader::with_capacity(1 << 20, file);
    let offset = if matches!(work, Pass::Apply(_)) { size } else { 0 };
    let mut summary = Summary::default();
    let mut chunk = Vec::new();
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
            match &mut work {
                Pass::Check(first_lines) => {
                    if let Some(account) = line.account() {
                        first_lines.entry(account).or_insert(number);
                    }
                }
                Pass::Apply(store) => {
                    chunk.push(line);
                    if chunk.len() >= CHUNK {
                        store.apply(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))).await?;
                    }
                }
            }
        }
        if read - reported >= 4 << 20 {
            reported = read;
            progress(offset + read, size * 2);
        }
    }
    if let Pass::Apply(store) = work
        && !chunk.is_empty()
    {
        store.apply(chunk).await?;
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

    #[tokio::test]
    async fn a_body_is_refused_at_its_first_line_of_an_account_that_does_not_exist() {
        let (app, _) = crate::compose::memory(crate::config::Settings::for_tests("https://api.example.test"));
        let one = app.create_account().await.unwrap_or_else(|e| panic!("{e:#}")).account;
        let two = app.create_account().await.unwrap_or_else(|e| panic!("{e:#}")).account;
        assert!(app.operator().delete_account(two, true).await.unwrap_or_else(|e| panic!("{e:#}")));
        let profile = r#"{"kind":"profile","account":1,"id":7,"database":1,"created":"2025-01-01 00:00:00","modified":"2025-01-01 00:00:00"}"#;
        let body = format!(
            "{profile}\n\n{}\n{}\n",
            r#"{"kind":"erase","account":3,"profile":1}"#, r#"{"kind":"erase","account":2,"profile":1}"#
        );

        match app.ingest(&body).await {
            Err(ImportError::BadLine { line, reason }) => assert_eq!((line, reason.as_str()), (3, NO_SUCH_ACCOUNT)),
            other => panic!("{other:?}"),
        }
        let id = crate::domain::ProfileId::try_from(7).unwrap_or_else(|_| unreachable!());
        assert!(app.subjects.profile(one, id).await.unwrap_or_else(|e| panic!("{e:#}")).is_none(), "nothing stored");
        let deleted = body.replace(r#""account":3"#, r#""account":1"#);
        match app.ingest(&deleted).await {
            Err(ImportError::BadLine { line, reason }) => assert_eq!((line, reason.as_str()), (4, NO_SUCH_ACCOUNT)),
            other => panic!("{other:?}"),
        }
        assert!(app.ingest(profile).await.is_ok());
        assert!(app.subjects.profile(one, id).await.unwrap_or_else(|e| panic!("{e:#}")).is_some());
    }

    #[test]
    fn a_body_is_refused_whole_at_its_first_bad_line() {
        let body = "{\"kind\":\"erase\",\"account\":1,\"profile\":1}\n\n{\"kind\":\"nothing\"}\n";
        match check_body(body).map(|checked| checked.lines) {
            Err(ImportError::BadLine { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
    }
}
