//! `datarequest erase`: the operator's tool for GDPR Art. 17, erasing one subject with
//! everything that belongs to it, on the same store as `import`.

use std::process::ExitCode;

use datarequest::app::Operator;
use datarequest::domain::Erasure;
use serde_json::{Value, json};

/// Erases and prints what was erased as JSON. Erasing what is not there is not an error, so
/// running it again after a failure completes the erasure.
pub async fn run(erasure: &Erasure, operator: &Operator) -> anyhow::Result<ExitCode> {
    operator.erase(erasure).await?;
    println!("{}", json!({ "erased": describe(erasure) }));
    Ok(ExitCode::SUCCESS)
}

fn describe(erasure: &Erasure) -> Value {
    match erasure {
        Erasure::Profile(account, profile) => json!({"account": account.get(), "profile": profile.get()}),
        Erasure::Subprofile(account, subprofile) => json!({"account": account.get(), "subprofile": subprofile.get()}),
        Erasure::Email(account, email) => json!({"account": account.get(), "email": email.as_str()}),
    }
}
