//! `POST /token` (RFC 6749 §3.2, §5; OIDC Core §3.1.3): parses the request,
//! authenticates the client, hands the grant to `grants`, renders the answer.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

use super::AppState;
use super::authorize::is_form;
use super::client_auth::{TokenFailure, authenticate_client, no_store};
use crate::audit::{Context, Event};
use crate::grants::{authorization_code, client_credentials, password, refresh_token};
use crate::oidc::params::Params;
use crate::oidc::registration::GrantType;
use crate::oidc::{Error, ErrorCode};
use crate::storage::ClientRecord;

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
    let grants = &state.grants;
    let issued = match (grant, end_user) {
        (GrantType::Password, Some(ip)) => {
            let origin = super::pages::session_origin(headers, ip);
            password::exchange(grants, &client, &params, ip, &origin, audit).await
        }
        (GrantType::AuthorizationCode, _) => {
            authorization_code::exchange(grants, &client, &params, audit).await
        }
        (GrantType::RefreshToken, _) => {
            refresh_token::exchange(grants, &client, &params, audit).await
        }
        _ => client_credentials::exchange(grants, &client, &params).await,
    }
    .map_err(TokenFailure::from)?;
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
