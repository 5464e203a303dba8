//! The one composition root: an [`App`] for each world, from one shared assembly. AWS
//! (DynamoDB, SQS, S3, SES v2), local mode (SQLite, a folder of exports, an outbox or SMTP) and
//! memory (the fakes, for tests) differ only in the adapters they hand to [`assemble`]; every
//! main, the local command and the tests get their app here.

use std::sync::Arc;

#[cfg(feature = "local")]
use std::path::{Path, PathBuf};

#[cfg(feature = "local")]
use anyhow::Context;

use crate::adapters::memory::{FakeClock, Fakes};
use crate::adapters::token_cache::TokenCache;
use crate::adapters::webhook::HttpWebDelivery;
use crate::app::{App, RateLimiter};
#[cfg(any(feature = "local", feature = "aws"))]
use crate::app::{Operator, OperatorStores};
use crate::config::Settings;
use crate::domain::Timestamp;
#[cfg(any(feature = "local", feature = "aws"))]
use crate::domain::{Keyring, SigningKey};
#[cfg(feature = "aws")]
use crate::ports::SigningKeyStore;
use crate::ports::{
    Accounts, AuditLog, BuildQueue, Clock, ExportStore, Mailer, RequestStore, SubjectData, SubjectSources, SystemClock,
    WebDelivery,
};

#[cfg(feature = "local")]
use crate::adapters::{
    folder::FolderExports,
    key_file::KeyFile,
    outbox::{OutboxMailer, SmtpMailer},
    sources::Sources,
    sqlite::SqliteStore,
};
#[cfg(feature = "local")]
use crate::config::{ConfigError, Fallbacks};
#[cfg(feature = "local")]
use crate::domain::LinkSecret;

#[cfg(feature = "aws")]
use crate::adapters::aws::{
    Clients, DynamoDbAccounts, DynamoDbAudit, DynamoDbRequests, DynamoDbSubjects, Resources, S3Exports,
    SecretSigningKeys, SesMailer, SqsQueue, secrets,
};

/// The adapters of one world, before the shared parts are added.
struct World {
    requests: Arc<dyn RequestStore>,
    queue: Arc<dyn BuildQueue>,
    exports: Arc<dyn ExportStore>,
    subjects: Arc<dyn SubjectData>,
    sources: Arc<dyn SubjectSources>,
    accounts: Arc<dyn Accounts>,
    mailer: Arc<dyn Mailer>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditLog>,
    /// The web delivery; `None` for the real one, over HTTP with the settings' policy.
    web: Option<Arc<dyn WebDelivery>>,
    /// Whether token lookups go through the short-lived cache (real stores; fakes are instant).
    cache_tokens: bool,
}

/// The shared assembly: the settings, the rate limiter, the token cache and the web delivery
/// around a world's adapters.
fn assemble(settings: Settings, world: World) -> anyhow::Result<App> {
    let web = match world.web {
        Some(web) => web,
        None => Arc::new(HttpWebDelivery::new(settings.web_policy, settings.webhook_timeout)?),
    };
    let accounts = if world.cache_tokens {
        Arc::new(TokenCache::new(world.accounts, settings.token_cache))
    } else {
        world.accounts
    };
    Ok(App {
        requests: world.requests,
        queue: world.queue,
        exports: world.exports,
        subjects: world.subjects,
        sources: world.sources,
        accounts,
        mailer: world.mailer,
        web,
        clock: world.clock,
        audit: world.audit,
        limiter: Arc::new(RateLimiter::new(settings.rate_limit_per_minute)),
        settings: Arc::new(settings),
    })
}

/// An app on fakes only, with the fakes to arrange and inspect.
#[must_use]
pub fn memory(settings: Settings) -> (App, Fakes) {
    let fakes = Fakes {
        requests: Arc::default(),
        queue: Arc::default(),
        exports: Arc::default(),
        subjects: Arc::default(),
        sources: Arc::default(),
        accounts: Arc::default(),
        mailer: Arc::default(),
        web: Arc::default(),
        clock: Arc::new(FakeClock::at(Timestamp::from_unix(1_764_320_000))),
        audit: Arc::default(),
    };
    let world = World {
        requests: fakes.requests.clone(),
        queue: fakes.queue.clone(),
        exports: fakes.exports.clone(),
        subjects: fakes.subjects.clone(),
        sources: fakes.sources.clone(),
        accounts: fakes.accounts.clone(),
        mailer: fakes.mailer.clone(),
        clock: fakes.clock.clone(),
        audit: fakes.audit.clone(),
        web: Some(fakes.web.clone()),
        cache_tokens: false,
    };
    match assemble(settings, world) {
        Ok(app) => (app, fakes),
        // The fakes' world builds no client that could fail.
        Err(_) => unreachable!("an app on fakes always assembles"),
    }
}

