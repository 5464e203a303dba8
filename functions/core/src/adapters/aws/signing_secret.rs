//! The signing keys in one Secrets Manager secret (`DATAREQUEST_SIGNING_SECRET_ARN`): the
//! keyring's JSON as the secret's string. The builder may only read it; the operator's command
//! writes it. The stack makes the secret without a value (so an update never resets it): that
//! reads as no keys.

use anyhow::Context;
use async_trait::async_trait;

use crate::domain::Keyring;
use crate::ports::SigningKeyStore;

/// A keyring in a Secrets Manager secret.
pub struct SecretSigningKeys {
    client: aws_sdk_secretsmanager::Client,
    secret: String,
}

impl SecretSigningKeys {
    /// The keyring in `secret` (its name or ARN).
    #[must_use]
    pub fn new(client: aws_sdk_secretsmanager::Client, secret: String) -> Self {
        Self { client, secret }
    }
}

#[async_trait]
impl SigningKeyStore for SecretSigningKeys {
    async fn load(&self) -> anyhow::Result<Keyring> {
        let read = self.client.get_secret_value().secret_id(&self.secret).send().await;
        let output = match read {
            Ok(output) => output,
            // The stack makes the secret without a value: no key was made yet.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                return Ok(Keyring::default());
            }
            Err(e) => return Err(anyhow::Error::new(e).context("reading the signing keys' secret")),
        };
        Ok(Keyring::parse(output.secret_string().unwrap_or_default())?)
    }

    async fn save(&self, keyring: &Keyring) -> anyhow::Result<()> {
        self.client
            .put_secret_value()
            .secret_id(&self.secret)
            .secret_string(keyring.to_json())
            .send()
            .await
            .context("writing the signing keys' secret")?;
        Ok(())
    }
}
