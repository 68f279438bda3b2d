//! Refresh tokens: issue, rotate, and the grace window for concurrent refreshes
//! (RFC 6749 §6, §10.4; RFC 9700 §4.14.2).
//!
//! A rotation stores the successor token sealed (ChaCha20-Poly1305) under a key derived
//! from the token being replaced. Whoever presents the old token again within the grace
//! window can therefore be given the identical successor, while the database holds
//! nothing usable in clear: the old token exists only as a hash.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{SessionError, Sessions, hash_opaque, new_opaque};
use crate::oidc::claims::ClaimsRequest;
use crate::storage::{NewRefresh, RefreshRecord, UserRecord};

/// What a refresh token carries forward from the original grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshGrant {
    pub scopes: Vec<String>,
    pub auth_time: i64,
    pub sid: Option<String>,
    pub claims: ClaimsRequest,
}

/// Who a new refresh family belongs to. `bound_sid`: the browser session it lives with
/// (None with `offline_access`).
#[derive(Debug, Clone, Copy)]
pub struct FamilyStart<'a> {
    pub family_id: &'a str,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub bound_sid: Option<&'a str>,
}

/// Lifetimes from `[tokens]`.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    pub idle_seconds: i64,
    pub absolute_seconds: i64,
    pub grace_seconds: i64,
}

/// The refusal reason of a rotated token presented again (its family is now revoked).
pub const REUSED: &str = "refresh token reused after rotation";

/// The result of presenting a refresh token.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// Rotated now, or within the grace window of a concurrent rotation: either way
    /// `token` is the family's one current successor.
    Issued {
        token: String,
        family_id: String,
        /// The grant's user, read (and found enabled) before anything rotated.
        user: Box<UserRecord>,
        grant: RefreshGrant,
    },
    /// Unknown, expired, revoked, of another client, session ended, or reused after the
    /// grace window (the family is then revoked). The reason is for logs only.
    Invalid(&'static str),
    /// The request asked for more scope than the grant has; nothing was rotated.
    ScopeExceeded,
}

fn sealing_key(token: &str) -> Key {
    let mut hasher = Sha256::new();
    hasher.update(b"oxidp/refresh-successor/v1\0");
    hasher.update(token.as_bytes());
    Key::from(<[u8; 32]>::from(hasher.finalize()))
}

/// Each key seals exactly one message (a token is rotated once), so a fixed nonce is
/// safe.
fn seal(old_token: &str, successor: &str) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(&sealing_key(old_token))
        .encrypt(&Nonce::default(), successor.as_bytes())
        .ok()
}

fn unseal(old_token: &str, sealed: &[u8]) -> Option<String> {
    let plain = ChaCha20Poly1305::new(&sealing_key(old_token))
        .decrypt(&Nonce::default(), sealed)
        .ok()?;
    String::from_utf8(plain).ok()
}

impl Sessions {
    /// Starts a family (at a code exchange or password grant) with its first token.
    pub async fn issue_refresh(
        &self,
        family: &FamilyStart<'_>,
        grant: &RefreshGrant,
        policy: RefreshPolicy,
        now: i64,
    ) -> Result<String, SessionError> {
        let token = new_opaque();
        let family_expires_at = now + policy.absolute_seconds;
        let data = serde_json::to_string(grant)?;
        self.store
            .insert_refresh_token(
                &NewRefresh {
                    token_hash: &hash_opaque(&token),
                    family_id: family.family_id,
                    client_id: family.client_id,
                    user_id: family.user_id,
                    grant_data: &data,
                    session_sid: family.bound_sid,
                    expires_at: (now + policy.idle_seconds).min(family_expires_at),
                    family_expires_at,
                },
                now,
            )
            .await?;
        Ok(token)
    }

