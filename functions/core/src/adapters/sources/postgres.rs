//! A source of kind `postgres`: connections from the source's pool (a kept one checked before
//! use when it has sat unused), one `READ ONLY`, `REPEATABLE READ`
//! transaction per build (so every section sees the same snapshot), each statement bounded by
//! the source's `statement_timeout`, rows streamed through a portal a page at a time.
//!
//! TLS is rustls with the roots of `webpki-roots`, or the PEM file the connection string names
//! with `sslrootcert=`; the server's certificate and name are always verified when TLS is used.
//! `sslmode` is taken from the connection string: `disable`, `prefer`, `require`, `verify-ca`
//! and `verify-full` (the last three all verify). Without it, a loopback host or a Unix socket
//! is reached without TLS, and any other host only with TLS.

use futures_util::TryStreamExt;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Statement, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::convert::{self, Cell, TextParam};
use super::mapping::{Mistake, Query, SourceSpec};
use super::pool::{FRESH, Lease, Pool};
use super::sql::{Param, in_user_words};
use crate::config::SourcePool;
use crate::domain::{AccountId, Subject, SubjectKind};
use crate::ports::{SourceError, SourceRow};

/// Rows asked of the server at a time. Each page is one statement for `statement_timeout`.
const PAGE_ROWS: i32 = 1000;
/// Rows handed to the export at a time, at most.
pub(super) const BATCH_ROWS: usize = 256;
/// Bytes of values handed to the export at a time, about.
pub(super) const BATCH_BYTES: usize = 256 * 1024;

/// The values of a request's parameters, as text.
#[derive(Debug, Clone)]
pub struct Values {
    account: String,
    subject: String,
}

impl Values {
    /// The values of a request for `subject` in `account`.
    #[must_use]
    pub fn of(account: AccountId, subject: &Subject) -> Self {
        Self { account: account.to_string(), subject: subject.value() }
    }

    /// Values for trying a query: account 1 and `subject`.
    pub(super) fn sample(subject: &str) -> Self {
        Self { account: "1".into(), subject: subject.into() }
    }

    /// The value of a parameter (the mapping allows only the subject's own kind).
    pub(super) fn get(&self, param: Param) -> &str {
        match param {
            Param::Account => &self.account,
            Param::Profile | Param::Subprofile | Param::Email => &self.subject,
        }
    }
}

