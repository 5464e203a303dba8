//! The operator's use cases, the `datarequest` command's subcommands on either backend:
//! accounts and their tokens, ingest keys, imports and erasures. They need only the stores,
//! so an operator can run them against a deployed stack without the rest of its
//! configuration ([`crate::compose::aws_operator`]).

use std::path::Path;
use std::sync::Arc;

use crate::app::ingest::{ImportError, Summary, import_file};
use crate::domain::{AccessToken, AccountId, Erasure, WebhookSecret};
use crate::ports::{Accounts, ExportStore, Mailer, RequestStore, SubjectData};

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
}

/// The operator's use cases on one backend's stores.
#[derive(Clone)]
pub struct Operator {
    accounts: Arc<dyn Accounts>,
    pub(crate) subjects: Arc<dyn SubjectData>,
    pub(crate) requests: Arc<dyn RequestStore>,
    pub(crate) exports: Arc<dyn ExportStore>,
    pub(crate) mailer: Arc<dyn Mailer>,
}

impl Operator {
    /// The use cases on these stores.
    #[must_use]
    pub fn new(stores: OperatorStores) -> Self {
        let OperatorStores { accounts, subjects, requests, exports, mailer } = stores;
        Self { accounts, subjects, requests, exports, mailer }
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
