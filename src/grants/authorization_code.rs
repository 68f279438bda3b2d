//! The authorization code grant: RFC 6749 §4.1.3, RFC 7636 §4.6, OIDC Core §3.1.3.

use crate::audit::{Context, Event};
use crate::oidc::Error;
use crate::oidc::params::Params;
use crate::oidc::pkce;
use crate::oidc::tokens::Grant;
use crate::sessions::{Redemption, RefreshGrant};
use crate::storage::{ClientRecord, unix_now};

use super::{GrantError, Grants, Issued, PASSWORD_AMR, mint, revoke_grant, start_refresh_family};

/// RFC 6749 §4.1.3 and RFC 7636 §4.6; OIDC Core §3.1.3.2.
pub async fn exchange(
    state: &Grants,
    client: &ClientRecord,
    params: &Params,
    audit: &Context,
) -> Result<Issued, GrantError> {
    let code = params
        .get("code")
        .ok_or_else(|| Error::invalid_request("code is missing"))?;
    let bad_code = || {
        GrantError::from(Error::invalid_grant(
            "the code is invalid, expired or already used",
        ))
    };
    let now = unix_now();
    let found = state
        .sessions
        .find_code(code)
        .await
        .map_err(GrantError::internal)?
        .ok_or_else(bad_code)?;
    if found.client_id != client.id {
        return Err(bad_code());
    }
    if found.used {
        // RFC 6749 §4.1.2: a code used twice revokes what it issued.
        revoke_grant(state, found.first_grant.as_deref(), now).await?;
        code_replayed(state, audit, client, &found.user_id);
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
        .map_err(GrantError::internal)?
        .filter(|u| !u.disabled)
        .ok_or_else(bad_code)?;

    // The grant id names this exchange and the refresh family it starts.
    let grant_id = uuid::Uuid::new_v4().to_string();
    match state
        .sessions
        .redeem_code(code, &grant_id, now)
        .await
        .map_err(GrantError::internal)?
    {
        Redemption::Fresh => {}
        Redemption::Replayed { first_grant } => {
            revoke_grant(state, first_grant.as_deref(), now).await?;
            code_replayed(state, audit, client, &user.id);
            return Err(bad_code());
        }
        Redemption::Unknown => return Err(bad_code()),
    }
    let refresh = start_refresh_family(
        state,
        client,
        &user.id,
        &grant_id,
        RefreshGrant {
            scopes: grant.scopes.clone(),
            auth_time: grant.auth_time,
            sid: Some(grant.sid.clone()),
            claims: grant.claims.clone(),
        },
        now,
    )
    .await?;
    let token_grant = Grant {
        issuer: &state.config.server.issuer,
        client_id: &client.id,
        scopes: &grant.scopes,
        auth_time: Some(grant.auth_time),
        sid: Some(&grant.sid),
        grant_id: Some(&grant_id),
        audience: &state.config.server.issuer,
        amr: PASSWORD_AMR,
        now,
    };
    let body = mint(
        state,
        &token_grant,
        &user,
        grant.nonce.as_deref(),
        &grant.claims.id_token,
        &grant.claims.userinfo,
        refresh,
    )
    .await?;
    Ok(Issued::for_user(body, &user.id))
}

fn code_replayed(state: &Grants, audit: &Context, client: &ClientRecord, user_id: &str) {
    state.audit(
        audit,
        Event::failure("token.code_replay")
            .actor(format!("client:{}", client.id))
            .subject(user_id)
            .client(&client.id)
            .detail("revoked", "the grant the code issued"),
    );
}
