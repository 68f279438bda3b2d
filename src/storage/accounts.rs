//! Self-service account changes: mailed single-use tokens (verification, reset), profile
//! edits, and the multi-row changes a password reset makes, each in one transaction.

use sqlx::Row;

use super::{Result, Store, StoreError, dispatch, dispatch_write, on_unique};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// A live mailed token: whose it is and the address it was mailed to. A verification
/// token for the user's pending address applies that address when it is used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountToken {
    pub user_id: String,
    pub email: String,
    /// Sign-up only: SHA-256 of the value that proves the link is opened in the browser
    /// that signed up (see `http::pages::signup_binding`).
    pub browser_hash: Option<Vec<u8>>,
    /// Sign-up only: the pending authorization request to resume after the link.
    pub resume_request: Option<String>,
}

/// A token to store with a change, in its transaction.
#[derive(Debug, Clone)]
pub struct MailedToken<'a> {
    pub hash: &'a [u8],
    pub purpose: TokenPurpose,
    /// The address it is mailed to.
    pub email: String,
    pub expires_at: i64,
}

/// What using a verification token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The user's current address is now verified.
    Address(AccountToken),
    /// The pending address became the user's address; `previous` is the one it replaced.
    Changed {
        token: AccountToken,
        previous: String,
    },
    /// The pending address belongs to another account by now; nothing changed and the
    /// token stays unused.
    Taken,
}

/// What a password change keeps when it signs out the user's other sessions: the
/// browser session it was made in and the refresh family of the calling token.
#[derive(Debug, Clone, Default)]
pub struct KeepSession {
    pub sid: Option<String>,
    pub family_id: Option<String>,
}

/// Profile fields a user may change; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub name: Option<Option<String>>,
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    pub picture: Option<Option<String>>,
    pub locale: Option<Option<String>>,
    /// A new (normalised) address: stored unverified (administrators only; a user's
    /// own change goes through `pending_email`).
    pub email: Option<String>,
    /// A new address waiting for its link to be opened (ASVS 2.2.3).
    pub pending_email: Option<String>,
}

