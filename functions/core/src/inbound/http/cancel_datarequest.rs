//! `DELETE /vN/datarequest/{id}`: cancel a request. An extension: Copernica has no such call.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::answers::{StatusAnswer, status_answer};
use super::error::{ApiError, ErrorBody, NO_ENTITY};
use super::params;
use super::params::RequestPath;
use crate::app::{App, Origin};
use crate::domain::RequestId;

/// Cancel a request (an extension: Copernica has no such call)
///
/// Nothing more of the request is built or delivered and its files are deleted: a build under
/// way stops at its next page, a built export is not delivered, a delivered one loses its
/// files. The answer is the request's status, then `not available` with the state and reason
/// `cancelled`. Cancelling again changes nothing and answers the same; a request that already
/// failed or expired stays as it is. The token is checked against the account store itself,
/// as for a POST.
#[utoipa::path(
    delete,
    path = "/datarequest/{id}",
    operation_id = "cancel_request",
    tag = "data requests",
    params(RequestPath),
    responses(
        (status = 200, description = "Cancelled (or cancelled before, failed or expired): the request's status", body = StatusAnswer),
        (status = 400, description = "Bad token or id, or no such request in this account", body = ErrorBody),
    ),
)]
pub async fn cancel(
    State(app): State<App>,
    path: Result<Path<RequestPath>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let (version, id, query) = params::request_call(path, query.as_deref())?;
        let (account, token) = params::authenticate_fresh(&app, &query, &headers).await?;
        let id = RequestId::parse(&id).map_err(|_| ApiError::bad(NO_ENTITY))?;
        let origin = Origin { key: None, version, token: Some(token) };
        let request = app.cancel(account, id, &origin).await?.ok_or_else(|| ApiError::bad(NO_ENTITY))?;
        Ok::<_, ApiError>(status_answer(&request, app.now()))
    }
    .await;
    answer.unwrap_or_else(IntoResponse::into_response)
}
