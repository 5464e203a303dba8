//! Settings from environment variables. The names are constants shared with `template.yaml`,
//! the local command and the README; parsing goes through a lookup function so tests pass a
//! map, and a bad value fails at start naming its variable.

use std::time::Duration;

use std::sync::Arc;

use crate::domain::{KeyId, LinkSecret, SigningKey, Timestamp, TrustedProxies, WebPolicy};

/// `From:` of the delivery mails, e.g. `Datarequest <privacy@example.com>`.
pub const SENDER: &str = "DATAREQUEST_SENDER";
/// Base URL of the API as clients reach it; used in `Location` and download links.
pub const PUBLIC_URL: &str = "DATAREQUEST_PUBLIC_URL";
/// Largest export, in bytes, that is attached to the mail; larger ones get a link.
pub const ATTACHMENT_LIMIT: &str = "DATAREQUEST_ATTACHMENT_LIMIT";
/// Days an export is kept (decimals allowed).
pub const EXPORT_TTL_DAYS: &str = "DATAREQUEST_EXPORT_TTL_DAYS";
/// Key that signs download links (at least 32 characters).
pub const LINK_SECRET: &str = "DATAREQUEST_LINK_SECRET";
/// `true` allows web delivery to `http://`, loopback and private addresses.
pub const WEBHOOK_ALLOW_PRIVATE: &str = "DATAREQUEST_WEBHOOK_ALLOW_PRIVATE";
/// Attempts of a web or mail delivery before it is given up.
pub const DELIVERY_ATTEMPTS: &str = "DATAREQUEST_DELIVERY_ATTEMPTS";
/// Seconds before the first retry of a delivery; doubles each time.
pub const DELIVERY_BACKOFF_SECS: &str = "DATAREQUEST_DELIVERY_BACKOFF_SECS";
/// Seconds a web delivery may go without progress: without the connection taking any bytes of
/// the export, or without an answer once the whole export is sent. There is no limit on the
/// delivery as a whole, so an export of any size reaches a receiver that keeps reading.
pub const WEBHOOK_TIMEOUT_SECS: &str = "DATAREQUEST_WEBHOOK_TIMEOUT_SECS";
/// The ids of the signing keys (at most two, separated by commas) that may sign the web
/// deliveries of accounts on the Copernica profile; the newest of them signs. Unset: none, and
/// such deliveries fail.
pub const SIGNING_KEYS: &str = "DATAREQUEST_SIGNING_KEYS";
/// The prefix of the account id in `X-Copernica-ID` (default `account_`, as Copernica's own).
pub const COPERNICA_ID_PREFIX: &str = "DATAREQUEST_COPERNICA_ID_PREFIX";
/// AWS: the Secrets Manager secret (name or ARN) that holds the signing keys.
pub const SIGNING_SECRET_ARN: &str = "DATAREQUEST_SIGNING_SECRET_ARN";
/// Receives of a build message before the request is marked failed.
pub const BUILD_ATTEMPTS: &str = "DATAREQUEST_BUILD_ATTEMPTS";
/// Megabytes (MiB) a build writes between two checkpoints, at most (default 64): a build that
/// stops or crashes goes on from its last checkpoint.
pub const CHECKPOINT_MB: &str = "DATAREQUEST_CHECKPOINT_MB";

