//! Hosted account pages: `/register`, `/forgot-password`, `/reset-password`,
//! `/verify-email`, `/account`. Same rules as the JSON API (`accounts::selfservice`);
//! every form carries a CSRF token bound to this browser and to what the form is for.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::authorize::{current_session, is_form, proceed};
use super::error::Unavailable;
use super::pages;
use crate::accounts::{FieldErrors, ProfileEdit, Registration, SelfService, SelfServiceError};
use crate::authn::{Attempt, ReauthError};
use crate::oidc::authorize::AuthorizationRequest;
use crate::oidc::params::Params;
use crate::ratelimit::RetryAfter;
use crate::storage::{KeepSession, SessionRecord, UserRecord, unix_now};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/register", get(register_page).post(register_submit))
        .route("/forgot-password", get(forgot_page).post(forgot_submit))
        .route("/reset-password", get(reset_page).post(reset_submit))
        .route("/verify-email", get(verify_page))
        .route("/account", get(account_page).post(account_submit))
        .route(
            "/account/sessions",
            get(sessions_page).post(sessions_submit),
        )
}

#[derive(Debug, Deserialize)]
struct ReqQuery {
    req: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn expired_form(state: &AppState) -> Response {
    pages::error_page(
        state,
        StatusCode::BAD_REQUEST,
        "This form has expired",
        "Go back, reload the page and try again.",
    )
}

fn bad_link(state: &AppState) -> Response {
    pages::error_page(
        state,
        StatusCode::BAD_REQUEST,
        "This link is invalid or has expired",
        "Links work once and only for a limited time. Ask for a new one and use the latest mail.",
    )
}

fn message(state: &AppState, title: &str, text: &str) -> Response {
    pages::render(
        state,
        StatusCode::OK,
        "message.html",
        minijinja::context! { title => title, message => text },
    )
}

fn busy(state: &AppState) -> Response {
    let mut response = pages::error_page(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "Too busy right now",
        "Too many passwords are being checked at the moment. Go back and try again in a few seconds.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A submitted form: parsed, free of duplicate parameters, with a valid CSRF token
/// for `purpose`.
fn form(
    state: &AppState,
    jar: &CookieJar,
    headers: &HeaderMap,
    body: &[u8],
    purpose: impl Fn(&Params) -> String,
) -> Option<Params> {
    if !is_form(headers) {
        return None;
    }
    let form = Params::parse(body);
    if form.check_well_formed().is_err() {
        return None;
    }
    pages::csrf_ok(state, jar, &purpose(&form), form.get("csrf_token")).then_some(form)
}

fn field(form: &Params, name: &str) -> String {
    form.get(name).unwrap_or_default().to_string()
}

/// `Err(page)` when the IP is over `ratelimit.requests_per_minute_per_ip`; the page
/// shows the message inline via `rerender`.
async fn limited(
    state: &AppState,
    ip: IpAddr,
    rerender: impl FnOnce(String) -> Response,
) -> Result<(), Response> {
    match state.limits.request(ip, unix_now()).await {
        Ok(Ok(reached)) => {
            super::audit::requests_limit_reached(state, ip, reached);
            Ok(())
        }
        Ok(Err(wait)) => {
            let minutes = wait.seconds().div_ceil(60);
            let mut response = rerender(format!(
                "Too many requests. Try again in {minutes} minute(s)."
            ));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(v) = HeaderValue::from_str(&wait.seconds().to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Err(response)
        }
        Err(e) => Err(Unavailable::log(&e).into_response()),
    }
}

async fn pending(
    state: &AppState,
    req: Option<&str>,
) -> Result<Option<AuthorizationRequest>, Response> {
    let Some(req) = req else {
        return Ok(None);
    };
    match state.sessions.load_request(req, unix_now()).await {
        Ok(Some(r)) => Ok(Some(r)),
        Ok(None) => Err(super::authorize::expired_page(state)),
        Err(e) => Err(Unavailable::log(&e).into_response()),
    }
}

// ---- sign-up -------------------------------------------------------------------------

#[derive(Serialize, Default)]
struct RegisterContext {
    client_name: Option<String>,
    req: Option<String>,
    csrf_token: String,
    username: String,
    email: String,
    name: String,
    errors: FieldErrors,
    error: Option<String>,
}

fn registration_closed(state: &AppState) -> Response {
    pages::error_page(
        state,
        StatusCode::NOT_FOUND,
        "Sign-up is closed",
        "New accounts are not accepted here. Ask an administrator for one.",
    )
}

async fn client_name(state: &AppState, request: Option<&AuthorizationRequest>) -> Option<String> {
    let request = request?;
    match state.clients.get(&request.client_id).await {
        Ok(Some(c)) => Some(c.name.clone().unwrap_or_else(|| c.id.clone())),
        _ => Some(request.client_id.clone()),
    }
}

fn register_form(
    state: &AppState,
    jar: CookieJar,
    mut context: RegisterContext,
    status: StatusCode,
) -> Response {
    let (jar, secret) = pages::csrf_secret(state, jar);
    context.csrf_token = pages::csrf_token(&secret, &register_purpose(context.req.as_deref()));
    (jar, pages::render(state, status, "register.html", context)).into_response()
}

fn register_purpose(req: Option<&str>) -> String {
    format!("register:{}", req.unwrap_or_default())
}

async fn register_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<ReqQuery>,
) -> Response {
    if !state.config.accounts.allow_registration {
        return registration_closed(&state);
    }
    let request = match pending(&state, q.req.as_deref()).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let context = RegisterContext {
        client_name: client_name(&state, request.as_ref()).await,
        req: q.req,
        ..RegisterContext::default()
    };
    register_form(&state, jar, context, StatusCode::OK)
}

async fn register_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.config.accounts.allow_registration {
        return registration_closed(&state);
    }
    let Some(form) = form(&state, &jar, &headers, &body, |f| {
        register_purpose(f.get("req"))
    }) else {
        return expired_form(&state);
    };
    let req = form.get("req").map(str::to_string);
    let request = match pending(&state, req.as_deref()).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let mut context = RegisterContext {
        client_name: client_name(&state, request.as_ref()).await,
        req: req.clone(),
        username: field(&form, "username"),
        email: field(&form, "email"),
        name: field(&form, "name"),
        ..RegisterContext::default()
    };
    // The page never trusts an asserted-IP header; only a trusted proxy's X-Forwarded-For.
    let ip = state.client_ip(peer.ip(), &headers);
    let rerender_state = state.clone();
    let rerender_jar = jar.clone();
    let limited_context = RegisterContext {
        client_name: context.client_name.clone(),
        req: req.clone(),
        username: context.username.clone(),
        email: context.email.clone(),
        name: context.name.clone(),
        ..RegisterContext::default()
    };
    if let Err(response) = limited(&state, ip, move |error| {
        let context = RegisterContext {
            error: Some(error),
            ..limited_context
        };
        register_form(
            &rerender_state,
            rerender_jar,
            context,
            StatusCode::TOO_MANY_REQUESTS,
        )
    })
    .await
    {
        return response;
    }
    let registration = Registration {
        username: context.username.clone(),
        email: context.email.clone(),
        password: SecretString::from(field(&form, "password")),
        name: Some(context.name.clone()).filter(|n| !n.trim().is_empty()),
    };
    let immediate = state.config.accounts.sign_in_after_registration
        && !state.config.accounts.require_verified_email;
    // The link signs in this browser (and resumes `req`) when it is opened here.
    let binding = match pages::signup_binding(&state, &jar) {
        Some(browser_hash) if !immediate => Some(crate::accounts::SignupBinding {
            browser_hash,
            resume_request: req.clone(),
        }),
        _ => None,
    };
    let registered = match state.selfservice.register(registration, binding).await {
        Ok(r) => r,
        Err(SelfServiceError::Invalid(errors)) => {
            context.errors = errors;
            return register_form(&state, jar, context, StatusCode::BAD_REQUEST);
        }
        Err(SelfServiceError::UsernameTaken) => {
            context
                .errors
                .insert("username", "This username is taken.".into());
            return register_form(&state, jar, context, StatusCode::BAD_REQUEST);
        }
        Err(SelfServiceError::Busy) => return busy(&state),
        Err(e) => return Unavailable::log(&e).into_response(),
    };
    state.audit(
        &state.audit_context(ip, &headers),
        super::audit::registered(registered.user.as_ref(), "page"),
    );
    let check_mail = format!(
        "We sent a link to {}. Open it in this browser to verify your address and continue.",
        registered.email
    );
    // Verification first (the default): a new account and an address already in use
    // get the same status, page and cookies, so the page tells no one which addresses
    // have accounts (the owner got a mail instead). Signing in at once
    // (`accounts.sign_in_after_registration`) answers differently, by choice.
    let user = match registered.user {
        Some(user) if immediate => user,
        _ => return message(&state, "Check your e-mail", &check_mail),
    };
    let origin = pages::session_origin(&headers, ip);
    let (jar, session) = match pages::sign_in(&state, jar, &user.id, &origin).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    match request {
        // OIDC prompt=create: the authorization continues with the new account.
        Some(request) => proceed(&state, jar, request, req, Some(session), true).await,
        None => (jar, Redirect::to("/account")).into_response(),
    }
}

// ---- password reset ------------------------------------------------------------------

#[derive(Serialize, Default)]
struct EmailContext {
    csrf_token: String,
    email: String,
    errors: FieldErrors,
    error: Option<String>,
}

const FORGOT: &str = "forgot-password";

fn forgot_form(
    state: &AppState,
    jar: CookieJar,
    mut context: EmailContext,
    status: StatusCode,
) -> Response {
    let (jar, secret) = pages::csrf_secret(state, jar);
    context.csrf_token = pages::csrf_token(&secret, FORGOT);
    (
        jar,
        pages::render(state, status, "forgot_password.html", context),
    )
        .into_response()
}

async fn forgot_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    forgot_form(&state, jar, EmailContext::default(), StatusCode::OK)
}

async fn forgot_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = form(&state, &jar, &headers, &body, |_| FORGOT.to_string()) else {
        return expired_form(&state);
    };
    let email = field(&form, "email");
    let ip = state.client_ip(peer.ip(), &headers);
    let (s, j, e) = (state.clone(), jar.clone(), email.clone());
    if let Err(response) = limited(&state, ip, move |error| {
        let context = EmailContext {
            email: e,
            error: Some(error),
            ..EmailContext::default()
        };
        forgot_form(&s, j, context, StatusCode::TOO_MANY_REQUESTS)
    })
    .await
    {
        return response;
    }
    match state.selfservice.request_reset(&email).await {
        Ok(()) => message(
            &state,
            "Check your e-mail",
            &format!(
                "If an account uses {}, we sent it a link to choose a new password. The link works for one hour.",
                email.trim()
            ),
        ),
        Err(SelfServiceError::Invalid(errors)) => {
            let context = EmailContext {
                email,
                errors,
                ..EmailContext::default()
            };
            forgot_form(&state, jar, context, StatusCode::BAD_REQUEST)
        }
        Err(e) => Unavailable::log(&e).into_response(),
    }
}

