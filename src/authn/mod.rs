//! Sign-in, written once. The login page, the password grant and a signed-in user
//! re-typing their password all go through [`SignIn`]: the failure limits are checked
//! before argon2 runs, the password is verified, the limiter learns the outcome and the
//! audit trail records it. Handlers only parse, call this and render their own error
//! shape.
//!
//! A second factor plugs in here: in [`SignIn::sign_in`], after the password is
//! accepted and before the limiter is cleared and `login.succeeded` recorded, so a
//! wrong second factor counts and is audited like a wrong password.

use std::net::IpAddr;
use std::sync::Arc;

use secrecy::SecretString;

use crate::accounts::{Accounts, LoginError, Rejection, SelfServiceError};
use crate::audit::{Audit, Context, Event};
use crate::http::metrics::Metrics;
use crate::ratelimit::{AccountKey, Limits, RetryAfter, Triggered};
use crate::storage::{Store, UserRecord, unix_now};

/// A cause the caller logs once and answers with its own 503 shape.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a sign-in did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The account or the address is over its failure limit; argon2 did not run.
    #[error("too many failed attempts")]
    Limited(RetryAfter),
    /// Wrong credentials, whatever the reason (unknown name, wrong password, disabled,
    /// unverified): every caller gives the same answer.
    #[error("incorrect username or password")]
    Rejected,
    /// The password workers are saturated; try again shortly.
    #[error("too many sign-ins are being checked")]
    Busy,
    #[error(transparent)]
    Internal(Cause),
}

/// Why a password re-typed by a signed-in user was not checked.
#[derive(Debug, thiserror::Error)]
pub enum ReauthError {
    /// The user or the address is over its failure limit; argon2 did not run.
    #[error("too many failed attempts")]
    Limited(RetryAfter),
    #[error(transparent)]
    Internal(Cause),
}

/// Where an attempt comes from: the end user's address (counted by the per-IP limit),
/// the request's audit context, and the client the sign-in is for, if any.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub ip: IpAddr,
    pub context: &'a Context,
    pub client_id: Option<&'a str>,
}

/// The sign-in service: accounts, limits and audit trail, shared by every route that
/// takes a password.
#[derive(Debug, Clone)]
pub struct SignIn {
    store: Store,
    accounts: Accounts,
    limits: Arc<Limits>,
    audit: Audit,
    metrics: Arc<Metrics>,
}

impl SignIn {
    pub fn new(
        store: Store,
        accounts: Accounts,
        limits: Arc<Limits>,
        audit: Audit,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            accounts,
            limits,
            audit,
            metrics,
        }
    }

    /// A username-or-e-mail and password, at the login page or the password grant.
    pub async fn sign_in(
        &self,
        typed: &str,
        password: &SecretString,
        attempt: Attempt<'_>,
    ) -> Result<UserRecord, SignInError> {
        let typed = typed.trim();
        // Failures count per account, whichever of its names was typed (DESIGN.md
        // "Password grant and rate limits"); a limited attempt never reaches argon2.
        let account = crate::ratelimit::account_key(&self.store, typed)
            .await
            .map_err(|e| SignInError::Internal(e.into()))?;
        self.limits
            .check(&account, Some(attempt.ip), unix_now())
            .await
            .map_err(|e| SignInError::Internal(e.into()))?
            .map_err(SignInError::Limited)?;
        match self.accounts.authenticate(typed, password).await {
            Ok(user) => {
                // A second factor is checked here, before the failures are cleared.
                self.limits
                    .succeeded(&account)
                    .await
                    .map_err(|e| SignInError::Internal(e.into()))?;
                self.audit.record(
                    attempt.context,
                    succeeded_event(&user.id, attempt.client_id),
                );
                Ok(user)
            }
            Err(LoginError::Rejected(reason, user_id)) => {
                self.failed(&account, attempt, reason, user_id.as_deref())
                    .await
                    .map_err(SignInError::Internal)?;
                Err(SignInError::Rejected)
            }
            Err(LoginError::Busy) => Err(SignInError::Busy),
            Err(LoginError::Internal(e)) => Err(SignInError::Internal(e)),
        }
    }

    /// A password typed by a signed-in user (to change the password or the e-mail
    /// address) is a sign-in attempt like any other (ASVS 2.2.1): the per-account and
    /// per-IP failure limits are checked before `verify` (which runs argon2) is polled,
    /// and a wrong current password is counted and audited as a failed sign-in.
    /// `verify`'s own result is handed back for the caller to render.
    pub async fn reauthenticate<T>(
        &self,
        user: &UserRecord,
        attempt: Attempt<'_>,
        verify: impl Future<Output = Result<T, SelfServiceError>>,
    ) -> Result<Result<T, SelfServiceError>, ReauthError> {
        let account = AccountKey::user(&user.id);
        self.limits
            .check(&account, Some(attempt.ip), unix_now())
            .await
            .map_err(|e| ReauthError::Internal(e.into()))?
            .map_err(ReauthError::Limited)?;
        let result = verify.await;
        if let Err(e) = &result
            && wrong_current_password(e)
        {
            self.failed(&account, attempt, Rejection::BadPassword, Some(&user.id))
                .await
                .map_err(ReauthError::Internal)?;
        }
        Ok(result)
    }

    /// Counts a failure and records it, with any limit it just reached.
    async fn failed(
        &self,
        account: &AccountKey,
        attempt: Attempt<'_>,
        reason: Rejection,
        user_id: Option<&str>,
    ) -> Result<(), Cause> {
        let triggered = self
            .limits
            .failed(account, Some(attempt.ip), unix_now())
            .await?;
        self.metrics.login_failed(reason.as_str());
        for event in failed_events(attempt.client_id, reason, user_id, triggered) {
            self.audit.record(attempt.context, event);
        }
        Ok(())
    }
}

