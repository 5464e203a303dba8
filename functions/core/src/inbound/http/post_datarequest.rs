//! `POST /vN/{profile,subprofile,email}/{id}/datarequest`, and the same under `…/{id}/data` as
//! Copernica's own documentation writes the call: accept a data request.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Ref, Schema, Type,
};
use utoipa::openapi::{RefOr, Required};
use utoipa::{IntoParams, IntoResponses, PartialSchema, ToResponse, ToSchema};

use super::doc::reference;
use super::error::{ApiError, ErrorBody, Refusal};
use super::params;
use crate::app::{App, Origin};
use crate::domain::{EmailAddress, IdempotencyKey, ProfileId, Report, Subject, SubprofileId};

/// The path of a profile's data request.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProfilePath {
    #[param(ignore)]
    version: String,
    /// Profile id
    #[param(pattern = "^[1-9][0-9]{0,18}$", example = "1001")]
    id: String,
}

/// The path of a subprofile's data request.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SubprofilePath {
    #[param(ignore)]
    version: String,
    /// Subprofile id
    #[param(pattern = "^[1-9][0-9]{0,18}$", example = "5001")]
    id: String,
}

/// The path of an e-mail address's data request.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EmailPath {
    #[param(ignore)]
    version: String,
    /// E-mail address (percent-encoded)
    #[param(format = Email, max_length = 254, example = "jane.doe@example.com")]
    email: String,
}

const REFUSED: &str = "Bad token, parameter, body, or an unknown subject (\"No entity with supplied ID\")";
const TOO_MANY: &str = "Too many data requests from this account this minute";
// The body is optional: by reference, the body's schema is not made nullable as an `Option`'s
// would be, and the body is not marked required as a plain type's would be.
const REPORT_BODY: &str = "The report, as JSON or a form; the empty array [] (Copernica's own client) means no data";

/// The answers of the POST calls that create a data request (described, never built: the
/// handlers answer through [`accept`]).
#[derive(IntoResponses)]
#[expect(dead_code, reason = "it only describes the answers")]
enum Submitted<'a> {
    #[response(status = 201)]
    Created(#[to_response] Created),
    #[response(status = 400, description = REFUSED)]
    Refused(ErrorBody<'a>),
    #[response(status = 429, description = TOO_MANY)]
    TooMany(ErrorBody<'a>),
}

/// Request all data about a profile
#[utoipa::path(
    post,
    path = "/profile/{id}/datarequest",
    operation_id = "post_profile",
    tag = "data requests",
    params(ProfilePath, Submission),
    request_body(description = REPORT_BODY, content(
        (ref(reference::<JsonReport>()) = "application/json"),
        (ref(reference::<FormReport>()) = "application/x-www-form-urlencoded"),
    )),
    responses(Submitted),
)]
pub async fn profile(
    State(app): State<App>,
    path: Result<Path<ProfilePath>, PathRejection>,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = path.map(|Path(p)| (p.version, p.id));
    accept(app, path, query, headers, body, |id| {
        ProfileId::parse(id).map(Subject::Profile).map_err(|_| Refusal::NoEntity.into())
    })
    .await
}

/// Request all data about a subprofile
#[utoipa::path(
    post,
    path = "/subprofile/{id}/datarequest",
    operation_id = "post_subprofile",
    tag = "data requests",
    params(SubprofilePath, Submission),
    request_body(description = REPORT_BODY, content(
        (ref(reference::<JsonReport>()) = "application/json"),
        (ref(reference::<FormReport>()) = "application/x-www-form-urlencoded"),
    )),
    responses(Submitted),
)]
pub async fn subprofile(
    State(app): State<App>,
    path: Result<Path<SubprofilePath>, PathRejection>,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = path.map(|Path(p)| (p.version, p.id));
    accept(app, path, query, headers, body, |id| {
        SubprofileId::parse(id).map(Subject::Subprofile).map_err(|_| Refusal::NoSubprofile.into())
    })
    .await
}

/// Request every message and event for an e-mail address
#[utoipa::path(
    post,
    path = "/email/{email}/datarequest",
    operation_id = "post_email",
    tag = "data requests",
    params(EmailPath, Submission),
    request_body(description = REPORT_BODY, content(
        (ref(reference::<JsonReport>()) = "application/json"),
        (ref(reference::<FormReport>()) = "application/x-www-form-urlencoded"),
    )),
    responses(Submitted),
)]
pub async fn email(
    State(app): State<App>,
    path: Result<Path<EmailPath>, PathRejection>,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The address arrives percent-decoded.
    let path = path.map(|Path(p)| (p.version, p.email));
    accept(app, path, query, headers, body, |address| Ok(Subject::Email(EmailAddress::parse(address)?))).await
}

