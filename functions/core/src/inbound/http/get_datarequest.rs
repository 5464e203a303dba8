//! `GET /vN/datarequest/{id}`, `…/status` and `…/data`: poll a request and fetch its export.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::Object;

use super::answers::{
    EXPORT_FILE, Export, Info, REDIRECT, StatusAnswer, info, serve_export, status_answer, unknown_status,
};
use super::doc::one_of;
use super::error::{ApiError, ErrorBody, NO_ENTITY};
use super::params;
use super::params::{FormatQuery, RequestPath, client_network};
use crate::app::App;
use crate::domain::{AccountId, AuditEntry, DataRequest, RequestId};
use crate::ports::ExportFormat;

type RequestPathResult = Result<Path<RequestPath>, PathRejection>;

/// The caller's request named in the path, or the error to answer.
async fn lookup(
    app: &App,
    path: RequestPathResult,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<DataRequest>, ApiError> {
    let (account, id) = authorize(app, path, query, headers).await?;
    let id = RequestId::parse(&id)?;
    Ok(app.find(account, id).await?)
}

/// Checks the version, the query and the token of a call about a request: the account that
/// asks, and the id as the path gave it.
async fn authorize(
    app: &App,
    path: RequestPathResult,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(AccountId, String), ApiError> {
    let (_, id, query) = params::request_call(path, query)?;
    let account = params::authenticate(app, &query, headers).await?;
    Ok((account, id))
}

const NOT_YET: &str = "Data not available (yet)";
const NOT_AVAILABLE: &str = "Data not available";

/// The answer of `GET /vN/datarequest/{id}` while there is no file to serve, in Copernica's
/// words.
#[derive(Serialize, ToSchema)]
pub struct NotReady {
    #[schema(schema_with = not_ready)]
    data: &'static str,
    info: Info,
}

fn not_ready() -> Object {
    one_of([NOT_YET, NOT_AVAILABLE])
}

/// The export, or what is known while there is none.
#[derive(ToSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "describes the two answers of `export`, which streams the first")]
enum ExportOrNotReady {
    Export(Export),
    NotReady(NotReady),
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Where the request stands
#[utoipa::path(
    get,
    path = "/datarequest/{id}/status",
    operation_id = "get_status",
    tag = "data requests",
    params(RequestPath),
    responses(
        (status = 200, description = "The status; unknown and foreign ids are \"not available\"", body = StatusAnswer),
        (status = 400, description = "Bad token or id", body = ErrorBody),
    ),
)]
pub async fn status(
    State(app): State<App>,
    path: RequestPathResult,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            Ok(match lookup(&app, path, query.as_deref(), &headers).await? {
                Some(request) => status_answer(&request, app.now()),
                None => unknown_status(),
            })
        }
        .await,
    )
}

/// The export when ready, otherwise what is known
#[utoipa::path(
    get,
    path = "/datarequest/{id}",
    operation_id = "get_request",
    tag = "data requests",
    params(RequestPath),
    responses(
        (status = 200, description = "The export, or the request's info while it is not ready", body = inline(ExportOrNotReady)),
        (status = 303, description = REDIRECT, headers(("Location" = String))),
        (status = 400, description = "Bad token or id, or no such request in this account", body = ErrorBody),
    ),
)]
pub async fn export(
    State(app): State<App>,
    path: RequestPathResult,
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
                Err(reason) => Ok(Json(NotReady { data: reason, info: info(&request) }).into_response()),
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
    if let Some(served) = app.fetch(request, format, fetched.route, fetched.client).await? {
        return Ok(Ok(serve_export(served, format, None)));
    }
    let pending = request.effective_state(app.now()).copernica_status() == "pending";
    Ok(Err(if pending { NOT_YET } else { NOT_AVAILABLE }))
}

/// The export file, or its HTML report
///
/// `404` while not ready.
#[utoipa::path(
    get,
    path = "/datarequest/{id}/data",
    operation_id = "get_data",
    tag = "data requests",
    params(RequestPath, FormatQuery),
    responses(
        (status = 200, description = EXPORT_FILE, content((Export = "application/json"), (String = "text/html"))),
        (status = 303, description = REDIRECT, headers(("Location" = String))),
        (status = 400, description = "Bad token, id or format, or no such request in this account", body = ErrorBody),
        (status = 404, description = "The export is not available (yet)", body = ErrorBody),
    ),
)]
pub async fn data(
    State(app): State<App>,
    path: RequestPathResult,
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

/// A request's audit log.
#[derive(Serialize, ToSchema)]
struct AuditLog {
    id: u64,
    /// Oldest first
    log: Vec<AuditEntry>,
}

/// The request's audit log, oldest first (kept after the export expires)
///
/// Another account's request or an unknown one answers like elsewhere.
#[utoipa::path(
    get,
    path = "/datarequest/{id}/log",
    operation_id = "get_log",
    tag = "data requests",
    params(RequestPath),
    responses(
        (status = 200, description = "What happened to the request, and when", body = AuditLog),
        (status = 400, description = "Bad token or id, or no such request in this account", body = ErrorBody),
    ),
)]
pub async fn log(
    State(app): State<App>,
    path: RequestPathResult,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let (account, id) = authorize(&app, path, query.as_deref(), &headers).await?;
            let id = RequestId::parse(&id).map_err(|_| ApiError::bad(NO_ENTITY))?;
            let entries = app.log(account, id).await?.ok_or_else(|| ApiError::bad(NO_ENTITY))?;
            Ok(Json(AuditLog { id: id.get(), log: entries }).into_response())
        }
        .await,
    )
}