#[derive(Serialize, Default)]
struct ResetContext {
    csrf_token: String,
    token: String,
    errors: FieldErrors,
    error: Option<String>,
}

fn reset_purpose(token: &str) -> String {
    format!("reset:{token}")
}

fn reset_form(
    state: &AppState,
    jar: CookieJar,
    mut context: ResetContext,
    status: StatusCode,
) -> Response {
    let (jar, secret) = pages::csrf_secret(state, jar);
    context.csrf_token = pages::csrf_token(&secret, &reset_purpose(&context.token));
    (
        jar,
        pages::render(state, status, "reset_password.html", context),
    )
        .into_response()
}

async fn reset_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<TokenQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    match state.selfservice.reset_token_is_live(&token).await {
        Ok(true) => reset_form(
            &state,
            jar,
            ResetContext {
                token,
                ..ResetContext::default()
            },
            StatusCode::OK,
        ),
        Ok(false) => bad_link(&state),
        Err(e) => Unavailable::log(&e).into_response(),
    }
}

async fn reset_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = form(&state, &jar, &headers, &body, |f| {
        reset_purpose(f.get("token").unwrap_or_default())
    }) else {
        return expired_form(&state);
    };
    let token = field(&form, "token");
    let ip = state.client_ip(peer.ip(), &headers);
    let (s, j, t) = (state.clone(), jar.clone(), token.clone());
    if let Err(response) = limited(&state, ip, move |error| {
        let context = ResetContext {
            token: t,
            error: Some(error),
            ..ResetContext::default()
        };
        reset_form(&s, j, context, StatusCode::TOO_MANY_REQUESTS)
    })
    .await
    {
        return response;
    }
    let password = SecretString::from(field(&form, "password"));
    match state.selfservice.confirm_reset(&token, &password).await {
        Ok(user_id) => {
            state.audit(
                &state.audit_context(ip, &headers),
                crate::audit::Event::success("password.reset").user(&user_id),
            );
            // Every session ended with the reset, this browser's too.
            let jar = pages::remove_session_cookie(&state, jar);
            (
                jar,
                message(
                    &state,
                    "Your password was changed",
                    "You were signed out everywhere. Sign in again with the new password.",
                ),
            )
                .into_response()
        }
        Err(SelfServiceError::Invalid(errors)) => reset_form(
            &state,
            jar,
            ResetContext {
                token,
                errors,
                ..ResetContext::default()
            },
            StatusCode::BAD_REQUEST,
        ),
        Err(SelfServiceError::InvalidToken) => bad_link(&state),
        Err(SelfServiceError::Busy) => busy(&state),
        Err(e) => Unavailable::log(&e).into_response(),
    }
}

