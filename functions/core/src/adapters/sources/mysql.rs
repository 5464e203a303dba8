//! A source of kind `mysql`: MySQL 8 or MariaDB 10.6 and later. Connections come from the
//! source's pool; each session runs in UTC (`time_zone = '+00:00'`) with a time limit on each
//! statement (`max_statement_time` on MariaDB, `max_execution_time` on MySQL); a build reads
//! every section in one `START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT` at `REPEATABLE
//! READ`, rows streamed one at a time from the server as the export takes them.
//!
//! Values (the binary protocol of prepared statements): integers and `YEAR` are numbers,
//! `FLOAT`/`DOUBLE` numbers, `DECIMAL` a string with every digit, `DATETIME` and `TIMESTAMP`
//! `YYYY-MM-DD hh:mm:ss` in UTC (fractions of a second dropped), `DATE` `YYYY-MM-DD`, `TIME`
//! `[-]hh:mm:ss` (hours may exceed 24), `BIT(n)` a string of n binary digits, `ENUM`/`SET` and
//! text their text, `BINARY`/`VARBINARY`/`BLOB` (and geometry) base64, `JSON` the document as
//! the server gives it (MariaDB's `JSON`, a `LONGTEXT` checked by `json_valid`, is recognised
//! by that check), NULL null.
//!
//! TLS is rustls (ring) with the roots of `webpki-roots`, or the PEM file the connection string
//! names with `sslrootcert=`; the server's certificate and name are always verified when TLS is
//! used. `sslmode` is `disable`, `require`, `verify-ca` or `verify-full` (the last three all
//! verify); without it, a loopback host is reached without TLS and any other only with TLS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Conn, IsolationLevel, Opts, OptsBuilder, SslOpts, Statement, TxOpts, Value};
use serde_json::Value as Json;
use tokio::sync::mpsc;

use super::mapping::{Mistake, Query, SourceSpec};
use super::pool::{Lease, Pool};
use super::postgres::{BATCH_BYTES, BATCH_ROWS, RowsMessage, Values};
use crate::config::SourcePool;
use crate::domain::SubjectKind;
use crate::ports::{SourceError, SourceRow, SourceValue};

/// The character set number of binary strings.
const BINARY: u16 = 63;

/// A `mysql` source, ready to connect.
pub struct Mysql {
    spec: SourceSpec,
    name: Arc<str>,
    opts: Opts,
    pool: Arc<Pool<Conn>>,
    /// Whether a text column (schema, table, column) is MariaDB's `JSON`, as found out.
    json_columns: Mutex<HashMap<(String, String, String), bool>>,
}

impl std::fmt::Debug for Mysql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mysql")
            .field("name", &self.name)
            .field("tls", &self.opts.ssl_opts().is_some())
            .finish_non_exhaustive()
    }
}

/// Text of an error without the values it may quote (data errors quote them): safe for logs
/// and for a request's reason.
fn describe(error: &mysql_async::Error) -> String {
    match error {
        mysql_async::Error::Server(server) => {
            // Data errors quote the value, whatever their SQLSTATE (1265, 1292, 1366, 1367 are HY000).
            let quotes = matches!(server.code, 1265 | 1292 | 1366 | 1367);
            let message = if quotes || server.state.starts_with("22") || server.state.starts_with("23") {
                "a value was refused"
            } else {
                &server.message
            };
            format!("{message} (error {}, SQLSTATE {})", server.code, server.state)
        }
        mysql_async::Error::Url(_) => "the connection string is not valid".into(),
        other => other.to_string(),
    }
}

/// Whether the server refused the statement itself (SQLSTATE class 42: a permission, an
/// unknown table or column, a syntax error): running it again cannot succeed.
fn refused(error: &mysql_async::Error) -> bool {
    matches!(error, mysql_async::Error::Server(server) if server.state.starts_with("42"))
}

/// `sslmode` and `sslrootcert` taken out of a `mysql://` URL.
fn split_tls(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("the connection string is not a valid URL: {e}"))?;
    if parsed.scheme() != "mysql" {
        return Err("the connection string must start with mysql://".into());
    }
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "sslmode" => mode = Some(value.into_owned()),
            "sslrootcert" => root = Some(value.into_owned()),
            "require_ssl" | "verify_ca" | "verify_identity" | "built_in_roots" => {
                return Err(format!("{key}: set sslmode (disable, require, verify-ca, verify-full) instead"));
            }
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.to_string(), mode, root))
}

