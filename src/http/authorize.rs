//! `GET/POST /authorize` (OIDC Core §3.1.2) and the step shared with the login and
//! consent pages: sign-in needed? consent needed? else issue the code.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::CookieJar;

use super::AppState;
use super::error::Unavailable;
use super::pages;
use crate::oidc::Error;
use crate::oidc::authorize::{
    AuthorizationRequest, ClientView, ResponseMode, redirect_target, redirect_url, response_params,
    validate,
};
use crate::oidc::decision::{self, Facts, SessionFacts, Step};
use crate::oidc::logout::Hint;
use crate::oidc::params::Params;
use crate::oidc::registration::GrantType;
use crate::storage::{ClientRecord, SessionRecord, unix_now};

pub fn router() -> Router<AppState> {
    Router::new().route("/authorize", get(authorize_get).post(authorize_post))
}

async fn authorize_get(
    State(state): State<AppState>,
    jar: CookieJar,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    authorize(state, jar, params).await
}

/// OIDC Core §3.1.2.1: POST carries the same parameters form-encoded. A body of another
/// type carries no parameters.
async fn authorize_post(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = if is_form(&headers) {
        Params::parse(&body)
    } else {
        Params::default()
    };
    authorize(state, jar, params).await
}

pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

pub fn client_view(client: &ClientRecord) -> ClientView<'_> {
    ClientView {
        id: &client.id,
        public: client.token_endpoint_auth_method == "none",
        redirect_uris: &client.redirect_uris,
        extra_scopes: &client.scopes,
        first_party: client.first_party,
        allows_code: client
            .grant_types
            .iter()
            .any(|g| g == GrantType::AuthorizationCode.as_str()),
    }
}

async fn authorize(state: AppState, jar: CookieJar, params: Params) -> Response {
    let client = match params.get("client_id") {
        Some(id) if id.len() <= 128 => match state.clients.get(id).await {
            Ok(c) => c,
            Err(e) => return Unavailable::log(&e).into_response(),
        },
        _ => None,
    };
    let view = client.as_deref().map(client_view);
    let redirect_uri = match redirect_target(&params, view.as_ref()) {
        Ok(uri) => uri,
        Err(e) => {
            return pages::error_page(
                &state,
                StatusCode::BAD_REQUEST,
                "This sign-in request cannot continue",
                e.message(),
            );
        }
    };
    let Some(view) = view else {
        return pages::error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "The application is not registered.",
        );
    };
    let request = match validate(&params, &view, redirect_uri.clone()) {
        Ok(r) => r,
        Err(e) => {
            let mode = match params.get("response_mode") {
                Some("form_post") => ResponseMode::FormPost,
                _ => ResponseMode::Query,
            };
            return respond(&state, &redirect_uri, mode, params.get("state"), Err(&e));
        }
    };
    let session = match current_session(&state, &jar).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    proceed(&state, jar, request, None, session, false).await
}

/// The live session behind the cookie, if any.
pub async fn current_session(
    state: &AppState,
    jar: &CookieJar,
) -> Result<Option<SessionRecord>, Box<Response>> {
    let Some(cookie) = jar.get(state.cookies.session) else {
        return Ok(None);
    };
    state
        .sessions
        .current(cookie.value(), unix_now())
        .await
        .map_err(|e| Box::new(Unavailable::log(&e).into_response()))
}

/// Decides the next step for a validated request. `request_id` is set once the request
/// is stored (the login and consent pages resume it); `fresh_login` when the user has
/// just authenticated for this very request with `session` (recorded on the stored
/// request, so that the later steps know `prompt=login`/`max_age` were met).
pub async fn proceed(
    state: &AppState,
    jar: CookieJar,
    mut request: AuthorizationRequest,
    request_id: Option<String>,
    session: Option<SessionRecord>,
    fresh_login: bool,
) -> Response {
    if fresh_login && let (Some(id), Some(s)) = (request_id.as_deref(), session.as_ref()) {
        match state
            .sessions
            .mark_signed_in(id, &mut request, &s.sid, unix_now())
            .await
        {
            Ok(true) => {}
            Ok(false) => return (jar, expired_page(state)).into_response(),
            Err(e) => return (jar, Unavailable::log(&e).into_response()).into_response(),
        }
    }
    // Whatever the outcome, the cookies set on the way (a new session) go with it.
    let response = match next_step(state, &request, session.as_ref(), false).await {
        Ok(Step::Issue) => match session {
            Some(s) => issue(state, &request, request_id.as_deref(), &s).await,
            None => expired_page(state),
        },
        Ok(step) => act(state, step, &request, request_id).await,
        Err(response) => *response,
    };
    (jar, response).into_response()
}

