//! Users: list and search, show, create, update (profile, roles, disabled, verified),
//! send a password reset, delete; a user's sessions: list, end.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::{
    Admin, AdminError, AdminResult, decode_cursor, encode_cursor, json_body, json_response,
    page_limit, plausible_id,
};
use crate::accounts::{
    AccountError, NewAccount, ProfileEdit, check_profile, normalize_roles, validate_role,
};
use crate::http::AppState;
use crate::storage::{AdminUserChange, StoreError, UserRecord, unix_now};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/users", get(list).post(create))
        .route(
            "/api/v1/admin/users/{sub}",
            get(show).patch(update).delete(remove),
        )
        .route("/api/v1/admin/users/{sub}/password-reset", post(send_reset))
        .route("/api/v1/admin/users/{sub}/sessions", get(sessions))
        .route(
            "/api/v1/admin/users/{sub}/sessions/{sid}",
            delete(end_session),
        )
}

/// A user as the admin API shows it: the profile plus the administrative fields.
pub fn user_json(user: &UserRecord) -> Value {
    let mut v = crate::http::account_api::profile_json(user);
    v["disabled"] = json!(user.disabled);
    v["has_password"] = json!(user.password_hash.is_some());
    v["created_at"] = json!(user.created_at);
    v
}

/// The fields an audit event may show before and after a change (no secrets).
fn audit_view(user: &UserRecord) -> Value {
    json!({
        "username": user.username,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "picture": user.picture,
        "locale": user.locale,
        "roles": user.roles,
        "disabled": user.disabled,
    })
}

async fn find(state: &AppState, sub: &str) -> Result<UserRecord, AdminError> {
    plausible_id(sub)?;
    state
        .store
        .find_user_by_id(sub)
        .await?
        .ok_or(AdminError::NotFound)
}