impl Mysql {
    /// A source from its spec, connection string and pool settings.
    ///
    /// # Errors
    /// When the connection string or its TLS settings are wrong; the text never holds the
    /// connection string.
    pub fn new(spec: SourceSpec, url: &str, pool: SourcePool) -> Result<Self, String> {
        let (rest, mode, root) = split_tls(url)?;
        let opts = Opts::from_url(&rest).map_err(|e| match e {
            mysql_async::UrlError::UnknownParameter { param } => {
                format!("the connection string: unknown parameter {param}")
            }
            _ => "the connection string is not valid".to_owned(),
        })?;
        let host = opts.ip_or_hostname().trim_start_matches('[').trim_end_matches(']');
        let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let tls = match mode.as_deref() {
            Some("disable") => false,
            Some("require" | "verify-ca" | "verify-full") => true,
            None => !local,
            Some("prefer") => return Err("sslmode prefer is not offered for mysql: use require or disable".into()),
            Some(_) => return Err("sslmode must be disable, require, verify-ca or verify-full".into()),
        };
        let ssl = if tls {
            // The client library builds its TLS settings on the process's provider: ring, as
            // everywhere else here.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut ssl = SslOpts::default();
            if let Some(path) = root {
                std::fs::metadata(&path).map_err(|e| format!("sslrootcert: cannot read {path}: {e}"))?;
                ssl =
                    ssl.with_root_certs(vec![std::path::PathBuf::from(path).into()]).with_disable_built_in_roots(true);
            }
            Some(ssl)
        } else {
            None
        };
        let opts = OptsBuilder::from_opts(opts).ssl_opts(ssl).prefer_socket(false).into();
        Ok(Self {
            name: Arc::from(spec.name.as_str()),
            spec,
            opts,
            pool: Pool::new(pool),
            json_columns: Mutex::new(HashMap::new()),
        })
    }

    /// The mapping's description of this source.
    #[must_use]
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    fn error(&self, kind: Option<SubjectKind>, section: Option<&str>, what: String) -> SourceError {
        self.spec.error(kind, section, what)
    }

    /// A new connection, its session in UTC with the statement time limit.
    async fn connect(&self) -> Result<Conn, SourceError> {
        let failed = |what: String| self.error(None, None, format!("could not connect: {what}"));
        let mut conn = tokio::time::timeout(self.spec.connect_timeout, Conn::new(self.opts.clone()))
            .await
            .map_err(|_| failed(format!("no answer within {} s", self.spec.connect_timeout.as_secs_f64())))?
            .map_err(|e| failed(describe(&e)))?;
        // MariaDB's versions start at 10, MySQL's are below.
        let limit = if conn.server_version().0 >= 10 {
            format!("SESSION max_statement_time = {:.3}", self.spec.statement_timeout.as_secs_f64().max(0.001))
        } else {
            format!("SESSION max_execution_time = {}", self.spec.statement_timeout.as_millis().max(1))
        };
        conn.query_drop(format!("SET time_zone = '+00:00', {limit}")).await.map_err(|e| failed(describe(&e)))?;
        Ok(conn)
    }

    /// A connection of the pool (a kept one checked first: nothing watches an idle one here, so
    /// it is pinged), or a new one.
    async fn session(&self) -> Result<(Conn, Lease<Conn>), SourceError> {
        let lease = self.pool.lease_for(&self.spec).await?;
        while let Some((mut conn, _)) = lease.reuse() {
            if conn.ping().await.is_ok() {
                return Ok((conn, lease));
            }
        }
        Ok((self.connect().await?, lease))
    }

    fn snapshot() -> TxOpts {
        let mut opts = TxOpts::default();
        opts.with_isolation_level(IsolationLevel::RepeatableRead)
            .with_readonly(Some(true))
            .with_consistent_snapshot(true);
        opts
    }

    /// Whether the kind's `exists` query returns a row for these values (`false` without one).
    ///
    /// # Errors
    /// When the source cannot be reached or the query fails.
    pub async fn exists(&self, kind: SubjectKind, values: &Values) -> Result<bool, SourceError> {
        let Some(query) = self.spec.queries(kind).and_then(|q| q.exists.as_ref()) else { return Ok(false) };
        let (mut conn, lease) = self.session().await?;
        let failed =
            |e: mysql_async::Error| self.error(Some(kind), Some("exists"), describe(&e)).permanent_if(refused(&e));
        let found = {
            let mut transaction = conn.start_transaction(Self::snapshot()).await.map_err(failed)?;
            let found = transaction
                .exec_first::<mysql_async::Row, _, _>(query.sql.as_str(), params(query, values))
                .await
                .map_err(failed)?
                .is_some();
            transaction.commit().await.map_err(failed)?;
            found
        };
        lease.give_back(conn);
        Ok(found)
    }

