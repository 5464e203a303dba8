//! `GET /vN/datarequest/{id}/download?token=…`: the link sent by e-mail. No access token: the
//! signed token, bound to the request and dying with the file, is the authority.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{params, serve_export};
use crate::app::App;
use crate::domain::{DownloadToken, RequestId};

const INVALID: &str = "Invalid or expired download token";

/// Serves the export (or a `303` to a fresh signed URL) for a valid token.
pub async fn download(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let Path((version, id)) =
            path.map_err(|_| ApiError::bad("The path is not valid UTF-8 after percent-decoding"))?;
        params::version(&version)?;
        let mut query = params::query(query.as_deref(), &["token"])?;
        let id = RequestId::parse(&id)?;
        let token = query.remove("token").ok_or_else(|| ApiError::bad(INVALID))?;
        DownloadToken::verify(&app.settings.link_secret, id, &token, app.now()).map_err(|_| ApiError::bad(INVALID))?;
        let request = app.find_any(id).await?.ok_or_else(|| ApiError::bad(INVALID))?;
        if !request.effective_state(app.now()).has_file() {
            return Err(ApiError::bad(INVALID));
        }
        let served = app.exports.serve(id, app.settings.signed_url_ttl).await?.ok_or_else(|| ApiError::bad(INVALID))?;
        Ok::<_, ApiError>(serve_export(served, Some(format!("datarequest-{id}.json"))))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