/// Data requests an account may POST per minute (to one process); 0 turns the limit off.
pub const RATE_LIMIT_PER_MINUTE: &str = "DATAREQUEST_RATE_LIMIT_PER_MINUTE";
/// AWS: the DynamoDB table of data requests.
pub const REQUESTS_TABLE: &str = "DATAREQUEST_REQUESTS_TABLE";
/// AWS: the DynamoDB table of accounts and hashed tokens.
pub const ACCOUNTS_TABLE: &str = "DATAREQUEST_ACCOUNTS_TABLE";
/// AWS: the DynamoDB table of subject data.
pub const SUBJECTS_TABLE: &str = "DATAREQUEST_SUBJECTS_TABLE";
/// AWS: the DynamoDB table of audit logs.
pub const AUDIT_TABLE: &str = "DATAREQUEST_AUDIT_TABLE";
/// AWS: the S3 bucket of exports (and of MIME bodies too large for an item).
pub const EXPORTS_BUCKET: &str = "DATAREQUEST_EXPORTS_BUCKET";
/// AWS: the URL of the SQS build queue.
pub const BUILD_QUEUE_URL: &str = "DATAREQUEST_BUILD_QUEUE_URL";
/// Local mode: failed authentications one client address may make per minute (0: no limit).
pub const AUTH_FAILURES_PER_MINUTE: &str = "DATAREQUEST_AUTH_FAILURES_PER_MINUTE";
/// Local mode: the reverse proxies (IP addresses or networks, separated by commas) whose
/// `X-Forwarded-For` names the client; without it the client is the connection's peer.
pub const TRUSTED_PROXIES: &str = "DATAREQUEST_TRUSTED_PROXIES";
/// Seconds a process may trust a token lookup for a read (decimals allowed; default 5, and 1
/// in local mode; 0 turns the cache off). A new data request always checks the store itself.
pub const TOKEN_CACHE_SECS: &str = "DATAREQUEST_TOKEN_CACHE_SECS";
/// Days the audit log of a request is kept (default 1095).
pub const AUDIT_RETENTION_DAYS: &str = "DATAREQUEST_AUDIT_RETENTION_DAYS";
/// Days messages and events are kept, by their own send or event time (unset: everything).
pub const SUBJECT_RETENTION_DAYS: &str = "DATAREQUEST_SUBJECT_RETENTION_DAYS";
/// AWS: the ARN of the build queue's dead-letter queue (the builder marks its requests failed).
pub const DEAD_LETTER_QUEUE_ARN: &str = "DATAREQUEST_DEAD_LETTER_QUEUE_ARN";
/// The mapping file of the sources subject data is also read from (see [`crate::adapters::sources`]).
pub const SOURCES: &str = "DATAREQUEST_SOURCES";
/// The mapping itself, instead of a file (on AWS, where the functions have no file of it).
pub const SOURCES_TOML: &str = "DATAREQUEST_SOURCES_TOML";
/// AWS: the key of an object in the exports bucket that holds the mapping (of any size), instead
/// of `DATAREQUEST_SOURCES_TOML`.
pub const SOURCES_OBJECT: &str = "DATAREQUEST_SOURCES_OBJECT";
/// AWS: a Secrets Manager secret with the sources' connection strings.
pub const SOURCES_SECRET_ARN: &str = "DATAREQUEST_SOURCES_SECRET_ARN";
/// Connections each source holds at once at most (a build holds one for its whole read).
pub const SOURCE_POOL_SIZE: &str = "DATAREQUEST_SOURCE_POOL_SIZE";
/// Seconds a source's pooled connection may sit unused before it is closed.
pub const SOURCE_POOL_IDLE_SECS: &str = "DATAREQUEST_SOURCE_POOL_IDLE_SECS";

// Local mode (the `datarequest` command).

/// Address to listen on (`serve --listen`).
pub const LISTEN: &str = "DATAREQUEST_LISTEN";
/// Folder of the database, exports and outbox (`--data-dir`).
pub const DATA_DIR: &str = "DATAREQUEST_DATA_DIR";
/// SMTP server for delivery mails; without it they go to `<data dir>/outbox`.
pub const SMTP_URL: &str = "DATAREQUEST_SMTP_URL";
/// Local mode: the file of signing keys (default `<data dir>/signing-keys.json`, mode 0600).
pub const SIGNING_KEY_FILE: &str = "DATAREQUEST_SIGNING_KEY_FILE";
/// Concurrent build workers.
pub const WORKERS: &str = "DATAREQUEST_WORKERS";
/// Local mode: connections served at once (default 1024, capped by the open-file limit). Past
/// it, the connection that has waited longest for a request is closed to make room.
pub const MAX_CONNECTIONS: &str = "DATAREQUEST_MAX_CONNECTIONS";
/// Local mode: seconds a connection may take to send a request head (default 10), whether it is
/// new or idle between two requests; then it is closed.
pub const HEADER_TIMEOUT_SECS: &str = "DATAREQUEST_HEADER_TIMEOUT_SECS";
/// Local mode: seconds a request body may send nothing (default 30); then the request ends.
pub const BODY_IDLE_TIMEOUT_SECS: &str = "DATAREQUEST_BODY_IDLE_TIMEOUT_SECS";
/// `POST /ingest` bodies read into memory at once (default 4); past it `503` with `Retry-After`.
pub const INGEST_BODIES: &str = "DATAREQUEST_INGEST_BODIES";

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data dir.
pub const DEFAULT_DATA_DIR: &str = "./.datarequest";