    /// Reads every section the kind's queries supply, in export order, in one snapshot, and
    /// hands the rows to `out` (see [`RowsMessage`]): each section's rows, then its end.
    pub(super) async fn read_all(
        &self,
        kind: SubjectKind,
        values: &Values,
        out: &mpsc::Sender<RowsMessage>,
    ) -> Result<(), SourceError> {
        let gone = || self.error(Some(kind), None, "the build stopped reading".into());
        let (mut conn, lease) = self.session().await?;
        {
            let mut transaction = conn
                .start_transaction(Self::snapshot())
                .await
                .map_err(|e| self.error(Some(kind), None, format!("could not start reading: {}", describe(&e))))?;
            // The sections this source supplies, in export order; the others are not its to end.
            for query in self.spec.queries(kind).map(|q| q.sections.as_slice()).unwrap_or_default() {
                self.stream(&mut transaction, kind, query, values, out).await?;
                out.send(RowsMessage::End(query.name)).await.map_err(|_| gone())?;
            }
            transaction
                .commit()
                .await
                .map_err(|e| self.error(Some(kind), None, format!("could not end reading: {}", describe(&e))))?;
        }
        lease.give_back(conn);
        Ok(())
    }

    async fn stream(
        &self,
        transaction: &mut mysql_async::Transaction<'_>,
        kind: SubjectKind,
        query: &Query,
        values: &Values,
        out: &mpsc::Sender<RowsMessage>,
    ) -> Result<(), SourceError> {
        let failed = |what: String| self.error(Some(kind), Some(query.name), what);
        let statement =
            transaction.prep(query.sql.as_str()).await.map_err(|e| failed(describe(&e)).permanent_if(refused(&e)))?;
        let columns = names(&statement).map_err(|problems| failed(problems.join("; ")).permanent_if(true))?;
        let described: Arc<[Column]> = statement.columns();
        let json = self.json_columns(transaction, &described).await.map_err(|e| failed(describe(&e)))?;
        let mut result = transaction
            .exec_iter(&statement, params(query, values))
            .await
            .map_err(|e| failed(describe(&e)).permanent_if(refused(&e)))?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(row) = result.next().await.map_err(|e| failed(describe(&e)).permanent_if(refused(&e)))? {
            let mut cells = Vec::with_capacity(columns.len());
            for ((value, column), json) in row.unwrap_raw().into_iter().zip(described.iter()).zip(&json) {
                let (value, size) = cell(column, *json, value.unwrap_or(Value::NULL)).map_err(&failed)?;
                bytes += size;
                cells.push(value);
            }
            batch.push(SourceRow { source: self.name.clone(), columns: columns.clone(), values: cells });
            if batch.len() >= BATCH_ROWS || bytes >= BATCH_BYTES {
                bytes = 0;
                let rows = std::mem::take(&mut batch);
                out.send(RowsMessage::Rows(rows)).await.map_err(|_| failed("the build stopped reading".into()))?;
            }
        }
        if !batch.is_empty() {
            out.send(RowsMessage::Rows(batch)).await.map_err(|_| failed("the build stopped reading".into()))?;
        }
        Ok(())
    }