/// Gathers the facts of the decision (a verified `id_token_hint`, the client, the
/// consent on record) and takes it (`oidc::decision::next_step`).
pub async fn next_step(
    state: &AppState,
    request: &AuthorizationRequest,
    session: Option<&SessionRecord>,
    consent_given_now: bool,
) -> Result<Step, Box<Response>> {
    let hint_sub = match request
        .id_token_hint
        .as_deref()
        .map(|t| hinted_subject(state, t))
    {
        None => None,
        Some(Some(sub)) => Some(sub),
        Some(None) => {
            return Ok(Step::Refuse(Error::invalid_request(
                "id_token_hint is not an ID token issued by this provider",
            )));
        }
    };
    let client = match state.clients.get(&request.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(Box::new(pages::error_page(
                state,
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "The application is no longer registered.",
            )));
        }
        Err(e) => return Err(Box::new(Unavailable::log(&e).into_response())),
    };
    let consented = match session {
        Some(s) if !client.first_party => state
            .store
            .consents(&s.user_id, &client.id)
            .await
            .map_err(|e| Box::new(Unavailable::log(&e).into_response()))?,
        _ => Vec::new(),
    };
    Ok(decision::next_step(&Facts {
        request,
        session: session.map(|s| SessionFacts {
            sid: &s.sid,
            user_id: &s.user_id,
            auth_time: s.auth_time,
        }),
        hint_sub: hint_sub.as_deref(),
        first_party: client.first_party,
        registration_open: state.config.accounts.allow_registration,
        consented: &consented,
        consent_given_now,
        now: unix_now(),
    }))
}

/// Carries out a step other than issuing a code.
pub async fn act(
    state: &AppState,
    step: Step,
    request: &AuthorizationRequest,
    request_id: Option<String>,
) -> Response {
    match step {
        Step::Register => to_page(state, "/register", request, request_id).await,
        Step::Login => to_page(state, "/login", request, request_id).await,
        Step::Consent => to_page(state, "/consent", request, request_id).await,
        Step::Refuse(e) => finish(state, request, request_id.as_deref(), Err(&e)).await,
        // Issuing needs the session; the callers that have one issue themselves.
        Step::Issue => expired_page(state),
    }
}

/// Stores the request (once) and sends the browser to a page that resumes it.
async fn to_page(
    state: &AppState,
    page: &str,
    request: &AuthorizationRequest,
    request_id: Option<String>,
) -> Response {
    let id = match request_id {
        Some(id) => id,
        None => match state.sessions.save_request(request, unix_now()).await {
            Ok(id) => id,
            Err(e) => return Unavailable::log(&e).into_response(),
        },
    };
    Redirect::to(&format!("{page}?req={id}")).into_response()
}

/// Claims a stored request for its one answer; of concurrent submissions of the same
/// form exactly one gets through, before anything (a code) is created for it.
async fn claim(state: &AppState, request_id: Option<&str>) -> Result<(), Box<Response>> {
    let Some(id) = request_id else {
        return Ok(());
    };
    match state.sessions.complete_request(id, unix_now()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Box::new(expired_page(state))),
        Err(e) => Err(Box::new(Unavailable::log(&e).into_response())),
    }
}

/// Issues the code and answers the client.
pub async fn issue(
    state: &AppState,
    request: &AuthorizationRequest,
    request_id: Option<&str>,
    session: &SessionRecord,
) -> Response {
    if let Err(response) = claim(state, request_id).await {
        return *response;
    }
    let code = match state
        .sessions
        .issue_code(request, session, unix_now())
        .await
    {
        Ok(code) => code,
        Err(e) => return Unavailable::log(&e).into_response(),
    };
    answer(state, request, Ok(&code))
}

/// Answers the client with an error, once.
pub async fn finish(
    state: &AppState,
    request: &AuthorizationRequest,
    request_id: Option<&str>,
    outcome: Result<&str, &Error>,
) -> Response {
    if let Err(response) = claim(state, request_id).await {
        return *response;
    }
    answer(state, request, outcome)
}

fn answer(
    state: &AppState,
    request: &AuthorizationRequest,
    outcome: Result<&str, &Error>,
) -> Response {
    respond(
        state,
        &request.redirect_uri,
        request.response_mode,
        request.state.as_deref(),
        outcome,
    )
}

pub fn expired_page(state: &AppState) -> Response {
    pages::error_page(
        state,
        StatusCode::BAD_REQUEST,
        "This sign-in request has expired",
        "Go back to the application and start signing in again.",
    )
}

/// The authorization response: a redirect (query) or an auto-posting form.
fn respond(
    state: &AppState,
    redirect_uri: &str,
    mode: ResponseMode,
    client_state: Option<&str>,
    outcome: Result<&str, &Error>,
) -> Response {
    let params = response_params(&state.config.server.issuer, client_state, outcome);
    match mode {
        ResponseMode::FormPost => pages::form_post(state, redirect_uri, &params),
        ResponseMode::Query => match redirect_url(redirect_uri, &params) {
            Some(url) => Redirect::to(&url).into_response(),
            None => pages::error_page(
                state,
                StatusCode::BAD_REQUEST,
                "Invalid redirect",
                "The application's return address is not valid.",
            ),
        },
    }
}

/// OIDC Core §3.1.2.1 `id_token_hint`: an ID token we signed (expired is fine; an
/// access token is not an ID token, whatever its signature), its `sub`.
fn hinted_subject(state: &AppState, token: &str) -> Option<String> {
    let (claims, typ) = state.keys.current().verify(token).ok()?;
    Hint::from_claims(&claims, typ.as_deref(), &state.config.server.issuer).map(|h| h.sub)
}