/// Self-service refuses a wrong current password as an invalid `current_password`.
fn wrong_current_password(e: &SelfServiceError) -> bool {
    matches!(e, SelfServiceError::Invalid(fields) if fields.contains_key("current_password"))
}

fn succeeded_event(user_id: &str, client_id: Option<&str>) -> Event {
    let mut event = Event::success("login.succeeded")
        .user(user_id)
        .detail("method", "pwd");
    if let Some(client) = client_id {
        event = event.client(client);
    }
    event
}

/// A failed sign-in, and any limit it just reached. The attempted username is kept only
/// when it names an account: an unknown "username" is often a password typed in the
/// wrong field.
fn failed_events(
    client_id: Option<&str>,
    reason: Rejection,
    user_id: Option<&str>,
    triggered: Triggered,
) -> Vec<Event> {
    let mut event = Event::failure("login.failed").detail("reason", reason.as_str());
    if let Some(user) = user_id {
        event = event.subject(user);
    }
    if let Some(client) = client_id {
        event = event.client(client);
    }
    let mut events = vec![event];
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
            events.push(event);
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(Event::kind).collect()
    }

    #[test]
    fn a_failure_alone_is_one_event() {
        let events = failed_events(None, Rejection::UnknownUser, None, Triggered::default());
        assert_eq!(kinds(&events), ["login.failed"]);
    }

    #[test]
    fn each_limit_reached_adds_an_event_naming_it() {
        let triggered = Triggered {
            user: Some(60),
            ip: Some(120),
        };
        let events = failed_events(
            Some("app"),
            Rejection::BadPassword,
            Some("sub-1"),
            triggered,
        );
        assert_eq!(
            kinds(&events),
            ["login.failed", "ratelimit.triggered", "ratelimit.triggered"]
        );
        let per_user = format!("{:?}", events[1]);
        assert!(
            per_user.contains("password_failures_per_user"),
            "{per_user}"
        );
        assert!(per_user.contains("sub-1"), "{per_user}");
        // The per-IP block is about an address, not the account.
        let per_ip = format!("{:?}", events[2]);
        assert!(per_ip.contains("password_failures_per_ip"), "{per_ip}");
        assert!(!per_ip.contains("sub-1"), "{per_ip}");
        assert!(per_ip.contains("app"), "{per_ip}");
    }

    #[test]
    fn success_names_the_method_and_client() {
        let event = format!("{:?}", succeeded_event("sub-1", Some("app")));
        assert!(event.contains("login.succeeded"), "{event}");
        assert!(event.contains("pwd"), "{event}");
        assert!(event.contains("app"), "{event}");
    }

    #[test]
    fn only_a_refused_current_password_counts_as_a_failure() {
        let mut fields = crate::accounts::FieldErrors::new();
        fields.insert("current_password", "wrong".into());
        assert!(wrong_current_password(&SelfServiceError::Invalid(fields)));
        let mut fields = crate::accounts::FieldErrors::new();
        fields.insert("new_password", "too short".into());
        assert!(!wrong_current_password(&SelfServiceError::Invalid(fields)));
        assert!(!wrong_current_password(&SelfServiceError::Busy));
    }
}
