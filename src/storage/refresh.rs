//! Refresh-token rows. Rotation is one transaction with a conditional update, so of two
//! racing refreshes exactly one rotates (PostgreSQL's row lock, SQLite's single writer).

use sqlx::Row;

use super::{Result, Store, dispatch};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub grant_data: String,
    pub session_sid: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub family_expires_at: i64,
    pub used_at: Option<i64>,
    pub successor_sealed: Option<Vec<u8>>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewRefresh<'a> {
    pub token_hash: &'a [u8],
    pub family_id: &'a str,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub grant_data: &'a str,
    pub session_sid: Option<&'a str>,
    pub expires_at: i64,
    pub family_expires_at: i64,
}

macro_rules! insert_refresh {
    ($executor:expr, $new:expr, $now:expr) => {{
        let new = $new;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, grant_data, \
             session_sid, created_at, expires_at, family_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(new.token_hash)
        .bind(new.family_id)
        .bind(new.client_id)
        .bind(new.user_id)
        .bind(new.grant_data)
        .bind(new.session_sid)
        .bind($now)
        .bind(new.expires_at)
        .bind(new.family_expires_at)
        .execute($executor)
        .await?;
    }};
}

impl Store {
    pub async fn insert_refresh_token(&self, new: &NewRefresh<'_>, now: i64) -> Result<()> {
        dispatch!(self, pool => {
            insert_refresh!(pool, new, now);
        });
        Ok(())
    }

    pub async fn find_refresh_token(&self, token_hash: &[u8]) -> Result<Option<RefreshRecord>> {
        Ok(dispatch!(self, pool => {
            match sqlx::query(
                "SELECT family_id, client_id, user_id, grant_data, session_sid, created_at, expires_at, \
                 family_expires_at, used_at, successor_sealed, revoked_at \
                 FROM refresh_tokens WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
            {
                Some(row) => Some(RefreshRecord {
                    family_id: row.try_get("family_id")?,
                    client_id: row.try_get("client_id")?,
                    user_id: row.try_get("user_id")?,
                    grant_data: row.try_get("grant_data")?,
                    session_sid: row.try_get("session_sid")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    family_expires_at: row.try_get("family_expires_at")?,
                    used_at: row.try_get("used_at")?,
                    successor_sealed: row.try_get("successor_sealed")?,
                    revoked_at: row.try_get("revoked_at")?,
                }),
                None => None,
            }
        }))
    }

    /// Marks `old_hash` used (keeping its sealed successor for the grace window) and
    /// inserts the successor, in one transaction. False when the old token was already
    /// used or revoked: a concurrent refresh won, and the caller takes the grace path.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        successor: &NewRefresh<'_>,
        sealed: &[u8],
        now: i64,
    ) -> Result<bool> {
        Ok(dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            let won = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2, successor_sealed = $3 \
                 WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL",
            )
            .bind(old_hash)
            .bind(now)
            .bind(sealed)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if won {
                insert_refresh!(&mut *tx, successor, now);
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            won
        }))
    }

    /// Revokes every token of a family and, through the grant id, every access token
    /// issued in it. One transaction.
    pub async fn revoke_family(&self, family_id: &str, until: i64, now: i64) -> Result<()> {
        dispatch!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
                .bind(family_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO revocations (id, expires_at, revoked_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(family_id)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether the browser session `sid` is still live (not ended, not expired).
    pub async fn session_is_live(&self, sid: &str, now: i64) -> Result<bool> {
        let found: Option<i64> = dispatch!(self, pool => {
            sqlx::query_scalar(
                "SELECT expires_at FROM browser_sessions WHERE sid = $1 AND ended_at IS NULL AND expires_at > $2",
            )
            .bind(sid)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }
}