// ---- e-mail verification -------------------------------------------------------------

/// `GET /verify-email?token=…` verifies at once: the link proves only that its reader
/// can read the mailbox, which is exactly what is being verified, so a mail scanner
/// that follows it does no harm.
async fn verify_page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let ip = state.client_ip(peer.ip(), &headers);
    let s = state.clone();
    if let Err(response) = limited(&state, ip, move |error| {
        pages::error_page(
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            &error,
        )
    })
    .await
    {
        return response;
    }
    match state
        .selfservice
        .verify_email(q.token.as_deref().unwrap_or_default())
        .await
    {
        Ok(token) => {
            state.audit(
                &state.audit_context(ip, &headers),
                crate::audit::Event::success("email.verified").user(&token.user_id),
            );
            let same_browser = token
                .browser_hash
                .as_deref()
                .is_some_and(|h| pages::same_browser(&state, &jar, h));
            if same_browser {
                return signed_up(&state, jar, &headers, ip, &token).await;
            }
            message(
                &state,
                "Your e-mail address is verified",
                "Thank you. You can close this page.",
            )
        }
        Err(SelfServiceError::InvalidToken) => bad_link(&state),
        Err(SelfServiceError::EmailTaken) => pages::error_page(
            &state,
            StatusCode::CONFLICT,
            "This address belongs to another account now",
            "Your account keeps its current address. Choose another one on your account page.",
        ),
        Err(e) => Unavailable::log(&e).into_response(),
    }
}

