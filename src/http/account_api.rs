//! `/api/v1/account/*`: the JSON account API for a first-party frontend (DESIGN.md
//! "Account and admin API shapes"). The rules live in `accounts::selfservice`; this
//! module only authenticates, limits, parses and maps errors to JSON.

use std::net::{IpAddr, SocketAddr};

use crate::oidc::claims::claims_of_scope;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AppState;
use super::audit::profile_updated;
use super::client_auth::{TokenFailure, authenticate_client, no_store};
use super::error::{Cause, Chain, Unavailable};
use super::userinfo::bearer_error;
use crate::accounts::{ProfileEdit, Registration, SelfService, SelfServiceError};
use crate::audit::Event;
use crate::authn::{Attempt, ReauthError};
use crate::oidc::params::Params;
use crate::ratelimit::RetryAfter;
use crate::storage::{KeepSession, UserRecord, unix_now};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/account/register", post(register))
        .route("/api/v1/account/me", get(me).patch(patch_me))
        .route("/api/v1/account/me/password", post(change_password))
        .route("/api/v1/account/me/verification", post(resend_verification))
        .route("/api/v1/account/password-reset", post(request_reset))
        .route(
            "/api/v1/account/password-reset/confirm",
            post(confirm_reset),
        )
        .route("/api/v1/account/verify-email", post(verify_email))
        .route(
            "/api/v1/account/sessions",
            get(list_sessions).delete(end_all_sessions),
        )
        .route("/api/v1/account/sessions/{id}", delete(end_one_session))
}

/// Everything this API can answer besides success.
enum ApiError {
    SelfService(SelfServiceError),
    BadRequest(String),
    Limited(RetryAfter),
    RegistrationClosed,
    Client(TokenFailure),
    /// A bearer problem, already shaped per RFC 6750 §3.
    Bearer(Box<Response>),
    /// Storage or another service failed; logged with its causes when rendered.
    Internal(Cause),
}

/// A re-typed password refused before it was checked.
fn reauth_error(e: ReauthError) -> ApiError {
    match e {
        ReauthError::Limited(wait) => ApiError::Limited(wait),
        ReauthError::Internal(e) => ApiError::Internal(e),
    }
}

impl From<SelfServiceError> for ApiError {
    fn from(e: SelfServiceError) -> Self {
        Self::SelfService(e)
    }
}

fn error_json(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    no_store(response.headers_mut());
    response
}

fn retry_after(mut response: Response, seconds: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::SelfService(e) => match e {
                SelfServiceError::Invalid(fields) => error_json(
                    StatusCode::BAD_REQUEST,
                    json!({
                        "error": "validation_failed",
                        "error_description": "Some fields are not valid.",
                        "fields": fields,
                    }),
                ),
                SelfServiceError::UsernameTaken => error_json(
                    StatusCode::CONFLICT,
                    json!({"error": "username_taken", "error_description": "This username is taken."}),
                ),
                SelfServiceError::EmailTaken => error_json(
                    StatusCode::CONFLICT,
                    json!({"error": "email_taken", "error_description": "This e-mail address belongs to another account."}),
                ),
                SelfServiceError::InvalidToken => error_json(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "invalid_token", "error_description": "The link is invalid, used or expired."}),
                ),
                SelfServiceError::NoAccount => bearer_error(
                    StatusCode::UNAUTHORIZED,
                    Some("invalid_token"),
                    "the account is no longer active",
                ),
                SelfServiceError::Busy => retry_after(
                    error_json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": "temporarily_unavailable", "error_description": "Too many passwords are being checked right now; try again shortly."}),
                    ),
                    1,
                ),
                SelfServiceError::Internal(e) => Unavailable::log(&e).into_response(),
            },
            Self::BadRequest(description) => error_json(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": description}),
            ),
            Self::Limited(wait) => retry_after(
                error_json(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": "temporarily_unavailable", "error_description": "Too many requests from this address; try again later."}),
                ),
                wait.seconds(),
            ),
            Self::RegistrationClosed => error_json(
                StatusCode::FORBIDDEN,
                json!({"error": "registration_disabled", "error_description": "Sign-up is turned off on this server."}),
            ),
            Self::Client(failure) => failure.into_response(),
            Self::Bearer(response) => *response,
            Self::Internal(cause) => Unavailable::log(&Chain(cause.as_ref())).into_response(),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// A JSON body (`Content-Type: application/json`) into `T`; unknown fields are refused
/// so a typo or a field that cannot be changed here is not silently ignored.
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    super::json::parse(headers, body).map_err(ApiError::BadRequest)
}

