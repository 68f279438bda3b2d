//! The hosted `/login` and `/consent` pages. Both resume a pending authorization
//! request (`req`), and every POST carries a CSRF token bound to browser and request.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use super::AppState;
use super::authorize::{
    act, current_session, expired_page, finish, is_form, issue, next_step, proceed,
};
use super::error::Unavailable;
use super::pages;
use crate::authn::{Attempt, SignInError};
use crate::oidc::authorize::AuthorizationRequest;
use crate::oidc::claims::{canonical_scope, describe_claim, describe_scope};
use crate::oidc::decision::{CLAIM_ITEM, Step, consent_items};
use crate::oidc::params::Params;
use crate::oidc::{Error, ErrorCode};
use crate::storage::unix_now;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login_submit))
        .route("/consent", get(consent_page).post(consent_submit))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    req: Option<String>,
}

/// The pending request named by `req`, or a response explaining it is gone.
async fn pending(state: &AppState, req: &str) -> Result<AuthorizationRequest, Box<Response>> {
    match state.sessions.load_request(req, unix_now()).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(Box::new(expired_page(state))),
        Err(e) => Err(Box::new(Unavailable::log(&e).into_response())),
    }
}

async fn client_name(state: &AppState, client_id: &str) -> String {
    match state.clients.get(client_id).await {
        Ok(Some(c)) => c.name.clone().unwrap_or_else(|| c.id.clone()),
        _ => client_id.to_string(),
    }
}

#[derive(Serialize)]
struct LoginContext<'a> {
    client_name: Option<String>,
    req: Option<&'a str>,
    csrf_token: String,
    username: &'a str,
    error: Option<&'a str>,
    allow_registration: bool,
    forgot_password: bool,
}

async fn login_form(
    state: &AppState,
    jar: CookieJar,
    req: Option<&str>,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let client_name = match req {
        Some(r) => match pending(state, r).await {
            Ok(request) => Some(client_name(state, &request.client_id).await),
            Err(response) => return *response,
        },
        None => None,
    };
    let (jar, secret) = pages::csrf_secret(state, jar);
    let context = LoginContext {
        client_name,
        req,
        csrf_token: pages::csrf_token(&secret, req.unwrap_or_default()),
        username,
        error,
        allow_registration: state.config.accounts.allow_registration,
        forgot_password: true,
    };
    (jar, pages::render(state, status, "login.html", context)).into_response()
}

async fn login_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<PageQuery>,
) -> Response {
    let hint = match &q.req {
        Some(r) => match pending(&state, r).await {
            Ok(request) => request.login_hint.unwrap_or_default(),
            Err(response) => return *response,
        },
        None => String::new(),
    };
    login_form(&state, jar, q.req.as_deref(), &hint, None, StatusCode::OK).await
}

const BAD_CREDENTIALS: &str = "Incorrect username or password.";

async fn login_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = if is_form(&headers) {
        Params::parse(&body)
    } else {
        Params::default()
    };
    let req = form.get("req").map(str::to_string);
    if form.check_well_formed().is_err()
        || !pages::csrf_ok(
            &state,
            &jar,
            req.as_deref().unwrap_or_default(),
            form.get("csrf_token"),
        )
    {
        return pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "Go back, reload the page and try again.",
        );
    }
    let request = match &req {
        Some(r) => match pending(&state, r).await {
            Ok(request) => Some(request),
            Err(response) => return *response,
        },
        None => None,
    };
    let username = form.get("username").unwrap_or_default().trim().to_string();
    // The page never trusts an asserted-IP header (a browser cannot choose its IP); only
    // X-Forwarded-For from a trusted reverse proxy.
    let ip = state.client_ip(peer.ip(), &headers);
    let password = SecretString::from(form.get("password").unwrap_or_default().to_string());
    let audit = state.audit_context(ip, &headers);
    let attempt = Attempt {
        ip,
        context: &audit,
        client_id: request.as_ref().map(|r| r.client_id.as_str()),
    };
    let user = match state.sign_in.sign_in(&username, &password, attempt).await {
        Ok(user) => user,
        Err(SignInError::Limited(wait)) => {
            let minutes = wait.seconds().div_ceil(60);
            let message = format!("Too many failed attempts. Try again in {minutes} minute(s).");
            let mut response = login_form(
                &state,
                jar,
                req.as_deref(),
                &username,
                Some(&message),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await;
            if let Ok(v) = axum::http::HeaderValue::from_str(&wait.seconds().to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
            return response;
        }
        Err(SignInError::Rejected) => {
            return login_form(
                &state,
                jar,
                req.as_deref(),
                &username,
                Some(BAD_CREDENTIALS),
                StatusCode::OK,
            )
            .await;
        }
        Err(SignInError::Busy) => {
            let mut response = pages::error_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Too busy right now",
                "Too many sign-ins are being checked at the moment. Go back and try again in a few seconds.",
            );
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            return response;
        }
        Err(SignInError::Internal(e)) => return Unavailable::log(&e).into_response(),
    };
    let origin = pages::session_origin(&headers, ip);
    let (jar, session) = match pages::sign_in(&state, jar, &user.id, &origin).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    match request {
        Some(request) => proceed(&state, jar, request, req, Some(session), true).await,
        // Signed in without an application waiting: the account page.
        None => (jar, Redirect::to("/account")).into_response(),
    }
}

