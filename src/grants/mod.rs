//! The token grants, one file each, below the HTTP layer: each takes the authenticated
//! client and the request's parameters and returns a token response or a typed
//! [`GrantError`]; `http::token` parses the request, authenticates the client and
//! renders the outcome. Shared here: minting, refresh families, revoking a replayed
//! code's grant.

pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::audit::{Audit, Context, Event};
use crate::authn::SignIn;
use crate::config::Config;
use crate::keys::KeyRing;
use crate::oidc::Error;
use crate::oidc::claims::{OFFLINE_ACCESS, OPENID, UserClaims};
use crate::oidc::registration::GrantType;
use crate::oidc::tokens::{ACCESS_TOKEN_TYP, Grant, access_token_claims, at_hash, id_token_claims};
use crate::sessions::{FamilyStart, RefreshGrant, RefreshPolicy, Sessions};
use crate::storage::{ClientRecord, Store, UserRecord};

/// What the grants need: settings, storage, sessions, keys, sign-in and the audit
/// trail.
#[derive(Debug, Clone)]
pub struct Grants {
    pub config: Arc<Config>,
    pub store: Store,
    pub sessions: Sessions,
    pub keys: KeyRing,
    pub sign_in: SignIn,
    audit_queue: Audit,
}

impl Grants {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        sessions: Sessions,
        keys: KeyRing,
        sign_in: SignIn,
        audit: Audit,
    ) -> Self {
        Self {
            config,
            store,
            sessions,
            keys,
            sign_in,
            audit_queue: audit,
        }
    }

    fn audit(&self, context: &Context, event: Event) {
        self.audit_queue.record(context, event);
    }

    /// How long a refresh family may live (`tokens.refresh_absolute_days`).
    pub fn refresh_lifetime(&self) -> i64 {
        self.config.tokens.refresh_absolute_days as i64 * 86_400
    }
}

/// Why a grant gave no tokens.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// A standard error response (RFC 6749 §5.2).
    #[error("{0}")]
    Protocol(Error),
    /// Over a brute-force limit (DESIGN.md "Password grant and rate limits").
    #[error("too many failed attempts")]
    Limited(crate::ratelimit::RetryAfter),
    /// The password workers are saturated.
    #[error("too many sign-ins are being checked")]
    Busy,
    /// Storage or signing failed; the cause is logged once where it is rendered.
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl GrantError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }
}

impl From<Error> for GrantError {
    fn from(error: Error) -> Self {
        Self::Protocol(error)
    }
}

/// A token response and the user it was issued for (none for client credentials).
pub struct Issued {
    pub body: Value,
    pub user: Option<String>,
}

impl Issued {
    pub(crate) fn for_user(body: Value, user: &str) -> Self {
        Self {
            body,
            user: Some(user.to_string()),
        }
    }
}

/// Every sign-in is by password today (OIDC Core §2 `amr`, RFC 8176 `pwd`).
const PASSWORD_AMR: &[&str] = &["pwd"];

/// Starts a refresh family for a client with the `refresh_token` grant. Without
/// `offline_access` the family lives with the browser session `grant.sid`.
async fn start_refresh_family(
    state: &Grants,
    client: &ClientRecord,
    user_id: &str,
    grant_id: &str,
    grant: RefreshGrant,
    now: i64,
) -> Result<Option<String>, GrantError> {
    if !allows(client, GrantType::RefreshToken) {
        return Ok(None);
    }
    let offline = grant.scopes.iter().any(|s| s == OFFLINE_ACCESS);
    let bound_sid = if offline { None } else { grant.sid.as_deref() };
    let token = state
        .sessions
        .issue_refresh(
            &FamilyStart {
                family_id: grant_id,
                client_id: &client.id,
                user_id,
                bound_sid,
            },
            &grant,
            refresh_policy(state),
            now,
        )
        .await
        .map_err(GrantError::internal)?;
    Ok(Some(token))
}

fn allows(client: &ClientRecord, grant: GrantType) -> bool {
    client.grant_types.iter().any(|g| g == grant.as_str())
}

pub fn refresh_policy(state: &Grants) -> RefreshPolicy {
    let t = &state.config.tokens;
    RefreshPolicy {
        idle_seconds: t.refresh_idle_days as i64 * 86_400,
        absolute_seconds: state.refresh_lifetime(),
        grace_seconds: t.refresh_grace_seconds as i64,
    }
}

/// A replayed code: its grant (access token and refresh family) is revoked
/// (RFC 6749 §4.1.2).
async fn revoke_grant(state: &Grants, grant_id: Option<&str>, now: i64) -> Result<(), GrantError> {
    if let Some(grant_id) = grant_id {
        let policy = refresh_policy(state);
        let until = now
            + policy
                .absolute_seconds
                .max(state.config.tokens.access_token_seconds as i64);
        state
            .store
            .revoke_family(grant_id, until, now)
            .await
            .map_err(GrantError::internal)?;
        tracing::warn!(grant = %grant_id, "authorization code replayed; its grant is revoked");
    }
    Ok(())
}

/// Signs the access token and, for OpenID requests, the ID token; adds the refresh
/// token when there is one. Both signatures run as one job on a signing thread (the
/// ID token's `at_hash` needs the signed access token).
pub async fn mint(
    state: &Grants,
    grant: &Grant<'_>,
    user: &UserRecord,
    nonce: Option<&str>,
    id_token_claims_requested: &[String],
    userinfo_claims_requested: &[String],
    refresh_token: Option<String>,
) -> Result<Value, GrantError> {
    let tokens = &state.config.tokens;
    let access_lifetime = tokens.access_token_seconds as i64;
    let jti = uuid::Uuid::new_v4().to_string();
    let access_claims = access_token_claims(
        grant,
        &user.id,
        &jti,
        access_lifetime,
        userinfo_claims_requested,
    );
    // at_hash is added on the signing thread, once the access token exists.
    let id_claims = grant.scopes.iter().any(|s| s == OPENID).then(|| {
        id_token_claims(
            grant,
            &user_claims(user),
            nonce,
            None,
            tokens.id_token_seconds as i64,
            id_token_claims_requested,
        )
    });
    let (access, id_token) = state
        .keys
        .sign_with(move |keys| {
            let access = keys.sign(Some(ACCESS_TOKEN_TYP), access_claims)?;
            let id_token = match id_claims {
                Some(mut claims) => {
                    claims.insert("at_hash".into(), json!(at_hash(&access)));
                    Some(keys.sign(None, claims)?)
                }
                None => None,
            };
            Ok::<_, crate::keys::TokenError>((access, id_token))
        })
        .await
        .and_then(|signed| signed)
        .map_err(GrantError::internal)?;
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": access_lifetime,
        "scope": grant.scopes.join(" "),
    });
    if let Some(id_token) = id_token {
        body["id_token"] = json!(id_token);
    }
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = json!(refresh);
    }
    Ok(body)
}

pub fn user_claims(user: &UserRecord) -> UserClaims<'_> {
    UserClaims {
        sub: &user.id,
        username: &user.username,
        email: &user.email,
        email_verified: user.email_verified,
        name: user.name.as_deref(),
        given_name: user.given_name.as_deref(),
        family_name: user.family_name.as_deref(),
        picture: user.picture.as_deref(),
        locale: user.locale.as_deref(),
        roles: &user.roles,
        updated_at: user.updated_at,
    }
}
