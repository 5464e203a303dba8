//! AWS adapters: requests, accounts and subject data in DynamoDB, the build queue in SQS,
//! exports (and large MIME bodies) in S3, mail through SES v2. Endpoints follow the SDK's own
//! `AWS_ENDPOINT_URL` variables, so the same code runs against a local emulator.

mod attributes;
mod dynamodb_accounts;
mod dynamodb_audit;
mod dynamodb_requests;
mod dynamodb_subjects;
mod s3;
pub mod secrets;
mod ses;
mod sqs;
mod sqs_batch;
mod sqs_ingest;

use std::sync::Arc;

pub use dynamodb_accounts::DynamoDbAccounts;
pub use dynamodb_audit::DynamoDbAudit;
pub use dynamodb_requests::DynamoDbRequests;
pub use dynamodb_subjects::DynamoDbSubjects;
pub use s3::S3Exports;
pub use ses::SesMailer;
pub use sqs::SqsQueue;
pub use sqs_batch::handle_batch;
pub use sqs_ingest::handle_ingest_batch;

use crate::adapters::webhook::HttpWebDelivery;
use crate::app::App;
use crate::config::{self, ConfigError, Fallbacks, Settings};
use crate::ports::SystemClock;

/// The AWS resources named in the environment (as `template.yaml` sets them).
#[derive(Debug, Clone)]
pub struct Resources {
    /// `DATAREQUEST_REQUESTS_TABLE`
    pub requests_table: String,
    /// `DATAREQUEST_ACCOUNTS_TABLE`
    pub accounts_table: String,
    /// `DATAREQUEST_SUBJECTS_TABLE`
    pub subjects_table: String,
    /// `DATAREQUEST_AUDIT_TABLE`
    pub audit_table: String,
    /// `DATAREQUEST_EXPORTS_BUCKET`
    pub exports_bucket: String,
    /// `DATAREQUEST_BUILD_QUEUE_URL`
    pub build_queue_url: String,
}

impl Resources {
    /// Reads the resource names.
    ///
    /// # Errors
    /// When one is missing; the error names it.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            requests_table: config::required(lookup, config::REQUESTS_TABLE)?,
            accounts_table: config::required(lookup, config::ACCOUNTS_TABLE)?,
            subjects_table: config::required(lookup, config::SUBJECTS_TABLE)?,
            audit_table: config::required(lookup, config::AUDIT_TABLE)?,
            exports_bucket: config::required(lookup, config::EXPORTS_BUCKET)?,
            build_queue_url: config::required(lookup, config::BUILD_QUEUE_URL)?,
        })
    }
}

/// SDK clients, built once per process.
#[derive(Clone, Debug)]
pub struct Clients {
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 (path-style addressing when an endpoint is overridden, as emulators need).
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// SES v2.
    pub ses: aws_sdk_sesv2::Client,
    /// Secrets Manager (the sources' connection strings).
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    /// Loads the SDK configuration from the environment (region, credentials, endpoints).
    pub async fn from_env() -> Self {
        Self::from_sdk(&aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
    }

    /// Clients for an SDK configuration.
    #[must_use]
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some()).build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(sdk),
            ses: aws_sdk_sesv2::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

/// The application on AWS, and the queue (the builder re-enqueues delivery retries on it).
///
/// # Errors
/// When a setting is missing or bad (named), or the web client cannot be built.
pub fn app(
    clients: &Clients,
    resources: &Resources,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(App, Arc<SqsQueue>)> {
    let settings = Settings::from_lookup(lookup, Fallbacks::default())?;
    let queue = Arc::new(SqsQueue::new(clients.sqs.clone(), resources.build_queue_url.clone()));
    let subjects = DynamoDbSubjects::new(
        clients.dynamodb.clone(),
        resources.subjects_table.clone(),
        clients.s3.clone(),
        resources.exports_bucket.clone(),
    )
    .with_retention(settings.subject_retention);
    let app = App {
        requests: Arc::new(DynamoDbRequests::new(clients.dynamodb.clone(), resources.requests_table.clone())),
        queue: queue.clone(),
        exports: Arc::new(S3Exports::new(clients.s3.clone(), resources.exports_bucket.clone())),
        subjects: Arc::new(subjects),
        sources: Arc::new(crate::sources::Sources::from_lookup(lookup)?),
        accounts: crate::adapters::token_cache::TokenCache::wrap(DynamoDbAccounts::new(
            clients.dynamodb.clone(),
            resources.accounts_table.clone(),
        )),
        mailer: Arc::new(SesMailer::new(clients.ses.clone())),
        web: Arc::new(HttpWebDelivery::new(settings.web_policy, settings.webhook_timeout)?),
        clock: Arc::new(SystemClock),
        audit: Arc::new(DynamoDbAudit::new(
            clients.dynamodb.clone(),
            resources.audit_table.clone(),
            settings.audit_retention,
        )),
        limiter: Arc::new(crate::app::RateLimiter::new(settings.rate_limit_per_minute)),
        settings: Arc::new(settings),
    };
    Ok((app, queue))
}

/// Everything a Lambda function needs, from the process environment.
///
/// # Errors
/// When a setting or resource name is missing or bad; the error names it.
pub async fn app_from_env() -> anyhow::Result<(App, Arc<SqsQueue>)> {
    let env = |name: &str| std::env::var(name).ok();
    let resources = Resources::from_lookup(&env)?;
    let clients = Clients::from_env().await;
    app_with_secret(&clients, &resources, &env).await
}

/// [`app`], the sources' connection strings also read from the secret that
/// `DATAREQUEST_SOURCES_SECRET_ARN` names (see [`secrets`]), when it is set.
///
/// # Errors
/// As [`app`], and when the secret cannot be read.
pub async fn app_with_secret(
    clients: &Clients,
    resources: &Resources,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(App, Arc<SqsQueue>)> {
    let secret = match config::optional(lookup, config::SOURCES_SECRET_ARN) {
        Some(arn) => Some(secrets::fetch(&clients.secrets, &arn).await?),
        None => None,
    };
    // The secret answers only for the variables the mapping names as connection strings.
    let urls = crate::sources::url_names(lookup);
    let with_secret = |name: &str| {
        lookup(name).or_else(|| secret.as_ref().filter(|_| urls.iter().any(|u| u == name)).and_then(|s| s.url(name)))
    };
    app(clients, resources, &with_secret)
}
