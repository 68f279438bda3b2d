//! Client authentication at the token, introspection and revocation endpoints
//! (RFC 6749 §2.3.1), and the RFC 6749 §5.2 error shape they share.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::AppState;
use super::error::Unavailable;
use crate::clients::secret_matches;
use crate::oidc::params::Params;
use crate::oidc::{Error, ErrorCode};
use crate::storage::ClientRecord;

/// A failure at a client-authenticated endpoint: a protocol error, or an internal one.
pub enum TokenFailure {
    Protocol {
        error: Error,
        basic_used: bool,
    },
    Internal(Box<Response>),
    /// Over a brute-force limit: 429 with `Retry-After` (DESIGN.md).
    Limited(crate::ratelimit::RetryAfter),
    /// The password workers are saturated: 503 `temporarily_unavailable`.
    Busy,
}

impl From<Error> for TokenFailure {
    fn from(error: Error) -> Self {
        Self::Protocol {
            error,
            basic_used: false,
        }
    }
}

impl From<crate::grants::GrantError> for TokenFailure {
    fn from(e: crate::grants::GrantError) -> Self {
        use crate::grants::GrantError;
        match e {
            GrantError::Protocol(error) => error.into(),
            GrantError::Limited(wait) => Self::Limited(wait),
            GrantError::Busy => Self::Busy,
            GrantError::Internal(cause) => internal(&super::error::Chain(cause.as_ref())),
        }
    }
}

pub fn internal(e: &dyn std::fmt::Display) -> TokenFailure {
    TokenFailure::Internal(Box::new(Unavailable::log(e).into_response()))
}

impl IntoResponse for TokenFailure {
    fn into_response(self) -> Response {
        match self {
            Self::Protocol { error, basic_used } => error_response(&error, basic_used),
            Self::Internal(response) => *response,
            Self::Limited(wait) => temporarily_unavailable(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-in attempts; try again later.",
                wait.seconds(),
            ),
            Self::Busy => temporarily_unavailable(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins are being checked right now; try again shortly.",
                1,
            ),
        }
    }
}

/// RFC 6749 §5.2 error JSON; 401 with `WWW-Authenticate` for a failed Basic
/// authentication, 400 otherwise.
pub fn error_response(error: &Error, basic_used: bool) -> Response {
    let status = if error.code == ErrorCode::InvalidClient {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut response = (
        status,
        Json(json!({"error": error.code.as_str(), "error_description": error.description})),
    )
        .into_response();
    let headers = response.headers_mut();
    no_store(headers);
    if error.code == ErrorCode::InvalidClient && basic_used {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oxidp\", charset=\"UTF-8\""),
        );
    }
    response
}

/// RFC 6749 §5.2 `temporarily_unavailable` with `Retry-After`.
fn temporarily_unavailable(status: StatusCode, description: &str, retry_after: u64) -> Response {
    let mut response = (
        status,
        Json(json!({"error": "temporarily_unavailable", "error_description": description})),
    )
        .into_response();
    let headers = response.headers_mut();
    no_store(headers);
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        headers.insert(header::RETRY_AFTER, v);
    }
    response
}

pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Client authentication (RFC 6749 §2.3.1): HTTP Basic with form-urlencoded id and
/// secret, or `client_secret_post`, or a public client's bare `client_id` — exactly one
/// method per request, and it must be the client's registered one.
pub async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Arc<ClientRecord>, TokenFailure> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(parse_basic(value).ok_or(TokenFailure::Protocol {
            error: Error::new(ErrorCode::InvalidClient, "malformed Basic credentials"),
            basic_used: true,
        })?),
    };
    let basic_used = basic.is_some();
    let used = match (&basic, params.get("client_secret")) {
        (Some(_), _) => CLIENT_SECRET_BASIC,
        (None, Some(_)) => CLIENT_SECRET_POST,
        (None, None) => NONE,
    };
    let (id, secret) = match (basic, params.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(
                Error::invalid_request("use one client authentication method, not two").into(),
            );
        }
        (Some((id, secret)), None) => {
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(
                    Error::invalid_request("client_id does not match the credentials").into(),
                );
            }
            (id, Some(secret))
        }
        (None, secret) => match params.get("client_id") {
            Some(id) => (id.to_string(), secret.map(str::to_string)),
            None => {
                return Err(Error::new(
                    ErrorCode::InvalidClient,
                    "client authentication is missing",
                )
                .into());
            }
        },
    };
    let client = if id.len() <= 128 {
        state.clients.get(&id).await.map_err(|e| internal(&e))?
    } else {
        None
    };
    let Some(client) = client else {
        return Err(TokenFailure::Protocol {
            error: Error::new(ErrorCode::InvalidClient, "client authentication failed"),
            basic_used,
        });
    };
    let registered = client.token_endpoint_auth_method.as_str();
    // RFC 6749 §5.2: the 401 carries the Basic challenge when Basic was tried.
    let fail = |description: String| TokenFailure::Protocol {
        error: Error::new(ErrorCode::InvalidClient, description),
        basic_used,
    };
    let proven = match (&client.secret_hash, secret) {
        (Some(hash), Some(secret)) => secret_matches(&secret, hash),
        // A public client proves nothing but must not pretend to have a secret.
        (None, None) => true,
        _ => false,
    };
    if !proven {
        return Err(fail("client authentication failed".into()));
    }
    // RFC 7591 §2 (OIDC Registration §2): `token_endpoint_auth_method` is the one
    // method the client authenticates with; a secret sent any other way is refused, so
    // a secret leaked in a form body or a log cannot be replayed through the other
    // channel. Named only after the secret was proven, so it tells nobody else.
    if used != registered {
        return Err(fail(format!(
            "this client must authenticate with {registered} (its registered token_endpoint_auth_method)"
        )));
    }
    Ok(client)
}

const CLIENT_SECRET_BASIC: &str = "client_secret_basic";
const CLIENT_SECRET_POST: &str = "client_secret_post";
const NONE: &str = "none";

/// The client id and secret of an `Authorization: Basic` value; `None` when malformed.
pub fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // RFC 6749 §2.3.1: both are form-urlencoded before being put in the header.
    let unescape = |s: &str| -> Option<String> {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    (!id.is_empty()).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header =
            |raw: &str| HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw))).unwrap();
        assert_eq!(
            parse_basic(&header("app:s3cret")),
            Some(("app".into(), "s3cret".into()))
        );
        assert_eq!(
            parse_basic(&header("my%20app:a%2Bb%3Ac")),
            Some(("my app".into(), "a+b:c".into()))
        );
        assert_eq!(
            parse_basic(&header("app:a:b")),
            Some(("app".into(), "a:b".into()))
        );
        assert_eq!(parse_basic(&header(":x")), None);
        assert_eq!(parse_basic(&header("nocolon")), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Bearer abc")), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Basic !!!")), None);
    }
}
