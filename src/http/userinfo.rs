//! `GET/POST /userinfo` (OIDC Core §5.3) with bearer tokens per RFC 6750.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::AppState;
use super::authorize::is_form;
use super::error::Unavailable;
use crate::grants::user_claims;
use crate::oidc::claims::OPENID;
use crate::oidc::params::Params;
use crate::oidc::tokens::USERINFO_CLAIMS;
use crate::storage::UserRecord;

pub fn router() -> Router<AppState> {
    Router::new().route("/userinfo", get(userinfo_get).post(userinfo_post))
}

/// RFC 6750 §3: the `WWW-Authenticate` challenge, with an error code once a token was
/// presented (§3.1: none when the request had no authentication at all).
pub fn bearer_error(status: StatusCode, code: Option<&str>, description: &str) -> Response {
    let challenge = match code {
        Some(code) => {
            format!("Bearer realm=\"oxidp\", error=\"{code}\", error_description=\"{description}\"")
        }
        None => "Bearer realm=\"oxidp\"".to_string(),
    };
    let body = match code {
        Some(code) => json!({"error": code, "error_description": description}),
        None => json!({"error": "invalid_token", "error_description": description}),
    };
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1); `None` without the
/// header, the §3.1 `invalid_request` answer for another scheme or an empty token.
pub fn bearer_from_header(headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default();
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_string()))
        }
        _ => Err(Box::new(bearer_error(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "the Authorization header is not a Bearer token",
        ))),
    }
}

async fn userinfo_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match bearer_from_header(&headers) {
        Ok(Some(token)) => answer(&state, &token).await,
        Ok(None) => bearer_error(StatusCode::UNAUTHORIZED, None, "a bearer token is required"),
        Err(response) => *response,
    }
}

/// RFC 6750 §2.2: POST may carry the token as `access_token` in a form body, but never
/// in two places at once.
async fn userinfo_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let from_header = match bearer_from_header(&headers) {
        Ok(t) => t,
        Err(response) => return *response,
    };
    let form = if is_form(&headers) {
        Params::parse(&body)
    } else {
        Params::default()
    };
    if form.check_well_formed().is_err() {
        return bearer_error(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "malformed form body",
        );
    }
    match (from_header, form.get("access_token")) {
        (Some(_), Some(_)) => bearer_error(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            "the token was sent in more than one way",
        ),
        (Some(token), None) => answer(&state, &token).await,
        (None, Some(token)) => answer(&state, token).await,
        (None, None) => bearer_error(StatusCode::UNAUTHORIZED, None, "a bearer token is required"),
    }
}

/// A valid access token's claims: our signature, `typ: at+jwt`, our issuer and
/// audience, not expired, not revoked.
pub async fn verify_access_token(
    state: &AppState,
    token: &str,
) -> Result<Map<String, Value>, Box<Response>> {
    let invalid = |d: &str| {
        Box::new(bearer_error(
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            d,
        ))
    };
    let issuer = state.config.server.issuer.as_str();
    match super::access_token::check(state, token, Some(issuer)).await {
        Ok(Ok(claims)) => Ok(claims),
        Ok(Err(why)) => Err(invalid(why)),
        Err(e) => Err(Box::new(Unavailable::log(&e).into_response())),
    }
}

async fn answer(state: &AppState, token: &str) -> Response {
    let claims = match verify_access_token(state, token).await {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let scopes: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !scopes.iter().any(|s| s == OPENID) {
        return bearer_error(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            "the token lacks the openid scope",
        );
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let user: UserRecord = match state.store.find_user_by_id(sub).await {
        Ok(Some(u)) if !u.disabled => u,
        Ok(_) => {
            return bearer_error(
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the user is no longer active",
            );
        }
        Err(e) => return Unavailable::log(&e).into_response(),
    };
    let requested: Vec<String> = claims
        .get(USERINFO_CLAIMS)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut body = Map::new();
    body.insert("sub".into(), json!(user.id));
    user_claims(&user).release_into(&mut body, &scopes, &requested);
    let mut response = (StatusCode::OK, Json(Value::Object(body))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
