//! Audit events shared by several handlers (sign-in on the page and at the password
//! grant; tokens issued at the token endpoint).

use super::AppState;
use crate::accounts::Rejection;
use crate::audit::{Context, Event};
use crate::ratelimit::Triggered;

/// A failed sign-in, and any limit it just reached. The attempted username is kept only
/// when it names an account: an unknown "username" is often a password typed in the
/// wrong field.
pub fn login_failed(
    state: &AppState,
    context: &Context,
    client_id: Option<&str>,
    reason: Rejection,
    user_id: Option<&str>,
    triggered: Triggered,
) {
    state.metrics.login_failed(reason.as_str());
    let mut event = Event::failure("login.failed").detail("reason", reason.as_str());
    if let Some(user) = user_id {
        event = event.subject(user);
    }
    if let Some(client) = client_id {
        event = event.client(client);
    }
    state.audit(context, event);
    for (limit, seconds) in [
        ("password_failures_per_user", triggered.user),
        ("password_failures_per_ip", triggered.ip),
    ] {
        if let Some(seconds) = seconds {
            let mut event = Event::failure("ratelimit.triggered")
                .detail("limit", limit)
                .detail("blocked_seconds", seconds);
            if let (Some(user), "password_failures_per_user") = (user_id, limit) {
                event = event.subject(user);
            }
            if let Some(client) = client_id {
                event = event.client(client);
            }
            state.audit(context, event);
        }
    }
}

/// A profile edit: which fields changed (values only for non-secret, non-free-text
/// fields would still be personal data, so only the names).
pub fn profile_updated(
    before: &crate::storage::UserRecord,
    after: &crate::storage::UserRecord,
) -> Event {
    let mut changed: Vec<&str> = Vec::new();
    for (field, a, b) in [
        ("name", &before.name, &after.name),
        ("given_name", &before.given_name, &after.given_name),
        ("family_name", &before.family_name, &after.family_name),
        ("picture", &before.picture, &after.picture),
        ("locale", &before.locale, &after.locale),
    ] {
        if a != b {
            changed.push(field);
        }
    }
    if before.email != after.email {
        changed.push("email");
    }
    Event::success("profile.updated")
        .user(&before.id)
        .detail("changed", changed)
}

/// A sign-up; without a user the address was already in use (its owner was mailed).
pub fn registered(user: Option<&crate::storage::UserRecord>, via: &str) -> Event {
    match user {
        Some(user) => Event::success("user.registered")
            .user(&user.id)
            .detail("via", via),
        None => Event::failure("user.registered")
            .detail("reason", "email_in_use")
            .detail("via", via),
    }
}

/// The per-IP request limit (sign-up, reset, verification) was just reached by `ip`.
pub fn requests_limit_reached(state: &AppState, ip: std::net::IpAddr, seconds: Option<i64>) {
    if let Some(seconds) = seconds {
        state.audit(
            &Context::new(Some(ip), None, None),
            Event::failure("ratelimit.triggered")
                .detail("limit", "requests_per_ip")
                .detail("blocked_seconds", seconds),
        );
    }
}

pub fn login_succeeded(
    state: &AppState,
    context: &Context,
    user_id: &str,
    client_id: Option<&str>,
) {
    let mut event = Event::success("login.succeeded")
        .user(user_id)
        .detail("method", "pwd");
    if let Some(client) = client_id {
        event = event.client(client);
    }
    state.audit(context, event);
}
