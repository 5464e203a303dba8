//! `datarequest ingest-key create`: a key for `POST /ingest`, the platform's own door for
//! subject data.

use std::process::ExitCode;

use datarequest::app::Operator;

/// Creates an ingest key and prints it as JSON; only its hash is stored, so this is the one
/// time it is shown.
pub async fn create(operator: &Operator) -> anyhow::Result<ExitCode> {
    let key = operator.create_ingest_key().await?;
    println!("{}", serde_json::json!({ "ingest_key": key.expose() }));
    Ok(ExitCode::SUCCESS)
}
