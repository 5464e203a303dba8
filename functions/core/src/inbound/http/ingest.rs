//! `POST /ingest`: the platform's own door for subject data (outside `/vN`: it is no call of
//! Copernica's API). Authenticated by an ingest key, never by an account's access token. The
//! body is NDJSON — the lines of `datarequest import`, erase lines and SES event records — and
//! is checked whole, the accounts it names included, before anything is stored; on SQLite it
//! is then stored in one transaction.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::error::{ApiError, ErrorBody};
use crate::app::App;
use crate::app::ingest::ImportError;
use crate::domain::AccessToken;

/// Largest body: 8 MiB.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Most lines in one body.
pub const LINE_LIMIT: usize = 50_000;
/// The message of a missing or wrong ingest key.
pub const INVALID_INGEST_KEY: &str = "Invalid ingest key";
/// The `Retry-After` of a body refused because as many as may be are being read.
pub const BUSY_RETRY_SECS: u64 = 5;

/// The bodies that may be read into memory at once (a body is read whole, up to
/// [`BODY_LIMIT`]): one permit each, taken before the first byte is read.
#[derive(Clone)]
pub struct Bodies(Arc<tokio::sync::Semaphore>);

impl Bodies {
    /// At most `count` bodies at once.
    #[must_use]
    pub fn new(count: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(count)))
    }
}

/// Load and erase subject data (the platform's own door, with an ingest key; not a call of Copernica's API)
#[utoipa::path(
    post,
    path = "/ingest",
    operation_id = "post_ingest",
    tag = "subject data",
    security(("ingest_key" = [])),
    request_body(
        description = "NDJSON: profile, subprofile, message, event and erase lines, and SES event records; at most 8 MiB and 50,000 lines",
        content((String = "application/x-ndjson")),
    ),
    responses(
        (status = 200, description = "Stored; the counts are of lines", body = crate::app::ingest::Summary),
        (status = 400, description = "A bad line, or a line of an account that does not exist (\"line N: reason\"); nothing was stored", body = ErrorBody),
        (status = 401, description = "No ingest key, or not an ingest key", body = ErrorBody),
        (status = 413, description = "More than 8 MiB or 50,000 lines", body = ErrorBody),
        (status = 415, description = "Not application/x-ndjson", body = ErrorBody),
        (status = 503, description = "The store failed (on SQLite nothing was stored; on DynamoDB the lines before the failure may have been), or too many bodies are being read (with Retry-After); send the same body again", body = ErrorBody),
    ),
)]
pub async fn ingest(
    State(app): State<App>,
    Extension(bodies): Extension<Bodies>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(&app, &bodies, &headers, body).await {
        Ok(summary) => Json(summary).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn handle(
    app: &App,
    bodies: &Bodies,
    headers: &HeaderMap,
    body: Body,
) -> Result<crate::app::ingest::Summary, ApiError> {
    authorize(app, headers).await?;
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|t| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    if essence.as_deref() != Some("application/x-ndjson") {
        return Err(ApiError::UnsupportedType("Send the lines as Content-Type: application/x-ndjson".into()));
    }
    let too_large = || ApiError::TooLarge(format!("The body is larger than {BODY_LIMIT} bytes"));
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT) {
        return Err(too_large());
    }
    // Held until the body's lines are stored: the memory of a body is bounded by the permits.
    let _permit = bodies.0.try_acquire().map_err(|_| ApiError::Busy(BUSY_RETRY_SECS))?;
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|error| {
        let over = error.into_inner().downcast_ref::<http_body_util::LengthLimitError>().is_some();
        if over { too_large() } else { ApiError::Incomplete }
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        ApiError::bad(format!("line {line}: not valid UTF-8"))
    })?;
    if text.lines().count() > LINE_LIMIT {
        return Err(ApiError::TooLarge(format!("The body has more than {LINE_LIMIT} lines")));
    }
    app.ingest(text).await.map_err(|error| match error {
        ImportError::BadLine { .. } => ApiError::bad(error.to_string()),
        ImportError::Unexpected(e) => ApiError::Unavailable(e),
    })
}

/// The ingest key from `Authorization: Bearer`; anything else is `401`.
async fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let invalid = || ApiError::Unauthorized(INVALID_INGEST_KEY.into());
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or_else(invalid)?;
    if values.next().is_some() {
        return Err(invalid());
    }
    let (scheme, key) = value.to_str().ok().and_then(|v| v.split_once(' ')).ok_or_else(invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid());
    }
    let key = AccessToken::parse(key.trim()).map_err(|_| invalid())?;
    if app.is_ingest_key(&key).await? { Ok(()) } else { Err(invalid()) }
}