/// What a reading task hands to the build, in order: each section's rows then its end, and at
/// last `Done` (or `Failed` at any point).
#[derive(Debug)]
pub enum RowsMessage {
    /// Rows of the current section.
    Rows(Vec<SourceRow>),
    /// The current section has no more rows.
    End(&'static str),
    /// Every section was read and the transaction ended.
    Done,
    /// The source failed; nothing more comes.
    Failed(SourceError),
}

/// A `postgres` source, ready to connect.
pub struct Postgres {
    spec: SourceSpec,
    name: Arc<str>,
    config: Config,
    tls: Option<MakeRustlsConnect>,
    pool: Arc<Pool<Connection>>,
}

/// A connection of the pool, with the queries it has prepared (kept with it, so a reused
/// connection runs them without preparing them again).
struct Connection {
    client: Client,
    prepared: HashMap<(&'static str, String), Prepared>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("name", &self.name).field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

fn loopback(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        #[cfg(unix)]
        Host::Unix(_) => true,
    }
}

/// `sslmode` and `sslrootcert` taken out of a connection string (URL or `key=value` form),
/// which the client library does not take as libpq does.
fn split_tls(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let mut mode = None;
    let mut root = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut parsed = url::Url::parse(url).map_err(|e| format!("the connection string is not a valid URL: {e}"))?;
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "sslmode" => mode = Some(value.into_owned()),
                "sslrootcert" => root = Some(value.into_owned()),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        return Ok((parsed.to_string(), mode, root));
    }
    let mut kept = Vec::new();
    for token in url.split_whitespace() {
        if let Some(value) = token.strip_prefix("sslmode=") {
            mode = Some(value.trim_matches('\'').to_owned());
        } else if let Some(value) = token.strip_prefix("sslrootcert=") {
            root = Some(value.trim_matches('\'').to_owned());
        } else {
            kept.push(token);
        }
    }
    Ok((kept.join(" "), mode, root))
}

fn tls_config(root: Option<&str>) -> Result<MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("sslrootcert: cannot read {path}: {e}"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("sslrootcert: {path} holds no certificate"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The problems of one query, found while preparing it, and whether they are the query's own
/// (see [`refused`]) rather than the connection's.
type Problems = (Vec<String>, bool);

/// Whether the server refused the statement itself (SQLSTATE class 42: a permission, an
/// unknown table or column, a syntax error): running it again cannot succeed.
fn refused(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| code.code().starts_with("42"))
}

/// A query prepared for reading: the statement to run and the names of its columns.
#[derive(Clone)]
struct Prepared {
    statement: Statement,
    /// The names of its columns, as the query gives them.
    columns: Arc<[String]>,
}

/// Text of a database error without the values it may quote (data exceptions and constraint
/// violations quote them): safe for logs and for a request's reason.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        let message =
            if code.starts_with("22") || code.starts_with("23") { "a value was refused" } else { db.message() };
        let at = match db.position() {
            Some(tokio_postgres::error::ErrorPosition::Original(n)) => format!(" at character {n}"),
            _ => String::new(),
        };
        return format!("{message}{at} (SQLSTATE {code})");
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

impl Postgres {
    /// A source from its spec, connection string and pool settings.
    ///
    /// # Errors
    /// When the connection string or its TLS settings are wrong; the text never holds the
    /// connection string.
    pub fn new(spec: SourceSpec, url: &str, pool: SourcePool) -> Result<Self, String> {
        let (rest, mode, root) = split_tls(url)?;
        let mut config: Config =
            rest.parse().map_err(|e: tokio_postgres::Error| format!("the connection string: {}", describe(&e)))?;
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err("the connection string names no host".into());
        }
        let local = config.get_hosts().iter().all(loopback) && config.get_hostaddrs().iter().all(IpAddr::is_loopback);
        let (ssl, tls) = match mode.as_deref() {
            Some("disable") => (SslMode::Disable, false),
            Some("prefer") => (SslMode::Prefer, true),
            Some("require" | "verify-ca" | "verify-full") => (SslMode::Require, true),
            None if local => (SslMode::Disable, false),
            None => (SslMode::Require, true),
            Some(_) => return Err("sslmode must be disable, prefer, require, verify-ca or verify-full".into()),
        };
        config.ssl_mode(ssl);
        config.connect_timeout(spec.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("datarequest");
        }
        let tls = if tls { Some(tls_config(root.as_deref())?) } else { None };
        Ok(Self { name: Arc::from(spec.name.as_str()), spec, config, tls, pool: Pool::new(pool) })
    }

    /// The mapping's description of this source.
    #[must_use]
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    fn error(&self, kind: Option<SubjectKind>, section: Option<&str>, what: String) -> SourceError {
        self.spec.error(kind, section, what)
    }

    async fn connect(&self) -> Result<Client, SourceError> {
        let connected = match &self.tls {
            None => self.config.connect(NoTls).await.map(|(client, connection)| {
                tokio::spawn(connection);
                client
            }),
            Some(tls) => self.config.connect(tls.clone()).await.map(|(client, connection)| {
                tokio::spawn(connection);
                client
            }),
        };
        connected.map_err(|e| self.error(None, None, format!("could not connect: {}", describe(&e))))
    }

    /// A connection of the pool (a kept one checked first when it has sat unused), or a new one.
    async fn session(&self) -> Result<(Connection, Lease<Connection>), SourceError> {
        let lease = self.pool.lease_for(&self.spec).await?;
        while let Some((connection, idle)) = lease.reuse() {
            let client = &connection.client;
            if !client.is_closed() && (idle < FRESH || client.check_connection().await.is_ok()) {
                return Ok((connection, lease));
            }
        }
        let client = self.connect().await?;
        Ok((Connection { client, prepared: HashMap::new() }, lease))
    }

    /// Starts the read-only snapshot with the statement timeout.
    async fn begin<'c>(&self, client: &'c mut Client, kind: SubjectKind) -> Result<Transaction<'c>, SourceError> {
        let failed = |e: tokio_postgres::Error| {
            self.error(Some(kind), None, format!("could not start reading: {}", describe(&e)))
        };
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(failed)?;
        let millis = self.spec.statement_timeout.as_millis().max(1);
        transaction.batch_execute(&format!("SET LOCAL statement_timeout = {millis}")).await.map_err(failed)?;
        Ok(transaction)
    }

    /// Whether the kind's `exists` query returns a row for these values (`false` without one).
    ///
    /// # Errors
    /// When the source cannot be reached or the query fails.
    pub async fn exists(&self, kind: SubjectKind, values: &Values) -> Result<bool, SourceError> {
        let Some(query) = self.spec.queries(kind).and_then(|q| q.exists.as_ref()) else { return Ok(false) };
        let (mut connection, lease) = self.session().await?;
        let found = {
            let Connection { client, prepared } = &mut connection;
            let transaction = self.begin(client, kind).await?;
            let failed = |e: tokio_postgres::Error| {
                let what = in_user_words(&describe(&e), &query.params);
                self.error(Some(kind), Some("exists"), what).permanent_if(refused(&e))
            };
            let key = (query.name, query.sql.clone());
            let statement = match prepared.get(&key) {
                Some(known) => known.statement.clone(),
                None => {
                    let statement = transaction.prepare(&query.sql).await.map_err(failed)?;
                    let known = Prepared { statement: statement.clone(), columns: Arc::from([]) };
                    prepared.insert(key, known);
                    statement
                }
            };
            let found = match bind(query, &statement, values) {
                None => false,
                Some(params) => {
                    let rows = transaction.query_raw(&statement, params).await.map_err(failed)?;
                    let mut rows = std::pin::pin!(rows);
                    rows.try_next().await.map_err(failed)?.is_some()
                }
            };
            transaction.commit().await.map_err(failed)?;
            found
        };
        lease.give_back(connection);
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
        let (mut connection, lease) = self.session().await?;
        {
            let Connection { client, prepared: cache } = &mut connection;
            let transaction = self.begin(client, kind).await?;
            // The sections this source supplies, in export order; the others are not its to end.
            let queries = self.spec.queries(kind).map(|q| q.sections.as_slice()).unwrap_or_default();
            let mut statements = Vec::with_capacity(queries.len());
            for query in queries {
                statements.push(self.prepared(&transaction, cache, kind, query).await?);
            }
            // Every section's portal is bound at once (the binds go out together and their
            // answers come back together: one round trip, not one a section); each is read
            // when its section's turn comes.
            let portals =
                futures_util::future::try_join_all(queries.iter().zip(&statements).map(|(query, prepared)| async {
                    let Some(params) = bind(query, &prepared.statement, values) else { return Ok(None) };
                    let failed = |e: tokio_postgres::Error| {
                        self.error(Some(kind), Some(query.name), describe(&e)).permanent_if(refused(&e))
                    };
                    transaction.bind_raw(&prepared.statement, params).await.map(Some).map_err(failed)
                }))
                .await?;
            for ((query, prepared), portal) in queries.iter().zip(&statements).zip(portals) {
                if let Some(portal) = portal {
                    self.stream(&transaction, prepared, &portal, kind, query, out).await?;
                }
                out.send(RowsMessage::End(query.name)).await.map_err(|_| gone())?;
            }
            transaction
                .commit()
                .await
                .map_err(|e| self.error(Some(kind), None, format!("could not end reading: {}", describe(&e))))?;
        }
        // Only a connection whose read ended cleanly is kept; any other is closed.
        lease.give_back(connection);
        Ok(())
    }

    /// The prepared statement of a section's query: the connection's, or prepared now.
    async fn prepared(
        &self,
        transaction: &Transaction<'_>,
        cache: &mut HashMap<(&'static str, String), Prepared>,
        kind: SubjectKind,
        query: &Query,
    ) -> Result<Prepared, SourceError> {
        let key = (query.name, query.sql.clone());
        if let Some(known) = cache.get(&key) {
            return Ok(known.clone());
        }
        let prepared = prepare(transaction, query).await.map_err(|(problems, own)| {
            self.error(Some(kind), Some(query.name), problems.join("; ")).permanent_if(own)
        })?;
        cache.insert(key, prepared.clone());
        Ok(prepared)
    }

    /// Reads a section's rows from its bound portal, a page at a time, and hands them to
    /// `out` in batches.
    async fn stream(
        &self,
        transaction: &Transaction<'_>,
        prepared: &Prepared,
        portal: &tokio_postgres::Portal,
        kind: SubjectKind,
        query: &Query,
        out: &mpsc::Sender<RowsMessage>,
    ) -> Result<(), SourceError> {
        let failed = |what: String| self.error(Some(kind), Some(query.name), what);
        let width = prepared.columns.len();
        let mut batch = Vec::new();
        let mut bytes = 0;
        loop {
            let rows = transaction
                .query_portal_raw(portal, PAGE_ROWS)
                .await
                .map_err(|e| failed(describe(&e)).permanent_if(refused(&e)))?;
            let mut rows = std::pin::pin!(rows);
            let mut count = 0;
            while let Some(row) = rows.try_next().await.map_err(|e| failed(describe(&e)).permanent_if(refused(&e)))? {
                count += 1;
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    let Cell(value, size) =
                        row.try_get::<_, Cell>(i).map_err(|e| failed(describe(&e)).permanent_if(refused(&e)))?;
                    bytes += size;
                    values.push(value);
                }
                batch.push(SourceRow { source: self.name.clone(), columns: prepared.columns.clone(), values });
                if batch.len() >= BATCH_ROWS || bytes >= BATCH_BYTES {
                    bytes = 0;
                    let rows = std::mem::take(&mut batch);
                    out.send(RowsMessage::Rows(rows)).await.map_err(|_| failed("the build stopped reading".into()))?;
                }
            }
            if count < PAGE_ROWS {
                break;
            }
        }
        if !batch.is_empty() {
            out.send(RowsMessage::Rows(batch)).await.map_err(|_| failed("the build stopped reading".into()))?;
        }
        Ok(())
    }

    /// Connects, prepares every query and reports each mistake: a query the server refuses
    /// (syntax, unknown table or column), a parameter compared with a type its value cannot
    /// have, columns without a name or with the same name, a column that cannot be converted;
    /// then runs each query that prepared once, in a read-only transaction with sample values
    /// (what only running finds: a missing grant, a failing function).
    pub async fn check(&self) -> Vec<Mistake> {
        let mut client = match self.connect().await {
            Ok(client) => client,
            Err(error) => return vec![Mistake::of_source(&self.spec.name, error.what)],
        };
        let mut mistakes = Vec::new();
        for queries in &self.spec.kinds {
            for query in queries.all() {
                let mistake = |message: String| Mistake::of_query(&self.spec.name, queries.kind, query.name, message);
                let prepared = if query.name == "exists" {
                    client
                        .prepare(&query.sql)
                        .await
                        .map(|statement| Prepared { statement, columns: Arc::from([]) })
                        .map_err(|e| (vec![in_user_words(&describe(&e), &query.params)], refused(&e)))
                } else {
                    prepare(&client, query).await
                };
                match prepared {
                    Ok(prepared) => {
                        let before = mistakes.len();
                        for (param, ty) in query.params.iter().zip(prepared.statement.params()) {
                            let numeric = *param != Param::Email;
                            if !convert::bindable(ty, numeric) {
                                let can = if numeric { "an integer, numeric or text type" } else { "a text type" };
                                mistakes.push(mistake(format!(
                                    "parameter {param} is compared with a value of type {}; it can only be {can}",
                                    ty.name()
                                )));
                            }
                        }
                        if mistakes.len() == before
                            && let Err(error) = self.sample(&mut client, query, &prepared.statement).await
                        {
                            mistakes.push(mistake(describe(&error)));
                        }
                    }
                    Err((problems, _)) => mistakes.extend(problems.into_iter().map(mistake)),
                }
            }
        }
        mistakes
    }
}

