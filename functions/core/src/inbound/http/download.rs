//! `GET /vN/datarequest/{id}/download?token=…[&format=html]`: the links sent by e-mail, to the
//! export or its HTML report. No access token: the signed token, bound to the request and
//! dying with the file, is the authority.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::answers::{EXPORT_FILE, Export, REDIRECT, serve_export};
use super::error::{ApiError, ErrorBody};
use super::params;
use super::params::{FormatQuery, RequestPath};
use crate::app::{App, DownloadError};
use crate::domain::RequestId;

const INVALID: &str = "Invalid or expired download token";

/// The download link sent by e-mail: a signed token instead of an access token
///
/// Serves the export (or a `303` to a fresh signed URL) for a valid token.
#[utoipa::path(
    get,
    path = "/datarequest/{id}/download",
    operation_id = "get_download",
    tag = "data requests",
    security(),
    params(
        RequestPath,
        ("token" = String, Query, description = "The signed token of the link"),
        FormatQuery,
    ),
    responses(
        (status = 200, description = EXPORT_FILE, content((Export = "application/json"), (String = "text/html"))),
        (status = 303, description = REDIRECT, headers(("Location" = String))),
        (status = 400, description = INVALID, body = ErrorBody),
    ),
)]
pub async fn download(
    State(app): State<App>,
    path: Result<Path<RequestPath>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    let result = async {
        let Path(RequestPath { version, id }) =
            path.map_err(|_| ApiError::bad("The path is not valid UTF-8 after percent-decoding"))?;
        params::version(&version)?;
        let mut query = params::query(query.as_deref(), &["token", "format"])?;
        let format = params::format(&query)?;
        let id = RequestId::parse(&id)?;
        let token = query.remove("token").ok_or_else(|| ApiError::bad(INVALID))?;
        let client = params::client_network(&extensions, &headers);
        let served = app.download(id, &token, format, client).await.map_err(|error| match error {
            DownloadError::Invalid => ApiError::bad(INVALID),
            DownloadError::Unexpected(error) => ApiError::Internal(error),
        })?;
        Ok::<_, ApiError>(serve_export(served, format, Some(format!("datarequest-{id}.{}", format.as_str()))))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
