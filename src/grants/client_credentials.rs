//! The client credentials grant (RFC 6749 §4.4).

use serde_json::json;

use crate::oidc::params::Params;
use crate::oidc::tokens::{ACCESS_TOKEN_TYP, Grant, access_token_claims};
use crate::oidc::{Error, ErrorCode};
use crate::storage::{ClientRecord, unix_now};

use super::{GrantError, Grants, Issued};

/// RFC 6749 §4.4: a confidential client acting for itself. Scopes come from the
/// client's allowed list; `resource` (RFC 8707) sets the audience.
pub async fn exchange(
    state: &Grants,
    client: &ClientRecord,
    params: &Params,
) -> Result<Issued, GrantError> {
    if client.secret_hash.is_none() {
        return Err(Error::new(
            ErrorCode::UnauthorizedClient,
            "client credentials need a confidential client",
        )
        .into());
    }
    let scopes: Vec<String> = match params.get("scope") {
        None => client
            .scopes
            .iter()
            .filter(|s| *s != crate::oidc::claims::ADMIN_SCOPE)
            .cloned()
            .collect(),
        Some(requested) => {
            let mut out: Vec<String> = Vec::new();
            for scope in requested.split(' ').filter(|s| !s.is_empty()) {
                // A client's own token never administers oxidp (the admin API is for
                // users with the admin role), even if a stored list names the scope.
                if scope == crate::oidc::claims::ADMIN_SCOPE
                    || !client.scopes.iter().any(|s| s == scope)
                {
                    return Err(Error::new(
                        ErrorCode::InvalidScope,
                        "a requested scope is not allowed for this client",
                    )
                    .into());
                }
                if !out.iter().any(|s| s == scope) {
                    out.push(scope.to_string());
                }
            }
            out
        }
    };
    let audience = match params.get("resource") {
        None => state.config.server.issuer.clone(),
        Some(resource) => valid_resource(resource).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidTarget,
                "resource must be an absolute URI without a fragment",
            )
        })?,
    };
    let now = unix_now();
    let grant = Grant {
        issuer: &state.config.server.issuer,
        client_id: &client.id,
        scopes: &scopes,
        auth_time: None,
        sid: None,
        grant_id: None,
        audience: &audience,
        amr: &[],
        now,
    };
    let lifetime = state.config.tokens.access_token_seconds as i64;
    let jti = uuid::Uuid::new_v4().to_string();
    let claims = access_token_claims(&grant, &client.id, &jti, lifetime, &[]);
    let access = state
        .keys
        .sign_with(move |keys| keys.sign(Some(ACCESS_TOKEN_TYP), claims))
        .await
        .and_then(|signed| signed)
        .map_err(GrantError::internal)?;
    let mut body = json!({"access_token": access, "token_type": "Bearer", "expires_in": lifetime});
    if !scopes.is_empty() {
        body["scope"] = json!(scopes.join(" "));
    }
    Ok(Issued { body, user: None })
}

/// RFC 8707 §2: an absolute URI without a fragment.
fn valid_resource(resource: &str) -> Option<String> {
    let url = url::Url::parse(resource).ok()?;
    (url.fragment().is_none() && !resource.contains('#') && url.has_host())
        .then(|| resource.to_string())
}