/// Inside a transaction `$tx`: ends every browser session of `$user_id` except the
/// session `$keep_sid` (`""` keeps none), revokes every refresh family of the user except
/// those living with that session and the family `$keep_family` (`""`: none) and,
/// through the grant ids, the access tokens issued in them, and queues the back-channel
/// logouts of the sessions it ends. Shared by a password reset, a password change that
/// signs out other sessions, "sign out everywhere", disabling and deleting a user.
macro_rules! revoke_everything {
    ($tx:ident, $user_id:expr, $now:expr, $revoke_until:expr) => {{ super::accounts::revoke_everything!($tx, $user_id, "", "", $now, $revoke_until) }};
    ($tx:ident, $user_id:expr, $keep_sid:expr, $keep_family:expr, $now:expr, $revoke_until:expr) => {{
        // Back-channel logouts for the sessions about to end, in the same transaction.
        super::backchannel::queue_logout_notices!(
            $tx,
            "b.user_id = $1 AND b.sid <> $3",
            $user_id,
            $now,
            $keep_sid
        );
        sqlx::query(
            "UPDATE browser_sessions SET ended_at = $2 \
             WHERE user_id = $1 AND ended_at IS NULL AND sid <> $3",
        )
        .bind($user_id)
        .bind($now)
        .bind($keep_sid)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "INSERT INTO revocations (id, expires_at, revoked_at) \
             SELECT DISTINCT family_id, $2, $3 FROM refresh_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL \
             AND (session_sid IS NULL OR session_sid <> $4) AND family_id <> $5 \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind($user_id)
        .bind($revoke_until)
        .bind($now)
        .bind($keep_sid)
        .bind($keep_family)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL \
             AND (session_sid IS NULL OR session_sid <> $3) AND family_id <> $4",
        )
        .bind($user_id)
        .bind($now)
        .bind($keep_sid)
        .bind($keep_family)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(super) use revoke_everything;

impl Store {
    /// Stores a token's hash. Earlier tokens of the same purpose stay valid until they
    /// expire or one of them is used.
    pub async fn insert_account_token(
        &self,
        token_hash: &[u8],
        purpose: TokenPurpose,
        token: &AccountToken,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query(
                "INSERT INTO account_tokens (token_hash, purpose, user_id, email, created_at, expires_at, \
                 browser_hash, resume_request) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(token_hash)
            .bind(purpose.as_str())
            .bind(&token.user_id)
            .bind(&token.email)
            .bind(now)
            .bind(expires_at)
            .bind(&token.browser_hash)
            .bind(&token.resume_request)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A live token of this purpose, without using it up.
    pub async fn find_account_token(
        &self,
        token_hash: &[u8],
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<AccountToken>> {
        let row = dispatch!(self, pool => {
            sqlx::query(
                "SELECT user_id, email FROM account_tokens \
                 WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3",
            )
            .bind(token_hash)
            .bind(purpose.as_str())
            .bind(now)
            .fetch_optional(pool)
            .await?
            .map(|row| -> Result<AccountToken> {
                Ok(AccountToken {
                    user_id: row.try_get("user_id")?,
                    email: row.try_get("email")?,
                    ..AccountToken::default()
                })
            })
        });
        row.transpose()
    }

    /// Uses up a verification token, in one transaction: the address it was mailed to
    /// is verified if it is still the user's address, or becomes the user's address if
    /// it is the pending one (ASVS 2.2.3) and no other account has it meanwhile (then
    /// nothing changes: `Verified::Taken`). Changing the address drops the user's other
    /// mailed tokens (they went to the old one). `None` when the token is unknown, used,
    /// expired, or was mailed to an address the user no longer has or asks for.
    pub async fn redeem_verification(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<Verified>> {
        let purpose = TokenPurpose::VerifyEmail.as_str();
        Ok(dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "DELETE FROM account_tokens WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3 \
                 RETURNING user_id, email, browser_hash, resume_request",
            )
            .bind(token_hash)
            .bind(purpose)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Ok(None);
            };
            let token = AccountToken {
                user_id: row.try_get("user_id")?,
                email: row.try_get("email")?,
                browser_hash: row.try_get("browser_hash")?,
                resume_request: row.try_get("resume_request")?,
            };
            let current: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT email, pending_email FROM users WHERE id = $1")
                    .bind(&token.user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match current {
                Some((email, _)) if email == token.email => {
                    sqlx::query("UPDATE users SET email_verified = TRUE, updated_at = $2 WHERE id = $1")
                        .bind(&token.user_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Some(Verified::Address(token))
                }
                Some((previous, Some(pending))) if pending == token.email => {
                    let taken: Option<String> =
                        sqlx::query_scalar("SELECT id FROM users WHERE email = $1 AND id <> $2")
                            .bind(&token.email)
                            .bind(&token.user_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if taken.is_some() {
                        tx.rollback().await?;
                        return Ok(Some(Verified::Taken));
                    }
                    let changed = sqlx::query(
                        "UPDATE users SET email = $2, email_verified = TRUE, pending_email = NULL, \
                         updated_at = $3 WHERE id = $1",
                    )
                    .bind(&token.user_id)
                    .bind(&token.email)
                    .bind(now)
                    .execute(&mut *tx)
                    .await;
                    if let Err(e) = changed {
                        // Another account took the address between the check and the update.
                        return match on_unique(e, |_| "email") {
                            StoreError::Conflict(_) => {
                                tx.rollback().await?;
                                Ok(Some(Verified::Taken))
                            }
                            other => Err(other),
                        };
                    }
                    sqlx::query("DELETE FROM account_tokens WHERE user_id = $1")
                        .bind(&token.user_id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Some(Verified::Changed { token, previous })
                }
                // A link mailed to an address the user has since left proves nothing.
                _ => {
                    tx.commit().await?;
                    None
                }
            }
        }))
    }

    /// Uses up a reset token and, in the same transaction, sets the new password hash,
    /// ends every browser session of the user, revokes every refresh family (and with it
    /// the access tokens issued in it) and drops the user's other reset tokens.
    /// `None` when the token was used or expired meanwhile.
    pub async fn reset_password(
        &self,
        token_hash: &[u8],
        password_hash: &str,
        now: i64,
        revoke_until: i64,
    ) -> Result<Option<String>> {
        let purpose = TokenPurpose::ResetPassword.as_str();
        Ok(dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let user_id: Option<String> = sqlx::query_scalar(
                "DELETE FROM account_tokens WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3 \
                 RETURNING user_id",
            )
            .bind(token_hash)
            .bind(purpose)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            match user_id {
                None => {
                    tx.rollback().await?;
                    None
                }
                Some(user_id) => {
                    sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                        .bind(&user_id)
                        .bind(password_hash)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2")
                        .bind(&user_id)
                        .bind(purpose)
                        .execute(&mut *tx)
                        .await?;
                    revoke_everything!(tx, &user_id, now, revoke_until);
                    tx.commit().await?;
                    Some(user_id)
                }
            }
        }))
    }

    /// Replaces the password hash of the user with this `sub` and, when `sign_out` is
    /// given, in the same transaction ends the user's other sessions and revokes their
    /// other refresh families (ASVS 3.3.3), keeping what `sign_out` names.
    pub async fn change_password_by_id(
        &self,
        user_id: &str,
        hash: &str,
        sign_out: Option<&KeepSession>,
        now: i64,
        revoke_until: i64,
    ) -> Result<()> {
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                .bind(user_id)
                .bind(hash)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound);
            }
            if let Some(keep) = sign_out {
                let keep_sid = keep.sid.clone().unwrap_or_default();
                let keep_family = keep.family_id.clone().unwrap_or_default();
                revoke_everything!(tx, user_id, keep_sid.as_str(), keep_family.as_str(), now, revoke_until);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Applies a profile change and, with `mailed`, stores that token, in one
    /// transaction. `Conflict("email")` when another account has a new `email`.
    pub async fn update_profile(
        &self,
        user_id: &str,
        change: &ProfileChange,
        mailed: Option<&MailedToken<'_>>,
        now: i64,
    ) -> Result<()> {
        // The administrator's edit with only the profile part: one statement serves both.
        let change = super::AdminUserChange {
            profile: change.clone(),
            ..Default::default()
        };
        self.update_user(user_id, &change, mailed, now, now).await
    }

    /// A user by normalised e-mail address, with roles.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<super::UserRecord>> {
        self.find_user_where("email = $1", email).await
    }
}