#[derive(Deserialize)]
struct ListQuery {
    query: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/v1/admin/users?query=&limit=&cursor=`: by username; `query` matches a
/// part of the username or e-mail address.
async fn list(_: Admin, State(state): State<AppState>, Query(q): Query<ListQuery>) -> AdminResult {
    let limit = page_limit(q.limit.as_deref())?;
    let after = decode_cursor(q.cursor.as_deref())?;
    let query = q.query.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if query.is_some_and(|s| s.len() > 254) {
        return Err(AdminError::BadRequest("query is too long".into()));
    }
    // One more than asked tells whether there is a next page.
    let mut users = state
        .store
        .search_users(query, after.as_deref(), limit + 1)
        .await?;
    let next = (users.len() as i64 > limit).then(|| {
        users.truncate(limit as usize);
        users
            .last()
            .map(|u| encode_cursor(&u.username.to_lowercase()))
    });
    Ok(json_response(
        StatusCode::OK,
        json!({
            "items": users.iter().map(user_json).collect::<Vec<_>>(),
            "next_cursor": next.flatten(),
        }),
    ))
}

async fn show(_: Admin, State(state): State<AppState>, Path(sub): Path<String>) -> AdminResult {
    let user = find(&state, &sub).await?;
    Ok(json_response(StatusCode::OK, user_json(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    username: String,
    email: String,
    password: Option<String>,
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    email_verified: bool,
}

fn account_error(e: AccountError) -> AdminError {
    match e {
        // The request's field is `roles`.
        AccountError::Invalid {
            field: "role",
            message,
        } => AdminError::invalid("roles", message),
        AccountError::Invalid { field, message } => AdminError::invalid(field, message),
        AccountError::UsernameTaken => {
            AdminError::Conflict("username_taken", "This username is taken.".into())
        }
        AccountError::EmailTaken => AdminError::Conflict(
            "email_taken",
            "This e-mail address belongs to another account.".into(),
        ),
        AccountError::NotFound => AdminError::NotFound,
        AccountError::Password(crate::accounts::PasswordError::Busy) => AdminError::Busy,
        other => AdminError::internal(&other),
    }
}

/// `POST /api/v1/admin/users`: the same rules as `oxidp user add`.
async fn create(
    admin: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> AdminResult {
    let body: CreateBody = json_body(&headers, &body)?;
    let account = NewAccount {
        username: body.username,
        email: body.email,
        password: body.password.map(secrecy::SecretString::from),
        name: body.name,
        roles: body.roles,
        email_verified: body.email_verified,
    };
    crate::accounts::check_account(&account).map_err(account_error)?;
    let user = state
        .accounts
        .create(account)
        .await
        .map_err(account_error)?;
    state.audit(
        &admin.audit,
        admin
            .event("admin.user.created")
            .subject(&user.id)
            .detail("after", audit_view(&user)),
    );
    Ok(json_response(StatusCode::CREATED, user_json(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    picture: Option<String>,
    locale: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    roles: Option<Vec<String>>,
    disabled: Option<bool>,
}

/// `PATCH /api/v1/admin/users/{sub}`: any of the profile fields (`""` clears one),
/// `email`, `email_verified`, `roles` (the whole set; `user` is always kept), `disabled`
/// (disabling ends the user's sessions and revokes their tokens).
async fn update(
    admin: Admin,
    State(state): State<AppState>,
    Path(sub): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> AdminResult {
    let body: UpdateBody = json_body(&headers, &body)?;
    let before = find(&state, &sub).await?;
    let edit = ProfileEdit {
        name: body.name,
        given_name: body.given_name,
        family_name: body.family_name,
        picture: body.picture,
        locale: body.locale,
        email: body.email,
    };
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    let profile = match check_profile(&edit) {
        Ok(p) => p,
        Err(fields) => {
            errors.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v)));
            Default::default()
        }
    };
    let roles = body.roles.map(|roles| {
        let set = normalize_roles(&roles);
        for role in &set {
            if let Err(m) = validate_role(role) {
                errors.insert("roles".into(), format!("{role:?}: {m}"));
            }
        }
        set
    });
    if !errors.is_empty() {
        return Err(AdminError::Validation(errors));
    }
    if body.disabled == Some(true) && sub == admin.sub {
        return Err(AdminError::invalid(
            "disabled",
            "You cannot disable your own account.",
        ));
    }
    if roles
        .as_ref()
        .is_some_and(|r| sub == admin.sub && !r.iter().any(|r| r == super::ADMIN_ROLE))
    {
        return Err(AdminError::invalid(
            "roles",
            "You cannot remove your own admin role.",
        ));
    }
    let change = AdminUserChange {
        profile,
        email_verified: body.email_verified,
        disabled: body.disabled,
        roles,
    };
    let now = unix_now();
    match state
        .sessions
        .ending(now, |until| {
            state.store.admin_update_user(&sub, &change, now, until)
        })
        .await
    {
        Err(StoreError::Conflict(_)) => {
            return Err(AdminError::Conflict(
                "email_taken",
                "This e-mail address belongs to another account.".into(),
            ));
        }
        other => other?,
    }
    let after = find(&state, &sub).await?;
    state.audit(
        &admin.audit,
        admin
            .event("admin.user.updated")
            .subject(&sub)
            .detail("before", audit_view(&before))
            .detail("after", audit_view(&after)),
    );
    Ok(json_response(StatusCode::OK, user_json(&after)))
}

/// `DELETE /api/v1/admin/users/{sub}`: sessions end (with back-channel logouts),
/// every token is revoked, then the account is deleted.
async fn remove(
    admin: Admin,
    State(state): State<AppState>,
    Path(sub): Path<String>,
) -> AdminResult {
    let before = find(&state, &sub).await?;
    if sub == admin.sub {
        return Err(AdminError::Conflict(
            "cannot_delete_self",
            "You cannot delete your own account.".into(),
        ));
    }
    let now = unix_now();
    state
        .sessions
        .ending(now, |until| state.store.delete_user(&sub, now, until))
        .await?;
    state.audit(
        &admin.audit,
        admin
            .event("admin.user.deleted")
            .subject(&sub)
            .detail("before", audit_view(&before)),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/admin/users/{sub}/password-reset`: mails the user a reset link.
async fn send_reset(
    admin: Admin,
    State(state): State<AppState>,
    Path(sub): Path<String>,
) -> AdminResult {
    let user = find(&state, &sub).await?;
    if user.disabled {
        return Err(AdminError::Conflict(
            "user_disabled",
            "The account is disabled; enable it first.".into(),
        ));
    }
    state
        .selfservice
        .request_reset(&user.email)
        .await
        .map_err(|e| AdminError::internal(&e))?;
    state.audit(
        &admin.audit,
        admin.event("admin.user.password_reset_sent").subject(&sub),
    );
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET /api/v1/admin/users/{sub}/sessions`.
async fn sessions(_: Admin, State(state): State<AppState>, Path(sub): Path<String>) -> AdminResult {
    let user = find(&state, &sub).await?;
    let list = state.store.list_sessions(&user.id, unix_now()).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|s| {
            json!({
                "id": s.sid,
                "created_at": s.created_at,
                "last_seen_at": s.last_seen_at,
                "auth_time": s.auth_time,
                "user_agent": s.user_agent,
                "ip": s.ip,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, json!({ "items": items })))
}

/// `DELETE /api/v1/admin/users/{sub}/sessions/{sid}`: ends one session and revokes the
/// refresh tokens bound to it.
async fn end_session(
    admin: Admin,
    State(state): State<AppState>,
    Path((sub, sid)): Path<(String, String)>,
) -> AdminResult {
    let user = find(&state, &sub).await?;
    plausible_id(&sid)?;
    let now = unix_now();
    let owned = state
        .store
        .list_sessions(&user.id, now)
        .await?
        .iter()
        .any(|s| s.sid == sid);
    if !owned {
        return Err(AdminError::NotFound);
    }
    state.sessions.end(&sid, now).await?;
    state.audit(
        &admin.audit,
        admin
            .event("admin.session.revoked")
            .subject(&sub)
            .detail("sid", sid),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