fn secret(value: String) -> SecretString {
    SecretString::from(value)
}

/// The end user's address for the per-IP request limit. An authenticated first-party
/// client (HTTP Basic) may assert it in `ratelimit.client_ip_header`, as at the password
/// grant; without client authentication it is the peer (behind trusted proxies, the
/// forwarded address). Bad client credentials are refused.
async fn requester_ip(
    state: &AppState,
    peer: IpAddr,
    headers: &HeaderMap,
    client_required: bool,
) -> Result<IpAddr, ApiError> {
    let peer = state.client_ip(peer, headers);
    if !client_required && !headers.contains_key(header::AUTHORIZATION) {
        return Ok(peer);
    }
    let client = authenticate_client(state, headers, &Params::default())
        .await
        .map_err(ApiError::Client)?;
    if !client.first_party {
        return Err(ApiError::Client(TokenFailure::Protocol {
            error: crate::oidc::Error::new(
                crate::oidc::ErrorCode::UnauthorizedClient,
                "only first-party clients may use the account API",
            ),
            basic_used: true,
        }));
    }
    Ok(super::token::end_user_ip(state, &client, peer, headers))
}

/// The common start of the unauthenticated, mail-token endpoints: the requester's
/// address, its request budget, then the JSON body.
async fn limited_json<T: DeserializeOwned>(
    state: &AppState,
    peer: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let ip = requester_ip(state, peer, headers, false).await?;
    limit_requests(state, ip).await?;
    json_body(headers, body)
}