#[derive(Serialize)]
struct ScopeItem {
    name: String,
    description: String,
}

async fn consent_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(req) = q.req else {
        return expired_page(&state);
    };
    let request = match pending(&state, &req).await {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let session = match current_session(&state, &jar).await {
        Ok(s) => s,
        Err(response) => return *response,
    };
    // The page opened directly must not stand in for a step the request still needs
    // (a sign-in for prompt=login or max_age, another user's session).
    let step = match next_step(&state, &request, session.as_ref(), false).await {
        Ok(step) => step,
        Err(response) => return *response,
    };
    let session = match (step, session) {
        (Step::Consent | Step::Issue, Some(s)) => s,
        (Step::Issue, None) => return expired_page(&state),
        (step, _) => return act(&state, step, &request, Some(req)).await,
    };
    let username = match state.store.find_user_by_id(&session.user_id).await {
        Ok(Some(u)) => u.username,
        Ok(None) => return Redirect::to(&format!("/login?req={req}")).into_response(),
        Err(e) => return Unavailable::log(&e).into_response(),
    };
    let mut scopes: Vec<ScopeItem> = Vec::new();
    for item in consent_items(&request) {
        let (name, description) = match item.strip_prefix(CLAIM_ITEM) {
            Some(claim) => (item.clone(), describe_claim(claim)),
            None => (item.clone(), describe_scope(&item)),
        };
        scopes.push(ScopeItem { name, description });
    }
    let (jar, secret) = pages::csrf_secret(&state, jar);
    let context = serde_json::json!({
        "client_name": client_name(&state, &request.client_id).await,
        "client_id": request.client_id,
        "username": username,
        "scopes": scopes,
        "req": req,
        "csrf_token": pages::csrf_token(&secret, &req),
    });
    (
        jar,
        pages::render(&state, StatusCode::OK, "consent.html", context),
    )
        .into_response()
}

async fn consent_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = if is_form(&headers) {
        Params::parse(&body)
    } else {
        Params::default()
    };
    let Some(req) = form.get("req").map(str::to_string) else {
        return expired_page(&state);
    };
    if form.check_well_formed().is_err()
        || !pages::csrf_ok(&state, &jar, &req, form.get("csrf_token"))
    {
        return pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "Go back, reload the page and try again.",
        );
    }
    let request = match pending(&state, &req).await {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let session = match current_session(&state, &jar).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to(&format!("/login?req={req}")).into_response(),
        Err(response) => return *response,
    };
    let audit = state.audit_context(state.client_ip(peer.ip(), &headers), &headers);
    let consent_event = |event: crate::audit::Event| {
        event
            .user(&session.user_id)
            .client(&request.client_id)
            .detail("scope", canonical_scope(&request.scopes))
    };
    match form.get("decision") {
        Some("allow") => {
            // Every rule is checked again here: allowing consent never stands in for a
            // sign-in the request still needs (OIDC Core §3.1.2.1 prompt, max_age).
            let step = match next_step(&state, &request, Some(&session), true).await {
                Ok(step) => step,
                Err(response) => return *response,
            };
            if step != Step::Issue {
                return act(&state, step, &request, Some(req)).await;
            }
            // OIDC Core §3.1.2.4: remembered are exactly the scopes and claims shown.
            let items = consent_items(&request).join(" ");
            if let Err(e) = state
                .store
                .grant_consent(&session.user_id, &request.client_id, &items, unix_now())
                .await
            {
                return Unavailable::log(&e).into_response();
            }
            state.audit(
                &audit,
                consent_event(crate::audit::Event::success("consent.granted")),
            );
            issue(&state, &request, Some(&req), &session).await
        }
        Some("deny") => {
            state.audit(
                &audit,
                consent_event(crate::audit::Event::failure("consent.denied")),
            );
            // RFC 6749 §4.1.2.1: the resource owner denied the request.
            let e = Error::new(ErrorCode::AccessDenied, "the user denied the request");
            finish(&state, &request, Some(&req), Err(&e)).await
        }
        _ => pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Unknown choice",
            "Choose Allow or Deny.",
        ),
    }
}
