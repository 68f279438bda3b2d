//! The one check of an access token presented to oxidp (RFC 9068 §4): our signature,
//! `typ: at+jwt`, our issuer, not expired, not revoked (by `jti` or by its grant `gid`).
//! UserInfo and the account API also require our audience; introspection does not
//! (a resource server asks about tokens minted for itself).

use serde_json::{Map, Value};

use super::AppState;
use crate::oidc::tokens::ACCESS_TOKEN_TYP;
use crate::storage::{StoreError, unix_now};

/// Why a token is not accepted, worded for `error_description`.
pub type Rejected = &'static str;

pub async fn check(
    state: &AppState,
    token: &str,
    audience: Option<&str>,
) -> Result<Result<Map<String, Value>, Rejected>, StoreError> {
    let Ok((claims, typ)) = state.keys.current().verify(token) else {
        return Ok(Err("the access token is invalid"));
    };
    let issuer = state.config.server.issuer.as_str();
    let str_claim = |k: &str| claims.get(k).and_then(Value::as_str);
    if typ.as_deref() != Some(ACCESS_TOKEN_TYP)
        || str_claim("iss") != Some(issuer)
        || audience.is_some_and(|aud| str_claim("aud") != Some(aud))
    {
        return Ok(Err("the token is not an access token of this provider"));
    }
    if claims.get("exp").and_then(Value::as_i64).unwrap_or(0) <= unix_now() {
        return Ok(Err("the access token has expired"));
    }
    let jti = str_claim("jti").unwrap_or_default();
    if state.store.is_revoked(jti, str_claim("gid")).await? {
        return Ok(Err("the access token was revoked"));
    }
    Ok(Ok(claims))
}
