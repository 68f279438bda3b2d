//! Browser sessions, pending authorization requests and authorization codes. Every
//! opaque value (cookie, request id, code) is 256 random bits, handed out once and
//! stored only as its SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::oidc::authorize::AuthorizationRequest;
use crate::oidc::claims::ClaimsRequest;
use crate::storage::{CodeRecord, Redeemed, SessionOrigin, SessionRecord, Store, StoreError};

pub mod backchannel;
mod refresh;
pub use refresh::{FamilyStart, REUSED, RefreshGrant, RefreshOutcome, RefreshPolicy};

/// How stale a session's "last seen" time may get before a use rewrites it.
const TOUCH_SECONDS: i64 = 300;

/// A pending authorization request lives this long (issue: 10 minutes).
pub const REQUEST_LIFETIME: i64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored data is unreadable: {0}")]
    Data(#[from] serde_json::Error),
    #[error("sealing a refresh token failed")]
    Sealing,
}

/// 256 random bits, base64url: 43 characters.
pub fn new_opaque() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash_opaque(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

/// What a code is bound to (RFC 6749 §4.1.3, RFC 7636 §4.6, OIDC Core §3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub claims: ClaimsRequest,
    pub auth_time: i64,
    pub sid: String,
}

/// A code as found at the token endpoint.
#[derive(Debug, Clone)]
pub struct FoundCode {
    pub client_id: String,
    pub user_id: String,
    pub grant: CodeGrant,
    pub expires_at: i64,
    pub used: bool,
    /// The grant the first redemption created (revoked on replay).
    pub first_grant: Option<String>,
}

impl FoundCode {
    fn from_record(r: CodeRecord) -> Result<Self, SessionError> {
        Ok(Self {
            grant: serde_json::from_str(&r.grant_data)?,
            client_id: r.client_id,
            user_id: r.user_id,
            expires_at: r.expires_at,
            used: r.used_at.is_some(),
            first_grant: r.grant_id,
        })
    }
}

/// The outcome of redeeming a code.
#[derive(Debug)]
pub enum Redemption {
    Fresh,
    /// Someone used it first; the grant it created must be revoked.
    Replayed {
        first_grant: Option<String>,
    },
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Sessions {
    store: Store,
    session_lifetime: i64,
    code_lifetime: i64,
    /// The longest a refresh family can live (`tokens.refresh_absolute_days`): how long
    /// a revocation must be remembered.
    refresh_lifetime: i64,
    /// Wakes the back-channel logout sender; ending a session queues its deliveries.
    logout_wake: Arc<Notify>,
}

impl Sessions {
    pub fn new(
        store: Store,
        session_lifetime: i64,
        code_lifetime: i64,
        refresh_lifetime: i64,
        logout_wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            session_lifetime,
            code_lifetime,
            refresh_lifetime,
            logout_wake,
        }
    }

    /// The lifetimes as configured. A process without a back-channel sender (the CLI)
    /// passes a `logout_wake` nobody waits on: the server's sender polls the queue.
    pub fn from_config(
        store: Store,
        config: &crate::config::Config,
        logout_wake: Arc<Notify>,
    ) -> Self {
        Self::new(
            store,
            config.sessions.lifetime_hours as i64 * 3600,
            config.tokens.authorization_code_seconds as i64,
            config.tokens.refresh_lifetime_seconds(),
            logout_wake,
        )
    }

    /// Until when a revocation made at `now` is remembered: as long as the longest
    /// refresh family it may cut could still live.
    fn revoke_until(&self, now: i64) -> i64 {
        now + self.refresh_lifetime
    }

    /// Ends one session: it and the refresh tokens bound to it are revoked and its
    /// back-channel logouts are queued and sent. False when it had already ended.
    pub async fn end(&self, sid: &str, now: i64) -> Result<bool, SessionError> {
        let ended = self
            .store
            .end_session(sid, now, self.revoke_until(now))
            .await?;
        self.logout_wake.notify_one();
        Ok(ended)
    }

    /// Ends every session of the user and revokes every refresh token of theirs,
    /// `offline_access` ones included; back-channel logouts are queued and sent.
    pub async fn end_all(&self, user_id: &str, now: i64) -> Result<(), SessionError> {
        self.store
            .end_all_sessions(user_id, now, self.revoke_until(now))
            .await?;
        self.logout_wake.notify_one();
        Ok(())
    }

    /// Runs a change that ends sessions inside its own transaction (disabling or
    /// deleting a user, a new password): `change` gets the revocation horizon, and once
    /// it succeeded the back-channel logouts it queued are sent.
    pub async fn ending<T, E, F>(&self, now: i64, change: impl FnOnce(i64) -> F) -> Result<T, E>
    where
        F: std::future::Future<Output = Result<T, E>>,
    {
        let done = change(self.revoke_until(now)).await?;
        self.logout_wake.notify_one();
        Ok(done)
    }

