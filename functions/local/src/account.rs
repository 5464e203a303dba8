//! `datarequest account …`: create an account (its access token and webhook secret), add and
//! revoke its tokens, delete it.

use std::process::ExitCode;

use anyhow::Context;
use datarequest::domain::{AccessToken, AccountId};
use datarequest::ports::Accounts;

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

/// Adds a token to `account` and prints it as JSON (shown once, stored only as its hash).
pub async fn add_token(accounts: &dyn Accounts, account: AccountId) -> anyhow::Result<ExitCode> {
    let token = AccessToken::generate();
    anyhow::ensure!(accounts.add_token(account, &token.hash()).await?, "there is no account {account}");
    println!("{}", serde_json::json!({"account": account.get(), "token": token.expose()}));
    Ok(ExitCode::SUCCESS)
}

/// Revokes `token` of `account`.
pub async fn revoke_token(accounts: &dyn Accounts, account: AccountId, token: &str) -> anyhow::Result<ExitCode> {
    let token = AccessToken::parse(token).context("that is not an access token")?;
    anyhow::ensure!(accounts.revoke_token(account, &token.hash()).await?, "account {account} has no such token");
    println!("{}", serde_json::json!({"revoked": true, "account": account.get()}));
    Ok(ExitCode::SUCCESS)
}

/// Deletes `account`: every token is revoked, and its requests answer like unknown ones.
pub async fn delete(accounts: &dyn Accounts, account: AccountId) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(accounts.delete_account(account).await?, "there is no account {account}");
    println!("{}", serde_json::json!({"deleted": account.get()}));
    Ok(ExitCode::SUCCESS)
}