/// A sign-up's link opened in the browser that signed up: that browser proved the
/// password at sign-up and now the mailbox, so it is signed in, and the authorization
/// request it came with (`prompt=create`, the login page's sign-up link) continues.
async fn signed_up(
    state: &AppState,
    jar: CookieJar,
    headers: &HeaderMap,
    ip: IpAddr,
    token: &crate::storage::AccountToken,
) -> Response {
    let user = match state.store.find_user_by_id(&token.user_id).await {
        Ok(Some(user)) if !user.disabled => user,
        Ok(_) => return bad_link(state),
        Err(e) => return Unavailable::log(&e).into_response(),
    };
    let origin = pages::session_origin(headers, ip);
    let (jar, session) = match pages::sign_in(state, jar, &user.id, &origin).await {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    state.audit(
        &state.audit_context(ip, headers),
        crate::audit::Event::success("login.succeeded")
            .user(&user.id)
            .detail("method", "signup_link"),
    );
    let request = match &token.resume_request {
        Some(req) => state
            .sessions
            .load_request(req, unix_now())
            .await
            .ok()
            .flatten(),
        None => None,
    };
    match request {
        Some(request) => {
            proceed(
                state,
                jar,
                request,
                token.resume_request.clone(),
                Some(session),
                true,
            )
            .await
        }
        // No request, or it expired meanwhile: the account page.
        None => (jar, Redirect::to("/account")).into_response(),
    }
}

// ---- the account page ----------------------------------------------------------------

#[derive(Serialize, Default)]
struct ProfileForm {
    email: String,
    name: String,
    given_name: String,
    family_name: String,
    picture: String,
    locale: String,
}

impl ProfileForm {
    fn of(user: &UserRecord) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            email: user.email.clone(),
            name: text(&user.name),
            given_name: text(&user.given_name),
            family_name: text(&user.family_name),
            picture: text(&user.picture),
            locale: text(&user.locale),
        }
    }
}

#[derive(Serialize)]
struct AccountView {
    username: String,
    email_verified: bool,
    pending_email: Option<String>,
}

