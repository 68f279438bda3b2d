//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009), both for authenticated
//! clients.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::AppState;
use super::authorize::is_form;
use super::client_auth::{TokenFailure, authenticate_client, internal, no_store};
use crate::grants::refresh_policy;
use crate::oidc::Error;
use crate::oidc::params::Params;
use crate::sessions::{RefreshGrant, hash_opaque};
use crate::storage::{ClientRecord, unix_now};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/introspect", post(introspect))
        .route("/revoke", post(revoke))
}

/// Parses the form and authenticates the client; both endpoints start the same way.
async fn authenticated(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(std::sync::Arc<ClientRecord>, Params), TokenFailure> {
    if !is_form(headers) {
        return Err(
            Error::invalid_request("the body must be application/x-www-form-urlencoded").into(),
        );
    }
    let params = Params::parse(body);
    params.check_well_formed()?;
    let client = authenticate_client(state, headers, &params).await?;
    if params.get("token").is_none() {
        return Err(Error::invalid_request("token is missing").into());
    }
    Ok((client, params))
}

/// What a presented token turned out to be.
enum Found {
    /// A valid, unexpired, unrevoked access token, with its claims.
    Access(Map<String, Value>),
    /// A refresh token we issued and have not revoked. `live`: usable right now (not
    /// rotated out, not expired, session alive); revocation acts on either kind.
    Refresh {
        live: bool,
        family_id: String,
        client_id: String,
        user_id: String,
        grant: RefreshGrant,
        created_at: i64,
        expires_at: i64,
    },
    Nothing,
}

/// Looks the token up as an access token (a JWT we signed) or a refresh token (an
/// opaque value we stored). `token_type_hint` only orders the attempts (RFC 7662 §2.1).
async fn find(state: &AppState, token: &str) -> Result<Found, TokenFailure> {
    let now = unix_now();
    if token.split('.').count() == 3 {
        // No audience check: a resource server introspects tokens minted for itself.
        return Ok(
            match super::access_token::check(state, token, None)
                .await
                .map_err(|e| internal(&e))?
            {
                Ok(claims) => Found::Access(claims),
                Err(_) => Found::Nothing,
            },
        );
    }
    if token.len() > 64 {
        return Ok(Found::Nothing);
    }
    let Some(row) = state
        .store
        .find_refresh_token(&hash_opaque(token), now)
        .await
        .map_err(|e| internal(&e))?
    else {
        return Ok(Found::Nothing);
    };
    if row.revoked_at.is_some() || row.family_revoked {
        return Ok(Found::Nothing);
    }
    let session_live = row.session_live;
    let live = row.used_at.is_none()
        && row.expires_at > now
        && row.family_expires_at > now
        && session_live;
    let Ok(grant) = serde_json::from_str::<RefreshGrant>(&row.grant_data) else {
        return Ok(Found::Nothing);
    };
    Ok(Found::Refresh {
        live,
        family_id: row.family_id,
        client_id: row.client_id,
        user_id: row.user_id,
        grant,
        created_at: row.created_at,
        expires_at: row.expires_at,
    })
}

fn json_no_store(body: Value) -> Response {
    let mut response = (StatusCode::OK, Json(body)).into_response();
    no_store(response.headers_mut());
    response
}

/// RFC 7662 §2.2. Inactive answers carry nothing but `active: false`, whatever the
/// reason (unknown, expired, revoked, or not this client's to see).
async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match introspection(&state, &headers, &body).await {
        Ok(body) => json_no_store(body),
        Err(failure) => failure.into_response(),
    }
}

async fn introspection(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, TokenFailure> {
    let (client, params) = authenticated(state, headers, body).await?;
    // RFC 7662 §2.1: the caller must be authorized; a public client proves nothing.
    if client.secret_hash.is_none() {
        return Err(crate::oidc::Error::new(
            crate::oidc::ErrorCode::InvalidClient,
            "introspection needs an authenticated (confidential) client",
        )
        .into());
    }
    let token = params.get("token").unwrap_or_default();
    let inactive = json!({"active": false});
    // A client sees its own tokens; a resource server (`introspect_any`) sees all.
    let may_see = |owner: &str| client.introspect_any || owner == client.id;
    match find(state, token).await? {
        Found::Nothing => Ok(inactive),
        Found::Access(claims) => {
            let owner = claims
                .get("client_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !may_see(owner) {
                return Ok(inactive);
            }
            let mut out = Map::new();
            out.insert("active".into(), json!(true));
            out.insert("token_type".into(), json!("Bearer"));
            for k in [
                "scope",
                "client_id",
                "sub",
                "exp",
                "iat",
                "iss",
                "aud",
                "jti",
            ] {
                if let Some(v) = claims.get(k) {
                    out.insert(k.into(), v.clone());
                }
            }
            let sub = claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(user) = state
                .store
                .find_user_by_id(sub)
                .await
                .map_err(|e| internal(&e))?
            {
                if user.disabled {
                    return Ok(inactive);
                }
                out.insert("username".into(), json!(user.username));
            }
            Ok(Value::Object(out))
        }
        Found::Refresh {
            live,
            client_id,
            user_id,
            grant,
            created_at,
            expires_at,
            ..
        } => {
            if !live || !may_see(&client_id) {
                return Ok(inactive);
            }
            let user = state
                .store
                .find_user_by_id(&user_id)
                .await
                .map_err(|e| internal(&e))?;
            let Some(user) = user.filter(|u| !u.disabled) else {
                return Ok(inactive);
            };
            Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": grant.scopes.join(" "),
                "client_id": client_id,
                "sub": user.id,
                "username": user.username,
                "exp": expires_at,
                "iat": created_at,
                "iss": state.config.server.issuer,
            }))
        }
    }
}

/// RFC 7009 §2. 200 whether or not the token was known (§2.2); a token of another
/// client is left alone, and the answer does not say so.
async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match revocation(&state, &headers, &body).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(response.headers_mut());
            response
        }
        Err(failure) => failure.into_response(),
    }
}

async fn revocation(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), TokenFailure> {
    let (client, params) = authenticated(state, headers, body).await?;
    let token = params.get("token").unwrap_or_default();
    let now = unix_now();
    match find(state, token).await? {
        Found::Access(claims) => {
            let owner = claims
                .get("client_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let jti = claims
                .get("jti")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
            if owner == client.id && !jti.is_empty() {
                state
                    .store
                    .revoke_id(jti, exp, now)
                    .await
                    .map_err(|e| internal(&e))?;
            }
        }
        Found::Refresh {
            family_id,
            client_id,
            ..
        } => {
            if client_id == client.id {
                // Revoking a refresh token, even one already rotated out, ends its family
                // and the access tokens issued in it (RFC 7009 §2.1: "SHOULD also
                // invalidate all access tokens").
                let policy = refresh_policy(&state.grants);
                let until = now + policy.absolute_seconds;
                state
                    .store
                    .revoke_family(&family_id, until, now)
                    .await
                    .map_err(|e| internal(&e))?;
            }
        }
        Found::Nothing => {}
    }
    Ok(())
}
