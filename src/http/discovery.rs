//! `/.well-known/openid-configuration` (OIDC Discovery 1.0 §4), its RFC 8414 twin, and
//! `/jwks.json` (RFC 7517). Both are served from memory and may be cached by anyone.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::cors::{Any, CorsLayer};

use super::AppState;
use crate::oidc::discovery::JWKS_PATH;

/// Discovery changes only with a new release or config: an hour of caching is safe.
const DISCOVERY_CACHE: &str = "public, max-age=3600";
/// JWKS changes at key rotation; relying parties also re-fetch on an unknown `kid`.
const JWKS_CACHE: &str = "public, max-age=300";

pub fn router() -> Router<AppState> {
    // Browser-based clients fetch these two documents cross-origin.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD]);
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route(JWKS_PATH, get(jwks))
        .layer(cors)
}

fn json_document(body: bytes::Bytes, cache: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

async fn discovery(State(state): State<AppState>) -> Response {
    json_document(state.discovery.clone(), DISCOVERY_CACHE)
}

async fn jwks(State(state): State<AppState>) -> Response {
    json_document(state.keys.current().jwks.clone(), JWKS_CACHE)
}