/// A setting that is missing or wrong, named.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// A new error about a variable.
    #[must_use]
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self { variable, message: message.into() }
    }
}

/// Reads one variable: absent and empty are the same.
pub fn optional(lookup: &dyn Fn(&str) -> Option<String>, variable: &'static str) -> Option<String> {
    lookup(variable).filter(|value| !value.trim().is_empty())
}

/// Reads a required variable.
///
/// # Errors
/// When it is absent or empty.
pub fn required(lookup: &dyn Fn(&str) -> Option<String>, variable: &'static str) -> Result<String, ConfigError> {
    optional(lookup, variable).ok_or_else(|| ConfigError::new(variable, "must be set"))
}

fn parsed<T: std::str::FromStr>(
    lookup: &dyn Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    what: &str,
) -> Result<T, ConfigError> {
    match optional(lookup, variable) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| ConfigError::new(variable, format!("must be {what}"))),
    }
}

/// Settings shared by every way of running the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the API, without a trailing slash. Without it, responses use the `Host` of
    /// the request (behind API Gateway: the API's own domain), and mailed links cannot be made.
    pub public_url: Option<String>,
    /// `From:` of delivery mails.
    pub sender: lettre::message::Mailbox,
    /// Largest export attached to a mail.
    pub attachment_limit: u64,
    /// How long exports are kept.
    pub export_ttl: Duration,
    /// Key of download links.
    pub link_secret: LinkSecret,
    /// Which web addresses deliveries may reach.
    pub web_policy: WebPolicy,
    /// Delivery attempts before giving up.
    pub delivery_attempts: u32,
    /// First retry delay of a delivery.
    pub delivery_backoff: Duration,
    /// Idle timeout of one web delivery (see [`WEBHOOK_TIMEOUT_SECS`]).
    pub webhook_timeout: Duration,
    /// Receives of a build message before the request fails.
    pub build_attempts: u32,
    /// Bytes a build writes between two checkpoints, at most.
    pub checkpoint_every: u64,
    /// Data requests per account per minute; 0 is unlimited.
    pub rate_limit_per_minute: u32,
    /// Lifetime of a signed URL handed out by `/data` and `/download`.
    pub signed_url_ttl: Duration,
    /// How long messages and events are kept, by their own send or event time; `None` keeps
    /// everything.
    pub subject_retention: Option<Duration>,
    /// How long the audit log of a request is kept.
    pub audit_retention: Duration,
    /// Failed authentications per client address per minute before `429` (local mode); 0 is
    /// unlimited.
    pub auth_failures_per_minute: u32,
    /// The reverse proxies whose `X-Forwarded-For` names the client (local mode).
    pub trusted_proxies: TrustedProxies,
    /// How long a token lookup may be trusted for a read (see [`TOKEN_CACHE_SECS`]).
    pub token_cache: Duration,
    /// `POST /ingest` bodies read into memory at once (see [`INGEST_BODIES`]).
    pub ingest_bodies: usize,
    /// The signing keys that may sign Copernica-profile deliveries (see [`SIGNING_KEYS`]).
    pub signing_keys: Vec<KeyId>,
    /// The prefix of `X-Copernica-ID` (see [`COPERNICA_ID_PREFIX`]).
    pub copernica_id_prefix: String,
    /// The key that signs Copernica-profile deliveries: the newest of [`Settings::signing_keys`],
    /// read from the key store when the service starts (the composition root sets it).
    pub signer: Option<Arc<SigningKey>>,
}

impl Settings {
    /// The oldest send or event time an export may show at `now` (the retention).
    #[must_use]
    pub fn retained_since(&self, now: Timestamp) -> Option<Timestamp> {
        self.subject_retention.map(|keep| now.plus_seconds(-i64::try_from(keep.as_secs()).unwrap_or(i64::MAX)))
    }
}

/// Defaults that differ between local mode and AWS.
#[derive(Debug, Clone, Default)]
pub struct Fallbacks {
    /// Public URL when `DATAREQUEST_PUBLIC_URL` is not set (local: the listen address).
    pub public_url: Option<String>,
    /// Link secret when `DATAREQUEST_LINK_SECRET` is not set (local: kept in the data dir).
    pub link_secret: Option<LinkSecret>,
    /// Token cache bound when `DATAREQUEST_TOKEN_CACHE_SECS` is not set; `None` is
    /// [`DEFAULT_TOKEN_CACHE_SECS`] (local: [`LOCAL_TOKEN_CACHE_SECS`]).
    pub token_cache: Option<Duration>,
}

