//! `POST /vN/{profile,subprofile,email}/{id}/datarequest`, and the same under `…/{id}/data` as
//! Copernica's own documentation writes the call: accept a data request.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{ApiError, Refusal};
use super::params;
use crate::app::{App, Origin};
use crate::domain::{EmailAddress, IdempotencyKey, ProfileId, Report, Subject, SubprofileId};

type SubjectPath = Result<Path<(String, String)>, PathRejection>;

/// `POST /vN/profile/{id}/datarequest` (and `…/data`)
pub async fn profile(
    State(app): State<App>,
    path: SubjectPath,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    accept(app, path, query, headers, body, |id| {
        ProfileId::parse(id).map(Subject::Profile).map_err(|_| Refusal::NoEntity.into())
    })
    .await
}

/// `POST /vN/subprofile/{id}/datarequest` (and `…/data`)
pub async fn subprofile(
    State(app): State<App>,
    path: SubjectPath,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    accept(app, path, query, headers, body, |id| {
        SubprofileId::parse(id).map(Subject::Subprofile).map_err(|_| Refusal::NoSubprofile.into())
    })
    .await
}

/// `POST /vN/email/{email}/datarequest` (and `…/data`; the address percent-decoded)
pub async fn email(
    State(app): State<App>,
    path: SubjectPath,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    accept(app, path, query, headers, body, |address| Ok(Subject::Email(EmailAddress::parse(address)?))).await
}

/// The public base URL: configured, or else from the request's `Host` (API Gateway sets it to
/// the API's domain; the scheme is `X-Forwarded-Proto`, https by default).
fn base_url(app: &App, headers: &HeaderMap) -> String {
    if let Some(url) = &app.settings.public_url {
        return url.clone();
    }
    let header = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
    let host = header("host").filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    let scheme = match header("x-forwarded-proto") {
        Some("http") => "http",
        _ => "https",
    };
    host.map(|host| format!("{scheme}://{host}")).unwrap_or_default()
}

/// The `Idempotency-Key` header, if given (once).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::bad("Idempotency-Key is given more than once"));
    }
    let text =
        value.to_str().map_err(|_| ApiError::bad("Idempotency-Key must be 1 to 255 printable ASCII characters"))?;
    Ok(Some(IdempotencyKey::parse(text)?))
}

async fn accept(
    app: App,
    path: SubjectPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
    subject: impl FnOnce(&str) -> Result<Subject, ApiError>,
) -> Response {
    let result = async {
        let Path((version, id)) =
            path.map_err(|_| ApiError::bad("The path is not valid UTF-8 after percent-decoding"))?;
        let version = params::version(&version)?;
        let mut query = params::query(query.as_deref(), &["access_token", "report"])?;
        let (account, token) = params::authenticate_token(&app, &query, &headers).await?;
        app.limiter.check(account, app.now()).map_err(ApiError::TooMany)?;
        let subject = subject(&id)?;
        let from_body = params::body_report(&headers, body).await?;
        let report = match (query.remove("report").filter(|r| !r.is_empty()), from_body.filter(|r| !r.is_empty())) {
            (Some(a), Some(b)) if a != b => return Err(ApiError::bad("report is given twice with different values")),
            (Some(r), _) | (None, Some(r)) => Some(Report::parse(&r, app.settings.web_policy)?),
            (None, None) => None,
        };
        let origin = Origin { key: idempotency_key(&headers)?, version, token: Some(token) };
        let id = app.submit(account, subject, report, &origin).await?;
        let location = format!("{}/{version}/datarequest/{id}", base_url(&app, &headers));
        Ok::<_, ApiError>(
            (
                StatusCode::CREATED,
                [("x-created", id.to_string()), (LOCATION.as_str(), location.clone()), ("x-location", location)],
                Json(json!({"id": id.get()})),
            )
                .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