/// The answer to an accepted request: its id, in the body and in `X-Created`.
#[derive(Serialize, ToSchema, ToResponse)]
#[response(
    description = "Accepted; the export is built in the background",
    headers(
        ("X-Created" = inline(Digits), description = "The request id"),
        ("Location" = String, description = "URL of the request"),
        ("X-location" = String, description = "Same as Location"),
    )
)]
pub struct Created {
    /// The request id: below 2^53, so JavaScript clients keep it exact
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_u64)]
    id: u64,
}

/// Decimal digits, as Copernica's client reads a request id from `X-Created`.
pub struct Digits;

impl PartialSchema for Digits {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]+$")).into()
    }
}

impl ToSchema for Digits {}

/// The `report` a POST takes, from the query string or the body: an e-mail address or an
/// `https://` web address (parsed by [`Report::parse`]).
pub struct ReportAddress;

impl PartialSchema for ReportAddress {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(2048))
            .description(Some("An e-mail address, or an https:// address of a public host"))
            .into()
    }
}

impl ToSchema for ReportAddress {}

/// A JSON body ([`params::body_report`]): `{"report": …}`, or `[]` for nothing.
pub struct JsonReport;

impl PartialSchema for JsonReport {
    fn schema() -> RefOr<Schema> {
        let report =
            OneOfBuilder::new().item(Ref::from_schema_name(ReportAddress::name())).item(Object::with_type(Type::Null));
        let object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("report", report)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let nothing = ArrayBuilder::new().max_items(Some(0));
        OneOfBuilder::new().item(object).item(nothing).into()
    }
}

impl ToSchema for JsonReport {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ReportAddress::name().into(), ReportAddress::schema()));
    }
}

/// A form body: `report=…`.
pub struct FormReport;

impl PartialSchema for FormReport {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("report", Ref::from_schema_name(ReportAddress::name()))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for FormReport {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ReportAddress::name().into(), ReportAddress::schema()));
    }
}

/// The optional inputs of a POST besides its body: the `report` in the query string, and the
/// `Idempotency-Key` header ([`idempotency_key`]).
pub struct Submission;

impl IntoParams for Submission {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let report = ParameterBuilder::new()
            .name("report")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some("Where to deliver the export: an e-mail address or an https:// web address"))
            .schema(Some(Ref::from_schema_name(ReportAddress::name())));
        let key = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Repeating a POST with the same key within 24 hours answers with the same request and creates nothing; the same key with another subject or report is refused",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[ -~]+$")),
            ));
        vec![report.build(), key.build()]
    }
}

/// The public base URL: configured, or else from the request's `Host` (API Gateway sets it to
/// the API's domain; the scheme is `X-Forwarded-Proto`, https by default).
fn base_url(app: &App, headers: &HeaderMap) -> String {
    if let Some(url) = &app.settings().public_url {
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
    path: Result<(String, String), PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
    subject: impl FnOnce(&str) -> Result<Subject, ApiError>,
) -> Response {
    let result = async {
        let (version, id) = path.map_err(|_| ApiError::bad("The path is not valid UTF-8 after percent-decoding"))?;
        let version = params::version(&version)?;
        let mut query = params::query(query.as_deref(), &["access_token", "report"])?;
        let (account, token) = params::authenticate_fresh(&app, &query, &headers).await?;
        app.count_request(account).map_err(ApiError::TooMany)?;
        let subject = subject(&id)?;
        let from_body = params::body_report(&headers, body).await?;
        let report = match (query.remove("report").filter(|r| !r.is_empty()), from_body.filter(|r| !r.is_empty())) {
            (Some(a), Some(b)) if a != b => return Err(ApiError::bad("report is given twice with different values")),
            (Some(r), _) | (None, Some(r)) => Some(Report::parse(&r, app.settings().web_policy)?),
            (None, None) => None,
        };
        let origin = Origin { key: idempotency_key(&headers)?, version, token: Some(token) };
        let id = app.submit(account, subject, report, &origin).await?;
        let location = format!("{}/{version}/datarequest/{id}", base_url(&app, &headers));
        Ok::<_, ApiError>(
            (
                StatusCode::CREATED,
                [("x-created", id.to_string()), (LOCATION.as_str(), location.clone()), ("x-location", location)],
                Json(Created { id: id.get() }),
            )
                .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