    /// Starts a session after a successful login; the cookie it replaces (if any) ends,
    /// so the session id changes at every authentication (no session fixation).
    pub async fn start(
        &self,
        user_id: &str,
        amr: &[&str],
        origin: &SessionOrigin,
        replaces: Option<&str>,
        now: i64,
    ) -> Result<(String, SessionRecord), SessionError> {
        let cookie = new_opaque();
        let record = SessionRecord {
            sid: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.to_string(),
            auth_time: now,
            amr: amr.iter().map(|s| s.to_string()).collect(),
            expires_at: now + self.session_lifetime,
            last_seen_at: now,
        };
        let old = replaces.map(hash_opaque);
        self.store
            .create_session(&hash_opaque(&cookie), &record, origin, old.as_deref(), now)
            .await?;
        Ok((cookie, record))
    }

    /// The live session behind a cookie. Its "last seen" time is written at most every
    /// `TOUCH_SECONDS`, so single sign-on does not cost a write per request.
    pub async fn current(
        &self,
        cookie: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let session = self.store.find_session(&hash_opaque(cookie), now).await?;
        if let Some(s) = &session
            && now - s.last_seen_at >= TOUCH_SECONDS
        {
            self.store.touch_session(&s.sid, now).await?;
        }
        Ok(session)
    }

    pub async fn save_request(
        &self,
        request: &AuthorizationRequest,
        now: i64,
    ) -> Result<String, SessionError> {
        let id = new_opaque();
        let json = serde_json::to_string(request)?;
        self.store
            .save_authorization_request(
                &hash_opaque(&id),
                &request.client_id,
                &json,
                now,
                now + REQUEST_LIFETIME,
            )
            .await?;
        Ok(id)
    }

    /// The pending request, unless it expired or was already answered.
    pub async fn load_request(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<AuthorizationRequest>, SessionError> {
        if id.len() > 64 {
            return Ok(None);
        }
        match self
            .store
            .find_authorization_request(&hash_opaque(id), now)
            .await?
        {
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }

    /// Records on the pending request that the user signed in for it with session
    /// `sid`; false when the request is gone (expired or answered).
    pub async fn mark_signed_in(
        &self,
        id: &str,
        request: &mut AuthorizationRequest,
        sid: &str,
        now: i64,
    ) -> Result<bool, SessionError> {
        request.signed_in_sid = Some(sid.to_string());
        let json = serde_json::to_string(request)?;
        Ok(self
            .store
            .update_authorization_request(&hash_opaque(id), &json, now)
            .await?)
    }

    /// Marks a pending request answered; false when it already was.
    pub async fn complete_request(&self, id: &str, now: i64) -> Result<bool, SessionError> {
        Ok(self
            .store
            .complete_authorization_request(&hash_opaque(id), now)
            .await?)
    }

    /// Issues a single-use code bound to everything the token request must match.
    pub async fn issue_code(
        &self,
        request: &AuthorizationRequest,
        session: &SessionRecord,
        now: i64,
    ) -> Result<String, SessionError> {
        let code = new_opaque();
        let grant = CodeGrant {
            redirect_uri: request.redirect_uri.clone(),
            redirect_uri_sent: request.redirect_uri_sent,
            scopes: request.scopes.clone(),
            nonce: request.nonce.clone(),
            code_challenge: request.code_challenge.clone(),
            claims: request.claims.clone(),
            auth_time: session.auth_time,
            sid: session.sid.clone(),
        };
        self.store
            .insert_code(
                &hash_opaque(&code),
                &request.client_id,
                &session.user_id,
                &serde_json::to_string(&grant)?,
                now,
                now + self.code_lifetime,
            )
            .await?;
        // Back-Channel Logout 1.0 §2.2: this client now takes part in the session.
        self.store
            .add_session_client(&session.sid, &request.client_id, now)
            .await?;
        Ok(code)
    }

    pub async fn find_code(&self, code: &str) -> Result<Option<FoundCode>, SessionError> {
        if code.len() > 64 {
            return Ok(None);
        }
        match self.store.find_code(&hash_opaque(code)).await? {
            Some(r) => Ok(Some(FoundCode::from_record(r)?)),
            None => Ok(None),
        }
    }

    /// Marks the code used by the grant `grant_id`, atomically.
    pub async fn redeem_code(
        &self,
        code: &str,
        grant_id: &str,
        now: i64,
    ) -> Result<Redemption, SessionError> {
        Ok(
            match self
                .store
                .redeem_code(&hash_opaque(code), grant_id, now)
                .await?
            {
                Redeemed::Fresh(_) => Redemption::Fresh,
                Redeemed::Replayed(r) => Redemption::Replayed {
                    first_grant: r.grant_id,
                },
                Redeemed::Unknown => Redemption::Unknown,
            },
        )
    }
}
