//! `POST /token` (RFC 6749 §3.2, §4.1.3, §5; OIDC Core §3.1.3).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};

use super::AppState;
use super::authorize::is_form;
use super::client_auth::{TokenFailure, authenticate_client, internal, no_store};
use crate::audit::{Context, Event};
use crate::authn::{Attempt, SignInError};
use crate::oidc::claims::{OFFLINE_ACCESS, OPENID, UserClaims};
use crate::oidc::params::Params;
use crate::oidc::pkce;
use crate::oidc::registration::GrantType;
use crate::oidc::tokens::{ACCESS_TOKEN_TYP, Grant, access_token_claims, at_hash, id_token_claims};
use crate::oidc::{Error, ErrorCode};
use crate::sessions::{FamilyStart, Redemption, RefreshGrant, RefreshOutcome, RefreshPolicy};
use crate::storage::{ClientRecord, UserRecord, unix_now};

pub fn router() -> Router<AppState> {
    Router::new().route("/token", post(token))
}

async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = state.client_ip(peer.ip(), &headers);
    let audit = state.audit_context(peer, &headers);
    match handle(&state, peer, &headers, &body, &audit).await {
        Ok(body) => {
            let mut response = (StatusCode::OK, Json(body)).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(failure) => failure.into_response(),
    }
}

async fn handle(
    state: &AppState,
    peer: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
    audit: &Context,
) -> Result<Value, TokenFailure> {
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
    // At the password grant the trail records the end user's IP (asserted by the
    // first-party client), not its server's.
    let end_user =
        (grant == GrantType::Password).then(|| end_user_ip(state, &client, peer, headers));
    let audit = &match end_user {
        Some(ip) => Context {
            ip: Some(ip.to_string()),
            ..audit.clone()
        },
        None => audit.clone(),
    };
    let issued = match (grant, end_user) {
        (GrantType::Password, Some(ip)) => {
            let origin = super::pages::session_origin(headers, ip);
            password(state, &client, &params, ip, &origin, audit).await
        }
        (GrantType::AuthorizationCode, _) => {
            authorization_code(state, &client, &params, audit).await
        }
        (GrantType::RefreshToken, _) => refresh_token(state, &client, &params, audit).await,
        _ => client_credentials(state, &client, &params).await,
    }?;
    state.metrics.token_issued(grant.as_str());
    let mut event = Event::success("token.issued")
        .client(&client.id)
        .detail("grant_type", grant.as_str());
    if let Some(scope) = issued.body.get("scope").and_then(Value::as_str) {
        event = event.detail("scope", scope);
    }
    event = match &issued.user {
        Some(sub) => event.actor(format!("client:{}", client.id)).subject(sub),
        None => event.actor(format!("client:{}", client.id)),
    };
    state.audit(audit, event);
    Ok(issued.body)
}

/// A token response and the user it was issued for (none for client credentials).
struct Issued {
    body: Value,
    user: Option<String>,
}

