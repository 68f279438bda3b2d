//! Self-service account changes: mailed single-use tokens (verification, reset), profile
//! edits, and the multi-row changes a password reset makes, each in one transaction.

use sqlx::Row;

use super::{Result, Store, StoreError, dispatch, dispatch_write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// A live mailed token: whose it is and the address it was mailed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountToken {
    pub user_id: String,
    pub email: String,
}

/// Profile fields a user may change; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub name: Option<Option<String>>,
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    pub picture: Option<Option<String>>,
    pub locale: Option<Option<String>>,
    /// A new (normalised) address: stored unverified.
    pub email: Option<String>,
}

/// Inside a transaction `$tx`: ends every browser session of `$user_id`, revokes every
/// refresh family of the user and, through the grant ids, the access tokens issued in
/// them, and queues the back-channel logouts of those sessions. Shared by a password reset and "sign out everywhere".
macro_rules! revoke_everything {
    ($tx:ident, $user_id:expr, $now:expr, $revoke_until:expr) => {{
        // Back-channel logouts for the sessions about to end, in the same transaction.
        super::backchannel::queue_logout_notices!($tx, "b.user_id = $1", $user_id, $now);
        sqlx::query(
            "UPDATE browser_sessions SET ended_at = $2 WHERE user_id = $1 AND ended_at IS NULL",
        )
        .bind($user_id)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "INSERT INTO revocations (id, expires_at, revoked_at) \
             SELECT DISTINCT family_id, $2, $3 FROM refresh_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind($user_id)
        .bind($revoke_until)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind($user_id)
        .bind($now)
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
                "INSERT INTO account_tokens (token_hash, purpose, user_id, email, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(token_hash)
            .bind(purpose.as_str())
            .bind(&token.user_id)
            .bind(&token.email)
            .bind(now)
            .bind(expires_at)
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
                Ok(AccountToken { user_id: row.try_get("user_id")?, email: row.try_get("email")? })
            })
        });
        row.transpose()
    }

    /// Uses up a verification token and marks the address verified, if it is still the
    /// user's address. One transaction; `None` when the token is unknown, used or expired.
    pub async fn redeem_verification(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<AccountToken>> {
        let purpose = TokenPurpose::VerifyEmail.as_str();
        Ok(dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "DELETE FROM account_tokens WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3 \
                 RETURNING user_id, email",
            )
            .bind(token_hash)
            .bind(purpose)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => {
                    tx.rollback().await?;
                    None
                }
                Some(row) => {
                    let token = AccountToken { user_id: row.try_get("user_id")?, email: row.try_get("email")? };
                    // A link mailed to an address the user has since changed proves nothing.
                    let changed = sqlx::query(
                        "UPDATE users SET email_verified = TRUE, updated_at = $3 WHERE id = $1 AND email = $2",
                    )
                    .bind(&token.user_id)
                    .bind(&token.email)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    tx.commit().await?;
                    (changed == 1).then_some(token)
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

    /// Replaces the password hash of the user with this `sub`.
    pub async fn set_password_hash_by_id(&self, user_id: &str, hash: &str, now: i64) -> Result<()> {
        let done = dispatch_write!(self, pool => {
            sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                .bind(user_id)
                .bind(hash)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Applies a profile change in one transaction. A new address is stored unverified;
    /// `Conflict("email")` when another account has it.
    pub async fn update_profile(
        &self,
        user_id: &str,
        change: &ProfileChange,
        now: i64,
    ) -> Result<()> {
        // The administrator's edit with only the profile part: one statement serves both.
        let change = super::AdminUserChange {
            profile: change.clone(),
            ..Default::default()
        };
        self.admin_update_user(user_id, &change, now, now).await
    }

    /// A user by normalised e-mail address, with roles.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<super::UserRecord>> {
        self.find_user_where("email = $1", email).await
    }
}
