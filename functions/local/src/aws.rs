//! `--backend aws`: the operator's tools (accounts, imports, erasures, ingest keys) against a
//! deployed stack's tables and bucket. Serving is the Lambda functions' job there.

use std::process::ExitCode;

use crate::cli::Command;

/// Runs `command` on the tables and bucket named by the DATAREQUEST_* variables.
#[cfg(feature = "aws")]
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    use datarequest::adapters::aws::{Clients, DynamoDbAccounts, DynamoDbSubjects, Resources};

    use crate::cli::{IngestKeyCommand, env_lookup};

    let resources = Resources::from_lookup(&env_lookup)?;
    let clients = Clients::from_env().await;
    let accounts = || DynamoDbAccounts::new(clients.dynamodb.clone(), resources.accounts_table.clone());
    let subjects = || {
        let (dynamodb, s3) = (clients.dynamodb.clone(), clients.s3.clone());
        DynamoDbSubjects::new(dynamodb, resources.subjects_table.clone(), s3, resources.exports_bucket.clone())
    };
    match command {
        Command::Account { command } => crate::account::run(command, &accounts()).await,
        Command::IngestKey { command: IngestKeyCommand::Create { .. } } => crate::ingest_key::create(&accounts()).await,
        Command::Import { file, .. } => crate::import::run(&file, &subjects()).await,
        Command::Erase { account, subject, .. } => {
            let erasure = subject.erasure(account)?;
            crate::erase::run(&erasure, &subjects()).await
        }
        Command::Serve { .. } | Command::Openapi | Command::Sources { .. } => {
            anyhow::bail!("serve and openapi run locally; on AWS the Lambda functions serve")
        }
    }
}

/// This build has no AWS adapters.
#[cfg(not(feature = "aws"))]
pub async fn run(_: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this build has no AWS support: build it with `--features aws`")
}
