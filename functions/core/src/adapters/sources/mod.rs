//! Subject data read where it lives: the sources of the mapping file named by
//! `DATAREQUEST_SOURCES` (or given whole in `DATAREQUEST_SOURCES_TOML`), each a PostgreSQL,
//! MySQL or MariaDB database queried per request (see [`mapping`] for the file, [`postgres`]
//! and [`mysql`] for the reading, [`convert`] for PostgreSQL's types, [`pool`] for the
//! connections kept). [`Sources`] is the [`SubjectSources`] port on them.
//!
//! A build reads every source that supplies sections of its kind of subject side by side, each
//! in its own task, one snapshot per source, rows handed over in small batches through a short
//! queue (so memory stays flat); the export takes them section by section, in file order.

pub mod convert;
pub mod mapping;
pub mod mysql;
pub mod pool;
pub mod postgres;
pub mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::config::{self, ConfigError, SourcePool};
use crate::domain::{AccountId, Subject, SubjectKind};
use crate::ports::{SourceError, SourceReader, SourceRow, SubjectSources};
pub use mapping::{Mapping, Mistake};
use mapping::{SourceKind, SourceSpec};
use mysql::Mysql;
use postgres::{Postgres, RowsMessage, Values};

/// Batches of rows waiting between a source's task and the export, per source: enough for a
/// source to read the small rows of its next sections (events) while the export writes the
/// large ones before them (mails), within about 2 MB of values (see `BATCH_BYTES`).
const QUEUE: usize = 8;

/// One source of the mapping, of its kind.
#[derive(Debug)]
pub enum Source {
    /// A PostgreSQL database.
    Postgres(Box<Postgres>),
    /// A MySQL or MariaDB database.
    Mysql(Mysql),
}

impl Source {
    /// A source from its spec, connection string and pool settings.
    ///
    /// # Errors
    /// When the connection string or its TLS settings are wrong (never quoting it).
    pub fn new(spec: SourceSpec, url: &str, pool: SourcePool) -> Result<Self, String> {
        match spec.kind {
            SourceKind::Postgres => Postgres::new(spec, url, pool).map(|source| Self::Postgres(Box::new(source))),
            SourceKind::Mysql => Mysql::new(spec, url, pool).map(Self::Mysql),
        }
    }

    /// The source's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.spec().name
    }

    /// The mapping's description of this source.
    #[must_use]
    pub fn spec(&self) -> &SourceSpec {
        match self {
            Self::Postgres(source) => source.spec(),
            Self::Mysql(source) => source.spec(),
        }
    }

    /// Whether the kind's `exists` query returns a row for these values.
    ///
    /// # Errors
    /// When the source cannot be reached or the query fails.
    pub async fn exists(&self, kind: SubjectKind, values: &Values) -> Result<bool, SourceError> {
        match self {
            Self::Postgres(source) => source.exists(kind, values).await,
            Self::Mysql(source) => source.exists(kind, values).await,
        }
    }

    /// Reads every section of the kind into `out`, in one snapshot (see [`RowsMessage`]), then
    /// `Done` or the failure. Stops when `out` is closed.
    pub async fn read(self: Arc<Self>, kind: SubjectKind, values: Values, out: mpsc::Sender<RowsMessage>) {
        let read = async {
            match &*self {
                Self::Postgres(source) => source.read_all(kind, &values, &out).await,
                Self::Mysql(source) => source.read_all(kind, &values, &out).await,
            }
        };
        let result = tokio::select! {
            result = read => result,
            () = out.closed() => return,
        };
        let _ = out.send(result.map_or_else(RowsMessage::Failed, |()| RowsMessage::Done)).await;
    }

    /// Connects, prepares every query and reports each mistake.
    pub async fn check(&self) -> Vec<Mistake> {
        match self {
            Self::Postgres(source) => source.check().await,
            Self::Mysql(source) => source.check().await,
        }
    }
}

/// The sources of a mapping, with their connection strings; none when no mapping is set.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    sources: Vec<Arc<Source>>,
}