impl Postgres {
    /// Runs a prepared query once with sample values (account 1, id 1, an address of the
    /// reserved `.invalid` domain) inside a read-only transaction that is rolled back, asking
    /// for one row.
    async fn sample(
        &self,
        client: &mut Client,
        query: &Query,
        statement: &Statement,
    ) -> Result<(), tokio_postgres::Error> {
        let values =
            Values::sample(if query.params.contains(&Param::Email) { "check@datarequest.invalid" } else { "1" });
        let Some(params) = bind(query, statement, &values) else { return Ok(()) };
        let transaction = client.build_transaction().read_only(true).start().await?;
        let millis = self.spec.statement_timeout.as_millis().max(1);
        transaction.batch_execute(&format!("SET LOCAL statement_timeout = {millis}")).await?;
        let portal = transaction.bind_raw(statement, params).await?;
        let rows = transaction.query_portal_raw(&portal, 1).await?;
        let mut rows = std::pin::pin!(rows);
        while rows.try_next().await?.is_some() {}
        transaction.rollback().await
    }
}

/// The parameters of a prepared query, or `None` when a value cannot be given to its type
/// (an id out of an integer column's range, an address for a number): then nothing can match.
fn bind<'v>(query: &Query, statement: &Statement, values: &'v Values) -> Option<Vec<TextParam<'v>>> {
    query
        .params
        .iter()
        .zip(statement.params())
        .map(|(param, ty)| {
            let value = values.get(*param);
            convert::fits(ty, value).then_some(TextParam(value))
        })
        .collect()
}

