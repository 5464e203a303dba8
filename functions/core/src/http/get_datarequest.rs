//! `GET /vN/datarequest/{id}`, `…/status` and `…/data`: poll a request and fetch its export.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::{ApiError, NO_ENTITY};
use super::{params, serve_export};
use crate::app::App;
use crate::domain::{DataRequest, DeliveryStatus, RequestId, State as Lifecycle, Timestamp};

type RequestPath = Result<Path<(String, String)>, PathRejection>;

/// The caller's request named in the path, or the error to answer.
async fn lookup(
    app: &App,
    path: RequestPath,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<DataRequest>, ApiError> {
    let Path((version, id)) = path.map_err(|_| ApiError::bad("The path is not valid UTF-8 after percent-decoding"))?;
    params::version(&version)?;
    let query = params::query(query, &["access_token"])?;
    let account = params::authenticate(app, &query, headers).await?;
    let id = RequestId::parse(&id)?;
    Ok(app.find(account, id).await?)
}

fn info(request: &DataRequest) -> Value {
    json!({"type": request.subject.kind().as_str(), "id": request.subject.info_id()})
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The owner's status answer. Members in alphabetical order, as clients have always seen them.
#[derive(Serialize)]
struct StatusOut<'a> {
    available: u64,
    completed: Option<Timestamp>,
    #[serde(rename = "content-type")]
    content_type: &'static str,
    created: Timestamp,
    delivery: DeliveryOut<'a>,
    expires: Option<Timestamp>,
    id: u64,
    info: Value,
    reason: &'a Option<String>,
    state: &'static str,
    status: &'static str,
}

/// The `delivery` member: only `status` (`none`) when no report was asked for.
#[derive(Serialize)]
struct DeliveryOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    status: &'static str,
}

/// `GET /vN/datarequest/{id}/status`: Copernica's three members, and more for the owner.
pub async fn status(
    State(app): State<App>,
    path: RequestPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let Some(request) = lookup(&app, path, query.as_deref(), &headers).await? else {
                return Ok(Json(
                    json!({"status": "not available", "available": 0, "content-type": "application/json"}),
                )
                .into_response());
            };
            let state = request.effective_state(app.now());
            let available =
                if state == Lifecycle::Failed || state == Lifecycle::Expired { 0 } else { request.available };
            let delivery = match &request.report {
                Some(report) => DeliveryOut {
                    attempts: Some(request.delivery.attempts),
                    error: Some(&request.delivery.error),
                    method: Some(request.delivery.method.as_deref().unwrap_or(report.kind())),
                    status: request.delivery.status.as_str(),
                },
                None => {
                    DeliveryOut { attempts: None, error: None, method: None, status: DeliveryStatus::None.as_str() }
                }
            };
            Ok(Json(StatusOut {
                available,
                completed: request.completed,
                content_type: "application/json",
                created: request.created,
                delivery,
                expires: request.expires,
                id: request.id.get(),
                info: info(&request),
                reason: &request.reason,
                state: state.as_str(),
                status: state.copernica_status(),
            })
            .into_response())
        }
        .await,
    )
}

/// `GET /vN/datarequest/{id}`: the export when ready, otherwise what is known.
pub async fn export(
    State(app): State<App>,
    path: RequestPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let request =
                lookup(&app, path, query.as_deref(), &headers).await?.ok_or_else(|| ApiError::bad(NO_ENTITY))?;
            match file_or_reason(&app, &request).await? {
                Ok(file) => Ok(file),
                Err(reason) => Ok(Json(json!({"info": info(&request), "data": reason})).into_response()),
            }
        }
        .await,
    )
}

/// The export file of `request` when it has one, otherwise why not (Copernica's wording).
async fn file_or_reason(app: &App, request: &DataRequest) -> Result<Result<Response, &'static str>, ApiError> {
    let state = request.effective_state(app.now());
    if state.has_file()
        && let Some(served) = app.exports.serve(request.id, app.settings.signed_url_ttl).await?
    {
        return Ok(Ok(serve_export(served, None)));
    }
    Ok(Err(if state.copernica_status() == "pending" { "Data not available (yet)" } else { "Data not available" }))
}

/// `GET /vN/datarequest/{id}/data`: the export file; `404` while not ready.
pub async fn data(
    State(app): State<App>,
    path: RequestPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let request =
                lookup(&app, path, query.as_deref(), &headers).await?.ok_or_else(|| ApiError::bad(NO_ENTITY))?;
            file_or_reason(&app, &request).await?.map_err(|reason| ApiError::NotFound(reason.to_owned()))
        }
        .await,
    )
}