impl Sources {
    /// No sources.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// The sources of a mapping's text, each with the connection string from the variable it
    /// names (read through `lookup`).
    ///
    /// # Errors
    /// Every mistake of the mapping, or of a connection string (never quoted).
    pub fn from_text(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, Vec<Mistake>> {
        let mut mistakes = Vec::new();
        let sources = Self::of(mapping::parse(text)?, lookup, &mut mistakes);
        if mistakes.is_empty() { Ok(sources) } else { Err(mistakes) }
    }

    /// Every mistake of a mapping's text found in one pass: the file's own (syntax, keys,
    /// sections, parameters), its connection strings, and what each database says when every
    /// query that is right as written runs once (see [`Sources::check`]); by source, in file
    /// order, and kind. The sources when there is none.
    ///
    /// # Errors
    /// The mistakes, when there are any.
    pub async fn check_text(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, Vec<Mistake>> {
        let mapping::Partial { mapping, mut mistakes, order } = mapping::parse_all(text);
        let sources = Self::of(mapping, lookup, &mut mistakes);
        mistakes.extend(sources.check().await);
        if mistakes.is_empty() {
            return Ok(sources);
        }
        // The file's own mistakes first, then each source's, kind by kind (a stable sort keeps
        // a query's mistakes in the order found: the file's before the database's).
        let at = |m: &Mistake| {
            let source =
                m.source.as_ref().map_or(0, |name| 1 + order.iter().position(|n| n == name).unwrap_or(order.len()));
            (source, m.kind.map(|kind| 1 + mapping::KINDS.iter().position(|k| *k == kind).unwrap_or(0)))
        };
        mistakes.sort_by_key(at);
        Err(mistakes)
    }

    /// The sources of `mapping` whose connection strings are set and right; the mistakes of
    /// the others go to `mistakes`.
    fn of(mapping: Mapping, lookup: &dyn Fn(&str) -> Option<String>, mistakes: &mut Vec<Mistake>) -> Self {
        let pool = match SourcePool::from_lookup(lookup) {
            Ok(pool) => pool,
            Err(error) => {
                mistakes.push(Mistake::of_file(error.to_string()));
                return Self::none();
            }
        };
        let mut sources = Vec::new();
        for spec in mapping.sources {
            let Some(url) = lookup(&spec.url_env).filter(|url| !url.trim().is_empty()) else {
                mistakes.push(Mistake::of_source(&spec.name, format!("{} (url_env) is not set", spec.url_env)));
                continue;
            };
            match Source::new(spec.clone(), &url, pool) {
                Ok(source) => sources.push(Arc::new(source)),
                Err(message) => mistakes.push(Mistake::of_source(&spec.name, format!("{}: {message}", spec.url_env))),
            }
        }
        Self { sources }
    }

    /// The sources named by `DATAREQUEST_SOURCES` (a file) or `DATAREQUEST_SOURCES_TOML` (the
    /// mapping itself); none when neither is set.
    ///
    /// # Errors
    /// When both are set, the file cannot be read, or the mapping has mistakes (all listed).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let Some((variable, text)) = mapping_text(lookup)? else { return Ok(Self::none()) };
        Self::from_text(&text, lookup).map_err(|mistakes| {
            ConfigError::new(variable, format!("the mapping has mistakes:\n{}", mapping::lines(&mistakes)))
        })
    }

    /// Whether there are no sources.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The sources, in file order.
    #[must_use]
    pub fn sources(&self) -> &[Arc<Source>] {
        &self.sources
    }

    /// Connects to every source and prepares every query; every mistake found (none: all is
    /// well). Sources are checked one after the other, in file order.
    pub async fn check(&self) -> Vec<Mistake> {
        let mut mistakes = Vec::new();
        for source in &self.sources {
            mistakes.extend(source.check().await);
        }
        mistakes
    }
}

/// The mapping's text and the variable it came from: the file named by `DATAREQUEST_SOURCES`,
/// or `DATAREQUEST_SOURCES_TOML` itself; `None` when neither is set.
///
/// # Errors
/// When both are set or the file cannot be read.
pub fn mapping_text(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<(&'static str, String)>, ConfigError> {
    match (config::optional(lookup, config::SOURCES), config::optional(lookup, config::SOURCES_TOML)) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => {
            Err(ConfigError::new(config::SOURCES, format!("set it or {}, not both", config::SOURCES_TOML)))
        }
        (Some(path), None) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::new(config::SOURCES, format!("cannot read {path}: {e}")))?;
            Ok(Some((config::SOURCES, text)))
        }
        (None, Some(text)) => Ok(Some((config::SOURCES_TOML, text))),
    }
}