impl Issued {
    fn for_user(body: Value, user: &str) -> Self {
        Self {
            body,
            user: Some(user.to_string()),
        }
    }
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6; OIDC Core §3.1.3.2.
async fn authorization_code(
    state: &AppState,
    client: &ClientRecord,
    params: &Params,
    audit: &Context,
) -> Result<Issued, TokenFailure> {
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
        .map_err(|e| internal(&e))?
        .filter(|u| !u.disabled)
        .ok_or_else(bad_code)?;

    // The grant id names this exchange and the refresh family it starts.
    let grant_id = uuid::Uuid::new_v4().to_string();
    match state
        .sessions
        .redeem_code(code, &grant_id, now)
        .await
        .map_err(|e| internal(&e))?
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

fn code_replayed(state: &AppState, audit: &Context, client: &ClientRecord, user_id: &str) {
    state.audit(
        audit,
        Event::failure("token.code_replay")
            .actor(format!("client:{}", client.id))
            .subject(user_id)
            .client(&client.id)
            .detail("revoked", "the grant the code issued"),
    );
}

/// Every sign-in is by password today (OIDC Core §2 `amr`, RFC 8176 `pwd`).
const PASSWORD_AMR: &[&str] = &["pwd"];

/// The end user's IP: the header named by `ratelimit.client_ip_header` when `client`
/// is a first-party client that has just authenticated with its secret, else `peer`
/// (already resolved through trusted proxies).
pub fn end_user_ip(
    state: &AppState,
    client: &ClientRecord,
    peer: IpAddr,
    headers: &HeaderMap,
) -> IpAddr {
    // DESIGN.md "Password grant and rate limits": the asserted IP is trusted only from
    // an authenticated first-party client. A public client authenticates nothing
    // (RFC 6749 §2.1), so anyone could name it and pick a fresh IP per guess.
    if client.is_public() || !client.first_party {
        return peer;
    }
    state
        .config
        .ratelimit
        .client_ip_header
        .as_deref()
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
        .unwrap_or(peer)
}

/// RFC 6749 §4.3, for the first-party frontend's server only (DESIGN.md "Password
/// grant and rate limits"). Answers exactly as the code flow would for the same user and
/// scopes; the sign-in is a fresh authentication (`auth_time` = now).
async fn password(
    state: &AppState,
    client: &ClientRecord,
    params: &Params,
    ip: IpAddr,
    origin: &crate::storage::SessionOrigin,
    audit: &Context,
) -> Result<Issued, TokenFailure> {
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
        Err(SignInError::Limited(wait)) => return Err(TokenFailure::Limited(wait)),
        // RFC 6749 §5.2: wrong credentials are invalid_grant; one message for every cause.
        Err(SignInError::Rejected) => {
            return Err(Error::invalid_grant("incorrect username or password").into());
        }
        Err(SignInError::Busy) => return Err(TokenFailure::Busy),
        Err(SignInError::Internal(e)) => return Err(internal(&e)),
    };
    let now = unix_now();
    // A server-side session anchors `sid` and `auth_time`, so logout can end what this
    // sign-in started; no cookie is handed out.
    let (_, session) = state
        .sessions
        .start(&user.id, PASSWORD_AMR, origin, None, now)
        .await
        .map_err(|e| internal(&e))?;
    state
        .store
        .add_session_client(&session.sid, &client.id, now)
        .await
        .map_err(|e| internal(&e))?;
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

/// Starts a refresh family for a client with the `refresh_token` grant. Without
/// `offline_access` the family lives with the browser session `grant.sid`.
async fn start_refresh_family(
    state: &AppState,
    client: &ClientRecord,
    user_id: &str,
    grant_id: &str,
    grant: RefreshGrant,
    now: i64,
) -> Result<Option<String>, TokenFailure> {
    if !allows(client, GrantType::RefreshToken) {
        return Ok(None);
    }
    let offline = grant.scopes.iter().any(|s| s == OFFLINE_ACCESS);
    let bound_sid = if offline { None } else { grant.sid.as_deref() };
    let token = state
        .sessions
        .issue_refresh(
            &FamilyStart {
                family_id: grant_id,
                client_id: &client.id,
                user_id,
                bound_sid,
            },
            &grant,
            refresh_policy(state),
            now,
        )
        .await
        .map_err(|e| internal(&e))?;
    Ok(Some(token))
}

fn allows(client: &ClientRecord, grant: GrantType) -> bool {
    client.grant_types.iter().any(|g| g == grant.as_str())
}

pub fn refresh_policy(state: &AppState) -> RefreshPolicy {
    let t = &state.config.tokens;
    RefreshPolicy {
        idle_seconds: t.refresh_idle_days as i64 * 86_400,
        absolute_seconds: state.refresh_lifetime(),
        grace_seconds: t.refresh_grace_seconds as i64,
    }
}

/// A replayed code: its grant (access token and refresh family) is revoked
/// (RFC 6749 §4.1.2).
async fn revoke_grant(
    state: &AppState,
    grant_id: Option<&str>,
    now: i64,
) -> Result<(), TokenFailure> {
    if let Some(grant_id) = grant_id {
        let policy = refresh_policy(state);
        let until = now
            + policy
                .absolute_seconds
                .max(state.config.tokens.access_token_seconds as i64);
        state
            .store
            .revoke_family(grant_id, until, now)
            .await
            .map_err(|e| internal(&e))?;
        tracing::warn!(grant = %grant_id, "authorization code replayed; its grant is revoked");
    }
    Ok(())
}

/// RFC 6749 §6. Rotation and the grace window live in `sessions::refresh`.
async fn refresh_token(
    state: &AppState,
    client: &ClientRecord,
    params: &Params,
    audit: &Context,
) -> Result<Issued, TokenFailure> {
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| Error::invalid_request("refresh_token is missing"))?;
    let bad = || {
        TokenFailure::from(Error::invalid_grant(
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
        .map_err(|e| internal(&e))?;
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

/// RFC 6749 §4.4: a confidential client acting for itself. Scopes come from the
/// client's allowed list; `resource` (RFC 8707) sets the audience.
async fn client_credentials(
    state: &AppState,
    client: &ClientRecord,
    params: &Params,
) -> Result<Issued, TokenFailure> {
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
        .map_err(|e| internal(&e))?;
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

/// Signs the access token and, for OpenID requests, the ID token; adds the refresh
/// token when there is one. Both signatures run as one job on a signing thread (the
/// ID token's `at_hash` needs the signed access token).
pub async fn mint(
    state: &AppState,
    grant: &Grant<'_>,
    user: &UserRecord,
    nonce: Option<&str>,
    id_token_claims_requested: &[String],
    userinfo_claims_requested: &[String],
    refresh_token: Option<String>,
) -> Result<Value, TokenFailure> {
    let tokens = &state.config.tokens;
    let access_lifetime = tokens.access_token_seconds as i64;
    let jti = uuid::Uuid::new_v4().to_string();
    let access_claims = access_token_claims(
        grant,
        &user.id,
        &jti,
        access_lifetime,
        userinfo_claims_requested,
    );
    // at_hash is added on the signing thread, once the access token exists.
    let id_claims = grant.scopes.iter().any(|s| s == OPENID).then(|| {
        id_token_claims(
            grant,
            &user_claims(user),
            nonce,
            None,
            tokens.id_token_seconds as i64,
            id_token_claims_requested,
        )
    });
    let (access, id_token) = state
        .keys
        .sign_with(move |keys| {
            let access = keys.sign(Some(ACCESS_TOKEN_TYP), access_claims)?;
            let id_token = match id_claims {
                Some(mut claims) => {
                    claims.insert("at_hash".into(), json!(at_hash(&access)));
                    Some(keys.sign(None, claims)?)
                }
                None => None,
            };
            Ok::<_, crate::keys::TokenError>((access, id_token))
        })
        .await
        .and_then(|signed| signed)
        .map_err(|e| internal(&e))?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": access_lifetime,
        "scope": grant.scopes.join(" "),
    });
    if let Some(id_token) = id_token {
        body["id_token"] = json!(id_token);
    }
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = json!(refresh);
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
