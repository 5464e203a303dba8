//! `datarequest account create`: a new account, its access token and webhook secret.

use std::process::ExitCode;

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
