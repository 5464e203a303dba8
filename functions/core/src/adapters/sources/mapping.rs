//! The mapping file: which sources there are, how to reach them, and the query of each section
//! they supply, per kind of subject. It is read whole and checked before anything runs; every
//! mistake is reported, each named by source, kind and section.
//!
//! ```toml
//! [[source]]
//! name = "shop"
//! kind = "postgres"              # or "mysql" (MySQL 8, MariaDB 10.6 and later)
//! url_env = "SHOP_DATABASE_URL"
//! statement_timeout_secs = 30     # optional, default 30
//! connect_timeout_secs = 10       # optional, default 10
//!
//! [source.profile]
//! exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
//! profile = "SELECT id AS \"ID\", name FROM customer WHERE tenant = :account AND id = :profile"
//! ```

use std::fmt;
use std::time::Duration;

use crate::domain::SubjectKind;
use crate::ports::SourceError;

use super::sql::{self, Param};

/// Default `statement_timeout_secs`.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `connect_timeout_secs`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The kinds of subject, in the order of the mapping's tables.
pub const KINDS: [SubjectKind; 3] = [SubjectKind::Profile, SubjectKind::Subprofile, SubjectKind::Email];

/// Copernica's sections of an export of this kind of subject, in export order.
#[must_use]
pub fn sections(kind: SubjectKind) -> &'static [&'static str] {
    kind.standard_sections()
}

/// The longest name a section of the operator's own may have.
const MAX_OWN_NAME: usize = 64;

/// Whether `name` may name a section of the operator's own: lowercase words (letters, digits
/// after the first letter, joined by `_`), never one of Copernica's sections.
#[must_use]
pub fn is_own_section(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_OWN_NAME
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.ends_with('_')
        && !name.contains("__")
        && !sections(SubjectKind::Profile).contains(&name)
}

/// The one `&'static` copy of a section name of the operator's own: a process reads its
/// mapping once (twice with a check), so the copies are few.
fn interned(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = names.iter().find(|known| **known == name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(leaked);
    leaked
}

impl Mapping {
    /// The sections of an export of this kind of subject, in export order: Copernica's, then
    /// those of the operator's own that any source supplies, in alphabetical order.
    #[must_use]
    pub fn sections(&self, kind: SubjectKind) -> Vec<&'static str> {
        sections_with_own(kind, self.sources.iter().filter_map(|source| source.queries(kind)))
    }
}

/// Copernica's sections of `kind`, then the operator's own from `queries`, alphabetically.
pub(super) fn sections_with_own<'a>(
    kind: SubjectKind,
    queries: impl Iterator<Item = &'a KindQueries>,
) -> Vec<&'static str> {
    let standard = sections(kind);
    let mut own: Vec<&'static str> =
        queries.flat_map(|q| q.sections.iter().map(|s| s.name)).filter(|name| !standard.contains(name)).collect();
    own.sort_unstable();
    own.dedup();
    standard.iter().copied().chain(own).collect()
}

/// The parameters the queries of this kind of subject may use.
#[must_use]
pub fn params(kind: SubjectKind) -> [Param; 2] {
    match kind {
        SubjectKind::Profile => [Param::Account, Param::Profile],
        SubjectKind::Subprofile => [Param::Account, Param::Subprofile],
        SubjectKind::Email => [Param::Account, Param::Email],
    }
}

/// The kind of database a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// PostgreSQL: `$n` placeholders.
    Postgres,
    /// MySQL or MariaDB: `?` placeholders.
    Mysql,
}

/// One query of a source, as written and as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `exists` or the section name.
    pub name: &'static str,
    /// The SQL with numbered placeholders.
    pub sql: String,
    /// The parameter of each placeholder.
    pub params: Vec<Param>,
}

/// The queries of a source for one kind of subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindQueries {
    /// The kind of subject.
    pub kind: SubjectKind,
    /// The query whose row says the subject exists.
    pub exists: Option<Query>,
    /// A query per section supplied, in export order.
    pub sections: Vec<Query>,
}

impl KindQueries {
    /// The query of a section, if this source supplies it.
    #[must_use]
    pub fn section(&self, name: &str) -> Option<&Query> {
        self.sections.iter().find(|q| q.name == name)
    }

    /// Every query, `exists` first.
    pub fn all(&self) -> impl Iterator<Item = &Query> {
        self.exists.iter().chain(&self.sections)
    }
}