async fn limit_requests(state: &AppState, ip: IpAddr) -> Result<(), ApiError> {
    match state.limits.request(ip, unix_now()).await {
        Ok(Ok(reached)) => {
            super::audit::requests_limit_reached(state, ip, reached);
            Ok(())
        }
        Ok(Err(wait)) => Err(ApiError::Limited(wait)),
        Err(e) => Err(ApiError::Internal(e.into())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    username: String,
    email: String,
    password: String,
    name: Option<String>,
}

/// `POST /api/v1/account/register` (first-party client auth).
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let ip = requester_ip(&state, peer.ip(), &headers, true).await?;
    if !state.config.accounts.allow_registration {
        return Err(ApiError::RegistrationClosed);
    }
    limit_requests(&state, ip).await?;
    let body: RegisterBody = json_body(&headers, &body)?;
    let registered = state
        .selfservice
        .register(
            Registration {
                username: body.username,
                email: body.email,
                password: secret(body.password),
                name: body.name,
            },
            None,
        )
        .await?;
    state.audit(
        &state.audit_context(ip, &headers),
        super::audit::registered(registered.user.as_ref(), "api"),
    );
    let mut response = (
        StatusCode::CREATED,
        Json(json!({
            "sub": registered.sub,
            "username": registered.username,
            "email": registered.email,
            "email_verified": false,
        })),
    )
        .into_response();
    no_store(response.headers_mut());
    Ok(response)
}

/// What a bearer token may do here.
#[derive(PartialEq, Eq)]
enum Need {
    /// Read the profile: a token with scope `profile`, or any first-party client's.
    Read,
    /// Change the account: only a first-party client's token.
    Change,
}

/// The user behind a bearer access token (RFC 6750 §2.1), with the rules of `need`.
async fn bearer_user(
    state: &AppState,
    headers: &HeaderMap,
    need: Need,
) -> Result<UserRecord, ApiError> {
    bearer_caller(state, headers, need)
        .await
        .map(|(user, _)| user)
}

/// The user behind a bearer token, and the session (`sid`) and refresh family (`gid`)
/// the token was issued in: what "this session" means to the API.
async fn bearer_caller(
    state: &AppState,
    headers: &HeaderMap,
    need: Need,
) -> Result<(UserRecord, KeepSession), ApiError> {
    bearer_token_caller(state, headers, need)
        .await
        .map(|c| (c.user, c.current))
}

/// Who calls with a bearer token, and what the token allows.
struct Caller {
    user: UserRecord,
    /// The session and refresh family the token was issued in.
    current: KeepSession,
    /// None for a first-party client's token (the whole profile); else the token's
    /// scopes, which bound the claims it may read.
    third_party_scopes: Option<Vec<String>>,
}

async fn bearer_token_caller(
    state: &AppState,
    headers: &HeaderMap,
    need: Need,
) -> Result<Caller, ApiError> {
    let bearer = |status, code, description| {
        ApiError::Bearer(Box::new(bearer_error(status, code, description)))
    };
    let token = match super::userinfo::bearer_from_header(headers) {
        Ok(Some(token)) => token,
        Ok(None) => {
            return Err(bearer(
                StatusCode::UNAUTHORIZED,
                None,
                "a bearer token is required",
            ));
        }
        Err(response) => return Err(ApiError::Bearer(response)),
    };
    let issuer = state.config.server.issuer.clone();
    let claims = match super::access_token::check(state, &token, Some(&issuer)).await {
        Ok(Ok(claims)) => claims,
        Ok(Err(why)) => return Err(bearer(StatusCode::UNAUTHORIZED, Some("invalid_token"), why)),
        Err(e) => {
            return Err(ApiError::Internal(e.into()));
        }
    };
    let str_claim = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
    let first_party = match state.clients.get(str_claim("client_id")).await {
        Ok(client) => client.is_some_and(|c| c.first_party),
        Err(e) => {
            return Err(ApiError::Internal(e.into()));
        }
    };
    let has_profile = str_claim("scope").split(' ').any(|s| s == "profile");
    let allowed = first_party || (need == Need::Read && has_profile);
    if !allowed {
        let why = if need == Need::Read {
            "the token needs the profile scope"
        } else {
            "only a first-party client's token may change the account"
        };
        return Err(bearer(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            why,
        ));
    }
    let claim = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    let current = KeepSession {
        sid: claim("sid"),
        family_id: claim("gid"),
    };
    let third_party_scopes = (!first_party).then(|| {
        str_claim("scope")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    match state.store.find_user_by_id(str_claim("sub")).await {
        Ok(Some(user)) if !user.disabled => Ok(Caller {
            user,
            current,
            third_party_scopes,
        }),
        Ok(_) => Err(SelfServiceError::NoAccount.into()),
        Err(e) => Err(ApiError::Internal(e.into())),
    }
}

/// The profile as `GET /api/v1/account/me` returns it.
pub fn profile_json(user: &UserRecord) -> Value {
    json!({
        "sub": user.id,
        "username": user.username,
        "email": user.email,
        "email_verified": user.email_verified,
        "pending_email": user.pending_email,
        "name": user.name,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "picture": user.picture,
        "locale": user.locale,
        "roles": user.roles,
        "updated_at": user.updated_at,
    })
}

fn profile_response(user: &UserRecord) -> Response {
    let mut response = (StatusCode::OK, Json(profile_json(user))).into_response();
    no_store(response.headers_mut());
    response
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let caller = bearer_token_caller(&state, &headers, Need::Read).await?;
    let mut profile = profile_json(&caller.user);
    if let (Some(scopes), Some(fields)) = (&caller.third_party_scopes, profile.as_object_mut()) {
        // OIDC Core §5.4: another application's token reads only the claims its scopes
        // release (consented on the consent page), as at UserInfo.
        fields.retain(|field, _| {
            let claim = if field == "username" {
                "preferred_username"
            } else {
                field.as_str()
            };
            field == "sub" || scopes.iter().any(|s| claims_of_scope(s).contains(&claim))
        });
    }
    let mut response = (StatusCode::OK, Json(profile)).into_response();
    no_store(response.headers_mut());
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    picture: Option<String>,
    locale: Option<String>,
    email: Option<String>,
    /// Needed with a new `email` (ASVS 2.2.3).
    current_password: Option<String>,
}

/// `PATCH /api/v1/account/me`: any of the editable fields; `""` clears one. A new
/// `email` needs `current_password` and waits in `pending_email` until the link mailed
/// to it is opened.
async fn patch_me(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let user = bearer_user(&state, &headers, Need::Change).await?;
    let body: PatchBody = json_body(&headers, &body)?;
    let edit = ProfileEdit {
        name: body.name,
        given_name: body.given_name,
        family_name: body.family_name,
        picture: body.picture,
        locale: body.locale,
        email: body.email,
    };
    let ip = state.client_ip(peer.ip(), &headers);
    let audit = state.audit_context(ip, &headers);
    let password = body.current_password.map(secret);
    let update = state
        .selfservice
        .update_profile(&user, &edit, password.as_ref());
    let result = if SelfService::changes_email(&user, &edit) {
        // The limit is checked before argon2 runs, as at sign-in.
        let attempt = Attempt {
            ip,
            context: &audit,
            client_id: None,
        };
        state
            .sign_in
            .reauthenticate(&user, attempt, update)
            .await
            .map_err(reauth_error)?
    } else {
        update.await
    };
    let updated = result?;
    state.audit(&audit, profile_updated(&user, &updated));
    Ok(profile_response(&updated))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
    /// Default true: other sessions end and their refresh tokens are revoked (ASVS
    /// 3.3.3); the calling token's session and family stay.
    sign_out_other_sessions: Option<bool>,
}

/// `POST /api/v1/account/me/password`. A wrong current password counts as a failed
/// sign-in for the account (brute-force protection wherever a password is typed).
async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (user, current) = bearer_caller(&state, &headers, Need::Change).await?;
    let body: PasswordBody = json_body(&headers, &body)?;
    let ip = state.client_ip(peer.ip(), &headers);
    let audit = state.audit_context(ip, &headers);
    let sign_out = body.sign_out_other_sessions.unwrap_or(true);
    let current_password = secret(body.current_password);
    let new_password = secret(body.new_password);
    let change = state.selfservice.change_password(
        &user,
        &current_password,
        &new_password,
        sign_out.then_some(&current),
    );
    let attempt = Attempt {
        ip,
        context: &audit,
        client_id: None,
    };
    let result = state
        .sign_in
        .reauthenticate(&user, attempt, change)
        .await
        .map_err(reauth_error)?;
    result?;
    state.audit(
        &audit,
        Event::success("password.changed")
            .user(&user.id)
            .detail("signed_out_others", sign_out),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/account/me/verification`: mail a new verification link.
async fn resend_verification(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    let user = bearer_user(&state, &headers, Need::Change).await?;
    limit_requests(&state, state.client_ip(peer.ip(), &headers)).await?;
    if !user.email_verified {
        state.selfservice.send_verification(&user).await?;
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    email: String,
}

/// `POST /api/v1/account/password-reset`: 202 whether or not the address has an account.
async fn request_reset(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let body: EmailBody = limited_json(&state, peer.ip(), &headers, &body).await?;
    state.selfservice.request_reset(&body.email).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    token: String,
    password: String,
}

async fn confirm_reset(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let body: ConfirmBody = limited_json(&state, peer.ip(), &headers, &body).await?;
    let user_id = state
        .selfservice
        .confirm_reset(&body.token, &secret(body.password))
        .await?;
    state.audit(
        &state.audit_context(state.client_ip(peer.ip(), &headers), &headers),
        Event::success("password.reset").user(&user_id),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

async fn verify_email(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let body: TokenBody = limited_json(&state, peer.ip(), &headers, &body).await?;
    let token = state.selfservice.verify_email(&body.token).await?;
    state.audit(
        &state.audit_context(state.client_ip(peer.ip(), &headers), &headers),
        Event::success("email.verified").user(&token.user_id),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Internal(Box::new(e))
}

/// `GET /api/v1/account/sessions`: the user's live sessions (first-party token: the
/// list shows addresses and browsers).
async fn list_sessions(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let (user, current) = bearer_caller(&state, &headers, Need::Change).await?;
    let sessions = state
        .store
        .list_sessions(&user.id, unix_now())
        .await
        .map_err(internal)?;
    let items: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.sid,
                "created_at": s.created_at,
                "last_seen_at": s.last_seen_at,
                "auth_time": s.auth_time,
                "user_agent": s.user_agent,
                "ip": s.ip,
                "current": current.sid.as_deref() == Some(s.sid.as_str()),
            })
        })
        .collect();
    let mut response = (StatusCode::OK, Json(json!({ "items": items }))).into_response();
    no_store(response.headers_mut());
    Ok(response)
}

/// `DELETE /api/v1/account/sessions/{id}`: signs the user out of one session (and
/// revokes the refresh tokens that live with it).
async fn end_one_session(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (user, _) = bearer_caller(&state, &headers, Need::Change).await?;
    let now = unix_now();
    let owned = state
        .store
        .list_sessions(&user.id, now)
        .await
        .map_err(internal)?
        .iter()
        .any(|s| s.sid == id);
    if !owned {
        return Ok(error_json(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "error_description": "No such session."}),
        ));
    }
    state.sessions.end(&id, now).await.map_err(internal)?;
    state.audit(
        &state.audit_context(state.client_ip(peer.ip(), &headers), &headers),
        Event::success("logout")
            .user(&user.id)
            .detail("sessions", "one")
            .detail("via", "api"),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/v1/account/sessions`: signs the user out everywhere; every refresh
/// token of the user is revoked too, `offline_access` ones included.
async fn end_all_sessions(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    let (user, _) = bearer_caller(&state, &headers, Need::Change).await?;
    let now = unix_now();
    state
        .sessions
        .end_all(&user.id, now)
        .await
        .map_err(internal)?;
    state.audit(
        &state.audit_context(state.client_ip(peer.ip(), &headers), &headers),
        Event::success("logout")
            .user(&user.id)
            .detail("sessions", "all")
            .detail("via", "api"),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
