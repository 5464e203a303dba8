//! What the routes about a request answer with: the file itself (streamed, or a `303` to a
//! signed URL), its schema and the descriptions of those answers, and the status answer.
//! Shared by the owner's routes ([`super::get_datarequest`], [`super::cancel_datarequest`])
//! and the e-mailed links ([`super::download`]).

use axum::body::Body;
use axum::http::header::{
    CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER, CONTENT_TYPE,
    LOCATION, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use tokio_util::io::ReaderStream;
use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, Ref, Schema, SchemaType, Type};
use utoipa::openapi::{Object, RefOr};
use utoipa::{PartialSchema, ToSchema};

use axum::Json;
use serde_json::json;

use super::doc::one_of;
use super::error::ApiError;
use crate::domain::{DataRequest, DeliveryStatus, State as Lifecycle, SubjectKind, Timestamp};
use crate::ports::{ExportFormat, Served};

/// The description of a `303`.
pub(super) const REDIRECT: &str = "The export is served by a short-lived signed URL (AWS)";

/// The description of a `200` with an export file.
pub(super) const EXPORT_FILE: &str = "The export file; with format=html its HTML report, served with a Content-Security-Policy that lets it load and run nothing";

/// What a request is about, as `info` of an export and of the answers about it.
#[derive(Serialize, ToSchema)]
pub struct Info {
    #[schema(schema_with = number_or_text)]
    id: Value,
    #[serde(rename = "type")]
    #[schema(schema_with = subject_kinds)]
    kind: &'static str,
}

/// The `info` of `request`.
pub(super) fn info(request: &DataRequest) -> Info {
    Info { id: request.subject.info_id(), kind: request.subject.kind().as_str() }
}

fn number_or_text() -> Object {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::Integer, Type::String])).build()
}

fn subject_kinds() -> Object {
    one_of(SubjectKind::ALL.map(SubjectKind::as_str))
}

/// The export file (§3 of the design). The builder writes it and the routes stream it as it
/// is, so no Rust value of it exists to derive a schema from: this is its description.
pub struct Export;

impl PartialSchema for Export {
    fn schema() -> RefOr<Schema> {
        // `data`: sections, each its name followed by its records.
        let section = ArrayBuilder::new()
            .min_items(Some(1))
            .prefix_items([ObjectBuilder::new().schema_type(Type::String)])
            .items(ArrayItems::RefOrSchema(Box::new(ObjectBuilder::new().schema_type(Type::Object).into())));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("info", Ref::from_schema_name(Info::name()))
            .property("data", ArrayBuilder::new().items(section))
            .required("info")
            .required("data")
            .into()
    }
}

impl ToSchema for Export {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Info::name().into(), Info::schema()));
    }
}