#[derive(Serialize)]
struct AccountContext {
    csrf_token: String,
    user: AccountView,
    roles: Vec<String>,
    form: ProfileForm,
    errors: FieldErrors,
    error: Option<String>,
    notice: Option<String>,
}

fn account_purpose(session: &SessionRecord) -> String {
    format!("account:{}", session.sid)
}

struct AccountPage {
    form: ProfileForm,
    errors: FieldErrors,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
    /// Seconds for `Retry-After` when a limit refused the change.
    retry_after: Option<u64>,
}

impl AccountPage {
    fn of(user: &UserRecord) -> Self {
        Self {
            form: ProfileForm::of(user),
            errors: FieldErrors::new(),
            error: None,
            notice: None,
            status: StatusCode::OK,
            retry_after: None,
        }
    }
}

fn account_view(
    state: &AppState,
    jar: CookieJar,
    session: &SessionRecord,
    user: &UserRecord,
    page: AccountPage,
) -> Response {
    let (jar, secret) = pages::csrf_secret(state, jar);
    let context = AccountContext {
        csrf_token: pages::csrf_token(&secret, &account_purpose(session)),
        user: AccountView {
            username: user.username.clone(),
            email_verified: user.email_verified,
            pending_email: user.pending_email.clone(),
        },
        roles: user.roles.clone(),
        form: page.form,
        errors: page.errors,
        error: page.error,
        notice: page.notice,
    };
    let mut response = pages::render(state, page.status, "account.html", context);
    if let Some(v) = page
        .retry_after
        .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    (jar, response).into_response()
}

/// The signed-in user, or the response that sends the browser to sign in.
async fn signed_in(
    state: &AppState,
    jar: &CookieJar,
) -> Result<(SessionRecord, UserRecord), Response> {
    let session = match current_session(state, jar).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(Redirect::to("/login").into_response()),
        Err(response) => return Err(*response),
    };
    match state.store.find_user_by_id(&session.user_id).await {
        Ok(Some(user)) if !user.disabled => Ok((session, user)),
        Ok(_) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(Unavailable::log(&e).into_response()),
    }
}

async fn account_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (session, user) = match signed_in(&state, &jar).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    account_view(&state, jar, &session, &user, AccountPage::of(&user))
}

async fn account_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, user) = match signed_in(&state, &jar).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(form) = form(&state, &jar, &headers, &body, |_| account_purpose(&session)) else {
        return expired_form(&state);
    };
    let ip = state.client_ip(peer.ip(), &headers);
    let audit = state.audit_context(ip, &headers);
    let page = match form.get("action") {
        Some("profile") => save_profile(&state, &user, &form, ip, &audit).await,
        Some("password") => change_password(&state, &session, &user, &form, ip, &audit).await,
        Some("verification") => resend(&state, &user, ip).await,
        _ => Err(Box::new(pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Unknown action",
            "Go back and try again.",
        ))),
    };
    match page {
        Ok((user, page)) => account_view(&state, jar, &session, &user, page),
        Err(response) => *response,
    }
}

type Outcome = Result<(UserRecord, AccountPage), Box<Response>>;

/// The profile form's password field: its own name on the page, so its message does
/// not show on the password form's field of the same meaning.
const EMAIL_PASSWORD: &str = "email_password";

