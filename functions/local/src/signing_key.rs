//! `datarequest signing-key …`: make a key that signs web deliveries on the Copernica profile
//! (printing the TXT record to publish at its id), and delete one a rotation has retired.

use std::process::ExitCode;

use datarequest::app::Operator;
use datarequest::domain::KeyId;

/// Makes and keeps a key; prints `{"key_id": …, "txt": "v=DKIM1; k=rsa; p=…"}`.
pub async fn create(operator: &Operator, key_id: KeyId) -> anyhow::Result<ExitCode> {
    let key = operator.create_signing_key(key_id).await?;
    println!("{}", serde_json::json!({"key_id": key.key_id.as_str(), "txt": key.txt}));
    Ok(ExitCode::SUCCESS)
}

/// Deletes a key.
pub async fn delete(operator: &Operator, key_id: &KeyId) -> anyhow::Result<ExitCode> {
    operator.delete_signing_key(key_id).await?;
    println!("{}", serde_json::json!({"deleted": key_id.as_str()}));
    Ok(ExitCode::SUCCESS)
}
