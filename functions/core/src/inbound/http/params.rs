//! Parsing of the parts of an HTTP request that every route shares: the version prefix, the
//! path of a request's routes, the query string, the access token, the client's network and
//! the body of a POST.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Extensions, HeaderMap};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};

use super::doc::one_of;
use super::error::{ApiError, INVALID_METHOD, Refusal};
use crate::app::App;
use crate::domain::{AccessToken, AccountId, TokenHash, audit};
use crate::ports::ExportFormat;

/// Largest accepted POST body.
const BODY_LIMIT: usize = 64 * 1024;

/// The API versions; all behave the same.
pub const VERSIONS: [&str; 4] = ["v1", "v2", "v3", "v4"];

/// The API version of the path; links keep the caller's version.
pub fn version(text: &str) -> Result<&'static str, ApiError> {
    VERSIONS.into_iter().find(|v| *v == text).ok_or_else(|| ApiError::bad(INVALID_METHOD))
}

/// The known name/value pairs of a query string or form. Unknown names are ignored, as
/// Copernica ignores them; a known name given twice must have the same value both times.
pub fn pairs(encoded: &[u8], known: &[&'static str]) -> Result<HashMap<&'static str, String>, ApiError> {
    let mut found: HashMap<&'static str, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(encoded) {
        let Some(name) = known.iter().find(|k| **k == name) else { continue };
        match found.get(name) {
            Some(earlier) if *earlier != value && *name == "access_token" => return Err(Refusal::InvalidToken.into()),
            Some(earlier) if *earlier != value => {
                return Err(ApiError::bad(format!("Parameter '{name}' is given twice with different values")));
            }
            Some(_) => {}
            None => {
                found.insert(*name, value.into_owned());
            }
        }
    }
    Ok(found)
}

/// The query string's parameters.
pub fn query(raw: Option<&str>, allowed: &[&'static str]) -> Result<HashMap<&'static str, String>, ApiError> {
    pairs(raw.unwrap_or_default().as_bytes(), allowed)
}

/// The path of a request's routes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RequestPath {
    #[param(ignore)]
    pub version: String,
    /// Request id
    #[param(pattern = "^[1-9][0-9]{0,15}$")]
    pub id: String,
}

/// A call about one request (`/vN/datarequest/{id}…`), checked in Copernica's order: the path
/// (its version and id as written) and the query's known pairs (`access_token`).
///
/// # Errors
/// A path that is not UTF-8 after percent-decoding, an unknown version, or a bad query.
pub fn request_call(
    path: Result<axum::extract::Path<RequestPath>, axum::extract::rejection::PathRejection>,
    query: Option<&str>,
) -> Result<(&'static str, String, HashMap<&'static str, String>), ApiError> {
    let axum::extract::Path(RequestPath { version, id }) =
        path.map_err(|_| ApiError::bad("The path is not valid UTF-8 after percent-decoding"))?;
    let version = self::version(&version)?;
    Ok((version, id, self::query(query, &["access_token"])?))
}

/// The `format` parameter that [`format`] reads from the query string.
pub struct FormatQuery;

impl IntoParams for FormatQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut formats = one_of(ExportFormat::ALL.map(ExportFormat::as_str));
        formats.default = Some(ExportFormat::Json.as_str().into());
        let format = ParameterBuilder::new()
            .name("format")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(
                "json (the default): the export file; html: its HTML report, a self-contained page a person can read",
            ))
            .schema(Some(formats));
        vec![format.build()]
    }
}

/// The export format a query asks for (`format`: `json`, the default, or `html`).
pub fn format(query: &HashMap<&'static str, String>) -> Result<ExportFormat, ApiError> {
    match query.get("format") {
        None => Ok(ExportFormat::Json),
        Some(name) => ExportFormat::parse(name).ok_or_else(|| ApiError::bad("Parameter 'format' must be json or html")),
    }
}

