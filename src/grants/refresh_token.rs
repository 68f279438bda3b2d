//! The refresh token grant (RFC 6749 §6); rotation and the grace window live in
//! `sessions::refresh`.

use crate::audit::{Context, Event};
use crate::oidc::params::Params;
use crate::oidc::tokens::Grant;
use crate::oidc::{Error, ErrorCode};
use crate::sessions::RefreshOutcome;
use crate::storage::{ClientRecord, unix_now};

use super::{GrantError, Grants, Issued, PASSWORD_AMR, mint, refresh_policy};

/// RFC 6749 §6. Rotation and the grace window live in `sessions::refresh`.
pub async fn exchange(
    state: &Grants,
    client: &ClientRecord,
    params: &Params,
    audit: &Context,
) -> Result<Issued, GrantError> {
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| Error::invalid_request("refresh_token is missing"))?;
    let bad = || {
        GrantError::from(Error::invalid_grant(
            "the refresh token is invalid, expired or revoked",
        ))
    };
    // Scope may be narrowed, never widened (§6); checked before anything rotates.
    let requested: Option<Vec<String>> = params.get("scope").map(|s| {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    });
    let now = unix_now();
    let outcome = state
        .sessions
        .refresh(
            presented,
            &client.id,
            refresh_policy(state),
            now,
            requested.as_deref(),
        )
        .await
        .map_err(GrantError::internal)?;
    let (token, family_id, user, grant) = match outcome {
        RefreshOutcome::Issued {
            token,
            family_id,
            user,
            grant,
        } => (token, family_id, user, grant),
        RefreshOutcome::Invalid(reason) => {
            tracing::info!(client_id = %client.id, reason, "refresh refused");
            if reason == crate::sessions::REUSED {
                state.audit(
                    audit,
                    Event::failure("token.refresh_reuse")
                        .actor(format!("client:{}", client.id))
                        .client(&client.id)
                        .detail("revoked", "the refresh token family"),
                );
            }
            return Err(bad());
        }
        RefreshOutcome::ScopeExceeded => {
            return Err(Error::new(
                ErrorCode::InvalidScope,
                "the scope exceeds the original grant",
            )
            .into());
        }
    };
    let scopes = requested.unwrap_or_else(|| grant.scopes.clone());
    let token_grant = Grant {
        issuer: &state.config.server.issuer,
        client_id: &client.id,
        scopes: &scopes,
        auth_time: Some(grant.auth_time),
        sid: grant.sid.as_deref(),
        grant_id: Some(&family_id),
        audience: &state.config.server.issuer,
        amr: PASSWORD_AMR,
        now,
    };
    // OIDC Core §12.2: same sub, aud, auth_time, sid; no nonce.
    let body = mint(
        state,
        &token_grant,
        &user,
        None,
        &grant.claims.id_token,
        &grant.claims.userinfo,
        Some(token),
    )
    .await?;
    Ok(Issued::for_user(body, &user.id))
}
