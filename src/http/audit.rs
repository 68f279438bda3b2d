//! Audit events shared by several handlers (profile edits, sign-ups, the request
//! limit). Sign-in events are recorded by `crate::authn`.

use super::AppState;
use crate::audit::{Context, Event};

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
