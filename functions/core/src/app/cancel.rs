//! Cancelling: the account withdraws a request it no longer wants (a wrong subject, a
//! duplicate, a request withdrawn by the subject). Whatever state it is in, nothing more of it
//! is built or delivered and every file of it goes: a build under way stops at its next page
//! (it looks before each, see [`crate::export::BuildError::Withdrawn`]) and its unfinished
//! files are discarded, a built export is neither delivered nor kept, and a delivered one
//! loses its files and the copy of its mail. Cancelling again changes nothing.

use anyhow::Context;
use tracing::instrument;

use super::{App, Origin};
use crate::domain::audit;
use crate::domain::{AccountId, AuditEvent, DataRequest, RequestId, State, Transition};
use crate::ports::ExportFormat;

impl App {
    /// Cancels the account's request `id` and deletes its files; returns the request as it
    /// stands then. An unknown or another account's id is `None`, exactly alike, and changes
    /// nothing. A request already cancelled is cancelled again (its files deleted again,
    /// nothing recorded), and one that already failed or expired stays as it is.
    ///
    /// # Errors
    /// When a store cannot be reached; cancelling again completes the cancellation.
    #[instrument(skip_all, fields(request_id = %id))]
    pub async fn cancel(
        &self,
        account: AccountId,
        id: RequestId,
        origin: &Origin,
    ) -> anyhow::Result<Option<DataRequest>> {
        match self.requests.get(id).await? {
            // One past its expiry is expired first, as any read of it would.
            Some(request) if request.account == account => self.expire_if_due(request).await?,
            _ => return Ok(None),
        };
        let cancelled = self.requests.update(id, &Transition::Cancel).await?;
        let Some(request) = self.requests.get(id).await? else { return Ok(None) };
        if request.state != State::Cancelled {
            return Ok(Some(request));
        }
        // The checkpoint stays in the cancelled request, and no builder can record another:
        // the unfinished files it names are the last a build kept.
        if let Some(checkpoint) = &request.checkpoint {
            let writers = crate::export::writer_checkpoints(checkpoint);
            for (format, writer) in [ExportFormat::Json, ExportFormat::Html].into_iter().zip(&writers) {
                self.exports.discard(id, format, writer).await.context("discarding an unfinished export")?;
            }
        }
        self.exports.delete(id).await.context("deleting a cancelled export")?;
        self.mailer.forget(id).await.context("deleting the mail of a cancelled export")?;
        if cancelled {
            // The request's addresses were overwritten: the store rewrites what it kept.
            self.subjects.scrub().await?;
            tracing::info!("data request cancelled");
            let token = origin.token.as_ref().map(audit::token_id).unwrap_or_default();
            let event = AuditEvent::Cancelled { account: account.get(), version: origin.version.to_owned(), token };
            self.record(account, id, event).await;
        }
        Ok(Some(request))
    }
}
