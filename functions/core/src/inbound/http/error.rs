//! Errors at the edge, mapped to HTTP in exactly one place, in Copernica's shape:
//! `{"error":{"message":"…"}}`. Causes of a 5xx go to the log, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::SubmitError;
use crate::domain::Invalid;

/// The refusals whose texts Copernica's clients know, each answered `400` with exactly
/// Copernica's words. This is the one table that maps a refusal to its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A missing, malformed, unknown or revoked access token.
    InvalidToken,
    /// A profile (or request) id that is malformed, unknown, or another account's.
    NoEntity,
    /// A subprofile id that is malformed, unknown, or another account's.
    NoSubprofile,
    /// An unknown path, version or method.
    InvalidMethod,
}

impl Refusal {
    /// Copernica's text.
    #[must_use]
    pub const fn text(self) -> &'static str {
        match self {
            Self::InvalidToken => "Invalid access token",
            Self::NoEntity => "No entity with supplied ID",
            Self::NoSubprofile => "No subprofile with supplied ID",
            Self::InvalidMethod => "Invalid method",
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InvalidToken => Self::InvalidToken,
            other => Self::bad(other.text()),
        }
    }
}

/// The message for a subject or request that does not exist in the caller's account.
pub const NO_ENTITY: &str = Refusal::NoEntity.text();
/// The message for a missing or wrong access token.
pub const INVALID_TOKEN: &str = Refusal::InvalidToken.text();
/// The message for an unknown path or a wrong method.
pub const INVALID_METHOD: &str = Refusal::InvalidMethod.text();

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// `400`: the client's mistake, explained.
    BadRequest(String),
    /// `400` with Copernica's text for a missing, malformed, unknown or revoked access token;
    /// counted as a failed authentication.
    InvalidToken,
    /// `404`: the export is not there (yet).
    NotFound(String),
    /// `401`: no valid credentials where no account token applies (`/ingest`).
    Unauthorized(String),
    /// `413`: the body is too large.
    TooLarge(String),
    /// `415`: the body is of a type the route does not read.
    UnsupportedType(String),
    /// `429`: over the rate limit; retry after this many seconds.
    TooMany(u64),
    /// `429`: too many failed authentications from this client; retry after this many seconds.
    TooManyFailures(u64),
    /// `503`: a store failed midway; the same call may be sent again. The cause is logged.
    Unavailable(anyhow::Error),
    /// `503`: as many bodies as may be read at once are being read; retry after this many
    /// seconds. The body is not read, and the connection is closed.
    Busy(u64),
    /// `400`: the body broke off, or sent nothing for too long, before its end. The connection
    /// is closed.
    Incomplete,
    /// `500`: ours; the cause is logged.
    Internal(anyhow::Error),
}

impl ApiError {
    /// A `400` with this message.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::BadRequest(invalid.0)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(error)
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::NoSuchProfile => Refusal::NoEntity.into(),
            SubmitError::NoSuchSubprofile => Refusal::NoSubprofile.into(),
            conflict @ SubmitError::KeyConflict(_) => Self::bad(conflict.to_string()),
            SubmitError::Unexpected(e) => Self::Internal(e),
        }
    }
}

/// Marks a response that refused a token or key, so that failures can be counted per client.
#[derive(Debug, Clone, Copy)]
pub struct AuthFailed;

/// Copernica's error body: `{"error":{"message":"…"}}`, and nothing else.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
#[serde(deny_unknown_fields)] // read by the schema: no other members
pub struct ErrorBody<'a> {
    #[schema(inline)]
    error: ErrorMessage<'a>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ErrorMessage<'a> {
    #[schema(min_length = 1)]
    message: &'a str,
}

/// Copernica's error body with a status.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(ErrorBody { error: ErrorMessage { message } })).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(message) => error_response(StatusCode::BAD_REQUEST, &message),
            Self::InvalidToken => {
                let mut response = error_response(StatusCode::BAD_REQUEST, Refusal::InvalidToken.text());
                response.extensions_mut().insert(AuthFailed);
                response
            }
            Self::NotFound(message) => error_response(StatusCode::NOT_FOUND, &message),
            Self::Unauthorized(message) => {
                let mut response = error_response(StatusCode::UNAUTHORIZED, &message);
                response.extensions_mut().insert(AuthFailed);
                response
            }
            // The rest of the body is not read: the connection cannot carry another request, and
            // a client must not send one on it.
            Self::TooLarge(message) => closing(error_response(StatusCode::PAYLOAD_TOO_LARGE, &message)),
            Self::Incomplete => {
                closing(error_response(StatusCode::BAD_REQUEST, "The body broke off before its end; send it again"))
            }
            Self::Busy(seconds) => {
                let message = format!("Too many bodies are being read; retry after {seconds} seconds");
                let mut response = closing(error_response(StatusCode::SERVICE_UNAVAILABLE, &message));
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
                response
            }
            Self::UnsupportedType(message) => error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message),
            Self::Unavailable(error) => {
                tracing::error!(error = format!("{error:#}"), "storage failed");
                error_response(StatusCode::SERVICE_UNAVAILABLE, "Storage is unavailable; send the same body again")
            }
            Self::TooManyFailures(seconds) => {
                let message = format!("Too many failed authentications; retry after {seconds} seconds");
                let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, &message);
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
                response
            }
            Self::TooMany(seconds) => {
                let message = format!("Too many data requests; retry after {seconds} seconds");
                let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, &message);
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
                response
            }
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal error, please try again later")
            }
        }
    }
}

/// A response after which the connection is closed.
fn closing(mut response: Response) -> Response {
    let close = axum::http::HeaderValue::from_static("close");
    response.headers_mut().insert(axum::http::header::CONNECTION, close);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_answers_400_with_copernicas_exact_text() {
        let table = [
            (Refusal::InvalidToken, "Invalid access token"),
            (Refusal::NoEntity, "No entity with supplied ID"),
            (Refusal::NoSubprofile, "No subprofile with supplied ID"),
            (Refusal::InvalidMethod, "Invalid method"),
        ];
        for (refusal, text) in table {
            assert_eq!(refusal.text(), text);
            let response = ApiError::from(refusal).into_response();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{refusal:?}");
            let counted = response.extensions().get::<AuthFailed>().is_some();
            assert_eq!(counted, refusal == Refusal::InvalidToken, "only a bad token counts as a failed login");
        }
    }
}