/// Default `From:` of delivery mails.
pub const DEFAULT_SENDER: &str = "Datarequest <datarequest@example.com>";
/// Default attachment limit: 7 MiB, so the base64 message stays under 10 MB.
pub const DEFAULT_ATTACHMENT_LIMIT: u64 = 7 * 1024 * 1024;
/// Default MiB a build writes between two checkpoints, at most.
pub const DEFAULT_CHECKPOINT_MB: u64 = 64;
/// Default idle timeout of a web delivery, in seconds.
pub const DEFAULT_WEBHOOK_TIMEOUT_SECS: u64 = 30;
/// Default seconds a process trusts a token it has looked up, for a read (see
/// [`crate::adapters::token_cache`]).
pub const DEFAULT_TOKEN_CACHE_SECS: f64 = 5.0;
/// The same in local mode, where the operator's command revokes in another process: a
/// revocation reaches the server within a second.
pub const LOCAL_TOKEN_CACHE_SECS: f64 = 1.0;
/// The longest token cache allowed, in seconds.
pub const MAX_TOKEN_CACHE_SECS: f64 = 60.0;

impl Settings {
    /// Reads the settings.
    ///
    /// # Errors
    /// When a variable is missing or malformed; the error names it.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>, fallbacks: Fallbacks) -> Result<Self, ConfigError> {
        let public_url = match optional(lookup, PUBLIC_URL).or(fallbacks.public_url) {
            Some(url) => {
                let parsed = url::Url::parse(&url)
                    .map_err(|_| ConfigError::new(PUBLIC_URL, "must be an absolute http(s) URL"))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
                    return Err(ConfigError::new(PUBLIC_URL, "must be an absolute http(s) URL without query"));
                }
                Some(url.trim_end_matches('/').to_owned())
            }
            None => None,
        };

        let sender = optional(lookup, SENDER).unwrap_or_else(|| DEFAULT_SENDER.to_owned());
        let sender = sender
            .parse::<lettre::message::Mailbox>()
            .map_err(|_| ConfigError::new(SENDER, "must be an address, optionally with a name: Name <address>"))?;

        let attachment_limit = parsed(lookup, ATTACHMENT_LIMIT, DEFAULT_ATTACHMENT_LIMIT, "a number of bytes")?;
        let ttl_days: f64 = parsed(lookup, EXPORT_TTL_DAYS, 7.0, "a positive number of days")?;
        if !(ttl_days.is_finite() && ttl_days > 0.0 && ttl_days <= 3650.0) {
            return Err(ConfigError::new(EXPORT_TTL_DAYS, "must be a positive number of days, at most 3650"));
        }
        let export_ttl = Duration::from_secs_f64(ttl_days * 86_400.0);

        let link_secret = match optional(lookup, LINK_SECRET) {
            Some(text) => LinkSecret::new(&text).map_err(|e| ConfigError::new(LINK_SECRET, e.0))?,
            None => fallbacks.link_secret.ok_or_else(|| ConfigError::new(LINK_SECRET, "must be set"))?,
        };
        let allow_private: bool = parsed(lookup, WEBHOOK_ALLOW_PRIVATE, false, "true or false")?;
        let delivery_attempts: u32 = parsed(lookup, DELIVERY_ATTEMPTS, 5, "a number of attempts")?;
        if delivery_attempts == 0 {
            return Err(ConfigError::new(DELIVERY_ATTEMPTS, "must be at least 1"));
        }
        let backoff: f64 = parsed(lookup, DELIVERY_BACKOFF_SECS, 30.0, "a number of seconds")?;
        if !(0.0..=86_400.0).contains(&backoff) {
            return Err(ConfigError::new(DELIVERY_BACKOFF_SECS, "must be between 0 and 86400 seconds"));
        }
        let timeout: u64 = parsed(lookup, WEBHOOK_TIMEOUT_SECS, DEFAULT_WEBHOOK_TIMEOUT_SECS, "a number of seconds")?;
        let build_attempts: u32 = parsed(lookup, BUILD_ATTEMPTS, 5, "a number of attempts")?;
        if build_attempts == 0 {
            return Err(ConfigError::new(BUILD_ATTEMPTS, "must be at least 1"));
        }
        let checkpoint_mb: u64 = parsed(lookup, CHECKPOINT_MB, DEFAULT_CHECKPOINT_MB, "a number of megabytes")?;
        if !(1..=1024).contains(&checkpoint_mb) {
            return Err(ConfigError::new(CHECKPOINT_MB, "must be between 1 and 1024 megabytes"));
        }
        Ok(Self {
            public_url,
            sender,
            attachment_limit,
            export_ttl,
            link_secret,
            web_policy: if allow_private { WebPolicy::AllowPrivate } else { WebPolicy::PublicOnly },
            delivery_attempts,
            delivery_backoff: Duration::from_secs_f64(backoff),
            webhook_timeout: Duration::from_secs(timeout.max(1)),
            build_attempts,
            checkpoint_every: checkpoint_mb * 1024 * 1024,
            rate_limit_per_minute: parsed(lookup, RATE_LIMIT_PER_MINUTE, 120, "a number of requests")?,
            signed_url_ttl: Duration::from_secs(300),
            subject_retention: subject_retention(lookup)?,
            audit_retention: audit_retention(lookup)?,
            auth_failures_per_minute: parsed(lookup, AUTH_FAILURES_PER_MINUTE, 30, "a number of failures")?,
            trusted_proxies: match optional(lookup, TRUSTED_PROXIES) {
                Some(text) => TrustedProxies::parse(&text).map_err(|e| {
                    ConfigError::new(TRUSTED_PROXIES, format!("each item {e}; separate them with commas"))
                })?,
                None => TrustedProxies::default(),
            },
            token_cache: token_cache(lookup, fallbacks.token_cache)?,
            ingest_bodies: in_range(lookup, INGEST_BODIES, DEFAULT_INGEST_BODIES, 1..=256, "a number of bodies")?,
            signing_keys: signing_keys(lookup)?,
            copernica_id_prefix: copernica_id_prefix(lookup)?,
            signer: None,
        })
    }

    /// Settings for tests: every default, the given public URL, a random link secret, and
    /// private web addresses allowed.
    #[must_use]
    pub fn for_tests(public_url: &str) -> Self {
        let fallbacks = Fallbacks {
            public_url: Some(public_url.to_owned()),
            link_secret: Some(LinkSecret::generate()),
            token_cache: None,
        };
        let lookup = |name: &str| (name == WEBHOOK_ALLOW_PRIVATE).then(|| "true".to_owned());
        match Self::from_lookup(&lookup, fallbacks) {
            Ok(settings) => settings,
            Err(e) => unreachable!("test settings are valid: {e}"),
        }
    }
}

