//! The HTTP API: one axum router for both worlds. The Lambda functions each serve their part
//! of it through `lambda_http`; the local command serves all of it through its own accept loop
//! ([`crate::inbound::server`]).
//!
//! The files import one another in one direction only: this one and [`openapi`] (the document,
//! built from the handlers) at the top; the handlers below them; and what the handlers share
//! ([`params`], [`answers`], [`doc`], [`error`]) at the bottom, importing no handler.

mod answers;
mod cancel_datarequest;
mod doc;
mod download;
mod error;
mod get_datarequest;
pub mod ingest;
pub mod openapi;
mod params;
mod post_datarequest;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::X_CONTENT_TYPE_OPTIONS;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

pub use error::{ApiError, AuthFailed, INVALID_METHOD, INVALID_TOKEN, NO_ENTITY, Refusal};

use crate::app::{App, RateLimiter};
use crate::domain::TrustedProxies;
use params::ClientAddress;

/// Which routes a router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// Everything (local mode).
    All,
    /// The POST routes and `DELETE /vN/datarequest/{id}` (the intake function).
    Intake,
    /// The GET routes (the status function).
    Status,
    /// `POST /ingest` (the ingest function).
    Ingest,
}

/// The router for a part of the API. Unknown paths and wrong methods answer `400 Invalid
/// method`, as Copernica does. Every response says `X-Content-Type-Options: nosniff`.
pub fn router(app: App, part: Routes) -> Router {
    let mut routes = Router::new();
    if matches!(part, Routes::All | Routes::Ingest) {
        // Bodies are read whole: only so many at once, whatever the number of connections.
        let bodies = ingest::Bodies::new(app.settings().ingest_bodies);
        routes = routes.route("/ingest", post(ingest::ingest).layer(axum::Extension(bodies)));
    }
    if matches!(part, Routes::All | Routes::Intake) {
        routes = routes
            .route("/{version}/profile/{id}/datarequest", post(post_datarequest::profile))
            .route("/{version}/subprofile/{id}/datarequest", post(post_datarequest::subprofile))
            .route("/{version}/email/{email}/datarequest", post(post_datarequest::email))
            .route("/{version}/profile/{id}/data", post(post_datarequest::profile))
            .route("/{version}/subprofile/{id}/data", post(post_datarequest::subprofile))
            .route("/{version}/email/{email}/data", post(post_datarequest::email));
    }
    if matches!(part, Routes::All | Routes::Intake) {
        // Cancelling writes like a POST, and checks its token as a POST does.
        routes = routes.route("/{version}/datarequest/{id}", delete(cancel_datarequest::cancel));
    }
    if matches!(part, Routes::All | Routes::Status) {
        routes = routes
            .route("/{version}/datarequest/{id}", get(get_datarequest::export))
            .route("/{version}/datarequest/{id}/status", get(get_datarequest::status))
            .route("/{version}/datarequest/{id}/data", get(get_datarequest::data))
            .route("/{version}/datarequest/{id}/download", get(download::download))
            .route("/{version}/datarequest/{id}/log", get(get_datarequest::log));
    }
    if part == Routes::All {
        routes = routes.route("/openapi.json", get(|| async { axum::Json(openapi::document()) }));
    }
    let guard = Guard {
        failures: Arc::new(RateLimiter::<IpAddr>::new(app.settings().auth_failures_per_minute)),
        proxies: app.settings().trusted_proxies.clone(),
    };
    let mut routes = routes.fallback(invalid_method).method_not_allowed_fallback(invalid_method).with_state(app);
    if part == Routes::All {
        // Local mode: a client that keeps sending wrong tokens or keys is refused before any
        // lookup. On AWS, API Gateway's throttling (and an optional WAF rule) does this.
        routes = routes.layer(axum::middleware::from_fn_with_state(Arc::new(guard), auth_guard));
    }
    routes.layer(axum::middleware::map_response(nosniff))
}

/// No browser may read a response as anything but its `Content-Type` says.
async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Local mode's guard against clients guessing tokens.
struct Guard {
    /// Failed authentications per client address.
    failures: Arc<RateLimiter<IpAddr>>,
    /// The proxies whose `X-Forwarded-For` names the client.
    proxies: TrustedProxies,
}

/// Refuses a client address over its limit of failed authentications with `429`, and counts
/// the failures ([`AuthFailed`] on a response). The client address is the connection's peer,
/// or behind a trusted proxy the address it forwarded (see [`TrustedProxies::client`]): each
/// client behind a proxy has a count of its own.
async fn auth_guard(
    State(guard): State<Arc<Guard>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let Some(peer) = peer else { return next.run(request).await };
    let forwarded = request.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let client = guard.proxies.client(peer, forwarded);
    request.extensions_mut().insert(ClientAddress(client));
    let now = crate::domain::Timestamp::now();
    if let Some(wait) = guard.failures.over(client, now) {
        return ApiError::TooManyFailures(wait).into_response();
    }
    let response = next.run(request).await;
    if response.extensions().get::<AuthFailed>().is_some() {
        guard.failures.count(client, now);
    }
    response
}

async fn invalid_method() -> Response {
    ApiError::bad(INVALID_METHOD).into_response()
}