    /// Rotates `presented` for `client_id`. Concurrent presentations of the same token
    /// within the grace window all receive the same successor; a presentation after the
    /// window revokes the whole family.
    pub async fn refresh(
        &self,
        presented: &str,
        client_id: &str,
        policy: RefreshPolicy,
        now: i64,
        requested_scopes: Option<&[String]>,
    ) -> Result<RefreshOutcome, SessionError> {
        if presented.len() > 64 {
            return Ok(RefreshOutcome::Invalid("not a refresh token"));
        }
        let old_hash = hash_opaque(presented);
        let Some(mut row) = self.store.find_refresh_token(&old_hash, now).await? else {
            return Ok(RefreshOutcome::Invalid("unknown refresh token"));
        };
        if row.client_id != client_id {
            return Ok(RefreshOutcome::Invalid("refresh token of another client"));
        }
        if row.revoked_at.is_some() || row.family_revoked {
            return Ok(RefreshOutcome::Invalid("revoked refresh token"));
        }
        if row.family_expires_at <= now {
            return Ok(RefreshOutcome::Invalid("refresh token family expired"));
        }
        let grant: RefreshGrant = serde_json::from_str(&row.grant_data)?;
        // RFC 6749 §6: scope may be narrowed, never widened.
        if requested_scopes.is_some_and(|r| r.iter().any(|s| !grant.scopes.contains(s))) {
            return Ok(RefreshOutcome::ScopeExceeded);
        }
        // A refused refresh must not rotate: check the user before anything changes.
        let Some(user) = row.user.take().filter(|u| !u.disabled) else {
            return Ok(RefreshOutcome::Invalid("the user is disabled or gone"));
        };
        if row.used_at.is_none() {
            if row.expires_at <= now {
                return Ok(RefreshOutcome::Invalid("refresh token expired"));
            }
            if !row.session_live {
                return Ok(RefreshOutcome::Invalid("the browser session has ended"));
            }
            let successor = new_opaque();
            let sealed = seal(presented, &successor).ok_or(SessionError::Sealing)?;
            let rotated = self
                .store
                .rotate_refresh_token(
                    &old_hash,
                    &NewRefresh {
                        token_hash: &hash_opaque(&successor),
                        family_id: &row.family_id,
                        client_id,
                        user_id: &row.user_id,
                        grant_data: &row.grant_data,
                        session_sid: row.session_sid.as_deref(),
                        expires_at: (now + policy.idle_seconds).min(row.family_expires_at),
                        family_expires_at: row.family_expires_at,
                    },
                    &sealed,
                    now,
                )
                .await?;
            if rotated {
                return Ok(RefreshOutcome::Issued {
                    token: successor,
                    family_id: row.family_id,
                    user: Box::new(user),
                    grant,
                });
            }
            // A concurrent request rotated first: read what it stored.
            let Some(row) = self.store.find_refresh_token(&old_hash, now).await? else {
                return Ok(RefreshOutcome::Invalid("unknown refresh token"));
            };
            return self.reuse(presented, row, user, grant, policy, now).await;
        }
        self.reuse(presented, row, user, grant, policy, now).await
    }

    /// A token presented after it was rotated.
    async fn reuse(
        &self,
        presented: &str,
        row: RefreshRecord,
        user: UserRecord,
        grant: RefreshGrant,
        policy: RefreshPolicy,
        now: i64,
    ) -> Result<RefreshOutcome, SessionError> {
        if row.revoked_at.is_some() || row.family_revoked {
            return Ok(RefreshOutcome::Invalid("revoked refresh token"));
        }
        let within_grace = row
            .used_at
            .is_some_and(|used| now - used <= policy.grace_seconds);
        let successor = row
            .successor_sealed
            .as_deref()
            .and_then(|sealed| unseal(presented, sealed));
        match (within_grace, successor) {
            (true, Some(token)) => Ok(RefreshOutcome::Issued {
                token,
                family_id: row.family_id,
                user: Box::new(user),
                grant,
            }),
            _ => {
                // RFC 9700 §4.14.2: a rotated token used again means it leaked; end the
                // family, and with it every access token issued in it.
                let until = row.family_expires_at.max(now) + policy.idle_seconds;
                self.store.revoke_family(&row.family_id, until, now).await?;
                tracing::warn!(family = %row.family_id, "refresh token reused after rotation; family revoked");
                Ok(RefreshOutcome::Invalid(REUSED))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_successor_opens_only_with_the_old_token() {
        let sealed = seal("old-token", "new-token").unwrap();
        assert_eq!(unseal("old-token", &sealed).as_deref(), Some("new-token"));
        assert_eq!(unseal("other-token", &sealed), None);
        assert!(!sealed.windows(9).any(|w| w == b"new-token"));
    }
}
