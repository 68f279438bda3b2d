//! `POST /token` (RFC 6749 §3.2, §4.1.3, §5; OIDC Core §3.1.3).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::AppState;
use super::authorize::is_form;
use super::error::Unavailable;
use crate::clients::secret_matches;
use crate::oidc::claims::UserClaims;
use crate::oidc::params::Params;
use crate::oidc::pkce;
use crate::oidc::registration::GrantType;
use crate::oidc::tokens::{ACCESS_TOKEN_TYP, Grant, access_token_claims, id_token_claims};
use crate::oidc::{Error, ErrorCode};
use crate::sessions::Redemption;
use crate::storage::{ClientRecord, UserRecord, unix_now};

pub fn router() -> Router<AppState> {
    Router::new().route("/token", post(token))
}

/// A token-endpoint failure: a protocol error, or an internal one (503).
pub enum TokenFailure {
    Protocol { error: Error, basic_used: bool },
    Internal(Box<Response>),
}

impl From<Error> for TokenFailure {
    fn from(error: Error) -> Self {
        Self::Protocol {
            error,
            basic_used: false,
        }
    }
}

fn internal(e: &dyn std::fmt::Display) -> TokenFailure {
    TokenFailure::Internal(Box::new(Unavailable::log(e).into_response()))
}

/// RFC 6749 §5.2 error JSON; 401 with `WWW-Authenticate` for a failed Basic
/// authentication, 400 otherwise.
fn error_response(error: &Error, basic_used: bool) -> Response {
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

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(body) => {
            let mut response = (StatusCode::OK, Json(body)).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(TokenFailure::Protocol { error, basic_used }) => error_response(&error, basic_used),
        Err(TokenFailure::Internal(response)) => *response,
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Value, TokenFailure> {
    // RFC 6749 §3.2: parameters are form-encoded in the body.
    if !is_form(headers) {
        return Err(
            Error::invalid_request("the body must be application/x-www-form-urlencoded").into(),
        );
    }
    let params = Params::parse(body);
    params.check_well_formed()?;
    let client = authenticate_client(state, headers, &params).await?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| Error::invalid_request("grant_type is missing"))?;
    let Some(grant) = GrantType::parse(grant_type).filter(|_| grant_type != "code") else {
        return Err(Error::new(ErrorCode::UnsupportedGrantType, "unknown grant_type").into());
    };
    if !client.grant_types.iter().any(|g| g == grant.as_str()) {
        return Err(Error::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use this grant type",
        )
        .into());
    }
    match grant {
        GrantType::AuthorizationCode => authorization_code(state, &client, &params).await,
        _ => Err(Error::new(
            ErrorCode::UnsupportedGrantType,
            "this grant type is not supported yet",
        )
        .into()),
    }
}

/// Client authentication (RFC 6749 §2.3.1): HTTP Basic with form-urlencoded id and
/// secret, or `client_secret_post`, or a public client's bare `client_id` — exactly one
/// method per request.
async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<ClientRecord, TokenFailure> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(parse_basic(value).ok_or(TokenFailure::Protocol {
            error: Error::new(ErrorCode::InvalidClient, "malformed Basic credentials"),
            basic_used: true,
        })?),
    };
    let basic_used = basic.is_some();
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
    let fail = |description: &'static str| TokenFailure::Protocol {
        error: Error::new(ErrorCode::InvalidClient, description),
        basic_used,
    };
    let client = if id.len() <= 128 {
        state
            .store
            .get_client(&id)
            .await
            .map_err(|e| internal(&e))?
    } else {
        None
    };
    let Some(client) = client else {
        return Err(fail("client authentication failed"));
    };
    match (&client.secret_hash, secret) {
        (Some(hash), Some(secret)) if secret_matches(&secret, hash) => Ok(client),
        // A public client proves nothing but must not pretend to have a secret.
        (None, None) => Ok(client),
        _ => Err(fail("client authentication failed")),
    }
}

fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
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

