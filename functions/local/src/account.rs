//! `datarequest account …`: create an account (its access token and webhook secret), add and
//! revoke its tokens, set how its web deliveries are signed, delete it.

use std::process::ExitCode;

use anyhow::Context;
use datarequest::app::Operator;
use datarequest::domain::{AccessToken, AccountId, SigningProfile};

/// Creates an account and prints it as JSON; the token and secret are shown only here.
pub async fn create(operator: &Operator) -> anyhow::Result<ExitCode> {
    let account = operator.create_account().await?;
    let json = serde_json::json!({
        "account": account.account.get(),
        "token": account.token.expose(),
        "webhook_secret": account.webhook_secret.expose(),
    });
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

/// Adds a token to `account` and prints it as JSON (shown once, stored only as its hash).
pub async fn add_token(operator: &Operator, account: AccountId) -> anyhow::Result<ExitCode> {
    let token = operator.add_token(account).await?.with_context(|| format!("there is no account {account}"))?;
    println!("{}", serde_json::json!({"account": account.get(), "token": token.expose()}));
    Ok(ExitCode::SUCCESS)
}

/// Revokes `token` of `account`.
pub async fn revoke_token(operator: &Operator, account: AccountId, token: &str) -> anyhow::Result<ExitCode> {
    let token = AccessToken::parse(token).context("that is not an access token")?;
    anyhow::ensure!(operator.revoke_token(account, &token).await?, "account {account} has no such token");
    println!("{}", serde_json::json!({"revoked": true, "account": account.get()}));
    Ok(ExitCode::SUCCESS)
}

/// Deletes `account`: every token is revoked, and its requests answer like unknown ones; its
/// data is erased now, or by the sweep when `background`.
pub async fn delete(operator: &Operator, account: AccountId, background: bool) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(operator.delete_account(account, !background).await?, "there is no account {account}");
    println!("{}", serde_json::json!({"deleted": account.get(), "erased": !background}));
    Ok(ExitCode::SUCCESS)
}

/// Sets how `account`'s web deliveries are signed.
pub async fn signing(operator: &Operator, account: AccountId, profile: SigningProfile) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(operator.set_signing_profile(account, profile).await?, "there is no account {account}");
    println!("{}", serde_json::json!({"account": account.get(), "signing": profile.as_str()}));
    Ok(ExitCode::SUCCESS)
}
