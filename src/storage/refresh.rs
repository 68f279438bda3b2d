//! Refresh-token rows. Rotation is one transaction with a conditional update, so of two
//! racing refreshes exactly one rotates (PostgreSQL's row lock, SQLite's single writer).

use sqlx::Row;

use super::{Result, Store, dispatch, dispatch_write};

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
    /// The family has a row in `revocations` (authoritative: a successor committed while
    /// the family was being revoked may lack its own `revoked_at`).
    pub family_revoked: bool,
    /// Not bound to a browser session, or bound to one that is live at `now`.
    pub session_live: bool,
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
        dispatch_write!(self, pool => {
            insert_refresh!(pool, new, now);
        });
        Ok(())
    }

    /// The token with its family's revocation and its session's liveness at `now`, in
    /// one statement: every query is a round trip (on SQLite a hand-off to the
    /// connection's thread and back), and a refresh needs all three.
    pub async fn find_refresh_token(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<RefreshRecord>> {
        Ok(dispatch!(self, pool => {
            match sqlx::query(
                "SELECT r.family_id, r.client_id, r.user_id, r.grant_data, r.session_sid, r.created_at, \
                 r.expires_at, r.family_expires_at, r.used_at, r.successor_sealed, r.revoked_at, \
                 EXISTS (SELECT 1 FROM revocations v WHERE v.id = r.family_id) AS family_revoked, \
                 (r.session_sid IS NULL OR EXISTS (SELECT 1 FROM browser_sessions s \
                   WHERE s.sid = r.session_sid AND s.ended_at IS NULL AND s.expires_at > $2)) AS session_live \
                 FROM refresh_tokens r WHERE r.token_hash = $1",
            )
            .bind(token_hash)
            .bind(now)
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
                    family_revoked: row.try_get("family_revoked")?,
                    session_live: row.try_get("session_live")?,
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
        Ok(dispatch_write!(self, pool => {
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
        dispatch_write!(self, pool => {
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
}