/// `DATAREQUEST_TOKEN_CACHE_SECS`: from 0 to 60 seconds.
fn token_cache(lookup: &dyn Fn(&str) -> Option<String>, fallback: Option<Duration>) -> Result<Duration, ConfigError> {
    let default = fallback.map_or(DEFAULT_TOKEN_CACHE_SECS, |d| d.as_secs_f64());
    let secs: f64 = parsed(lookup, TOKEN_CACHE_SECS, default, "a number of seconds")?;
    if !(secs.is_finite() && (0.0..=MAX_TOKEN_CACHE_SECS).contains(&secs)) {
        return Err(ConfigError::new(TOKEN_CACHE_SECS, "must be a number of seconds from 0 to 60"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `DATAREQUEST_SIGNING_KEYS`: key ids separated by commas, at most two, each once.
fn signing_keys(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<KeyId>, ConfigError> {
    let Some(text) = optional(lookup, SIGNING_KEYS) else { return Ok(Vec::new()) };
    let mut ids: Vec<KeyId> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id = KeyId::parse(part).map_err(|e| ConfigError::new(SIGNING_KEYS, e.0))?;
        if ids.contains(&id) {
            return Err(ConfigError::new(SIGNING_KEYS, "names a key twice"));
        }
        ids.push(id);
    }
    if ids.len() > 2 {
        return Err(ConfigError::new(SIGNING_KEYS, "names at most two keys: the current one and the previous one"));
    }
    Ok(ids)
}

/// Default prefix of `X-Copernica-ID`.
pub const DEFAULT_COPERNICA_ID_PREFIX: &str = "account_";

/// `DATAREQUEST_COPERNICA_ID_PREFIX`: letters, digits, `_` and `-`, 64 at most.
fn copernica_id_prefix(lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let prefix = optional(lookup, COPERNICA_ID_PREFIX).unwrap_or_else(|| DEFAULT_COPERNICA_ID_PREFIX.to_owned());
    if prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ConfigError::new(COPERNICA_ID_PREFIX, "must be at most 64 letters, digits, _ or -"));
    }
    Ok(prefix)
}

/// Default `POST /ingest` bodies in memory at once: 4 bodies of at most 8 MiB, 32 MiB.
pub const DEFAULT_INGEST_BODIES: usize = 4;
/// Default connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default seconds to send a request head.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// Default seconds a request body may send nothing.
pub const DEFAULT_BODY_IDLE_TIMEOUT_SECS: u64 = 30;

/// A whole number in `range`, or `default` when unset.
fn in_range<T>(
    lookup: &dyn Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let value = parsed(lookup, variable, default, what)?;
    if !range.contains(&value) {
        return Err(ConfigError::new(variable, format!("must be {what} from {} to {}", range.start(), range.end())));
    }
    Ok(value)
}

/// How the local server holds against floods of connections and slow clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once (see [`MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Time to send a request head (see [`HEADER_TIMEOUT_SECS`]).
    pub header_timeout: Duration,
    /// Time a request body may send nothing (see [`BODY_IDLE_TIMEOUT_SECS`]).
    pub body_idle_timeout: Duration,
}

impl ServerLimits {
    /// Reads the limits.
    ///
    /// # Errors
    /// When a variable is malformed or out of its range; the error names it.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let max_connections =
            in_range(lookup, MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS, 1..=1_000_000, "a number of connections")?;
        let header =
            in_range(lookup, HEADER_TIMEOUT_SECS, DEFAULT_HEADER_TIMEOUT_SECS, 1..=3_600, "a number of seconds")?;
        let body =
            in_range(lookup, BODY_IDLE_TIMEOUT_SECS, DEFAULT_BODY_IDLE_TIMEOUT_SECS, 1..=3_600, "a number of seconds")?;
        Ok(Self {
            max_connections,
            header_timeout: Duration::from_secs(header),
            body_idle_timeout: Duration::from_secs(body),
        })
    }
}

