//! `GET /vN/datarequest/{id}`, `…/status` and `…/data`: poll a request and fetch its export.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::ConnectInfo;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::{ApiError, NO_ENTITY};
use super::{params, serve_export};
use crate::app::App;
use crate::domain::audit;
use crate::domain::{AuditEvent, DataRequest, DeliveryStatus, RequestId, State as Lifecycle, Timestamp};
use crate::ports::ExportFormat;

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
    extensions: Extensions,
) -> Response {
    respond(
        async {
            let request =
                lookup(&app, path, query.as_deref(), &headers).await?.ok_or_else(|| ApiError::bad(NO_ENTITY))?;
            let fetched = Fetched { route: "export", client: client_network(&extensions, &headers) };
            match file_or_reason(&app, &request, ExportFormat::Json, fetched).await? {
                Ok(file) => Ok(file),
                Err(reason) => Ok(Json(json!({"info": info(&request), "data": reason})).into_response()),
            }
        }
        .await,
    )
}

/// Who fetched a file, for the audit log: the route and the client's network.
struct Fetched {
    route: &'static str,
    client: String,
}

/// The export file of `request` when it has one (the download goes to its audit log),
/// otherwise why not (Copernica's wording).
async fn file_or_reason(
    app: &App,
    request: &DataRequest,
    format: ExportFormat,
    fetched: Fetched,
) -> Result<Result<Response, &'static str>, ApiError> {
    let state = request.effective_state(app.now());
    if state.has_file()
        && let Some(served) = app.exports.serve(request.id, format, app.settings.signed_url_ttl).await?
    {
        let event = AuditEvent::Download { route: fetched.route.to_owned(), client: fetched.client };
        app.record(request.account, request.id, event).await;
        return Ok(Ok(serve_export(served, format, None)));
    }
    Ok(Err(if state.copernica_status() == "pending" { "Data not available (yet)" } else { "Data not available" }))
}

/// `GET /vN/datarequest/{id}/data[?format=html]`: the export file, or its HTML report; `404`
/// while not ready.
pub async fn data(
    State(app): State<App>,
    path: RequestPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    respond(
        async {
            let request =
                lookup(&app, path, query.as_deref(), &headers).await?.ok_or_else(|| ApiError::bad(NO_ENTITY))?;
            let format = params::format(&params::query(query.as_deref(), &["format"])?)?;
            let fetched = Fetched { route: "data", client: client_network(&extensions, &headers) };
            file_or_reason(&app, &request, format, fetched)
                .await?
                .map_err(|reason| ApiError::NotFound(reason.to_owned()))
        }
        .await,
    )
}

/// `GET /vN/datarequest/{id}/log`: the request's audit log, oldest first. It outlives the
/// export; another account's request or an unknown one answers like elsewhere.
pub async fn log(State(app): State<App>, path: RequestPath, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    respond(
        async {
            let Path((version, id)) =
                path.map_err(|_| ApiError::bad("The path is not valid UTF-8 after percent-decoding"))?;
            params::version(&version)?;
            let query = params::query(query.as_deref(), &["access_token"])?;
            let account = params::authenticate(&app, &query, &headers).await?;
            let id = RequestId::parse(&id).map_err(|_| ApiError::bad(NO_ENTITY))?;
            let entries = app.log(account, id).await?.ok_or_else(|| ApiError::bad(NO_ENTITY))?;
            Ok(Json(json!({"id": id.get(), "log": entries})).into_response())
        }
        .await,
    )
}

/// The client's network for the audit log: the connection's peer when the server knows it
/// (local mode), else the address API Gateway appended last to `X-Forwarded-For`.
pub(crate) fn client_network(extensions: &Extensions, headers: &HeaderMap) -> String {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
    let forwarded = || {
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    };
    peer.or_else(forwarded).map_or_else(|| "unknown".to_owned(), audit::truncated)
}
