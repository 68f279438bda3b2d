//! `/api/v1/admin/*`: users, clients, sessions, keys and the audit trail, for operators
//! (DESIGN.md "Account and admin API shapes"). Every request needs a bearer access token
//! with scope `oxidp:admin` (only first-party clients can obtain it) of a user who holds
//! the role `admin` now (checked on every request, so removing the role takes effect at
//! once). Every change is validated like the CLI, runs in one transaction and is audited
//! with the administrator as actor.

mod audit_log;
mod clients;
mod keys;
mod users;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::net::SocketAddr;

use super::AppState;
use super::client_auth::no_store;
use super::error::Unavailable;
use super::userinfo::{bearer_error, bearer_from_header};
use crate::audit::{Context, Event};
use crate::oidc::claims::ADMIN_SCOPE;

/// The role an administrator holds (with the scope `oxidp:admin` in the token).
pub const ADMIN_ROLE: &str = "admin";
/// Page size when `limit` is not given, and the largest allowed.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(clients::router())
        .merge(keys::router())
        .merge(audit_log::router())
        .route("/api/v1/openapi.json", axum::routing::get(openapi_document))
}

/// The OpenAPI 3.1 description of this API (written by hand next to the code, and
/// checked against the routes by the tests).
async fn openapi_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../assets/openapi.json"),
    )
        .into_response()
}

/// Everything the admin API answers besides success.
pub enum AdminError {
    /// No usable bearer token: 401 with `WWW-Authenticate` (RFC 6750 §3).
    Unauthorized(Box<Response>),
    /// A valid token without the scope or the role: 403, no detail.
    Forbidden,
    NotFound,
    BadRequest(String),
    Validation(std::collections::BTreeMap<String, String>),
    Conflict(&'static str, String),
    /// The password workers are saturated.
    Busy,
    Internal(Box<Response>),
}

impl AdminError {
    pub fn internal(e: &dyn std::fmt::Display) -> Self {
        Self::Internal(Box::new(Unavailable::log(e).into_response()))
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Validation([(field.to_string(), message.into())].into())
    }
}

impl From<crate::storage::StoreError> for AdminError {
    fn from(e: crate::storage::StoreError) -> Self {
        match e {
            crate::storage::StoreError::NotFound => Self::NotFound,
            other => Self::internal(&other),
        }
    }
}

impl From<crate::sessions::SessionError> for AdminError {
    fn from(e: crate::sessions::SessionError) -> Self {
        match e {
            crate::sessions::SessionError::Store(e) => e.into(),
            other => Self::internal(&other),
        }
    }
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    no_store(response.headers_mut());
    response
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized(response) | Self::Internal(response) => *response,
            Self::Forbidden => {
                let mut response = bearer_error(
                    StatusCode::FORBIDDEN,
                    Some("insufficient_scope"),
                    "not allowed",
                );
                if let Ok(v) = format!(
                    "Bearer realm=\"oxidp\", error=\"insufficient_scope\", scope=\"{ADMIN_SCOPE}\""
                )
                .parse()
                {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                response
            }
            Self::NotFound => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "error_description": "No such resource."}),
            ),
            Self::BadRequest(description) => json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": description}),
            ),
            Self::Validation(fields) => json_response(
                StatusCode::BAD_REQUEST,
                json!({
                    "error": "validation_failed",
                    "error_description": "Some fields are not valid.",
                    "fields": fields,
                }),
            ),
            Self::Conflict(code, description) => json_response(
                StatusCode::CONFLICT,
                json!({"error": code, "error_description": description}),
            ),
            Self::Busy => {
                let mut response = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "temporarily_unavailable", "error_description": "Too many passwords are being checked right now; try again shortly."}),
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
                response
            }
        }
    }
}

pub type AdminResult = Result<Response, AdminError>;

/// The administrator behind a request, and the audit context of the request.
pub struct Admin {
    pub sub: String,
    pub audit: Context,
}

impl Admin {
    /// An admin change, with this administrator as actor.
    pub fn event(&self, kind: &'static str) -> Event {
        Event::success(kind).actor(&self.sub)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let sub = authorize(state, &parts.headers).await?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let ip = state.client_ip(peer, &parts.headers);
        Ok(Admin {
            audit: state.audit_context(ip, &parts.headers),
            sub,
        })
    }
}

/// RFC 6750: a valid access token of ours, with scope `oxidp:admin`, of a user who holds
/// the role `admin` and is not disabled.
async fn authorize(state: &AppState, headers: &HeaderMap) -> Result<String, AdminError> {
    let unauthorized = |code: Option<&str>, why: &str| {
        AdminError::Unauthorized(Box::new(bearer_error(StatusCode::UNAUTHORIZED, code, why)))
    };
    let token = match bearer_from_header(headers) {
        Ok(Some(token)) => token,
        Ok(None) => return Err(unauthorized(None, "a bearer token is required")),
        Err(response) => return Err(AdminError::Unauthorized(response)),
    };
    let issuer = state.config.server.issuer.clone();
    let claims = match super::access_token::check(state, &token, Some(&issuer)).await {
        Ok(Ok(claims)) => claims,
        Ok(Err(why)) => return Err(unauthorized(Some("invalid_token"), why)),
        Err(e) => return Err(AdminError::internal(&e)),
    };
    let claim = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
    if !claim("scope").split(' ').any(|s| s == ADMIN_SCOPE) {
        return Err(AdminError::Forbidden);
    }
    let sub = claim("sub").to_string();
    // A client's own token (client credentials: sub = client_id) is never a user's, even
    // if someone named a client after an administrator's sub.
    if sub == claim("client_id") {
        return Err(AdminError::Forbidden);
    }
    if !state.store.has_role(&sub, ADMIN_ROLE).await? {
        return Err(AdminError::Forbidden);
    }
    Ok(sub)
}

/// A JSON body (`Content-Type: application/json`) into `T`; unknown fields are refused.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, AdminError> {
    super::json::parse(headers, body).map_err(AdminError::BadRequest)
}

/// `limit` of a list request: 1 to 200, 50 when absent.
pub fn page_limit(limit: Option<&str>) -> Result<i64, AdminError> {
    match limit {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| AdminError::BadRequest(format!("limit must be 1 to {MAX_LIMIT}"))),
    }
}

/// Opaque page cursors: base64url of the last item's sort key.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<String>, AdminError> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| AdminError::BadRequest("cursor is not valid".into())),
    }
}

/// A path segment used as a key: bounded and printable, else 404 without a query.
pub fn plausible_id(id: &str) -> Result<(), AdminError> {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(AdminError::NotFound);
    }
    Ok(())
}
