//! What only the admin API changes: user search, an administrator's edit of a user
//! (profile, address, verification, roles, disabled) and deletion, client edits and
//! secret rotation. Each change is one transaction.

use sqlx::Row;

use super::accounts::{ProfileChange, revoke_everything};
use super::users::{USER_COLUMNS, user_from_row};
use super::{Result, Store, StoreError, UserRecord, dispatch, dispatch_write, on_unique};

/// An administrator's edit of a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AdminUserChange {
    pub profile: ProfileChange,
    pub email_verified: Option<bool>,
    pub disabled: Option<bool>,
    pub roles: Option<Vec<String>>,
}

/// `LIKE` pattern matching `text` anywhere, with the pattern characters escaped.
fn contains_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// Users ordered by lower-case username, after `after` (the last username of the
    /// previous page), whose username or e-mail contains `query` (case-insensitive).
    pub async fn search_users(
        &self,
        query: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UserRecord>> {
        let pattern = query.map(contains_pattern);
        let after = after.map(str::to_lowercase);
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users \
             WHERE ($1 IS NULL OR lower(username) LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\') \
             AND ($2 IS NULL OR lower(username) > $2) \
             ORDER BY lower(username) LIMIT $3"
        );
        let mut users = dispatch!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&pattern)
                .bind(&after)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let mut users = Vec::with_capacity(rows.len());
            for row in rows {
                users.push(user_from_row!(row));
            }
            users
        });
        for user in &mut users {
            user.roles = self.roles_of(&user.id).await?;
        }
        Ok(users)
    }

    /// Applies an administrator's edit in one transaction. Disabling a user also ends
    /// their sessions and revokes their refresh tokens (and the access tokens issued
    /// with them). `Conflict("email")` when another account has the address.
    pub async fn admin_update_user(
        &self,
        id: &str,
        change: &AdminUserChange,
        now: i64,
        revoke_until: i64,
    ) -> Result<()> {
        self.update_user(id, change, None, now, revoke_until).await
    }

    /// `admin_update_user`, plus (for a user's own change of address) a mailed token
    /// stored in the same transaction after the user's earlier links for other addresses
    /// than the current one are dropped, so only the latest change link works.
    pub(super) async fn update_user(
        &self,
        id: &str,
        change: &AdminUserChange,
        mailed: Option<&super::accounts::MailedToken<'_>>,
        now: i64,
        revoke_until: i64,
    ) -> Result<()> {
        let p = &change.profile;
        let flag = |f: &Option<Option<String>>| f.is_some();
        let value = |f: &Option<Option<String>>| f.clone().flatten();
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE users SET \
                 name = CASE WHEN $2 THEN $3 ELSE name END, \
                 given_name = CASE WHEN $4 THEN $5 ELSE given_name END, \
                 family_name = CASE WHEN $6 THEN $7 ELSE family_name END, \
                 picture = CASE WHEN $8 THEN $9 ELSE picture END, \
                 locale = CASE WHEN $10 THEN $11 ELSE locale END, \
                 email_verified = CASE WHEN $15 THEN $16 \
                                       WHEN $12 AND email <> $13 THEN FALSE \
                                       ELSE email_verified END, \
                 email = CASE WHEN $12 THEN $13 ELSE email END, \
                 pending_email = CASE WHEN $19 THEN $20 WHEN $12 THEN NULL ELSE pending_email END, \
                 disabled = CASE WHEN $17 THEN $18 ELSE disabled END, \
                 updated_at = $14 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(flag(&p.name))
            .bind(value(&p.name))
            .bind(flag(&p.given_name))
            .bind(value(&p.given_name))
            .bind(flag(&p.family_name))
            .bind(value(&p.family_name))
            .bind(flag(&p.picture))
            .bind(value(&p.picture))
            .bind(flag(&p.locale))
            .bind(value(&p.locale))
            .bind(p.email.is_some())
            .bind(p.email.clone().unwrap_or_default())
            .bind(now)
            .bind(change.email_verified.is_some())
            .bind(change.email_verified.unwrap_or(false))
            .bind(change.disabled.is_some())
            .bind(change.disabled.unwrap_or(false))
            .bind(p.pending_email.is_some())
            .bind(p.pending_email.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| on_unique(e, |_| "email"))?
            .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound);
            }
            if let Some(roles) = &change.roles {
                sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                for role in roles {
                    sqlx::query(
                        "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(role)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if change.disabled == Some(true) {
                revoke_everything!(tx, id, now, revoke_until);
            }
            if let Some(m) = mailed {
                sqlx::query(
                    "DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2 \
                     AND email <> (SELECT email FROM users WHERE id = $1)",
                )
                .bind(id)
                .bind(m.purpose.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO account_tokens (token_hash, purpose, user_id, email, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(m.hash)
                .bind(m.purpose.as_str())
                .bind(id)
                .bind(&m.email)
                .bind(now)
                .bind(m.expires_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes a user: sessions end (back-channel logouts queued), refresh families and
    /// their access tokens are revoked, then the row and everything hanging off it go.
    pub async fn delete_user(&self, id: &str, now: i64, revoke_until: i64) -> Result<()> {
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            revoke_everything!(tx, id, now, revoke_until);
            let done = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Replaces a client's secret hash; `NotFound` when no such client.
    pub async fn set_client_secret(&self, id: &str, secret_hash: &[u8], now: i64) -> Result<()> {
        let done = dispatch_write!(self, pool => {
            sqlx::query("UPDATE clients SET secret_hash = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(secret_hash)
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

    /// Whether a user has a role (the admin API's check, on every request).
    pub async fn has_role(&self, user_id: &str, role: &str) -> Result<bool> {
        let found: Option<String> = dispatch!(self, pool => {
            sqlx::query_scalar(
                "SELECT r.role FROM user_roles r JOIN users u ON u.id = r.user_id \
                 WHERE r.user_id = $1 AND r.role = $2 AND NOT u.disabled",
            )
            .bind(user_id)
            .bind(role)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }
}
