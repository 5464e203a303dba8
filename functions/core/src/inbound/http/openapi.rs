//! The OpenAPI 3.1 document of the API, derived from the handlers (`#[utoipa::path]`) and the
//! types they answer with, so the two cannot drift. Copernica's calls are described once without
//! their version prefix and listed here under every version of [`VERSIONS`], with the
//! operation ids suffixed by the version. The local server serves it at `/openapi.json`, and the
//! repository keeps a copy (`openapi.json`) that a test holds equal to this.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::path::{HttpMethod, Operation, PathItem, Paths};
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::params::VERSIONS;
use super::{cancel_datarequest, download, get_datarequest, ingest, post_datarequest};

/// Copernica's calls, without their version prefix.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Datarequest",
        description = "GDPR data requests, compatible with the Copernica REST API \"data request\" calls. Every route exists under /v1 to /v4 with identical behaviour. Client errors are 400 with {\"error\":{\"message\":…}}; 404 only for /data while not ready; 429 with Retry-After when rate limited; 500 with an opaque message.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        post_datarequest::profile,
        post_datarequest::subprofile,
        post_datarequest::email,
        get_datarequest::export,
        get_datarequest::status,
        get_datarequest::data,
        get_datarequest::log,
        cancel_datarequest::cancel,
        download::download,
    ),
    components(schemas(post_datarequest::JsonReport, post_datarequest::FormReport)),
    security(("access_token" = []), ("bearer" = [])),
    modifiers(&AccessToken),
)]
struct Copernica;

/// The platform's own routes, outside the versions.
#[derive(OpenApi)]
#[openapi(paths(ingest::ingest), modifiers(&IngestKey))]
struct Platform;

/// An account's access token: the `access_token` query parameter or a bearer token.
struct AccessToken;

impl Modify for AccessToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let query = SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("access_token")));
        components.add_security_scheme("access_token", query);
        let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// An ingest key, the credential of `POST /ingest`.
struct IngestKey;

impl Modify for IngestKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let key = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("An ingest key from `datarequest ingest-key create`"))
            .build();
        components.add_security_scheme("ingest_key", SecurityScheme::Http(key));
    }
}

/// The document.
#[must_use]
pub fn document() -> Value {
    let calls = Copernica::openapi();
    let mut unversioned = calls.paths.clone();
    add_data_aliases(&mut unversioned);
    let mut document = calls;
    document.paths = Paths::new();
    for version in VERSIONS {
        for (path, item) in &unversioned.paths {
            document.paths.paths.insert(format!("/{version}{path}"), versioned(item, version));
        }
    }
    document.merge(Platform::openapi());
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            rate_limited(operation);
        }
    }
    let mut value = serde_json::to_value(&document).unwrap_or_else(|_| unreachable!("the document is JSON"));
    for response in responses(&mut value) {
        every_header_is_sent(response);
        links_in_camel_case(response);
    }
    value
}

/// Copernica's own documentation writes the POST of a data request under `…/data`; the router
/// serves the same handlers there.
fn add_data_aliases(paths: &mut Paths) {
    let aliases: Vec<_> = paths
        .paths
        .iter()
        .filter_map(|(path, item)| {
            let subject = path.strip_suffix("/datarequest")?;
            let mut post = item.post.clone()?;
            post.operation_id = post.operation_id.map(|id| format!("{id}_data"));
            Some((format!("{subject}/data"), PathItem::new(HttpMethod::Post, post)))
        })
        .collect();
    paths.paths.extend(aliases);
}

/// An unversioned path item under `version`: its operation ids and the links between them
/// carry the version, so that each version's calls lead to the same version's calls.
fn versioned(item: &PathItem, version: &str) -> PathItem {
    let mut item = item.clone();
    for operation in operations(&mut item) {
        operation.operation_id = operation.operation_id.take().map(|id| format!("{id}_{version}"));
        if let Some(RefOr::T(created)) = operation.responses.responses.get_mut("201") {
            created.links = created_links(version);
        }
    }
    item
}

