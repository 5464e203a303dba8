//! The body of a build queue message, the same on SQS and in local mode's queue:
//! `{"request":"<id>"}`, the id as a string so no JSON reader rounds it.

use super::{Invalid, RequestId};

/// The body of the build queue message for a request.
#[must_use]
pub fn body(id: RequestId) -> String {
    serde_json::json!({"request": id.to_string()}).to_string()
}

/// Reads the request id from a build queue message body.
///
/// # Errors
/// When the body is not a build message.
pub fn parse(body: &str) -> Result<RequestId, Invalid> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        request: String,
    }
    let body: Body = serde_json::from_str(body).map_err(|_| Invalid("not a build queue message".into()))?;
    RequestId::parse(&body.request)
}