/// Default connections per source.
pub const DEFAULT_SOURCE_POOL_SIZE: usize = 4;
/// Default seconds an unused source connection stays open.
pub const DEFAULT_SOURCE_POOL_IDLE_SECS: u64 = 60;

/// How many connections each source keeps and for how long (see [`SOURCE_POOL_SIZE`] and
/// [`SOURCE_POOL_IDLE_SECS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePool {
    /// Connections per source, in use or idle.
    pub size: usize,
    /// How long an unused connection stays open.
    pub idle: Duration,
}

impl Default for SourcePool {
    fn default() -> Self {
        Self { size: DEFAULT_SOURCE_POOL_SIZE, idle: Duration::from_secs(DEFAULT_SOURCE_POOL_IDLE_SECS) }
    }
}

impl SourcePool {
    /// Reads the pool's settings.
    ///
    /// # Errors
    /// When a variable is malformed or out of its range; the error names it.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let size = in_range(lookup, SOURCE_POOL_SIZE, DEFAULT_SOURCE_POOL_SIZE, 1..=1_000, "a number of connections")?;
        let idle =
            in_range(lookup, SOURCE_POOL_IDLE_SECS, DEFAULT_SOURCE_POOL_IDLE_SECS, 1..=86_400, "a number of seconds")?;
        Ok(Self { size, idle: Duration::from_secs(idle) })
    }
}

/// `DATAREQUEST_AUDIT_RETENTION_DAYS`: 1095 (three years) unless set.
fn audit_retention(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    let days: f64 = parsed(lookup, AUDIT_RETENTION_DAYS, 1095.0, "a number of days")?;
    if !(days.is_finite() && (1.0..=36_500.0).contains(&days)) {
        return Err(ConfigError::new(AUDIT_RETENTION_DAYS, "must be a number of days from 1 to 36500"));
    }
    Ok(Duration::from_secs_f64(days * 86_400.0))
}