async fn save_profile(
    state: &AppState,
    user: &UserRecord,
    form: &Params,
    ip: IpAddr,
    audit: &crate::audit::Context,
) -> Outcome {
    let edit = ProfileEdit {
        name: Some(field(form, "name")),
        given_name: Some(field(form, "given_name")),
        family_name: Some(field(form, "family_name")),
        picture: Some(field(form, "picture")),
        locale: Some(field(form, "locale")),
        email: Some(field(form, "email")),
    };
    let typed = ProfileForm {
        email: field(form, "email"),
        name: field(form, "name"),
        given_name: field(form, "given_name"),
        family_name: field(form, "family_name"),
        picture: field(form, "picture"),
        locale: field(form, "locale"),
    };
    let reauth = SelfService::changes_email(user, &edit);
    let password = form
        .get(EMAIL_PASSWORD)
        .filter(|p| !p.is_empty())
        .map(|p| SecretString::from(p.to_string()));
    let update = state
        .selfservice
        .update_profile(user, &edit, password.as_ref());
    let result = if reauth {
        // ASVS 2.2.1: the limit is checked before argon2 runs, as at sign-in.
        let attempt = Attempt {
            ip,
            context: audit,
            client_id: None,
        };
        match state.sign_in.reauthenticate(user, attempt, update).await {
            Ok(result) => result,
            Err(ReauthError::Limited(wait)) => return Ok(limited_page(user, typed, wait)),
            Err(ReauthError::Internal(e)) => {
                return Err(Box::new(Unavailable::log(&e).into_response()));
            }
        }
    } else {
        update.await
    };
    match result {
        Ok(updated) => {
            state.audit(audit, super::audit::profile_updated(user, &updated));
            let mut page = AccountPage::of(&updated);
            page.notice = Some(match &updated.pending_email {
                Some(pending) if updated.pending_email != user.pending_email || reauth => {
                    format!(
                        "Profile saved. Your address changes to {pending} when you open the link we mailed there."
                    )
                }
                _ => "Profile saved.".into(),
            });
            Ok((updated, page))
        }
        Err(SelfServiceError::Invalid(mut errors)) => {
            // A wrong one was counted and audited by `reauthenticate`.
            if let Some(message) = errors.remove("current_password") {
                errors.insert(EMAIL_PASSWORD, message);
            }
            Ok((
                user.clone(),
                AccountPage {
                    form: typed,
                    errors,
                    error: None,
                    notice: None,
                    status: StatusCode::BAD_REQUEST,
                    retry_after: None,
                },
            ))
        }
        Err(SelfServiceError::Busy) => Err(Box::new(busy(state))),
        Err(SelfServiceError::NoAccount) => Err(Box::new(Redirect::to("/login").into_response())),
        Err(e) => Err(Box::new(Unavailable::log(&e).into_response())),
    }
}

fn limited_page(
    user: &UserRecord,
    form: ProfileForm,
    wait: RetryAfter,
) -> (UserRecord, AccountPage) {
    (
        user.clone(),
        AccountPage {
            form,
            errors: FieldErrors::new(),
            error: Some(format!(
                "Too many failed attempts. Try again in {} minute(s).",
                wait.seconds().div_ceil(60)
            )),
            notice: None,
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(wait.seconds()),
        },
    )
}

/// A wrong current password counts as a failed sign-in for the username. The other
/// sessions end unless the box is unticked (ASVS 3.3.3); this browser's stays.
async fn change_password(
    state: &AppState,
    session: &SessionRecord,
    user: &UserRecord,
    form: &Params,
    ip: IpAddr,
    audit: &crate::audit::Context,
) -> Outcome {
    let mut page = AccountPage::of(user);
    let current = SecretString::from(field(form, "current_password"));
    let new = SecretString::from(field(form, "new_password"));
    // An unticked checkbox sends nothing.
    let sign_out = form.get("sign_out_other_sessions").is_some();
    let keep = KeepSession {
        sid: Some(session.sid.clone()),
        family_id: None,
    };
    let change = state
        .selfservice
        .change_password(user, &current, &new, sign_out.then_some(&keep));
    let attempt = Attempt {
        ip,
        context: audit,
        client_id: None,
    };
    let result = match state.sign_in.reauthenticate(user, attempt, change).await {
        Ok(result) => result,
        Err(ReauthError::Limited(wait)) => {
            return Ok(limited_page(user, ProfileForm::of(user), wait));
        }
        Err(ReauthError::Internal(e)) => {
            return Err(Box::new(Unavailable::log(&e).into_response()));
        }
    };
    match result {
        Ok(()) => {
            state.audit(
                audit,
                crate::audit::Event::success("password.changed")
                    .user(&user.id)
                    .detail("signed_out_others", sign_out),
            );
            page.notice = Some(if sign_out {
                "Password changed. You were signed out everywhere else.".into()
            } else {
                "Password changed.".into()
            });
            Ok((user.clone(), page))
        }
        // A wrong current password was counted and audited by `reauthenticate`.
        Err(SelfServiceError::Invalid(errors)) => {
            page.errors = errors;
            page.status = StatusCode::BAD_REQUEST;
            Ok((user.clone(), page))
        }
        Err(SelfServiceError::Busy) => Err(Box::new(busy(state))),
        Err(SelfServiceError::NoAccount) => Err(Box::new(Redirect::to("/login").into_response())),
        Err(e) => Err(Box::new(Unavailable::log(&e).into_response())),
    }
}