/// Answers with an export: streamed with its length, or a `303` to a signed URL. The HTML
/// report comes with a policy that lets it load and run nothing, shown in the browser (named
/// `file_name` when saved); the JSON downloads as `file_name` when one is given.
pub(super) fn serve_export(served: Served, format: ExportFormat, file_name: Option<String>) -> Response {
    match served {
        Served::Redirect(url) => match HeaderValue::from_str(&url) {
            Ok(location) => (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response(),
            Err(_) => ApiError::Internal(anyhow::anyhow!("a signed URL is not a valid header")).into_response(),
        },
        Served::Stream(file) => {
            let mut response = Response::new(Body::from_stream(ReaderStream::with_capacity(file.reader, 64 * 1024)));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(file.len));
            let disposition = match format {
                ExportFormat::Json => "attachment",
                ExportFormat::Html => {
                    use crate::export::html::CONTENT_SECURITY_POLICY;
                    headers.insert(CONTENT_SECURITY_POLICY_HEADER, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
                    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
                    "inline"
                }
            };
            if let Some(value) =
                file_name.and_then(|n| HeaderValue::from_str(&format!("{disposition}; filename=\"{n}\"")).ok())
            {
                headers.insert(CONTENT_DISPOSITION, value);
            }
            response
        }
    }
}

/// The owner's status answer. Members in alphabetical order, as clients have always seen them.
/// An unknown or another account's id answers with Copernica's three members only
/// (`available`, `content-type`, `status`), so the others are not required.
#[derive(Serialize, ToSchema)]
#[schema(as = Status)]
pub(super) struct StatusAnswer<'a> {
    available: u64,
    #[schema(value_type = Option<String>)]
    completed: Option<Timestamp>,
    #[serde(rename = "content-type")]
    #[schema(schema_with = json_only)]
    content_type: &'static str,
    #[schema(value_type = String, required = false)]
    created: Timestamp,
    #[schema(inline, required = false)]
    delivery: DeliveryOut<'a>,
    #[schema(value_type = Option<String>)]
    expires: Option<Timestamp>,
    #[schema(required = false)]
    id: u64,
    #[schema(required = false)]
    info: Info,
    /// Why the request failed, expired or was cancelled; while a failed build waits to be tried
    /// again, why its last attempt failed
    #[schema(value_type = Option<String>, required = false)]
    reason: &'a Option<String>,
    /// Once built (while the export can be fetched): each section of the export and its
    /// record count
    #[schema(value_type = Option<std::collections::HashMap<String, u64>>, required = false)]
    records: Option<Records<'a>>,
    #[schema(schema_with = states, required = false)]
    state: &'static str,
    #[schema(schema_with = copernica_statuses)]
    status: &'static str,
}

fn json_only() -> Object {
    one_of(["application/json"])
}

fn states() -> Object {
    one_of(Lifecycle::ALL.map(Lifecycle::as_str))
}

fn copernica_statuses() -> Object {
    let mut statuses = Lifecycle::ALL.map(Lifecycle::copernica_status).to_vec();
    statuses.dedup();
    one_of(statuses)
}

/// The `delivery` member: only `status` (`none`) when no report was asked for.
#[derive(Serialize, ToSchema)]
struct DeliveryOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u32)]
    attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    error: Option<&'a Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = delivery_methods)]
    method: Option<&'a str>,
    #[schema(schema_with = delivery_statuses)]
    status: &'static str,
}

fn delivery_methods() -> Object {
    // The report's kind until the first attempt, then how the builder delivered it.
    one_of(["email", "web", "attachment", "link"])
}

fn delivery_statuses() -> Object {
    one_of(DeliveryStatus::ALL.map(DeliveryStatus::as_str))
}

/// The record counts of an export's sections, as a JSON object in export order.
struct Records<'a>(&'a [(String, u64)]);

impl Serialize for Records<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, count)| (name, count)))
    }
}

/// The owner's status answer about `request` at `now`.
pub(super) fn status_answer(request: &DataRequest, now: Timestamp) -> Response {
    let state = request.effective_state(now);
    let available = if state.copernica_status() == "not available" { 0 } else { request.available };
    let delivery = match &request.report {
        Some(report) => DeliveryOut {
            attempts: Some(request.delivery.attempts),
            error: Some(&request.delivery.error),
            method: Some(request.delivery.method.as_deref().unwrap_or(report.kind())),
            status: request.delivery.status.as_str(),
        },
        None => DeliveryOut { attempts: None, error: None, method: None, status: DeliveryStatus::None.as_str() },
    };
    let records = (state.has_file() && !request.records.is_empty()).then_some(Records(&request.records));
    Json(StatusAnswer {
        available,
        completed: request.completed,
        content_type: "application/json",
        created: request.created,
        delivery,
        expires: request.expires,
        id: request.id.get(),
        info: info(request),
        reason: &request.reason,
        records,
        state: state.as_str(),
        status: state.copernica_status(),
    })
    .into_response()
}

/// The status answer about an unknown or another account's request: Copernica's three members.
pub(super) fn unknown_status() -> Response {
    Json(json!({"status": "not available", "available": 0, "content-type": "application/json"})).into_response()
}
