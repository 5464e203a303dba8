//! Why a build run did not complete its export, typed where its caller decides on it: a
//! checkpoint whose files are gone is built again, a source's failure is the reason a failed
//! request shows, a request withdrawn mid-build stops it, and anything else is only logged.

use crate::ports::{SourceError, WriteError};

/// Why a build run did not complete its export.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The checkpoint's unfinished files are gone: the build starts again.
    #[error("the unfinished export is gone")]
    CheckpointGone,
    /// A source (the platform's own database) failed; its text names source, kind and section.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Another builder took the build over (its lease ran out).
    #[error("another builder took the build over")]
    LeaseLost,
    /// The request is no longer to be built (it was cancelled or erased while it built): the
    /// unfinished files were discarded.
    #[error("the request was withdrawn while it built")]
    Withdrawn,
    /// Anything else; logged, never shown.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl BuildError {
    /// Whether another attempt cannot succeed: a source refused a query itself (see
    /// [`SourceError::permanent`]).
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Source(source) if source.permanent)
    }

    /// The error as a log carries it: the cause itself when it is [`BuildError::Unexpected`].
    #[must_use]
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            Self::Unexpected(error) => error,
            typed => anyhow::Error::new(typed),
        }
    }
}

impl From<WriteError> for BuildError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::UnfinishedGone => Self::CheckpointGone,
            WriteError::Failed(error) => Self::Unexpected(error),
        }
    }
}

impl From<serde_json::Error> for BuildError {
    fn from(error: serde_json::Error) -> Self {
        Self::Unexpected(error.into())
    }
}

/// Why the writing of an export stopped before its end: at a checkpoint, for a continuation to
/// go on from, or because the build failed.
#[derive(Debug)]
pub(super) enum Stop {
    /// The run's time was up; the build stopped at a checkpoint for a continuation.
    Suspended,
    /// The build failed.
    Failed(BuildError),
}

impl<E: Into<BuildError>> From<E> for Stop {
    fn from(error: E) -> Self {
        Self::Failed(error.into())
    }
}
