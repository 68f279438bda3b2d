//! A password typed by a signed-in user (to change the password or the e-mail address)
//! is a sign-in attempt like any other (ASVS 2.2.1): the per-account and per-IP
//! failure limits are checked before argon2 runs, and a wrong one is counted and
//! audited as a failed sign-in. The page and the JSON API both call these.

use std::net::IpAddr;

use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::Unavailable;
use crate::ratelimit::{AccountKey, RetryAfter};
use crate::storage::{UserRecord, unix_now};

/// `Ok(Err(wait))` when the user's or the address's failures are over the limit.
pub async fn check(
    state: &AppState,
    user: &UserRecord,
    ip: IpAddr,
) -> Result<Result<(), RetryAfter>, Box<Response>> {
    state
        .limits
        .check(&AccountKey::user(&user.id), Some(ip), unix_now())
        .await
        .map_err(|e| Box::new(Unavailable::log(&e).into_response()))
}

/// Counts a wrong current password and records it as a failed sign-in.
pub async fn failed(
    state: &AppState,
    user: &UserRecord,
    ip: IpAddr,
    audit: &crate::audit::Context,
) -> Result<(), Box<Response>> {
    let triggered = state
        .limits
        .failed(&AccountKey::user(&user.id), Some(ip), unix_now())
        .await
        .map_err(|e| Box::new(Unavailable::log(&e).into_response()))?;
    super::audit::login_failed(
        state,
        audit,
        None,
        crate::accounts::Rejection::BadPassword,
        Some(&user.id),
        triggered,
    );
    Ok(())
}