/// `DATAREQUEST_SUBJECT_RETENTION_DAYS`: unset or `0` keeps everything.
fn subject_retention(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<Duration>, ConfigError> {
    let days: f64 = parsed(lookup, SUBJECT_RETENTION_DAYS, 0.0, "a number of days")?;
    if !(days.is_finite() && (0.0..=36_500.0).contains(&days)) {
        return Err(ConfigError::new(SUBJECT_RETENTION_DAYS, "must be a number of days from 0 to 36500"));
    }
    Ok((days > 0.0).then(|| Duration::from_secs_f64(days * 86_400.0)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let lookup = move |name: &str| map.get(name).cloned();
        Settings::from_lookup(&lookup, Fallbacks::default())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_apply_when_only_the_required_settings_are_given() {
        let s = settings(&[(PUBLIC_URL, "https://api.example.com/"), (LINK_SECRET, SECRET)]);
        let Ok(s) = s else { panic!("valid settings") };
        assert_eq!(s.public_url.as_deref(), Some("https://api.example.com"));
        assert_eq!(s.attachment_limit, 7 * 1024 * 1024);
        assert_eq!(s.export_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(s.web_policy, WebPolicy::PublicOnly);
        assert_eq!(s.subject_retention, None, "subject data is kept unless a retention is set");
        assert_eq!(s.checkpoint_every, 64 * 1024 * 1024);
        assert_eq!(s.token_cache, Duration::from_secs(5), "a revoked token is trusted for reads 5 s at most");
        assert_eq!(s.trusted_proxies, TrustedProxies::default(), "no proxy is trusted unless named");
        assert_eq!(s.ingest_bodies, 4);
        assert_eq!(s.copernica_id_prefix, "account_", "as in Copernica's own X-Copernica-ID");
        assert!(s.signing_keys.is_empty() && s.signer.is_none(), "no key signs unless configured");
    }

    #[test]
    fn two_signing_keys_may_be_configured_and_the_copernica_prefix_changed() {
        let s = settings(&[
            (LINK_SECRET, SECRET),
            (SIGNING_KEYS, "new.example.com, old.example.com"),
            (COPERNICA_ID_PREFIX, "environment_"),
        ]);
        let Ok(s) = s else { panic!("valid") };
        let ids: Vec<&str> = s.signing_keys.iter().map(KeyId::as_str).collect();
        assert_eq!(ids, ["new.example.com", "old.example.com"]);
        assert_eq!(s.copernica_id_prefix, "environment_");
    }

    #[test]
    fn the_token_cache_is_set_in_seconds_and_local_mode_defaults_to_one() {
        let Ok(s) = settings(&[(LINK_SECRET, SECRET), (TOKEN_CACHE_SECS, "0.5")]) else { panic!("valid") };
        assert_eq!(s.token_cache, Duration::from_millis(500));
        let local = Fallbacks { token_cache: Some(Duration::from_secs(1)), ..Fallbacks::default() };
        let lookup = |name: &str| (name == LINK_SECRET).then(|| SECRET.to_owned());
        let Ok(s) = Settings::from_lookup(&lookup, local) else { panic!("valid") };
        assert_eq!(s.token_cache, Duration::from_secs(1));
    }

    #[test]
    fn the_server_limits_default_to_1024_connections_10_s_for_a_head_and_30_s_of_body_silence() {
        let none = |_: &str| None;
        let limits = ServerLimits::from_lookup(&none).ok();
        let expected = ServerLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
        };
        assert_eq!(limits, Some(expected));
        for (variable, value) in [
            (MAX_CONNECTIONS, "0"),
            (MAX_CONNECTIONS, "many"),
            (HEADER_TIMEOUT_SECS, "0"),
            (HEADER_TIMEOUT_SECS, "1.5"),
            (BODY_IDLE_TIMEOUT_SECS, "0"),
            (BODY_IDLE_TIMEOUT_SECS, "7200"),
        ] {
            let lookup = |name: &str| (name == variable).then(|| value.to_owned());
            let error = ServerLimits::from_lookup(&lookup).err().map(|e| e.variable);
            assert_eq!(error, Some(variable), "{variable}={value}");
        }
    }

    #[test]
    fn a_subject_retention_sets_the_oldest_time_an_export_shows() {
        let days = |text: &str| {
            settings(&[(LINK_SECRET, SECRET), (SUBJECT_RETENTION_DAYS, text)]).map(|s| s.subject_retention)
        };
        assert_eq!(days("30").ok(), Some(Some(Duration::from_secs(30 * 86_400))));
        assert_eq!(days("0").ok(), Some(None), "0 keeps everything");
        let Ok(s) = settings(&[(LINK_SECRET, SECRET), (SUBJECT_RETENTION_DAYS, "2")]) else { panic!("valid") };
        let now = Timestamp::from_unix(1_000_000);
        assert_eq!(s.retained_since(now), Some(Timestamp::from_unix(1_000_000 - 2 * 86_400)));
    }

    #[test]
    fn a_bad_or_missing_value_names_its_variable() {
        let cases: [(&[(&str, &str)], &str); 20] = [
            (&[(LINK_SECRET, SECRET), (SIGNING_KEYS, "a.example,b.example,c.example")], SIGNING_KEYS),
            (&[(LINK_SECRET, SECRET), (SIGNING_KEYS, "a.example,a.example")], SIGNING_KEYS),
            (&[(LINK_SECRET, SECRET), (SIGNING_KEYS, "not a name")], SIGNING_KEYS),
            (&[(LINK_SECRET, SECRET), (COPERNICA_ID_PREFIX, "account: ")], COPERNICA_ID_PREFIX),
            (&[(LINK_SECRET, SECRET), (TOKEN_CACHE_SECS, "61")], TOKEN_CACHE_SECS),
            (&[(LINK_SECRET, SECRET), (TOKEN_CACHE_SECS, "-1")], TOKEN_CACHE_SECS),
            (&[(LINK_SECRET, SECRET), (TRUSTED_PROXIES, "10.0.0.0/8, proxy.example")], TRUSTED_PROXIES),
            (&[(LINK_SECRET, SECRET), (TRUSTED_PROXIES, "10.0.0.0/40")], TRUSTED_PROXIES),
            (&[(LINK_SECRET, SECRET), (PUBLIC_URL, "ftp://a.example")], PUBLIC_URL),
            (&[(PUBLIC_URL, "https://a.example")], LINK_SECRET),
            (&[(PUBLIC_URL, "https://a.example"), (LINK_SECRET, "short")], LINK_SECRET),
            (&[(PUBLIC_URL, "https://a.example"), (LINK_SECRET, SECRET), (ATTACHMENT_LIMIT, "7MB")], ATTACHMENT_LIMIT),
            (&[(PUBLIC_URL, "https://a.example"), (LINK_SECRET, SECRET), (EXPORT_TTL_DAYS, "-1")], EXPORT_TTL_DAYS),
            (&[(PUBLIC_URL, "https://a.example"), (LINK_SECRET, SECRET), (SENDER, "not an address")], SENDER),
            (&[(LINK_SECRET, SECRET), (SUBJECT_RETENTION_DAYS, "-1")], SUBJECT_RETENTION_DAYS),
            (&[(LINK_SECRET, SECRET), (SUBJECT_RETENTION_DAYS, "a year")], SUBJECT_RETENTION_DAYS),
            (&[(LINK_SECRET, SECRET), (CHECKPOINT_MB, "0")], CHECKPOINT_MB),
            (&[(LINK_SECRET, SECRET), (CHECKPOINT_MB, "2048")], CHECKPOINT_MB),
            (&[(LINK_SECRET, SECRET), (INGEST_BODIES, "0")], INGEST_BODIES),
            (&[(LINK_SECRET, SECRET), (INGEST_BODIES, "four")], INGEST_BODIES),
        ];
        for (vars, variable) in cases {
            let error = settings(vars).err().map(|e| e.variable);
            assert_eq!(error, Some(variable));
        }
    }

    #[test]
    fn the_source_pool_takes_its_size_and_idle_time_within_their_ranges() {
        let lookup = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(SourcePool::from_lookup(&lookup(&[])).ok(), Some(SourcePool::default()));
        let set = SourcePool::from_lookup(&lookup(&[(SOURCE_POOL_SIZE, "2"), (SOURCE_POOL_IDLE_SECS, "5")])).ok();
        assert_eq!(set, Some(SourcePool { size: 2, idle: Duration::from_secs(5) }));
        for wrong in [(SOURCE_POOL_SIZE, "0"), (SOURCE_POOL_SIZE, "many"), (SOURCE_POOL_IDLE_SECS, "0")] {
            let vars: &'static [(&'static str, &'static str)] = Box::leak(Box::new([wrong]));
            assert_eq!(SourcePool::from_lookup(&lookup(vars)).err().map(|e| e.variable), Some(wrong.0));
        }
    }
}