/// The variables the mapping names as its sources' connection strings (`url_env`); none when
/// there is no mapping or it does not parse (its mistakes are reported where it is loaded).
#[must_use]
pub fn url_names(lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    match mapping_text(lookup) {
        Ok(Some((_, text))) => {
            mapping::parse(&text).map(|m| m.sources.into_iter().map(|s| s.url_env).collect()).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

#[async_trait]
impl SubjectSources for Sources {
    fn sections(&self, kind: SubjectKind) -> Vec<&'static str> {
        mapping::sections_with_own(kind, self.sources.iter().filter_map(|source| source.spec().queries(kind)))
    }

    async fn exists(&self, account: AccountId, subject: &Subject) -> anyhow::Result<bool> {
        let values = Values::of(account, subject);
        for source in &self.sources {
            if source.exists(subject.kind(), &values).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn read(&self, account: AccountId, subject: &Subject) -> Result<Box<dyn SourceReader>, SourceError> {
        let kind = subject.kind();
        let values = Values::of(account, subject);
        let feeds = self
            .sources
            .iter()
            .filter_map(|source| source.spec().queries(kind).filter(|q| !q.sections.is_empty()).map(|q| (source, q)))
            .map(|(source, queries)| {
                let (out, rows) = mpsc::channel(QUEUE);
                let task = tokio::spawn(Arc::clone(source).read(kind, values.clone(), out));
                let supplies = queries.sections.iter().map(|q| q.name).collect();
                Feed { name: source.name().to_owned(), kind: kind.as_str(), supplies, rows, task }
            })
            .collect();
        Ok(Box::new(Reading { feeds, at: 0 }))
    }
}

/// One source's task of a build, and its queue.
struct Feed {
    name: String,
    kind: &'static str,
    /// The sections the source supplies (it ends each of them, and only them).
    supplies: Vec<&'static str>,
    rows: mpsc::Receiver<RowsMessage>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    fn broken(&self, section: Option<&str>) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            kind: Some(self.kind),
            section: section.map(str::to_owned),
            what: "the read ended before its end".into(),
            permanent: false,
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // A build that stops early (its export failed) stops its sources' reads with it.
        self.task.abort();
    }
}

/// The sources of one build, read section by section.
struct Reading {
    feeds: Vec<Feed>,
    /// The feed whose rows of the current section come next.
    at: usize,
}

#[async_trait]
impl SourceReader for Reading {
    async fn next(&mut self, section: &'static str) -> Result<Option<Vec<SourceRow>>, SourceError> {
        while let Some(feed) = self.feeds.get_mut(self.at) {
            if !feed.supplies.contains(&section) {
                self.at += 1;
                continue;
            }
            match feed.rows.recv().await {
                Some(RowsMessage::Rows(rows)) => return Ok(Some(rows)),
                Some(RowsMessage::End(ended)) if ended == section => self.at += 1,
                Some(RowsMessage::Failed(error)) => return Err(error),
                Some(RowsMessage::End(_) | RowsMessage::Done) | None => return Err(feed.broken(Some(section))),
            }
        }
        self.at = 0;
        Ok(None)
    }

    async fn finish(mut self: Box<Self>) -> Result<(), SourceError> {
        for feed in &mut self.feeds {
            match feed.rows.recv().await {
                Some(RowsMessage::Done) => {}
                Some(RowsMessage::Failed(error)) => return Err(error),
                Some(_) | None => return Err(feed.broken(None)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn a_check_lists_every_mistake_by_source_in_file_order_the_files_first() {
        let text = r#"
[[source]]
name = "crm"
kind = "oracle"
url_env = "CRM_DATABASE_URL"
[source.profile]
profile = "SELECT 1 WHERE :email = ''"

[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"
[source.email]
destinations = "SELECT 1 WHERE :profile = 1"
clicks = "SELECT 1 WHERE :email = ''"
"#;
        let mistakes = Sources::check_text(text, &|_| None).await.expect_err("broken");
        let lines: Vec<String> = mistakes.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        // crm is left out of the check (its kind is wrong) but keeps its place before shop.
        assert!(lines[0].starts_with("source \"crm\": `kind` must be"), "{lines:#?}");
        assert!(
            lines[1].starts_with("source \"crm\", [source.profile] profile: unknown parameter :email"),
            "{lines:#?}"
        );
        assert_eq!(lines[2], "source \"shop\": SHOP_DATABASE_URL (url_env) is not set");
        assert!(lines[3].starts_with("source \"shop\", [source.email] destinations: unknown parameter"), "{lines:#?}");
    }
}
