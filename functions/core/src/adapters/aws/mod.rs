//! AWS adapters: requests, accounts and subject data in DynamoDB, the build queue in SQS,
//! exports (and large MIME bodies) in S3, mail through SES v2, the signing keys in Secrets Manager. Endpoints follow the SDK's own
//! `AWS_ENDPOINT_URL` variables, so the same code runs against a local emulator.

mod attributes;
mod dynamodb_accounts;
mod dynamodb_audit;
mod dynamodb_requests;
mod dynamodb_subjects;
mod s3;
pub mod secrets;
mod ses;
mod signing_secret;
mod sqs;

pub use dynamodb_accounts::DynamoDbAccounts;
pub use dynamodb_audit::DynamoDbAudit;
pub use dynamodb_requests::DynamoDbRequests;
pub use dynamodb_subjects::DynamoDbSubjects;
pub use s3::S3Exports;
pub use ses::SesMailer;
pub use signing_secret::SecretSigningKeys;
pub use sqs::SqsQueue;

use crate::config::{self, ConfigError};

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
