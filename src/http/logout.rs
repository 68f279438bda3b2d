//! `GET/POST /logout`: the end_session_endpoint of OpenID Connect RP-Initiated Logout 1.0.
//! The rules are in `oidc::logout`; this module verifies the hint, finds the client and
//! the browser's session, and answers with a redirect, a confirmation page or a page.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use std::net::SocketAddr;

use super::AppState;
use super::authorize::{current_session, is_form};
use super::error::Unavailable;
use super::pages;
use crate::oidc::logout::{
    Hint, LogoutError, LogoutParams, client_of, hint_matches, redirect_target,
};
use crate::oidc::params::Params;
use crate::storage::{SessionRecord, unix_now};

pub fn router() -> Router<AppState> {
    Router::new().route("/logout", get(logout_get).post(logout_post))
}

async fn logout_get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let audit = state.audit_context(state.client_ip(peer.ip(), &headers), &headers);
    logout(state, jar, params, audit).await
}

/// §2: the parameters may also be form-encoded in a POST. The confirmation form posts
/// here too, with `decision=logout` and its CSRF token.
async fn logout_post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = if is_form(&headers) {
        Params::parse(&body)
    } else {
        Params::default()
    };
    let audit = state.audit_context(state.client_ip(peer.ip(), &headers), &headers);
    logout(state, jar, params, audit).await
}

fn refused(state: &AppState, error: &LogoutError) -> Response {
    // §3: an invalid request is never redirected anywhere.
    pages::error_page(
        state,
        StatusCode::BAD_REQUEST,
        "This sign-out request cannot be completed",
        &error.to_string(),
    )
}

fn signed_out(state: &AppState, jar: CookieJar) -> Response {
    let jar = pages::remove_session_cookie(state, jar);
    (
        jar,
        pages::render(
            state,
            StatusCode::OK,
            "message.html",
            minijinja::context! { title => "You are signed out", message => "You can close this window." },
        ),
    )
        .into_response()
}

fn confirm_purpose(session: &SessionRecord) -> String {
    format!("logout:{}", session.sid)
}

async fn logout(
    state: AppState,
    jar: CookieJar,
    params: Params,
    audit: crate::audit::Context,
) -> Response {
    let request = match LogoutParams::parse(&params) {
        Ok(r) => r,
        Err(e) => return refused(&state, &e),
    };
    let hint = match &request.id_token_hint {
        None => None,
        Some(token) => {
            let verified = state.keys.current().verify(token).ok();
            match verified.and_then(|(claims, typ)| {
                Hint::from_claims(&claims, typ.as_deref(), &state.config.server.issuer)
            }) {
                Some(h) => Some(h),
                None => return refused(&state, &LogoutError::BadHint),
            }
        }
    };
    let client_id = match client_of(&request, hint.as_ref()) {
        Ok(c) => c,
        Err(e) => return refused(&state, &e),
    };
    let client = match &client_id {
        None => None,
        Some(id) => match state.clients.get(id).await {
            Ok(Some(c)) => Some(c),
            Ok(None) => return refused(&state, &LogoutError::UnknownClient),
            Err(e) => return Unavailable::log(&e).into_response(),
        },
    };
    let target = match redirect_target(
        &request,
        client
            .as_deref()
            .map(|c| c.post_logout_redirect_uris.as_slice()),
    ) {
        Ok(t) => t,
        Err(e) => return refused(&state, &e),
    };
    let session = match current_session(&state, &jar).await {
        Ok(s) => s,
        Err(response) => return *response,
    };
    let confirmed = params.get("decision") == Some("logout");
    let finish = |jar: CookieJar| match &target {
        Some(url) => (
            pages::remove_session_cookie(&state, jar),
            Redirect::to(url.as_str()),
        )
            .into_response(),
        None => signed_out(&state, jar),
    };
    let now = unix_now();
    let ended = |user: &str, sid: &str| {
        let mut event = crate::audit::Event::success("logout")
            .user(user)
            .detail("sessions", "one")
            .detail("via", "end_session_endpoint")
            .detail("sid", sid);
        if let Some(client) = &client_id {
            event = event.client(client);
        }
        state.audit(&audit, event);
    };
    let Some(session) = session else {
        // No session in this browser. A hint still names the session its ID token came
        // from (a first-party frontend's password-grant sign-in has no oxidp cookie at
        // all): the RP that holds that ID token may end it. A replayed confirmation form
        // carries no hint and ends nothing.
        if let Some(hint) = &hint
            && let Some(sid) = hint.sid.as_deref()
        {
            match state.sessions.end(sid, now).await {
                Ok(true) => ended(&hint.sub, sid),
                // Already ended (a replayed hint): nothing happened, nothing to record.
                Ok(false) => {}
                Err(e) => return Unavailable::log(&e).into_response(),
            }
        }
        return finish(jar);
    };
    let proven = hint
        .as_ref()
        .is_some_and(|h| hint_matches(h, &session.sid, &session.user_id));
    let csrf_ok = confirmed
        && pages::csrf_ok(
            &state,
            &jar,
            &confirm_purpose(&session),
            params.get("csrf_token"),
        );
    if confirmed && !csrf_ok {
        return pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "Go back, reload the page and try again.",
        );
    }
    if !proven && !csrf_ok {
        return confirmation(
            &state,
            jar,
            &session,
            &request,
            client_id.as_deref(),
            client.as_deref().and_then(|c| c.name.clone()),
        )
        .await;
    }
    if let Err(e) = state.sessions.end(&session.sid, now).await {
        return Unavailable::log(&e).into_response();
    }
    ended(&session.user_id, &session.sid);
    finish(jar)
}

/// §2: without a hint naming this session, the user confirms (a CSRF-protected form
/// that carries the request's parameters back).
async fn confirmation(
    state: &AppState,
    jar: CookieJar,
    session: &SessionRecord,
    request: &LogoutParams,
    client_id: Option<&str>,
    client_name: Option<String>,
) -> Response {
    let username = match state.store.find_user_by_id(&session.user_id).await {
        Ok(Some(u)) => u.username,
        Ok(None) => String::new(),
        Err(e) => return Unavailable::log(&e).into_response(),
    };
    let (jar, secret) = pages::csrf_secret(state, jar);
    let context = minijinja::context! {
        csrf_token => pages::csrf_token(&secret, &confirm_purpose(session)),
        username => username,
        client_name => client_name.or_else(|| client_id.map(str::to_string)),
        client_id => client_id,
        post_logout_redirect_uri => request.post_logout_redirect_uri.clone(),
        state => request.state.clone(),
    };
    (
        jar,
        pages::render(state, StatusCode::OK, "logout.html", context),
    )
        .into_response()
}