/// Where the id of an accepted request leads: its status, the request, its file and its log.
fn created_links(version: &str) -> BTreeMap<String, RefOr<Link>> {
    [("status", "get_status"), ("request", "get_request"), ("data", "get_data"), ("log", "get_log")]
        .into_iter()
        .map(|(name, operation)| {
            let link = LinkBuilder::new()
                .operation_id(format!("{operation}_{version}"))
                .parameter("id", "$response.body#/id")
                .build();
            (name.to_owned(), RefOr::T(link))
        })
        .collect()
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// Any call may meet a limit: the per-account limit on new requests (which the POST routes
/// describe themselves), or (local mode) the per-client limit on failed authentications. Every
/// `429` says when to try again.
fn rate_limited(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    let too_many = responses.entry("429".to_owned()).or_insert_with(|| {
        let error = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build();
        ResponseBuilder::new()
            .description("Too many requests, or too many failed authentications from this client")
            .content("application/json", error)
            .build()
            .into()
    });
    if let RefOr::T(too_many) = too_many {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
        let retry_after = HeaderBuilder::new().schema(seconds).description(Some("Seconds to wait")).build();
        too_many.headers.insert("Retry-After".to_owned(), retry_after);
    }
}

// What utoipa's model of the document cannot say, said on its JSON.

/// Every response of every operation.
fn responses(document: &mut Value) -> impl Iterator<Item = &mut Value> {
    document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses").and_then(Value::as_object_mut))
        .flat_map(|responses| responses.values_mut())
}

/// Marks the response's headers required: each one this API documents is always sent, and
/// utoipa's header object has no `required` member to say so.
fn every_header_is_sent(response: &mut Value) {
    let headers = response.get_mut("headers").and_then(Value::as_object_mut).into_iter().flat_map(|h| h.values_mut());
    for header in headers.filter_map(Value::as_object_mut) {
        header.insert("required".to_owned(), Value::Bool(true));
    }
}

/// Names the members of the response's links as OpenAPI does (`operationId`): utoipa 5 writes
/// them in snake case (juhaku/utoipa#1326), which no client would follow.
fn links_in_camel_case(response: &mut Value) {
    let links = response.get_mut("links").and_then(Value::as_object_mut).into_iter().flat_map(|l| l.values_mut());
    for link in links.filter_map(Value::as_object_mut) {
        for (snake, camel) in
            [("operation_id", "operationId"), ("operation_ref", "operationRef"), ("request_body", "requestBody")]
        {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation_ids(document: &Value) -> Vec<&str> {
        let items = document["paths"].as_object().into_iter().flat_map(|paths| paths.values());
        let operations = items.filter_map(Value::as_object).flat_map(|item| item.values());
        operations.filter_map(|operation| operation["operationId"].as_str()).collect()
    }

    fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(members) => {
                found.extend(members.get("$ref").and_then(Value::as_str));
                members.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_operation_has_an_id_of_its_own() {
        let document = document();
        let mut ids = operation_ids(&document);
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count);
        assert_eq!(count, 4 * 12 + 1);
    }

    #[test]
    fn the_cancel_of_a_request_is_documented_as_an_extension_on_every_version() {
        let document = document();
        for version in VERSIONS {
            let cancel = &document["paths"][format!("/{version}/datarequest/{{id}}")]["delete"];
            assert_eq!(cancel["operationId"], format!("cancel_request_{version}"));
            let summary = cancel["summary"].as_str().unwrap_or_default();
            assert!(summary.contains("an extension: Copernica has no such call"), "{summary}");
        }
    }

    #[test]
    fn every_link_leads_to_an_operation_of_the_same_version() {
        let document = document();
        let ids = operation_ids(&document);
        let mut links = 0;
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            let version = path.split('/').nth(1).unwrap_or_default();
            let operations = item.as_object().into_iter().flat_map(|item| item.values());
            let responses = operations.filter_map(|o| o["responses"].as_object()).flat_map(|r| r.values());
            for link in responses.filter_map(|r| r["links"].as_object()).flat_map(|l| l.values()) {
                let target = link["operationId"].as_str().unwrap_or_default();
                assert!(ids.contains(&target), "{path}: {target}");
                assert!(target.ends_with(&format!("_{version}")), "{path}: {target}");
                assert_eq!(link["parameters"]["id"], "$response.body#/id");
                links += 1;
            }
        }
        // Status, request, data and log from each of the six POSTs of a data request.
        assert_eq!(links, 4 * 6 * VERSIONS.len());
    }

    #[test]
    fn every_reference_resolves() {
        let document = document();
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(!found.is_empty());
        for reference in found {
            let pointer = reference.strip_prefix('#').unwrap_or(reference);
            assert!(document.pointer(pointer).is_some(), "{reference}");
        }
    }

    #[test]
    fn every_limited_answer_says_when_to_retry() {
        let mut document = document();
        let mut count = 0;
        for response in responses(&mut document) {
            if let Some(header) = response.pointer("/headers/Retry-After") {
                assert_eq!(header["required"], true);
                assert_eq!(header["schema"]["minimum"], 1);
                count += 1;
            }
        }
        assert_eq!(count, 4 * 12 + 1, "a 429 on every operation");
    }
}