/// A source as the mapping describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// Its name, unique in the file.
    pub name: String,
    /// The kind of database.
    pub kind: SourceKind,
    /// The environment variable that holds its connection string.
    pub url_env: String,
    /// The longest a statement may run.
    pub statement_timeout: Duration,
    /// The longest connecting may take.
    pub connect_timeout: Duration,
    /// Its queries per kind of subject.
    pub kinds: Vec<KindQueries>,
}

impl SourceSpec {
    /// An error of this source, where it happened (a transient one: see
    /// [`SourceError::permanent_if`]).
    #[must_use]
    pub fn error(&self, kind: Option<SubjectKind>, section: Option<&str>, what: String) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            kind: kind.map(SubjectKind::as_str),
            section: section.map(str::to_owned),
            what,
            permanent: false,
        }
    }

    /// The queries for a kind of subject, if any.
    #[must_use]
    pub fn queries(&self, kind: SubjectKind) -> Option<&KindQueries> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

/// The whole mapping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    /// The sources, in file order (the order their records are appended in).
    pub sources: Vec<SourceSpec>,
}

/// A mistake in the mapping or in one of its queries, named by where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// The source's name (or `#n` before it has one); `None` for the file itself.
    pub source: Option<String>,
    /// The kind of subject.
    pub kind: Option<SubjectKind>,
    /// `exists` or the section.
    pub section: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Mistake {
    pub(crate) fn of_file(message: impl Into<String>) -> Self {
        Self { source: None, kind: None, section: None, message: message.into() }
    }

    pub(crate) fn of_source(source: &str, message: impl Into<String>) -> Self {
        Self { source: Some(source.to_owned()), kind: None, section: None, message: message.into() }
    }

    pub(crate) fn of_query(source: &str, kind: SubjectKind, section: &str, message: impl Into<String>) -> Self {
        Self {
            source: Some(source.to_owned()),
            kind: Some(kind),
            section: Some(section.to_owned()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Mistake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "source \"{source}\"")?,
            None => f.write_str("mapping")?,
        }
        if let Some(kind) = self.kind {
            write!(f, ", [source.{}]", kind.as_str())?;
        }
        if let Some(section) = &self.section {
            write!(f, " {section}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Mistakes, one a line.
#[must_use]
pub fn lines(mistakes: &[Mistake]) -> String {
    mistakes.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

fn kind_named(name: &str) -> Option<SubjectKind> {
    KINDS.into_iter().find(|k| k.as_str() == name)
}

fn seconds(value: &toml::Value) -> Option<Duration> {
    let secs = match value {
        toml::Value::Integer(n) => *n as f64,
        toml::Value::Float(x) => *x,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0 && secs <= 86_400.0).then(|| Duration::from_secs_f64(secs))
}

fn env_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Reads a mapping.
///
/// # Errors
/// Every mistake found: TOML syntax, unknown or missing keys, unknown sections, queries that
/// cannot be rewritten or use a parameter their kind of subject does not have.
pub fn parse(text: &str) -> Result<Mapping, Vec<Mistake>> {
    let Partial { mapping, mistakes, .. } = parse_all(text);
    if mistakes.is_empty() { Ok(mapping) } else { Err(mistakes) }
}

/// A mapping read as far as it is right (see [`parse_all`]).
#[derive(Debug, Default)]
pub struct Partial {
    /// The sources whose own settings are right, each with the queries that are right.
    pub mapping: Mapping,
    /// Every mistake found.
    pub mistakes: Vec<Mistake>,
    /// The name of every `[[source]]` in file order (`#n` for the n-th without one), those
    /// left out included: the order to report mistakes in.
    pub order: Vec<String>,
}

/// Reads a mapping as far as it is right, for a check that goes on to the databases: the
/// sources whose own settings (`name`, `kind`, `url_env`, timeouts) are right, each with the
/// queries that are right, and every mistake found (those of [`parse`]).
#[must_use]
pub fn parse_all(text: &str) -> Partial {
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(error) => return Partial { mistakes: vec![Mistake::of_file(error.to_string())], ..Partial::default() },
    };
    let mut mistakes = Vec::new();
    let mut mapping = Mapping::default();
    let mut names = Vec::new();
    let mut order = Vec::new();
    for (key, value) in &table {
        if key != "source" {
            mistakes.push(Mistake::of_file(format!("unknown key `{key}`: the file holds [[source]] tables only")));
            continue;
        }
        let Some(array) = value.as_array() else {
            mistakes.push(Mistake::of_file("`source` must be written [[source]], one table per source"));
            continue;
        };
        for (n, item) in array.iter().enumerate() {
            match item.as_table() {
                Some(source) => {
                    let spec = source_spec(source, n + 1, &mut mistakes);
                    let label = source.get("name").and_then(toml::Value::as_str);
                    order.push(label.map_or_else(|| format!("#{}", n + 1), str::to_owned));
                    if let Some(name) = label {
                        if names.contains(&name) {
                            mistakes.push(Mistake::of_source(name, "the name is used by another source"));
                            continue;
                        }
                        names.push(name);
                    }
                    mapping.sources.extend(spec);
                }
                None => {
                    order.push(format!("#{}", n + 1));
                    mistakes.push(Mistake::of_source(&format!("#{}", n + 1), "must be a table"));
                }
            }
        }
    }
    if mapping.sources.is_empty() && mistakes.is_empty() {
        mistakes.push(Mistake::of_file("no [[source]]"));
    }
    Partial { mapping, mistakes, order }
}

/// A source's description, or `None` when its own settings are wrong (it cannot be reached
/// as written); the mistakes go to `mistakes`.
fn source_spec(table: &toml::Table, n: usize, mistakes: &mut Vec<Mistake>) -> Option<SourceSpec> {
    let before = mistakes.len();
    let name = match table.get("name").map(toml::Value::as_str) {
        Some(Some(name)) if !name.trim().is_empty() && !name.chars().any(char::is_control) => name.to_owned(),
        Some(_) => {
            mistakes.push(Mistake::of_source(&format!("#{n}"), "`name` must be a non-empty string"));
            format!("#{n}")
        }
        None => {
            mistakes.push(Mistake::of_source(&format!("#{n}"), "`name` is missing"));
            format!("#{n}")
        }
    };
    let mistake = |message: String| Mistake::of_source(&name, message);
    let source_kind = match table.get("kind").map(toml::Value::as_str) {
        Some(Some("postgres")) => SourceKind::Postgres,
        Some(Some("mysql")) => SourceKind::Mysql,
        Some(_) => {
            mistakes.push(mistake("`kind` must be \"postgres\" or \"mysql\" (MySQL and MariaDB)".into()));
            SourceKind::Postgres
        }
        None => {
            mistakes.push(mistake("`kind` is missing (\"postgres\" or \"mysql\")".into()));
            SourceKind::Postgres
        }
    };
    let url_env = match table.get("url_env").map(toml::Value::as_str) {
        Some(Some(var)) if env_name(var) => var.to_owned(),
        Some(_) => {
            mistakes.push(mistake("`url_env` must name an environment variable, such as \"SHOP_DATABASE_URL\"".into()));
            String::new()
        }
        None => {
            mistakes.push(mistake("`url_env` is missing: the environment variable with the connection string".into()));
            String::new()
        }
    };
    let mut timeout = |key: &str, default: Duration| match table.get(key) {
        None => default,
        Some(value) => seconds(value).unwrap_or_else(|| {
            mistakes.push(mistake(format!("`{key}` must be a number of seconds above 0, at most 86400")));
            default
        }),
    };
    let statement_timeout = timeout("statement_timeout_secs", DEFAULT_STATEMENT_TIMEOUT);
    let connect_timeout = timeout("connect_timeout_secs", DEFAULT_CONNECT_TIMEOUT);
    let settings_right = mistakes.len() == before;
    let mut kinds = Vec::new();
    for (key, value) in table {
        if matches!(key.as_str(), "name" | "kind" | "url_env" | "statement_timeout_secs" | "connect_timeout_secs") {
            continue;
        }
        let Some(kind) = kind_named(key) else {
            mistakes.push(mistake(format!(
                "unknown key `{key}`: a source has name, kind, url_env, statement_timeout_secs, connect_timeout_secs \
                 and the tables [source.profile], [source.subprofile], [source.email]"
            )));
            continue;
        };
        let Some(queries) = value.as_table() else {
            mistakes.push(mistake(format!("`{key}` must be a table: [source.{key}]")));
            continue;
        };
        kinds.push(kind_queries(&name, source_kind, kind, queries, mistakes));
    }
    kinds.sort_by_key(|k| KINDS.iter().position(|kind| *kind == k.kind));
    if kinds.is_empty() && mistakes.len() == before {
        mistakes.push(mistake("supplies nothing: add [source.profile], [source.subprofile] or [source.email]".into()));
    }
    settings_right.then_some(SourceSpec { name, kind: source_kind, url_env, statement_timeout, connect_timeout, kinds })
}

fn kind_queries(
    source: &str,
    dialect: SourceKind,
    kind: SubjectKind,
    table: &toml::Table,
    mistakes: &mut Vec<Mistake>,
) -> KindQueries {
    let allowed = sections(kind);
    let mut queries = KindQueries { kind, exists: None, sections: Vec::new() };
    for (key, value) in table {
        let mistake = |message: String| Mistake::of_query(source, kind, key, message);
        let name = if key == "exists" {
            Some("exists")
        } else if is_own_section(key) {
            Some(interned(key))
        } else {
            allowed.iter().copied().find(|s| s == key)
        };
        let Some(name) = name else {
            let reason = if sections(SubjectKind::Profile).contains(&key.as_str()) {
                let article = if kind == SubjectKind::Email { "an" } else { "a" };
                format!("{article} {} export has no section {key}", kind.as_str())
            } else {
                format!(
                    "not a section name: a section of your own is named in lowercase words (letters, digits and \
                     `_`, at most {MAX_OWN_NAME} characters)"
                )
            };
            mistakes.push(mistake(format!(
                "{reason}; [source.{}] takes exists, {} or sections of your own",
                kind.as_str(),
                allowed.join(", ")
            )));
            continue;
        };
        let Some(text) = value.as_str() else {
            mistakes.push(mistake("must be a string holding one SQL query".into()));
            continue;
        };
        let rewritten = match dialect {
            SourceKind::Postgres => sql::rewrite(text),
            SourceKind::Mysql => sql::rewrite_mysql(text),
        };
        match rewritten {
            Ok(rewritten) => {
                let usable = params(kind);
                if let Some(param) = rewritten.params.iter().find(|p| !usable.contains(p)) {
                    mistakes.push(mistake(format!(
                        "unknown parameter {param}: the queries of [source.{}] may use {} and {}",
                        kind.as_str(),
                        usable[0],
                        usable[1]
                    )));
                    continue;
                }
                let query = Query { name, sql: rewritten.sql, params: rewritten.params };
                if name == "exists" {
                    queries.exists = Some(query);
                } else {
                    queries.sections.push(query);
                }
            }
            Err(error) => mistakes.push(mistake(error.to_string())),
        }
    }
    // Copernica's sections in export order, then the operator's own alphabetically.
    queries.sections.sort_by_key(|q| (allowed.iter().position(|s| *s == q.name).unwrap_or(usize::MAX), q.name));
    queries
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const GOOD: &str = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"
statement_timeout_secs = 2.5

[source.profile]
exists = "SELECT 1 FROM customer WHERE tenant = :account AND id = :profile"
destinations = "SELECT id AS \"ID\" FROM messages WHERE customer_id = :profile"
profile = "SELECT id AS \"ID\", name FROM customer WHERE tenant = :account AND id = :profile"

[source.email]
clicks = "SELECT * FROM events WHERE kind = 'click' AND address = :email"

[[source]]
name = "crm"
kind = "postgres"
url_env = "CRM_URL"

[source.subprofile]
subprofiles = "SELECT * FROM contacts WHERE id = :subprofile"
"#;

    #[test]
    fn a_good_mapping_is_read_in_file_order_with_sections_in_export_order() {
        let mapping = parse(GOOD).expect("valid");
        assert_eq!(mapping.sources.len(), 2);
        let shop = &mapping.sources[0];
        assert_eq!(shop.name, "shop");
        assert_eq!(shop.url_env, "SHOP_DATABASE_URL");
        assert_eq!(shop.statement_timeout, Duration::from_millis(2500));
        assert_eq!(shop.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let profile = shop.queries(SubjectKind::Profile).expect("profile queries");
        assert_eq!(profile.sections.iter().map(|q| q.name).collect::<Vec<_>>(), ["profile", "destinations"]);
        assert_eq!(profile.exists.as_ref().map(|q| q.params.clone()), Some(vec![Param::Account, Param::Profile]));
        assert!(shop.queries(SubjectKind::Subprofile).is_none());
        assert_eq!(mapping.sources[1].statement_timeout, DEFAULT_STATEMENT_TIMEOUT);
    }

    #[test]
    fn sections_of_the_operators_own_follow_copernicas_alphabetically_in_every_kind() {
        let text = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"

[source.email]
subscriptions = "SELECT list FROM subscription WHERE email = :email"
clicks = "SELECT * FROM click WHERE email = :email"
consents_2024 = "SELECT * FROM consent WHERE email = :email"

[source.profile]
orders = "SELECT * FROM orders WHERE customer = :profile"

[[source]]
name = "crm"
kind = "postgres"
url_env = "CRM_DATABASE_URL"

[source.email]
subscriptions = "SELECT list FROM optin WHERE email = :email"
account_notes = "SELECT note FROM notes WHERE email = :email"
"#;
        let mapping = parse(text).expect("valid");
        let email = mapping.sources[0].queries(SubjectKind::Email).expect("email");
        let names: Vec<&str> = email.sections.iter().map(|q| q.name).collect();
        assert_eq!(names, ["clicks", "consents_2024", "subscriptions"]);
        let mut expected = sections(SubjectKind::Email).to_vec();
        expected.extend(["account_notes", "consents_2024", "subscriptions"]);
        assert_eq!(mapping.sections(SubjectKind::Email), expected);
        assert_eq!(mapping.sections(SubjectKind::Profile).last(), Some(&"orders"));
        assert_eq!(mapping.sections(SubjectKind::Subprofile), sections(SubjectKind::Subprofile));
        for bad in ["Orders", "my-orders", "_x", "x_", "a__b", "1st", "subprofiles", "profile"] {
            assert!(!is_own_section(bad), "{bad}");
        }
        for good in ["orders", "list_subscriptions", "consents_2024", "x"] {
            assert!(is_own_section(good), "{good}");
        }
        assert!(!is_own_section(&"a".repeat(65)));
    }

    #[test]
    fn every_mistake_is_reported_by_source_kind_and_section() {
        let text = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"
colour = "blue"

[source.profile]
profile = "SELECT * FROM customer WHERE id = :subprofile"
Orders = "SELECT * FROM orders"

[source.email]
profile = "SELECT * FROM customer WHERE email = :email"
clicks = "SELECT * FROM events WHERE id = $1"

[[source]]
name = "shop"
kind = "oracle"
statement_timeout_secs = 0
"#;
        let mistakes = parse(text).expect_err("broken");
        let lines: Vec<String> = mistakes.iter().map(ToString::to_string).collect();
        let has = |needle: &str| assert!(lines.iter().any(|l| l.contains(needle)), "no `{needle}` in {lines:#?}");
        has("source \"shop\": unknown key `colour`");
        has("source \"shop\", [source.profile] profile: unknown parameter :subprofile");
        has("source \"shop\", [source.profile] Orders: not a section name");
        has("source \"shop\", [source.email] profile: an email export has no section profile");
        has("source \"shop\", [source.email] clicks: numbered placeholders");
        has("source \"shop\": `kind` must be \"postgres\" or \"mysql\"");
        has("source \"shop\": `url_env` is missing");
        has("source \"shop\": `statement_timeout_secs` must be a number of seconds");
        has("source \"shop\": the name is used by another source");
    }

    #[test]
    fn a_mapping_is_read_as_far_as_it_is_right_for_a_check_that_goes_on() {
        let text = r#"
[[source]]
name = "shop"
kind = "postgres"
url_env = "SHOP_DATABASE_URL"
[source.profile]
profile = "SELECT * FROM customer WHERE id = :subprofile"
clicks = "SELECT * FROM events WHERE customer_id = :profile"
[source.email]
profile = "SELECT * FROM customer WHERE email = :email"
destinations = "SELECT * FROM messages WHERE address = :email"

[[source]]
name = "crm"
kind = "oracle"
url_env = "CRM_DATABASE_URL"
[source.profile]
profile = "SELECT 1"
"#;
        let Partial { mapping, mistakes, order } = parse_all(text);
        assert_eq!(mistakes.len(), 3, "{}", lines(&mistakes));
        assert_eq!(order, ["shop", "crm"], "every source, the one left out included");
        // The source whose settings are wrong is left out; the right one keeps its right queries.
        assert_eq!(mapping.sources.len(), 1);
        let shop = &mapping.sources[0];
        let names = |kind| shop.queries(kind).map(|q| q.all().map(|q| q.name).collect::<Vec<_>>());
        assert_eq!(names(SubjectKind::Profile), Some(vec!["clicks"]));
        assert_eq!(names(SubjectKind::Email), Some(vec!["destinations"]));
        assert_eq!(parse(text).expect_err("broken"), mistakes, "parse reports the same mistakes");
    }

    #[test]
    fn syntax_errors_and_empty_files_are_mistakes_of_the_file() {
        let mistakes = parse("[[source]\nname = ").expect_err("broken");
        assert_eq!(mistakes.len(), 1);
        assert!(mistakes[0].to_string().starts_with("mapping: "), "{}", mistakes[0]);
        assert_eq!(parse("").expect_err("empty")[0].to_string(), "mapping: no [[source]]");
        let nothing = "[[source]]\nname = \"a\"\nkind = \"postgres\"\nurl_env = \"A\"\n";
        assert!(parse(nothing).expect_err("supplies nothing")[0].to_string().contains("supplies nothing"));
    }
}