/// RFC 6749 §4.1.3 and RFC 7636 §4.6; OIDC Core §3.1.3.2.
async fn authorization_code(
    state: &AppState,
    client: &ClientRecord,
    params: &Params,
) -> Result<Value, TokenFailure> {
    let code = params
        .get("code")
        .ok_or_else(|| Error::invalid_request("code is missing"))?;
    let bad_code = || {
        TokenFailure::from(Error::invalid_grant(
            "the code is invalid, expired or already used",
        ))
    };
    let now = unix_now();
    let found = state
        .sessions
        .find_code(code)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(bad_code)?;
    if found.client_id != client.id {
        return Err(bad_code());
    }
    if found.used {
        // RFC 6749 §4.1.2: a code used twice revokes what it issued.
        revoke(state, found.first_jti.as_deref(), now).await?;
        return Err(bad_code());
    }
    if found.expires_at <= now {
        return Err(bad_code());
    }
    let grant = &found.grant;
    match params.get("redirect_uri") {
        Some(uri) if uri == grant.redirect_uri => {}
        None if !grant.redirect_uri_sent => {}
        _ => {
            return Err(Error::invalid_grant(
                "redirect_uri does not match the authorization request",
            )
            .into());
        }
    }
    match (&grant.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if pkce::verify_s256(verifier, challenge) => {}
        (None, None) => {}
        (Some(_), _) => {
            return Err(
                Error::invalid_grant("code_verifier does not match the code_challenge").into(),
            );
        }
        // RFC 9700 §2.1.1: a verifier without a challenge is a downgrade attempt.
        (None, Some(_)) => {
            return Err(Error::invalid_grant("no code_challenge was sent for this code").into());
        }
    }
    let user = state
        .store
        .find_user_by_id(&found.user_id)
        .await
        .map_err(|e| internal(&e))?
        .filter(|u| !u.disabled)
        .ok_or_else(bad_code)?;

    let jti = uuid::Uuid::new_v4().to_string();
    match state
        .sessions
        .redeem_code(code, &jti, now)
        .await
        .map_err(|e| internal(&e))?
    {
        Redemption::Fresh => {}
        Redemption::Replayed { first_jti } => {
            revoke(state, first_jti.as_deref(), now).await?;
            return Err(bad_code());
        }
        Redemption::Unknown => return Err(bad_code()),
    }
    let token_grant = Grant {
        issuer: &state.config.server.issuer,
        client_id: &client.id,
        scopes: &grant.scopes,
        auth_time: grant.auth_time,
        sid: Some(&grant.sid),
        now,
    };
    mint(
        state,
        &token_grant,
        &user,
        &jti,
        grant.nonce.as_deref(),
        &grant.claims.id_token,
        &grant.claims.userinfo,
    )
}

async fn revoke(state: &AppState, jti: Option<&str>, now: i64) -> Result<(), TokenFailure> {
    if let Some(jti) = jti {
        let until = now + state.config.tokens.access_token_seconds as i64;
        state
            .store
            .revoke_access_token(jti, until, now)
            .await
            .map_err(|e| internal(&e))?;
        tracing::warn!(%jti, "authorization code replayed; its access token is revoked");
    }
    Ok(())
}

/// Signs the access token and, for OpenID requests, the ID token.
pub fn mint(
    state: &AppState,
    grant: &Grant<'_>,
    user: &UserRecord,
    jti: &str,
    nonce: Option<&str>,
    id_token_claims_requested: &[String],
    userinfo_claims_requested: &[String],
) -> Result<Value, TokenFailure> {
    let keys = state.keys.current();
    let tokens = &state.config.tokens;
    let access_lifetime = tokens.access_token_seconds as i64;
    let access = keys
        .sign(
            Some(ACCESS_TOKEN_TYP),
            access_token_claims(
                grant,
                &user.id,
                jti,
                access_lifetime,
                userinfo_claims_requested,
            ),
        )
        .map_err(|e| internal(&e))?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": access_lifetime,
        "scope": grant.scopes.join(" "),
    });
    if grant
        .scopes
        .iter()
        .any(|s| s == crate::oidc::claims::OPENID)
    {
        let claims = id_token_claims(
            grant,
            &user_claims(user),
            nonce,
            Some(&access),
            tokens.id_token_seconds as i64,
            id_token_claims_requested,
        );
        let id_token = keys.sign(None, claims).map_err(|e| internal(&e))?;
        body["id_token"] = json!(id_token);
    }
    Ok(body)
}

pub fn user_claims(user: &UserRecord) -> UserClaims<'_> {
    UserClaims {
        sub: &user.id,
        username: &user.username,
        email: &user.email,
        email_verified: user.email_verified,
        name: user.name.as_deref(),
        given_name: user.given_name.as_deref(),
        family_name: user.family_name.as_deref(),
        picture: user.picture.as_deref(),
        locale: user.locale.as_deref(),
        roles: &user.roles,
        updated_at: user.updated_at,
    }
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