async fn resend(state: &AppState, user: &UserRecord, ip: IpAddr) -> Outcome {
    let mut page = AccountPage::of(user);
    match state.limits.request(ip, unix_now()).await {
        Ok(Ok(reached)) => super::audit::requests_limit_reached(state, ip, reached),
        Ok(Err(wait)) => {
            page.error = Some(format!(
                "Too many requests. Try again in {} minute(s).",
                wait.seconds().div_ceil(60)
            ));
            page.status = StatusCode::TOO_MANY_REQUESTS;
            page.retry_after = Some(wait.seconds());
            return Ok((user.clone(), page));
        }
        Err(e) => return Err(Box::new(Unavailable::log(&e).into_response())),
    }
    if !user.email_verified
        && let Err(e) = state.selfservice.send_verification(user).await
    {
        return Err(Box::new(Unavailable::log(&e).into_response()));
    }
    page.notice = Some(format!(
        "We sent a new verification link to {}.",
        user.email
    ));
    Ok((user.clone(), page))
}

// ---- the user's sessions -------------------------------------------------------------

/// `2026-11-23 16:10 UTC`: the page has no script, so times are shown in UTC.
fn when(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => String::from("?"),
    }
}

fn sessions_purpose(session: &SessionRecord) -> String {
    format!("sessions:{}", session.sid)
}

async fn sessions_view(
    state: &AppState,
    jar: CookieJar,
    session: &SessionRecord,
    user: &UserRecord,
    notice: Option<&str>,
) -> Response {
    let sessions = match state.store.list_sessions(&user.id, unix_now()).await {
        Ok(s) => s,
        Err(e) => return Unavailable::log(&e).into_response(),
    };
    let items: Vec<serde_json::Value> = sessions
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.sid,
                "user_agent": s.user_agent,
                "ip": s.ip,
                "created": when(s.created_at),
                "last_seen": when(s.last_seen_at),
                "current": s.sid == session.sid,
            })
        })
        .collect();
    let (jar, secret) = pages::csrf_secret(state, jar);
    let context = serde_json::json!({
        "csrf_token": pages::csrf_token(&secret, &sessions_purpose(session)),
        "username": user.username,
        "sessions": items,
        "notice": notice,
    });
    (
        jar,
        pages::render(state, StatusCode::OK, "account_sessions.html", context),
    )
        .into_response()
}

async fn sessions_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (session, user) = match signed_in(&state, &jar).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    sessions_view(&state, jar, &session, &user, None).await
}

/// Signs out of one session (`sid`) or of all (`all=1`, which also revokes every
/// refresh token of the user).
async fn sessions_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, user) = match signed_in(&state, &jar).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(form) = form(&state, &jar, &headers, &body, |_| {
        sessions_purpose(&session)
    }) else {
        return expired_form(&state);
    };
    let now = unix_now();
    let audit = state.audit_context(state.client_ip(peer.ip(), &headers), &headers);
    let logout_event = |which: &str| {
        crate::audit::Event::success("logout")
            .user(&user.id)
            .detail("sessions", which)
            .detail("via", "page")
    };
    let signed_out = |state: &AppState, jar: CookieJar, text: &str| {
        let jar = pages::remove_session_cookie(state, jar);
        (jar, message(state, "You are signed out", text)).into_response()
    };
    if form.get("all") == Some("1") {
        if let Err(e) = state.sessions.end_all(&user.id, now).await {
            return Unavailable::log(&e).into_response();
        }
        state.audit(&audit, logout_event("all"));
        return signed_out(
            &state,
            jar,
            "You were signed out everywhere, and apps must sign you in again.",
        );
    }
    let Some(sid) = form.get("sid") else {
        return pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "No session chosen",
            "Go back and choose a session.",
        );
    };
    let owned = match state.store.list_sessions(&user.id, now).await {
        Ok(list) => list.iter().any(|s| s.sid == sid),
        Err(e) => return Unavailable::log(&e).into_response(),
    };
    if owned {
        if let Err(e) = state.sessions.end(sid, now).await {
            return Unavailable::log(&e).into_response();
        }
        state.audit(&audit, logout_event("one"));
    }
    if sid == session.sid {
        return signed_out(&state, jar, "You signed out of this browser.");
    }
    let notice = if owned {
        "Signed out of that session."
    } else {
        "That session had already ended."
    };
    sessions_view(&state, jar, &session, &user, Some(notice)).await
}
