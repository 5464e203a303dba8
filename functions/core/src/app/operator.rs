//! The operator's use cases, the `datarequest` command's subcommands on either backend:
//! accounts (their tokens and signing profiles), signing keys, ingest keys, imports and
//! erasures. They need only the stores,
//! so an operator can run them against a deployed stack without the rest of its
//! configuration ([`crate::compose::aws_operator`]).

use std::path::Path;
use std::sync::Arc;

use crate::app::ingest::{ImportError, Summary, import_file};
use crate::domain::{AccessToken, AccountId, Erasure, KeyId, SigningKey, SigningProfile, WebhookSecret};
use crate::ports::{Accounts, ExportStore, Mailer, RequestStore, SigningKeyStore, SubjectData};

/// A new account, as shown once to the operator.
#[derive(Debug)]
pub struct NewAccount {
    /// Its id.
    pub account: AccountId,
    /// Its first access token.
    pub token: AccessToken,
    /// Its webhook signing secret.
    pub webhook_secret: WebhookSecret,
}

/// The stores the operator's use cases work on.
#[derive(Clone)]
pub struct OperatorStores {
    /// Accounts, tokens and ingest keys.
    pub accounts: Arc<dyn Accounts>,
    /// Subject data.
    pub subjects: Arc<dyn SubjectData>,
    /// Data requests (an erasure or a deleted account erases theirs).
    pub requests: Arc<dyn RequestStore>,
    /// Export files.
    pub exports: Arc<dyn ExportStore>,
    /// The mailer, for the copies of mails it keeps.
    pub mailer: Arc<dyn Mailer>,
    /// Where the signing keys are kept; `None` when this backend was not told
    /// (`DATAREQUEST_SIGNING_SECRET_ARN` on AWS).
    pub signing_keys: Option<Arc<dyn SigningKeyStore>>,
}

/// A new signing key, as shown to the operator: its id and the TXT record to publish there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSigningKey {
    /// The key's id, the DNS name of its TXT record.
    pub key_id: KeyId,
    /// `v=DKIM1; k=rsa; p=<base64 of the public key>`.
    pub txt: String,
}