/// The service on a data dir: the app, and what local mode's doors need beside it.
#[cfg(feature = "local")]
#[derive(Clone)]
pub struct Local {
    /// The application.
    pub app: App,
    /// The database (also the queue).
    pub store: SqliteStore,
    /// The sources of subject data beside the store (see [`crate::adapters::sources`]).
    pub sources: Sources,
    /// The data dir.
    pub data_dir: PathBuf,
}

/// The link secret: configured, or made once and kept in the data dir so links survive a
/// restart.
#[cfg(feature = "local")]
fn link_secret(data_dir: &Path) -> anyhow::Result<LinkSecret> {
    use std::io::Write;
    let path = data_dir.join("link-secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return LinkSecret::new(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let secret = LinkSecret::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&path)
        .and_then(|mut f| f.write_all(secret.expose().as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// Opens the service on a data dir with settings from `lookup`. `public_url` is the fallback
/// for `DATAREQUEST_PUBLIC_URL` (the listen address).
///
/// # Errors
/// When a setting is bad (named) or the data dir cannot be used.
#[cfg(feature = "local")]
pub fn local(
    data_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    public_url: Option<String>,
) -> anyhow::Result<Local> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    // The operator's command revokes tokens in another process: the server notices within a
    // second.
    let token_cache = Some(std::time::Duration::from_secs_f64(crate::config::LOCAL_TOKEN_CACHE_SECS));
    let fallbacks = Fallbacks { public_url, link_secret: Some(link_secret(data_dir)?), token_cache };
    let mut settings = Settings::from_lookup(lookup, fallbacks)?;
    if !settings.signing_keys.is_empty() {
        let file = key_file(data_dir, lookup);
        let keyring = file.read()?;
        settings.signer = signing_key(keyring, &settings.signing_keys, &file.path().display().to_string())?;
    }
    let sources = Sources::from_lookup(lookup)?;
    let store = SqliteStore::open(&data_dir.join("datarequest.sqlite3"))?;
    let mailer = local_mailer(data_dir, lookup)?;
    let world = World {
        requests: Arc::new(store.clone()),
        queue: Arc::new(store.clone()),
        exports: Arc::new(FolderExports::new(data_dir.join("exports"))?),
        subjects: Arc::new(store.clone()),
        sources: Arc::new(sources.clone()),
        accounts: Arc::new(store.clone()),
        mailer,
        clock: Arc::new(SystemClock),
        audit: Arc::new(store.clone()),
        web: None,
        cache_tokens: true,
    };
    let app = assemble(settings, world)?;
    Ok(Local { app, store, sources, data_dir: data_dir.to_owned() })
}

/// The mailer of local mode: SMTP when `DATAREQUEST_SMTP_URL` names a server, else the outbox.
#[cfg(feature = "local")]
fn local_mailer(data_dir: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Arc<dyn Mailer>> {
    Ok(match crate::config::optional(lookup, crate::config::SMTP_URL) {
        Some(url) => {
            Arc::new(SmtpMailer::new(&url).map_err(|e| ConfigError::new(crate::config::SMTP_URL, format!("{e:#}")))?)
        }
        None => Arc::new(OutboxMailer::new(data_dir.join("outbox"))?),
    })
}

/// The file of signing keys: `DATAREQUEST_SIGNING_KEY_FILE`, or `signing-keys.json` in the data
/// dir.
#[cfg(feature = "local")]
fn key_file(data_dir: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> KeyFile {
    let path = crate::config::optional(lookup, crate::config::SIGNING_KEY_FILE)
        .map_or_else(|| data_dir.join("signing-keys.json"), PathBuf::from);
    KeyFile::new(path)
}

/// The key that signs among the `configured` ones of a keyring kept at `place`.
#[cfg(any(feature = "local", feature = "aws"))]
fn signing_key(
    keyring: Keyring,
    configured: &[crate::domain::KeyId],
    place: &str,
) -> Result<Option<Arc<SigningKey>>, crate::config::ConfigError> {
    keyring.into_signer(configured).map(|key| key.map(Arc::new)).map_err(|missing| {
        crate::config::ConfigError::new(
            crate::config::SIGNING_KEYS,
            format!("names the key {missing}, which {place} does not hold (see `datarequest signing-key create`)"),
        )
    })
}

/// The operator's use cases on a data dir: the stores only, so they work before the service's
/// other settings (or its signing keys) are in place.
///
/// # Errors
/// When the data dir cannot be used or `DATAREQUEST_SMTP_URL` is bad.
#[cfg(feature = "local")]
pub fn local_operator(data_dir: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Operator> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    let store = SqliteStore::open(&data_dir.join("datarequest.sqlite3"))?;
    Ok(Operator::new(OperatorStores {
        accounts: Arc::new(store.clone()),
        subjects: Arc::new(store.clone()),
        requests: Arc::new(store),
        exports: Arc::new(FolderExports::new(data_dir.join("exports"))?),
        mailer: local_mailer(data_dir, lookup)?,
        signing_keys: Some(Arc::new(key_file(data_dir, lookup))),
    }))
}

/// The application on AWS, and the queue (the builder re-enqueues delivery retries on it).
///
/// # Errors
/// When a setting is missing or bad (named), or the web client cannot be built.
#[cfg(feature = "aws")]
pub fn aws(
    clients: &Clients,
    resources: &Resources,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(App, Arc<SqsQueue>)> {
    aws_signed(clients, resources, lookup, None)
}

/// [`aws`] with the key that signs Copernica-profile deliveries.
#[cfg(feature = "aws")]
fn aws_signed(
    clients: &Clients,
    resources: &Resources,
    lookup: &dyn Fn(&str) -> Option<String>,
    signer: Option<Arc<SigningKey>>,
) -> anyhow::Result<(App, Arc<SqsQueue>)> {
    let mut settings = Settings::from_lookup(lookup, crate::config::Fallbacks::default())?;
    settings.signer = signer;
    let queue = Arc::new(SqsQueue::new(clients.sqs.clone(), resources.build_queue_url.clone()));
    let subjects = DynamoDbSubjects::new(
        clients.dynamodb.clone(),
        resources.subjects_table.clone(),
        clients.s3.clone(),
        resources.exports_bucket.clone(),
    )
    .with_retention(settings.subject_retention);
    let world = World {
        requests: Arc::new(DynamoDbRequests::new(clients.dynamodb.clone(), resources.requests_table.clone())),
        queue: queue.clone(),
        exports: Arc::new(S3Exports::new(clients.s3.clone(), resources.exports_bucket.clone())),
        subjects: Arc::new(subjects),
        sources: Arc::new(crate::adapters::sources::Sources::from_lookup(lookup)?),
        accounts: Arc::new(DynamoDbAccounts::new(clients.dynamodb.clone(), resources.accounts_table.clone())),
        mailer: Arc::new(SesMailer::new(clients.ses.clone())),
        clock: Arc::new(SystemClock),
        audit: Arc::new(DynamoDbAudit::new(
            clients.dynamodb.clone(),
            resources.audit_table.clone(),
            settings.audit_retention,
        )),
        web: None,
        cache_tokens: true,
    };
    Ok((assemble(settings, world)?, queue))
}

/// Everything a Lambda function needs, from the process environment.
///
/// # Errors
/// When a setting or resource name is missing or bad; the error names it.
#[cfg(feature = "aws")]
pub async fn aws_from_env() -> anyhow::Result<(App, Arc<SqsQueue>)> {
    let env = |name: &str| std::env::var(name).ok();
    let resources = Resources::from_lookup(&env)?;
    let clients = Clients::from_env().await;
    aws_with_secret(&clients, &resources, &env).await
}

/// [`aws`], the mapping also read from the bucket's object that `DATAREQUEST_SOURCES_OBJECT`
/// names, and the sources' connection strings also from the secret that
/// `DATAREQUEST_SOURCES_SECRET_ARN` names (see [`secrets`]), when they are set; and, when
/// `DATAREQUEST_SIGNING_KEYS` names keys, the key that signs read from the secret that
/// `DATAREQUEST_SIGNING_SECRET_ARN` names.
///
/// # Errors
/// As [`aws`], and when the object or a secret cannot be read, the object is named beside
/// another mapping, or the signing secret lacks a configured key.
#[cfg(feature = "aws")]
pub async fn aws_with_secret(
    clients: &Clients,
    resources: &Resources,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(App, Arc<SqsQueue>)> {
    use crate::config::{ConfigError, SOURCES, SOURCES_OBJECT, SOURCES_SECRET_ARN, SOURCES_TOML, optional};
    let mapping = match optional(lookup, SOURCES_OBJECT) {
        Some(_) if optional(lookup, SOURCES_TOML).is_some() || optional(lookup, SOURCES).is_some() => {
            return Err(ConfigError::new(SOURCES_OBJECT, format!("set it or {SOURCES_TOML}, not both")).into());
        }
        Some(key) => Some(
            S3Exports::new(clients.s3.clone(), resources.exports_bucket.clone())
                .read_text(&key)
                .await
                .map_err(|e| ConfigError::new(SOURCES_OBJECT, format!("cannot read the mapping {key}: {e:#}")))?,
        ),
        None => None,
    };
    let lookup = |name: &str| if name == SOURCES_TOML && mapping.is_some() { mapping.clone() } else { lookup(name) };
    let secret = match optional(&lookup, SOURCES_SECRET_ARN) {
        Some(arn) => Some(secrets::fetch(&clients.secrets, &arn).await?),
        None => None,
    };
    // The secret answers only for the variables the mapping names as connection strings.
    let urls = crate::adapters::sources::url_names(&lookup);
    let with_secret = |name: &str| {
        lookup(name).or_else(|| secret.as_ref().filter(|_| urls.iter().any(|u| u == name)).and_then(|s| s.url(name)))
    };
    let configured = Settings::from_lookup(&lookup, crate::config::Fallbacks::default())?.signing_keys;
    let signer = if configured.is_empty() {
        None
    } else {
        let secret = crate::config::required(&lookup, crate::config::SIGNING_SECRET_ARN)?;
        let keyring = SecretSigningKeys::new(clients.secrets.clone(), secret).load().await?;
        signing_key(keyring, &configured, "the signing keys' secret")?
    };
    aws_signed(clients, resources, &with_secret, signer)
}

/// The operator's use cases on a deployed stack: only the tables and the bucket need naming
/// (`DATAREQUEST_ACCOUNTS_TABLE`, `…_SUBJECTS_TABLE`, `…_REQUESTS_TABLE`, `…_EXPORTS_BUCKET`),
/// so the `datarequest` command works with just those of the stack's variables.
///
/// # Errors
/// When one of those variables is missing; the error names it.
#[cfg(feature = "aws")]
pub async fn aws_operator(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Operator> {
    use crate::config::{ACCOUNTS_TABLE, EXPORTS_BUCKET, REQUESTS_TABLE, SUBJECTS_TABLE, required};
    let (accounts_table, subjects_table) = (required(lookup, ACCOUNTS_TABLE)?, required(lookup, SUBJECTS_TABLE)?);
    let (requests_table, bucket) = (required(lookup, REQUESTS_TABLE)?, required(lookup, EXPORTS_BUCKET)?);
    let clients = Clients::from_env().await;
    let subjects = DynamoDbSubjects::new(clients.dynamodb.clone(), subjects_table, clients.s3.clone(), bucket.clone());
    Ok(Operator::new(OperatorStores {
        accounts: Arc::new(DynamoDbAccounts::new(clients.dynamodb.clone(), accounts_table)),
        subjects: Arc::new(subjects),
        requests: Arc::new(DynamoDbRequests::new(clients.dynamodb.clone(), requests_table)),
        exports: Arc::new(S3Exports::new(clients.s3.clone(), bucket)),
        mailer: Arc::new(SesMailer::new(clients.ses.clone())),
        signing_keys: crate::config::optional(lookup, crate::config::SIGNING_SECRET_ARN).map(|secret| {
            Arc::new(SecretSigningKeys::new(clients.secrets.clone(), secret)) as Arc<dyn SigningKeyStore>
        }),
    }))
}

/// The ports an app was put together from, for tests and benchmarks to arrange data and look
/// at what was stored; the doors never use this, they call the use cases.
#[derive(Clone)]
pub struct Ports {
    /// Data requests.
    pub requests: Arc<dyn RequestStore>,
    /// The build queue.
    pub queue: Arc<dyn BuildQueue>,
    /// Export files.
    pub exports: Arc<dyn ExportStore>,
    /// The platform's data about subjects.
    pub subjects: Arc<dyn SubjectData>,
    /// The platform's own databases.
    pub sources: Arc<dyn SubjectSources>,
    /// Accounts and tokens.
    pub accounts: Arc<dyn Accounts>,
    /// Outgoing mail.
    pub mailer: Arc<dyn Mailer>,
    /// Web delivery.
    pub web: Arc<dyn WebDelivery>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
}

/// The ports of `app`.
#[must_use]
pub fn ports(app: &App) -> Ports {
    Ports {
        requests: app.requests.clone(),
        queue: app.queue.clone(),
        exports: app.exports.clone(),
        subjects: app.subjects.clone(),
        sources: app.sources.clone(),
        accounts: app.accounts.clone(),
        mailer: app.mailer.clone(),
        web: app.web.clone(),
        clock: app.clock.clone(),
        audit: app.audit.clone(),
    }
}

/// `app` with other ports (a failing store in a test, another export store in a benchmark),
/// its settings and limits kept.
#[must_use]
pub fn rewire(app: &App, ports: Ports) -> App {
    App {
        requests: ports.requests,
        queue: ports.queue,
        exports: ports.exports,
        subjects: ports.subjects,
        sources: ports.sources,
        accounts: ports.accounts,
        mailer: ports.mailer,
        web: ports.web,
        clock: ports.clock,
        audit: ports.audit,
        limiter: app.limiter.clone(),
        settings: app.settings.clone(),
    }
}