/// Prepares a section's query and checks its columns: each needs a name of its own, and a
/// column of a type without a JSON form here is selected as text by wrapping the query
/// (`SELECT r.c1, r.c2::text … FROM (query) AS r(c1, c2, …)`: a plain projection, which keeps
/// the query's order).
async fn prepare(client: &impl GenericClient, query: &Query) -> Result<Prepared, Problems> {
    let statement = client
        .prepare(&query.sql)
        .await
        .map_err(|e| (vec![in_user_words(&describe(&e), &query.params)], refused(&e)))?;
    let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_owned()).collect();
    let mut problems = Vec::new();
    for (i, name) in columns.iter().enumerate() {
        if name == "?column?" {
            problems.push(format!("column {} has no name: give it one with AS", i + 1));
        } else if columns[..i].contains(name) {
            problems.push(format!("column \"{name}\" appears twice: give one of them another name with AS"));
        }
    }
    if !problems.is_empty() {
        return Err((problems, true));
    }
    let casts: Vec<Option<&str>> = statement.columns().iter().map(|c| convert::needs_text(c.type_())).collect();
    if casts.iter().all(Option::is_none) {
        return Ok(Prepared { statement, columns: columns.into() });
    }
    let select: Vec<String> = casts
        .iter()
        .enumerate()
        .map(|(i, cast)| match cast {
            Some(cast) => format!("r.c{}::{cast}", i + 1),
            None => format!("r.c{}", i + 1),
        })
        .collect();
    let aliases: Vec<String> = (1..=columns.len()).map(|i| format!("c{i}")).collect();
    let wrapped = format!("SELECT {} FROM (\n{}\n) AS r({})", select.join(", "), query.sql, aliases.join(", "));
    match client.prepare(&wrapped).await {
        Ok(statement) => Ok(Prepared { statement, columns: columns.into() }),
        Err(error) => {
            let odd: Vec<String> = statement
                .columns()
                .iter()
                .zip(&casts)
                .filter(|(_, cast)| cast.is_some())
                .map(|(c, _)| format!("\"{}\" ({})", c.name(), c.type_().name()))
                .collect();
            Err((vec![format!("column {} cannot be converted to text: {}", odd.join(", "), describe(&error))], true))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    #[test]
    fn tls_settings_are_taken_out_of_both_forms_of_connection_string() {
        let (rest, mode, root) =
            split_tls("postgres://u:p%40ss@db.example:5432/shop?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(rest, "postgres://u:p%40ss@db.example:5432/shop?application_name=x");
        assert_eq!((mode.as_deref(), root), (Some("verify-full"), None));
        let (rest, mode, root) = split_tls("host=db.example dbname=shop sslmode=require sslrootcert=/ca.pem").unwrap();
        assert_eq!(rest, "host=db.example dbname=shop");
        assert_eq!((mode.as_deref(), root.as_deref()), (Some("require"), Some("/ca.pem")));
    }

    fn spec() -> SourceSpec {
        SourceSpec {
            name: "shop".into(),
            kind: crate::adapters::sources::mapping::SourceKind::Postgres,
            url_env: "SHOP_URL".into(),
            statement_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            kinds: Vec::new(),
        }
    }

    #[test]
    fn loopback_goes_without_tls_and_other_hosts_only_with_it_unless_told() {
        let pool = SourcePool::default();
        let plain = Postgres::new(spec(), "postgres://u@127.0.0.1:5432/shop", pool).unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(plain.config.get_ssl_mode(), SslMode::Disable);
        let remote = Postgres::new(spec(), "postgres://u@db.example/shop", pool).unwrap();
        assert!(remote.tls.is_some());
        assert_eq!(remote.config.get_ssl_mode(), SslMode::Require);
        let told = Postgres::new(spec(), "postgres://u@db.example/shop?sslmode=disable", pool).unwrap();
        assert!(told.tls.is_none());
        let error = Postgres::new(spec(), "postgres://u:secret@db.example/shop?sslmode=allow", pool).unwrap_err();
        assert!(!error.contains("secret"), "{error}");
        let error = Postgres::new(spec(), "postgres://u:secret@db.example/shop?nonsense=1", pool).unwrap_err();
        assert!(!error.contains("secret") && error.contains("nonsense"), "{error}");
    }
}