/// Why a signing key command did nothing.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// This backend does not know where its keys are kept.
    #[error("{0} must be set: the secret that holds the signing keys")]
    NoStore(&'static str),
    /// A key with this id exists already.
    #[error("there is a signing key {0} already")]
    Taken(KeyId),
    /// There is no key with this id.
    #[error("there is no signing key {0}")]
    Unknown(KeyId),
    /// The store or the key failed.
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

/// The operator's use cases on one backend's stores.
#[derive(Clone)]
pub struct Operator {
    accounts: Arc<dyn Accounts>,
    pub(crate) subjects: Arc<dyn SubjectData>,
    pub(crate) requests: Arc<dyn RequestStore>,
    pub(crate) exports: Arc<dyn ExportStore>,
    pub(crate) mailer: Arc<dyn Mailer>,
    signing_keys: Option<Arc<dyn SigningKeyStore>>,
}

impl Operator {
    /// The use cases on these stores.
    #[must_use]
    pub fn new(stores: OperatorStores) -> Self {
        let OperatorStores { accounts, subjects, requests, exports, mailer, signing_keys } = stores;
        Self { accounts, subjects, requests, exports, mailer, signing_keys }
    }

    /// Creates an account with a fresh token and webhook secret.
    ///
    /// # Errors
    /// When the account store cannot be reached.
    pub async fn create_account(&self) -> anyhow::Result<NewAccount> {
        let token = AccessToken::generate();
        let webhook_secret = WebhookSecret::generate();
        let account = self.accounts.create(&token.hash(), &webhook_secret).await?;
        Ok(NewAccount { account, token, webhook_secret })
    }

    /// Adds a fresh access token to an account; `None` when there is no such account.
    ///
    /// # Errors
    /// When the account store cannot be reached.
    pub async fn add_token(&self, account: AccountId) -> anyhow::Result<Option<AccessToken>> {
        let token = AccessToken::generate();
        Ok(self.accounts.add_token(account, &token.hash()).await?.then_some(token))
    }

    /// Revokes a token of an account; `false` when the account has no such token.
    ///
    /// # Errors
    /// When the account store cannot be reached.
    pub async fn revoke_token(&self, account: AccountId, token: &AccessToken) -> anyhow::Result<bool> {
        self.accounts.revoke_token(account, &token.hash()).await
    }

    /// Deletes an account: its tokens are refused at once, then its requests (their files
    /// and kept mails), idempotency keys and subject data go: here when `erase_now`, else (and
    /// after a failure) in the next sweep ([`crate::app::App::erase_deleted_accounts`]). `false`
    /// when there is no such account, nor one whose erasure is still to finish.
    ///
    /// # Errors
    /// When a store cannot be reached; deleting again completes the deletion.
    pub async fn delete_account(&self, account: AccountId, erase_now: bool) -> anyhow::Result<bool> {
        self.eraser().delete_account(&*self.accounts, account, erase_now).await
    }

    /// Sets how an account's web deliveries are signed; `false` when there is no such account.
    ///
    /// # Errors
    /// When the account store cannot be reached.
    pub async fn set_signing_profile(&self, account: AccountId, profile: SigningProfile) -> anyhow::Result<bool> {
        self.accounts.set_signing_profile(account, profile).await
    }

    fn key_store(&self) -> Result<&dyn SigningKeyStore, SigningKeyError> {
        self.signing_keys.as_deref().ok_or(SigningKeyError::NoStore(crate::config::SIGNING_SECRET_ARN))
    }

    /// Makes a 2048-bit signing key under `key_id` and keeps it beside the others; it signs
    /// only once `DATAREQUEST_SIGNING_KEYS` names it. Returns the TXT record to publish.
    ///
    /// # Errors
    /// [`SigningKeyError::Taken`] when the id is in use, or a failure of the key store.
    pub async fn create_signing_key(&self, key_id: KeyId) -> Result<NewSigningKey, SigningKeyError> {
        let store = self.key_store()?;
        let mut keyring = store.load().await?;
        if keyring.get(&key_id).is_some() {
            return Err(SigningKeyError::Taken(key_id));
        }
        let key = SigningKey::generate(key_id.clone(), crate::domain::Timestamp::now()).map_err(anyhow::Error::from)?;
        let txt = key.txt().map_err(anyhow::Error::from)?;
        keyring.add(key);
        store.save(&keyring).await?;
        Ok(NewSigningKey { key_id, txt })
    }

    /// Deletes a signing key (the last step of a rotation: it no longer signs anything).
    ///
    /// # Errors
    /// [`SigningKeyError::Unknown`] when there is no such key, or a failure of the key store.
    pub async fn delete_signing_key(&self, key_id: &KeyId) -> Result<(), SigningKeyError> {
        let store = self.key_store()?;
        let mut keyring = store.load().await?;
        if !keyring.remove(key_id) {
            return Err(SigningKeyError::Unknown(key_id.clone()));
        }
        store.save(&keyring).await?;
        Ok(())
    }

    /// Creates an ingest key (the platform's key for `POST /ingest`); only its hash is stored.
    ///
    /// # Errors
    /// When the account store cannot be reached.
    pub async fn create_ingest_key(&self) -> anyhow::Result<AccessToken> {
        let key = AccessToken::generate();
        self.accounts.add_ingest_key(&key.hash()).await?;
        Ok(key)
    }

    /// Loads an NDJSON file of subject data; a bad line loads nothing (see [`import_file`]).
    ///
    /// # Errors
    /// [`ImportError::BadLine`] for the first bad line or line of an account that does not
    /// exist (nothing loaded), or a failure to read the file or write the store.
    pub async fn import(&self, path: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<Summary, ImportError> {
        import_file(&*self.accounts, &self.eraser(), path, progress).await
    }

    /// Erases a subject with everything that belongs to it (GDPR Art. 17). Erasing what is not
    /// there is not an error, so running it again after a failure completes the erasure.
    ///
    /// # Errors
    /// When the subject store fails.
    pub async fn erase(&self, erasure: &Erasure) -> anyhow::Result<()> {
        self.eraser().erase(erasure).await
    }
}