    /// Which columns hold JSON: MySQL's `JSON` type, or a text column of a table whose column
    /// MariaDB checks with `json_valid` (its `JSON`); found once per column.
    async fn json_columns(
        &self,
        transaction: &mut mysql_async::Transaction<'_>,
        columns: &[Column],
    ) -> Result<Vec<bool>, mysql_async::Error> {
        let mut found = Vec::with_capacity(columns.len());
        for column in columns {
            if column.column_type() == ColumnType::MYSQL_TYPE_JSON {
                found.push(true);
                continue;
            }
            let text_blob = matches!(
                column.column_type(),
                ColumnType::MYSQL_TYPE_BLOB
                    | ColumnType::MYSQL_TYPE_LONG_BLOB
                    | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
                    | ColumnType::MYSQL_TYPE_TINY_BLOB
            ) && column.character_set() != BINARY;
            if !text_blob || column.org_table_ref().is_empty() || column.org_name_ref().is_empty() {
                found.push(false);
                continue;
            }
            let key = (
                column.schema_str().into_owned(),
                column.org_table_str().into_owned(),
                column.org_name_str().into_owned(),
            );
            let known = self.json_columns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).copied();
            let is_json = match known {
                Some(is_json) => is_json,
                None => {
                    let row: Option<mysql_async::Row> = transaction
                        .exec_first(
                            "SELECT 1 FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? \
                             AND TABLE_NAME = ? AND CHECK_CLAUSE = CONCAT('json_valid(`', REPLACE(?, '`', '``'), '`)')",
                            (key.0.clone(), key.1.clone(), key.2.clone()),
                        )
                        .await?;
                    let is_json = row.is_some();
                    self.json_columns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, is_json);
                    is_json
                }
            };
            found.push(is_json);
        }
        Ok(found)
    }

    /// Connects, prepares every query and reports each mistake: a query the server refuses
    /// (syntax, unknown table or column, a missing grant), columns with the same name; then
    /// runs each query that prepared once, in a read-only transaction with sample values
    /// (account 1, id 1, an address of the reserved `.invalid` domain) that is rolled back.
    pub async fn check(&self) -> Vec<Mistake> {
        let mut conn = match self.connect().await {
            Ok(conn) => conn,
            Err(error) => return vec![Mistake::of_source(&self.spec.name, error.what)],
        };
        let mut mistakes = Vec::new();
        for queries in &self.spec.kinds {
            for query in queries.all() {
                let mistake = |message: String| Mistake::of_query(&self.spec.name, queries.kind, query.name, message);
                match conn.prep(query.sql.as_str()).await {
                    Ok(statement) => {
                        if query.name != "exists"
                            && let Err(problems) = names(&statement)
                        {
                            mistakes.extend(problems.into_iter().map(mistake));
                        }
                        if let Err(error) = sample(&mut conn, query, &statement).await {
                            mistakes.push(mistake(describe(&error)));
                        }
                    }
                    Err(error) => mistakes.push(mistake(describe(&error))),
                }
            }
        }
        let _ = conn.disconnect().await;
        mistakes
    }
}

/// Runs a prepared query once with sample values inside a read-only transaction that is rolled
/// back.
async fn sample(conn: &mut Conn, query: &Query, statement: &Statement) -> Result<(), mysql_async::Error> {
    let values = if query.params.contains(&super::sql::Param::Email) {
        Values::sample("check@datarequest.invalid")
    } else {
        Values::sample("1")
    };
    let mut transaction = conn.start_transaction(Mysql::snapshot()).await?;
    transaction.exec_first::<mysql_async::Row, _, _>(statement, params(query, &values)).await?;
    transaction.rollback().await
}

/// The values of a query's placeholders, in order, each sent as text (the server converts it
/// to what the query compares it with).
fn params(query: &Query, values: &Values) -> Vec<Value> {
    query.params.iter().map(|param| Value::Bytes(values.get(*param).as_bytes().to_vec())).collect()
}

/// The names of a statement's columns, each of its own.
fn names(statement: &Statement) -> Result<Arc<[String]>, Vec<String>> {
    let columns: Vec<String> = statement.columns().iter().map(|c| c.name_str().into_owned()).collect();
    let problems: Vec<String> = columns
        .iter()
        .enumerate()
        .filter(|(i, name)| columns[..*i].contains(name))
        .map(|(_, name)| format!("column \"{name}\" appears twice: give one of them another name with AS"))
        .collect();
    if problems.is_empty() { Ok(columns.into()) } else { Err(problems) }
}

