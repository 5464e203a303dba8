//! `datarequest account …`: create an account (its access token and webhook secret), add and
//! revoke its tokens, delete it.

use std::process::ExitCode;

use anyhow::Context;
use datarequest::domain::AccessToken;
use datarequest::ports::Accounts;

use crate::cli::{AccountCommand, TokenCommand};

/// Runs an account command on an account store.
pub async fn run(command: AccountCommand, accounts: &dyn Accounts) -> anyhow::Result<ExitCode> {
    match command {
        AccountCommand::Create { .. } => create(accounts).await,
        AccountCommand::Token { command: TokenCommand::Add { account, .. } } => {
            let token = AccessToken::generate();
            anyhow::ensure!(accounts.add_token(account, &token.hash()).await?, "there is no account {account}");
            println!("{}", serde_json::json!({"account": account.get(), "token": token.expose()}));
            Ok(ExitCode::SUCCESS)
        }
        AccountCommand::Token { command: TokenCommand::Revoke { account, token, .. } } => {
            let token = AccessToken::parse(&token).context("that is not an access token")?;
            anyhow::ensure!(
                accounts.revoke_token(account, &token.hash()).await?,
                "account {account} has no such token"
            );
            println!("{}", serde_json::json!({"revoked": true, "account": account.get()}));
            Ok(ExitCode::SUCCESS)
        }
        AccountCommand::Delete { account, .. } => {
            anyhow::ensure!(accounts.delete_account(account).await?, "there is no account {account}");
            println!("{}", serde_json::json!({"deleted": account.get()}));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Creates an account and prints it as JSON; the token and secret are shown only here.
pub async fn create(accounts: &dyn Accounts) -> anyhow::Result<ExitCode> {
    let account = datarequest::app::create_account(accounts).await?;
    let json = serde_json::json!({
        "account": account.account.get(),
        "token": account.token.expose(),
        "webhook_secret": account.webhook_secret.expose(),
    });
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
