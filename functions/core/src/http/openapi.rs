//! The OpenAPI 3.1 document of the API, generated from the same version list and messages as
//! the router so the two cannot drift; the local server serves it at `/openapi.json`, and the
//! repository keeps a copy (`openapi.json`) that a test holds equal to this.

use serde_json::{Value, json};

use super::params::VERSIONS;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn redirect() -> Value {
    json!({
        "description": "The export is served by a short-lived signed URL (AWS)",
        "headers": {"Location": {"required": true, "schema": {"type": "string"}}}
    })
}

fn export_response() -> Value {
    json!({
        "description": "The export file; with format=html its HTML report, served with a Content-Security-Policy that lets it load and run nothing",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Export"}},
            "text/html": {"schema": {"type": "string"}}
        }
    })
}

fn id_parameter(description: &str, pattern: &str, example: &str) -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": description, "example": example,
           "schema": {"type": "string", "pattern": pattern}})
}

fn post(version: &str, kind: &str) -> Value {
    let (parameter, summary) = match kind {
        "profile" => (id_parameter("Profile id", "^[1-9][0-9]{0,18}$", "1001"), "Request all data about a profile"),
        "subprofile" => {
            (id_parameter("Subprofile id", "^[1-9][0-9]{0,18}$", "5001"), "Request all data about a subprofile")
        }
        _ => (
            json!({"name": "email", "in": "path", "required": true, "description": "E-mail address (percent-encoded)", "example": "jane.doe@example.com",
                   "schema": {"type": "string", "format": "email", "maxLength": 254}}),
            "Request every message and event for an e-mail address",
        ),
    };
    let link = |operation: &str| json!({"operationId": format!("{operation}_{version}"), "parameters": {"id": "$response.body#/id"}});
    json!({
        "operationId": format!("post_{kind}_{version}"),
        "summary": summary,
        "tags": ["data requests"],
        "parameters": [parameter, {"$ref": "#/components/parameters/report"}, {"$ref": "#/components/parameters/idempotency_key"}],
        "requestBody": {"$ref": "#/components/requestBodies/Report"},
        "responses": {
            "201": {
                "description": "Accepted; the export is built in the background",
                "headers": {
                    "X-Created": {"required": true, "description": "The request id", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
                    "Location": {"required": true, "description": "URL of the request", "schema": {"type": "string"}},
                    "X-location": {"required": true, "description": "Same as Location", "schema": {"type": "string"}}
                },
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Created"}}},
                "links": {
                    "status": link("get_status"),
                    "request": link("get_request"),
                    "data": link("get_data"),
                    "log": link("get_log")
                }
            },
            "400": error_response("Bad token, parameter, body, or an unknown subject (\"No entity with supplied ID\")"),
            "429": {
                "description": "Too many data requests from this account this minute",
                "headers": {"Retry-After": {"required": true, "description": "Seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }
        }
    })
}

fn get(version: &str, operation: &str, summary: &str, responses: Value) -> Value {
    json!({
        "operationId": format!("{operation}_{version}"),
        "summary": summary,
        "tags": ["data requests"],
        "parameters": [{"$ref": "#/components/parameters/request"}],
        "responses": responses
    })
}

/// The document.
#[must_use]
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for version in VERSIONS {
        for kind in ["profile", "subprofile", "email"] {
            let variable = if kind == "email" { "email" } else { "id" };
            paths.insert(format!("/{version}/{kind}/{{{variable}}}/datarequest"), json!({"post": post(version, kind)}));
            // The form of Copernica's own documentation: the same call.
            let mut same = post(version, kind);
            same["operationId"] = json!(format!("post_{kind}_data_{version}"));
            paths.insert(format!("/{version}/{kind}/{{{variable}}}/data"), json!({"post": same}));
        }
        paths.insert(
            format!("/{version}/datarequest/{{id}}"),
            json!({"get": get(version, "get_request", "The export when ready, otherwise what is known", json!({
                "200": {"description": "The export, or the request's info while it is not ready",
                        "content": {"application/json": {"schema": {"oneOf": [
                            {"$ref": "#/components/schemas/Export"},
                            {"$ref": "#/components/schemas/NotReady"}
                        ]}}}},
                "303": redirect(),
                "400": error_response("Bad token or id, or no such request in this account")
            }))}),
        );
        paths.insert(
            format!("/{version}/datarequest/{{id}}/status"),
            json!({"get": get(version, "get_status", "Where the request stands", json!({
                "200": {"description": "The status; unknown and foreign ids are \"not available\"",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}},
                "400": error_response("Bad token or id")
            }))}),
        );
        paths.insert(
            format!("/{version}/datarequest/{{id}}/log"),
            json!({"get": get(version, "get_log", "The request's audit log, oldest first (kept after the export expires)", json!({
                "200": {"description": "What happened to the request, and when",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuditLog"}}}},
                "400": error_response("Bad token or id, or no such request in this account")
            }))}),
        );
        let mut data = get(
            version,
            "get_data",
            "The export file, or its HTML report",
            json!({
                "200": export_response(),
                "303": redirect(),
                "400": error_response("Bad token, id or format, or no such request in this account"),
                "404": error_response("The export is not available (yet)")
            }),
        );
        data["parameters"] =
            json!([{"$ref": "#/components/parameters/request"}, {"$ref": "#/components/parameters/format"}]);
        paths.insert(format!("/{version}/datarequest/{{id}}/data"), json!({ "get": data }));
        paths.insert(
            format!("/{version}/datarequest/{{id}}/download"),
            json!({"get": {
                "operationId": format!("get_download_{version}"),
                "summary": "The download link sent by e-mail: a signed token instead of an access token",
                "tags": ["data requests"],
                "security": [],
                "parameters": [
                    {"$ref": "#/components/parameters/request"},
                    {"name": "token", "in": "query", "required": true, "description": "The signed token of the link",
                     "schema": {"type": "string"}},
                    {"$ref": "#/components/parameters/format"}
                ],
                "responses": {
                    "200": export_response(),
                    "303": redirect(),
                    "400": error_response("Invalid or expired download token")
                }
            }}),
        );
    }
    paths.insert(
        "/ingest".to_owned(),
        json!({"post": {
            "operationId": "post_ingest",
            "summary": "Load and erase subject data (the platform's own door, with an ingest key; not a call of Copernica's API)",
            "tags": ["subject data"],
            "security": [{"ingest_key": []}],
            "requestBody": {
                "required": true,
                "description": "NDJSON: profile, subprofile, message, event and erase lines, and SES event records; at most 8 MiB and 50,000 lines",
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}}
            },
            "responses": {
                "200": {"description": "Stored; the counts are of lines",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestSummary"}}}},
                "400": error_response("A bad line (\"line N: reason\"); nothing was stored"),
                "401": error_response("No ingest key, or not an ingest key"),
                "413": error_response("More than 8 MiB or 50,000 lines"),
                "415": error_response("Not application/x-ndjson"),
                "503": error_response("The store failed midway; send the same body again")
            }
        }}),
    );
    // Any call may meet a limit: the per-account limit on new requests, or (local mode) the
    // per-client limit on failed authentications.
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|p| p.values_mut()) {
        if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
            responses.entry("429").or_insert_with(|| json!({
                "description": "Too many requests, or too many failed authentications from this client",
                "headers": {"Retry-After": {"required": true, "description": "Seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Datarequest",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "GDPR data requests, compatible with the Copernica REST API \"data request\" calls. Every route exists under /v1 to /v4 with identical behaviour. Client errors are 400 with {\"error\":{\"message\":…}}; 404 only for /data while not ready; 429 with Retry-After when rate limited; 500 with an opaque message.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "security": [{"access_token": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "access_token": {"type": "apiKey", "in": "query", "name": "access_token"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "ingest_key": {"type": "http", "scheme": "bearer", "description": "An ingest key from `datarequest ingest-key create`"}
            },
            "parameters": {
                "idempotency_key": {"name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "Repeating a POST with the same key within 24 hours answers with the same request and creates nothing; the same key with another subject or report is refused",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"}},
                "format": {"name": "format", "in": "query", "required": false,
                           "description": "json (the default): the export file; html: its HTML report, a self-contained page a person can read",
                           "schema": {"type": "string", "enum": ["json", "html"], "default": "json"}},
                "request": {"name": "id", "in": "path", "required": true, "description": "Request id",
                            "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,15}$"}},
                "report": {"name": "report", "in": "query", "required": false,
                           "description": "Where to deliver the export: an e-mail address or an https:// web address",
                           "schema": {"$ref": "#/components/schemas/ReportAddress"}}
            },
            "requestBodies": {
                "Report": {
                    "required": false,
                    "description": "The report, as JSON or a form; the empty array [] (Copernica's own client) means no data",
                    "content": {
                        "application/json": {"schema": {"oneOf": [
                            {"type": "object", "properties": {"report": {"oneOf": [{"$ref": "#/components/schemas/ReportAddress"}, {"type": "null"}]}},
                             "additionalProperties": false},
                            {"type": "array", "maxItems": 0}
                        ]}},
                        "application/x-www-form-urlencoded": {"schema": {"type": "object",
                            "properties": {"report": {"$ref": "#/components/schemas/ReportAddress"}}, "additionalProperties": false}}
                    }
                }
            },
            "schemas": {
                "AuditLog": {"type": "object", "required": ["id", "log"], "properties": {
                    "id": {"type": "integer"},
                    "log": {"type": "array", "items": {"type": "object", "required": ["at", "event"], "properties": {
                        "at": {"type": "string"},
                        "event": {"enum": ["received", "repeated", "build_started", "built", "failed", "delivery", "download", "expired"]}
                    }}}
                }},
                "IngestSummary": {"type": "object", "additionalProperties": false,
                    "required": ["profiles", "subprofiles", "messages", "events", "erased", "skipped"],
                    "properties": {
                        "profiles": {"type": "integer", "minimum": 0}, "subprofiles": {"type": "integer", "minimum": 0},
                        "messages": {"type": "integer", "minimum": 0}, "events": {"type": "integer", "minimum": 0},
                        "erased": {"type": "integer", "minimum": 0}, "skipped": {"type": "integer", "minimum": 0}
                    }},
                "ReportAddress": {"type": "string", "maxLength": 2048,
                                  "description": "An e-mail address, or an https:// address of a public host"},
                "Created": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 9_007_199_254_740_991_u64}}},
                "Error": {"type": "object", "required": ["error"], "additionalProperties": false, "properties": {
                    "error": {"type": "object", "required": ["message"], "additionalProperties": false,
                              "properties": {"message": {"type": "string", "minLength": 1}}}
                }},
                "Info": {"type": "object", "required": ["type", "id"], "properties": {
                    "type": {"enum": ["profile", "subprofile", "email"]},
                    "id": {"type": ["integer", "string"]}
                }},
                "Export": {"type": "object", "required": ["info", "data"], "properties": {
                    "info": {"$ref": "#/components/schemas/Info"},
                    "data": {"type": "array", "items": {"type": "array", "minItems": 1, "prefixItems": [{"type": "string"}], "items": {"type": "object"}}}
                }},
                "NotReady": {"type": "object", "required": ["info", "data"], "properties": {
                    "info": {"$ref": "#/components/schemas/Info"},
                    "data": {"type": "string", "enum": ["Data not available (yet)", "Data not available"]}
                }},
                "Status": {"type": "object", "required": ["status", "available", "content-type"], "properties": {
                    "status": {"enum": ["available", "pending", "not available"]},
                    "available": {"type": "integer", "minimum": 0},
                    "content-type": {"const": "application/json"},
                    "id": {"type": "integer"},
                    "info": {"$ref": "#/components/schemas/Info"},
                    "state": {"enum": ["accepted", "building", "built", "delivered", "failed", "expired"]},
                    "created": {"type": "string"},
                    "completed": {"type": ["string", "null"]},
                    "expires": {"type": ["string", "null"]},
                    "reason": {"type": ["string", "null"]},
                    "delivery": {"type": "object", "required": ["status"], "properties": {
                        "status": {"enum": ["none", "pending", "sending", "sent", "failed"]},
                        "method": {"enum": ["email", "web", "attachment", "link"]},
                        "attempts": {"type": "integer", "minimum": 0},
                        "error": {"type": ["string", "null"]}
                    }}
                }}
            }
        }
    })
}