fn float(x: f64) -> Json {
    match serde_json::Number::from_f64(x) {
        Some(n) => Json::Number(n),
        None if x.is_nan() => Json::String("NaN".into()),
        None if x > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// One value of a row as JSON (see the module's table), with the size of its raw bytes.
///
/// # Errors
/// When a JSON column does not hold JSON.
fn cell(column: &Column, json: bool, value: Value) -> Result<(SourceValue, usize), String> {
    let plain = |value: Json| SourceValue::Value(value);
    Ok(match value {
        Value::NULL => (plain(Json::Null), 0),
        Value::Int(n) => (plain(n.into()), 8),
        Value::UInt(n) => (plain(n.into()), 8),
        // Through its shortest text, so 1.1 stays 1.1 and does not become 1.100000023841858.
        Value::Float(x) => (plain(x.to_string().parse::<f64>().map_or(Json::Null, float)), 4),
        Value::Double(x) => (plain(float(x)), 8),
        Value::Date(year, month, day, hour, minute, second, _) => {
            let date = matches!(column.column_type(), ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE);
            let text = if date {
                format!("{year:04}-{month:02}-{day:02}")
            } else {
                format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}")
            };
            (plain(Json::String(text)), 12)
        }
        Value::Time(negative, days, hours, minutes, seconds, _) => {
            let hours = u64::from(days) * 24 + u64::from(hours);
            let sign = if negative { "-" } else { "" };
            (plain(Json::String(format!("{sign}{hours:02}:{minutes:02}:{seconds:02}"))), 12)
        }
        Value::Bytes(bytes) => {
            let size = bytes.len();
            let text = |bytes: Vec<u8>| {
                String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
            };
            let value = if json {
                SourceValue::json(&text(bytes)).map_err(|e| format!("a JSON value is not JSON: {e}"))?
            } else {
                match column.column_type() {
                    ColumnType::MYSQL_TYPE_BIT => plain(Json::String(bits(&bytes, column.column_length()))),
                    ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
                        plain(Json::String(text(bytes)))
                    }
                    _ if column.character_set() == BINARY
                        && !column.flags().intersects(ColumnFlags::ENUM_FLAG | ColumnFlags::SET_FLAG) =>
                    {
                        plain(Json::String(base64::engine::general_purpose::STANDARD.encode(&bytes)))
                    }
                    _ => plain(Json::String(text(bytes))),
                }
            };
            (value, size)
        }
    })
}

/// The `width` lowest bits of a big-endian `BIT` value, as binary digits.
fn bits(bytes: &[u8], width: u32) -> String {
    let all: String = bytes.iter().map(|b| format!("{b:08b}")).collect();
    let width = usize::try_from(width).unwrap_or(usize::MAX).clamp(1, all.len().max(1));
    all[all.len().saturating_sub(width)..].to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    fn spec() -> SourceSpec {
        SourceSpec {
            name: "shop".into(),
            kind: crate::adapters::sources::mapping::SourceKind::Mysql,
            url_env: "SHOP_URL".into(),
            statement_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            kinds: Vec::new(),
        }
    }

    #[test]
    fn loopback_goes_without_tls_and_other_hosts_only_with_it_unless_told() {
        let pool = SourcePool::default();
        assert!(Mysql::new(spec(), "mysql://u:p@127.0.0.1:3306/shop", pool).unwrap().opts.ssl_opts().is_none());
        assert!(Mysql::new(spec(), "mysql://u:p@db.example/shop", pool).unwrap().opts.ssl_opts().is_some());
        let told = Mysql::new(spec(), "mysql://u:p@db.example/shop?sslmode=disable", pool).unwrap();
        assert!(told.opts.ssl_opts().is_none());
        for wrong in [
            "mysql://u:secret@db.example/shop?sslmode=prefer",
            "mysql://u:secret@db.example/shop?sslmode=allow",
            "mysql://u:secret@db.example/shop?nonsense=1",
            "postgres://u:secret@db.example/shop",
            "mysql://u:secret@db.example/shop?sslmode=require&sslrootcert=/nonexistent.pem",
        ] {
            let error = Mysql::new(spec(), wrong, pool).unwrap_err();
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn an_error_that_quotes_a_value_is_told_without_it() {
        let server = |code, state: &str, message: &str| {
            mysql_async::Error::Server(mysql_async::ServerError { code, message: message.into(), state: state.into() })
        };
        let quoting = describe(&server(1292, "HY000", "Truncated incorrect DOUBLE value: 'jane@example.com'"));
        assert_eq!(quoting, "a value was refused (error 1292, SQLSTATE HY000)");
        let denied =
            server(1142, "42000", "SELECT command denied to user 'datarequest'@'127.0.0.1' for table `shop`.`events`");
        assert!(describe(&denied).starts_with("SELECT command denied") && refused(&denied));
        assert!(!refused(&server(1969, "70100", "Query execution was interrupted (max_statement_time exceeded)")));
    }

    #[test]
    fn bits_keep_the_columns_width() {
        assert_eq!(bits(&[0b101], 3), "101");
        assert_eq!(bits(&[0x01, 0x00], 10), "0100000000");
        assert_eq!(bits(&[0xff], 64), "11111111");
    }
}