/// The account of the access token in the query (`access_token`) or the `Authorization:
/// Bearer` header, for a read (the process's token cache may answer). Both may be given if they
/// agree. Any failure is "Invalid access token".
pub async fn authenticate(
    app: &App,
    query: &HashMap<&'static str, String>,
    headers: &HeaderMap,
) -> Result<AccountId, ApiError> {
    let token = access_token(query, headers)?;
    app.authenticate(&token).await?.ok_or(ApiError::InvalidToken)
}

/// As [`authenticate`], checked against the account store itself (for a new data request: a
/// revoked token submits nothing), with the hash of the token that was used.
pub async fn authenticate_fresh(
    app: &App,
    query: &HashMap<&'static str, String>,
    headers: &HeaderMap,
) -> Result<(AccountId, TokenHash), ApiError> {
    let token = access_token(query, headers)?;
    let account = app.authenticate_fresh(&token).await?.ok_or(ApiError::InvalidToken)?;
    Ok((account, token.hash()))
}

/// The access token of the query or the `Authorization: Bearer` header, well formed.
fn access_token(query: &HashMap<&'static str, String>, headers: &HeaderMap) -> Result<AccessToken, ApiError> {
    let invalid = || ApiError::InvalidToken;
    let mut bearer = None;
    let mut values = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err(invalid());
        }
        let value = value.to_str().map_err(|_| invalid())?;
        let (scheme, token) = value.split_once(' ').ok_or_else(invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(invalid());
        }
        bearer = Some(token.trim());
    }
    let token = match (query.get("access_token").map(String::as_str), bearer) {
        (Some(a), Some(b)) if a != b => return Err(invalid()),
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => return Err(invalid()),
    };
    AccessToken::parse(token).map_err(|_| invalid())
}

/// The client's address as local mode's guard found it (the connection's peer, or the address
/// a trusted proxy forwarded), for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

/// The client's network for the audit log: in local mode the client address its guard found
/// (the connection's peer, or the address a trusted proxy forwarded), else the peer when the
/// server knows it, else the address API Gateway appended last to `X-Forwarded-For`.
pub(crate) fn client_network(extensions: &Extensions, headers: &HeaderMap) -> String {
    let guarded = extensions.get::<ClientAddress>().map(|client| client.0);
    let peer = guarded.or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip()));
    let forwarded = || {
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    };
    peer.or_else(forwarded).map_or_else(|| "unknown".to_owned(), audit::truncated)
}

/// The `report` of a POST body: JSON (`{"report": …}`, or `[]`/`{}` for nothing) or a form.
/// A JSON text sent with the form content type (as `curl -d` does) is read as JSON.
pub async fn body_report(headers: &HeaderMap, body: Body) -> Result<Option<String>, ApiError> {
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        ApiError::bad(format!("The request body is larger than {BODY_LIMIT} bytes or could not be read"))
    })?;
    let text = bytes.trim_ascii();
    if text.is_empty() {
        return Ok(None);
    }
    let content_type = match headers.get(CONTENT_TYPE) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| ApiError::bad("Unsupported content type"))?),
    };
    let essence = content_type.map(|t| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let looks_like_json = text.starts_with(b"{") || text.starts_with(b"[");
    match essence.as_deref() {
        Some("application/json") => json_report(text),
        Some(t) if t.ends_with("+json") => json_report(text),
        Some("application/x-www-form-urlencoded") | None if looks_like_json => json_report(text),
        Some("application/x-www-form-urlencoded") | None => Ok(pairs(text, &["report"])?.remove("report")),
        Some(_) => {
            Err(ApiError::bad("Unsupported content type: send application/json or application/x-www-form-urlencoded"))
        }
    }
}

fn json_report(text: &[u8]) -> Result<Option<String>, ApiError> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(text).map_err(|_| ApiError::bad("The request body is not valid JSON"))?;
    match value {
        Value::Array(items) if items.is_empty() => Ok(None),
        Value::Object(members) => {
            // Other members are ignored, as Copernica ignores them.
            match members.get("report") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(ApiError::bad("report must be a string")),
            }
        }
        _ => Err(ApiError::bad("The request body must be a JSON object")),
    }
}
