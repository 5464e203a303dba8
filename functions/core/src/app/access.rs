//! Who may do what: the account behind an access token, the platform behind an ingest key, an
//! account's rate of new requests, and the files a request or a signed download link may fetch.

use super::App;
use crate::config::Settings;
use crate::domain::{AccessToken, AccountId, AuditEvent, DataRequest, DownloadToken, RequestId};
use crate::ports::{ExportFormat, Served};

/// Why a download link fetches nothing. One reason for all, so a link reveals nothing.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The link is bad, expired, or its request has no file (any more).
    #[error("the link is invalid or has expired")]
    Invalid,
    /// A store failed; the cause is logged, not shown.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl App {
    /// The settings the app runs with.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The account whose access token this is; `None` for an unknown or revoked one. For reads:
    /// the answer may come from the process's token cache, so a token revoked in another
    /// process works here for at most `DATAREQUEST_TOKEN_CACHE_SECS`.
    ///
    /// # Errors
    /// When the account store cannot be reached.
    pub async fn authenticate(&self, token: &AccessToken) -> anyhow::Result<Option<AccountId>> {
        self.accounts.by_token(&token.hash()).await
    }

    /// As [`App::authenticate`], read from the account store itself, never a cache: for a new
    /// data request, so a token revoked or an account deleted anywhere submits nothing more.
    ///
    /// # Errors
    /// When the account store cannot be reached.
    pub async fn authenticate_fresh(&self, token: &AccessToken) -> anyhow::Result<Option<AccountId>> {
        self.accounts.by_token_uncached(&token.hash()).await
    }

    /// Whether this is a key of `POST /ingest`.
    ///
    /// # Errors
    /// When the account store cannot be reached.
    pub async fn is_ingest_key(&self, key: &AccessToken) -> anyhow::Result<bool> {
        self.accounts.is_ingest_key(&key.hash()).await
    }

    /// Counts a new request of `account` against its rate limit; `Err` holds the seconds to
    /// wait when it is over.
    ///
    /// # Errors
    /// The seconds until the next minute, when over the limit.
    pub fn count_request(&self, account: AccountId) -> Result<(), u64> {
        self.limiter.check(account, self.now())
    }

    /// The file of a request, when it holds one now; the fetch goes to its audit log as
    /// `route` from `client`.
    ///
    /// # Errors
    /// When a store cannot be reached.
    pub async fn fetch(
        &self,
        request: &DataRequest,
        format: ExportFormat,
        route: &str,
        client: String,
    ) -> anyhow::Result<Option<Served>> {
        if !request.effective_state(self.now()).has_file() {
            return Ok(None);
        }
        let Some(served) = self.exports.serve(request.id, format, self.settings.signed_url_ttl).await? else {
            return Ok(None);
        };
        let event = AuditEvent::Download { route: route.to_owned(), client };
        self.record(request.account, request.id, event).await;
        Ok(Some(served))
    }

    /// The file a signed download link names, for whoever holds the link (its token is the
    /// authority, not an access token).
    ///
    /// # Errors
    /// [`DownloadError::Invalid`] for a bad or expired token, or a request without a file.
    pub async fn download(
        &self,
        id: RequestId,
        token: &str,
        format: ExportFormat,
        client: String,
    ) -> Result<Served, DownloadError> {
        DownloadToken::verify(&self.settings.link_secret, id, token, self.now()).map_err(|_| DownloadError::Invalid)?;
        let request = self.find_any(id).await?.ok_or(DownloadError::Invalid)?;
        self.fetch(&request, format, "download", client).await?.ok_or(DownloadError::Invalid)
    }
}
