//! The port of subject data read where it lives: the platform's own databases, queried per
//! request through a mapping (see [`crate::adapters::sources`]). Their records are appended to the
//! sections of an export after the subject store's, in the mapping's order.

use std::sync::Arc;

use async_trait::async_trait;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::{AccountId, Subject, SubjectKind};

/// One row of a source: a record of its section, written as a JSON object whose members are
/// the columns, in the query's order.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    /// The source's name in the mapping.
    pub source: Arc<str>,
    /// The column names (shared by every row of a query).
    pub columns: Arc<[String]>,
    /// The values, one per column.
    pub values: Vec<SourceValue>,
}

/// One value of a source's row: JSON built from the column's type, or a JSON document exactly
/// as the database returned it (its numbers never pass through a float).
#[derive(Debug, Clone)]
pub enum SourceValue {
    /// A value converted from the column's type.
    Value(Value),
    /// A JSON document copied as it came (without whitespace outside its strings).
    Json(Box<RawValue>),
}

impl SourceValue {
    /// The JSON text of a document exactly as a database returned it, without whitespace
    /// outside its strings.
    ///
    /// # Errors
    /// When the text is not one JSON document.
    pub fn json(text: &str) -> Result<Self, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        let mut compact = String::with_capacity(raw.get().len());
        let (mut quoted, mut escaped) = (false, false);
        for c in raw.get().chars() {
            if quoted {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    quoted = false;
                }
            } else if c.is_ascii_whitespace() {
                continue;
            } else if c == '"' {
                quoted = true;
            }
            compact.push(c);
        }
        Ok(Self::Json(RawValue::from_string(compact)?))
    }

    /// The value as text, if it is a string.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Value(value) => value.as_str(),
            Self::Json(_) => None,
        }
    }
}

impl From<Value> for SourceValue {
    fn from(value: Value) -> Self {
        Self::Value(value)
    }
}

impl PartialEq for SourceValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Value(a), Self::Value(b)) => a == b,
            (Self::Json(a), Self::Json(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl Serialize for SourceValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(value) => value.serialize(serializer),
            Self::Json(raw) => raw.serialize(serializer),
        }
    }
}

impl SourceRow {
    /// The members, in column order.
    pub fn members(&self) -> impl Iterator<Item = (&str, &SourceValue)> {
        self.columns.iter().map(String::as_str).zip(&self.values)
    }
}

impl Serialize for SourceRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (name, value) in self.members() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Reads subjects from the sources of a mapping.
#[async_trait]
pub trait SubjectSources: Send + Sync {
    /// The sections of an export of this kind of subject, in export order: Copernica's (see
    /// [`SubjectKind::standard_sections`]), then those of the operator's own that a source
    /// supplies.
    fn sections(&self, kind: SubjectKind) -> Vec<&'static str> {
        kind.standard_sections().to_vec()
    }

    /// Whether any source's `exists` query for the subject's kind returns a row.
    ///
    /// # Errors
    /// When a source that has such a query cannot be reached or the query fails.
    async fn exists(&self, account: AccountId, subject: &Subject) -> anyhow::Result<bool>;

    /// Starts one consistent read of every source that supplies sections of this kind of
    /// subject (one read-only snapshot per source), for the sections of an export in order.
    ///
    /// # Errors
    /// When a source cannot be reached.
    async fn read(&self, account: AccountId, subject: &Subject) -> Result<Box<dyn SourceReader>, SourceError>;
}

/// One build's read of the sources. Ask for the sections in export order, each until `None`.
#[async_trait]
pub trait SourceReader: Send {
    /// The next rows of `section`, from the sources in the mapping's order; `None` when every
    /// source has given all of its rows of the section.
    ///
    /// # Errors
    /// When a source fails; the error names it.
    async fn next(&mut self, section: &'static str) -> Result<Option<Vec<SourceRow>>, SourceError>;

    /// Ends the read once every section was read; fails if a source did not end cleanly.
    ///
    /// # Errors
    /// When a source failed; the error names it.
    async fn finish(self: Box<Self>) -> Result<(), SourceError>;
}

/// Why a source failed, named by source, kind of subject and section. The text holds no
/// subject data and no connection string: it is the reason a failed request shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source \"{source_name}\"{}: {what}", place(.kind, .section))]
pub struct SourceError {
    /// The source's name.
    pub source_name: String,
    /// The kind of subject whose queries ran (`profile`, `subprofile`, `email`), if any.
    pub kind: Option<&'static str>,
    /// The query (`exists` or a section name), if it was one.
    pub section: Option<String>,
    /// What went wrong.
    pub what: String,
    /// Whether the source refused the query itself (a permission, an unknown table or column,
    /// a syntax error): another attempt cannot succeed, so the build fails at once.
    pub permanent: bool,
}

impl SourceError {
    /// The same error, permanent when `refused` (see [`SourceError::permanent`]).
    #[must_use]
    pub fn permanent_if(mut self, refused: bool) -> Self {
        self.permanent = refused;
        self
    }
}

fn place(kind: &Option<&'static str>, section: &Option<String>) -> String {
    match (kind, section) {
        (Some(kind), Some(section)) => format!(" ({kind}, {section})"),
        (Some(kind), None) => format!(" ({kind})"),
        (None, Some(section)) => format!(" ({section})"),
        (None, None) => String::new(),
    }
}

/// No sources: nothing exists there and nothing is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSources;

#[async_trait]
impl SubjectSources for NoSources {
    async fn exists(&self, _: AccountId, _: &Subject) -> anyhow::Result<bool> {
        Ok(false)
    }

    async fn read(&self, _: AccountId, _: &Subject) -> Result<Box<dyn SourceReader>, SourceError> {
        Ok(Box::new(NoRows))
    }
}

/// A read that yields nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRows;

#[async_trait]
impl SourceReader for NoRows {
    async fn next(&mut self, _: &'static str) -> Result<Option<Vec<SourceRow>>, SourceError> {
        Ok(None)
    }

    async fn finish(self: Box<Self>) -> Result<(), SourceError> {
        Ok(())
    }
}
