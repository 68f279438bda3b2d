//! The resource owner password credentials grant (RFC 6749 §4.3), for first-party
//! clients only.

use std::net::IpAddr;

use crate::audit::Context;
use crate::authn::{Attempt, SignInError};
use crate::oidc::claims::OPENID;
use crate::oidc::params::Params;
use crate::oidc::tokens::Grant;
use crate::oidc::{Error, ErrorCode};
use crate::sessions::RefreshGrant;
use crate::storage::{ClientRecord, unix_now};

use super::{GrantError, Grants, Issued, PASSWORD_AMR, mint, start_refresh_family};

/// RFC 6749 §4.3, for the first-party frontend's server only (DESIGN.md "Password
/// grant and rate limits"). Answers exactly as the code flow would for the same user and
/// scopes; the sign-in is a fresh authentication (`auth_time` = now).
pub async fn exchange(
    state: &Grants,
    client: &ClientRecord,
    params: &Params,
    ip: IpAddr,
    origin: &crate::storage::SessionOrigin,
    audit: &Context,
) -> Result<Issued, GrantError> {
    // The rule registration enforces, checked again for clients stored before it: a
    // public client never gets the password grant, whatever its stored flags.
    if client.is_public() {
        return Err(Error::new(
            ErrorCode::UnauthorizedClient,
            "a public client may not use the password grant",
        )
        .into());
    }
    if !client.first_party {
        return Err(Error::new(
            ErrorCode::UnauthorizedClient,
            "only first-party clients may use the password grant",
        )
        .into());
    }
    let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
        return Err(Error::invalid_request("username and password are required").into());
    };
    let requested = params.get("scope").unwrap_or(OPENID);
    let scopes = crate::oidc::claims::filter_scopes(requested, &client.scopes, client.first_party);
    if scopes.is_empty() {
        return Err(Error::new(ErrorCode::InvalidScope, "no supported scope was requested").into());
    }
    let secret = secrecy::SecretString::from(password.to_string());
    let attempt = Attempt {
        ip,
        context: audit,
        client_id: Some(&client.id),
    };
    let user = match state.sign_in.sign_in(username, &secret, attempt).await {
        Ok(user) => user,
        Err(SignInError::Limited(wait)) => return Err(GrantError::Limited(wait)),
        // RFC 6749 §5.2: wrong credentials are invalid_grant; one message for every cause.
        Err(SignInError::Rejected) => {
            return Err(Error::invalid_grant("incorrect username or password").into());
        }
        Err(SignInError::Busy) => return Err(GrantError::Busy),
        Err(SignInError::Internal(e)) => return Err(GrantError::Internal(e)),
    };
    let now = unix_now();
    // A server-side session anchors `sid` and `auth_time`, so logout can end what this
    // sign-in started; no cookie is handed out.
    let (_, session) = state
        .sessions
        .start(&user.id, PASSWORD_AMR, origin, None, now)
        .await
        .map_err(GrantError::internal)?;
    state
        .store
        .add_session_client(&session.sid, &client.id, now)
        .await
        .map_err(GrantError::internal)?;
    let grant_id = uuid::Uuid::new_v4().to_string();
    let refresh = start_refresh_family(
        state,
        client,
        &user.id,
        &grant_id,
        RefreshGrant {
            scopes: scopes.clone(),
            auth_time: session.auth_time,
            sid: Some(session.sid.clone()),
            claims: Default::default(),
        },
        now,
    )
    .await?;
    let token_grant = Grant {
        issuer: &state.config.server.issuer,
        client_id: &client.id,
        scopes: &scopes,
        auth_time: Some(session.auth_time),
        sid: Some(&session.sid),
        grant_id: Some(&grant_id),
        audience: &state.config.server.issuer,
        amr: PASSWORD_AMR,
        now,
    };
    let body = mint(state, &token_grant, &user, None, &[], &[], refresh).await?;
    Ok(Issued::for_user(body, &user.id))
}
