//! Browser sessions, pending authorization requests, codes, consents and revoked access
//! tokens. Every opaque value arrives here already hashed.

use sqlx::Row;

use super::{Result, Store, dispatch, dispatch_write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub sid: String,
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub expires_at: i64,
    /// When the session was last used (its start until then).
    pub last_seen_at: i64,
}

/// Where a session was started from, for the user's list of sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOrigin {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// `sid, created_at, last_seen_at, auth_time, user_agent, ip`.
type SessionRow = (
    String,
    i64,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
);

/// A live session as the user's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub sid: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub auth_time: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// A code row as the token endpoint needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub client_id: String,
    pub user_id: String,
    pub grant_data: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub grant_id: Option<String>,
}

/// What redeeming a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// First use: the code is now marked used and bound to `jti`.
    Fresh(CodeRecord),
    /// Used before: the caller revokes what the first use issued.
    Replayed(CodeRecord),
    Unknown,
}

impl Store {
    /// Creates a session, ending the one it replaces (session id rotation at login), in
    /// one transaction.
    pub async fn create_session(
        &self,
        id_hash: &[u8],
        session: &SessionRecord,
        origin: &SessionOrigin,
        replaces: Option<&[u8]>,
        now: i64,
    ) -> Result<()> {
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some(old) = replaces {
                sqlx::query("UPDATE browser_sessions SET ended_at = $2 WHERE id_hash = $1 AND ended_at IS NULL")
                    .bind(old)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO browser_sessions (id_hash, sid, user_id, auth_time, amr, created_at, expires_at, \
                 user_agent, ip, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $6)",
            )
            .bind(id_hash)
            .bind(&session.sid)
            .bind(&session.user_id)
            .bind(session.auth_time)
            .bind(session.amr.join(" "))
            .bind(now)
            .bind(session.expires_at)
            .bind(&origin.user_agent)
            .bind(&origin.ip)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The live session behind a cookie hash: not ended, not expired, user enabled.
    pub async fn find_session(&self, id_hash: &[u8], now: i64) -> Result<Option<SessionRecord>> {
        let row: Option<(String, String, i64, String, i64, Option<i64>)> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT s.sid, s.user_id, s.auth_time, s.amr, s.expires_at, s.last_seen_at FROM browser_sessions s \
                 JOIN users u ON u.id = s.user_id \
                 WHERE s.id_hash = $1 AND s.ended_at IS NULL AND s.expires_at > $2 AND u.disabled = FALSE",
            )
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(sid, user_id, auth_time, amr, expires_at, last_seen_at)| SessionRecord {
                sid,
                user_id,
                auth_time,
                amr: amr.split_whitespace().map(str::to_string).collect(),
                expires_at,
                last_seen_at: last_seen_at.unwrap_or(auth_time),
            },
        ))
    }

    pub async fn save_authorization_request(
        &self,
        id_hash: &[u8],
        client_id: &str,
        request_json: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query(
                "INSERT INTO authorization_requests (id_hash, client_id, request, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id_hash)
            .bind(client_id)
            .bind(request_json)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The stored request JSON when it is neither expired nor completed.
    pub async fn find_authorization_request(
        &self,
        id_hash: &[u8],
        now: i64,
    ) -> Result<Option<String>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_scalar(
                "SELECT request FROM authorization_requests \
                 WHERE id_hash = $1 AND completed_at IS NULL AND expires_at > $2",
            )
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Rewrites a pending request (the progress it records); false when it expired or
    /// was answered meanwhile.
    pub async fn update_authorization_request(
        &self,
        id_hash: &[u8],
        request_json: &str,
        now: i64,
    ) -> Result<bool> {
        let done = dispatch_write!(self, pool => {
            sqlx::query(
                "UPDATE authorization_requests SET request = $2 \
                 WHERE id_hash = $1 AND completed_at IS NULL AND expires_at > $3",
            )
            .bind(id_hash)
            .bind(request_json)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Marks a pending request completed; false when it was already (a pending request
    /// answers once).
    pub async fn complete_authorization_request(&self, id_hash: &[u8], now: i64) -> Result<bool> {
        let done = dispatch_write!(self, pool => {
            sqlx::query(
                "UPDATE authorization_requests SET completed_at = $2 \
                 WHERE id_hash = $1 AND completed_at IS NULL AND expires_at > $2",
            )
            .bind(id_hash)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    pub async fn insert_code(
        &self,
        code_hash: &[u8],
        client_id: &str,
        user_id: &str,
        grant_data: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query(
                "INSERT INTO authorization_codes (code_hash, client_id, user_id, grant_data, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(code_hash)
            .bind(client_id)
            .bind(user_id)
            .bind(grant_data)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a code used and records the access token it issues, atomically: of two
    /// concurrent redemptions exactly one is `Fresh`.
    pub async fn redeem_code(
        &self,
        code_hash: &[u8],
        grant_id: &str,
        now: i64,
    ) -> Result<Redeemed> {
        // One statement, no transaction: it marks an unused code used by `grant_id`
        // and returns the row as it now stands, so of two racing exchanges the second
        // (after PostgreSQL's row lock, or SQLite's single writer) sees the first's
        // grant id and is the replay. One round trip instead of four while holding
        // SQLite's writer (BEGIN, UPDATE, SELECT, COMMIT).
        let row = dispatch_write!(self, pool => {
            match sqlx::query(
                "UPDATE authorization_codes \
                 SET grant_id = CASE WHEN used_at IS NULL THEN $3 ELSE grant_id END, \
                     used_at = COALESCE(used_at, $2) \
                 WHERE code_hash = $1 \
                 RETURNING client_id, user_id, grant_data, expires_at, used_at, grant_id",
            )
            .bind(code_hash)
            .bind(now)
            .bind(grant_id)
            .fetch_optional(pool)
            .await?
            {
                Some(row) => Some(CodeRecord {
                    client_id: row.try_get("client_id")?,
                    user_id: row.try_get("user_id")?,
                    grant_data: row.try_get("grant_data")?,
                    expires_at: row.try_get("expires_at")?,
                    used_at: row.try_get("used_at")?,
                    grant_id: row.try_get("grant_id")?,
                }),
                None => None,
            }
        });
        let won = row
            .as_ref()
            .is_some_and(|r| r.grant_id.as_deref() == Some(grant_id));
        Ok(match (won, row) {
            (true, Some(r)) => Redeemed::Fresh(r),
            (false, Some(r)) => Redeemed::Replayed(r),
            (_, None) => Redeemed::Unknown,
        })
    }

    /// A code row without changing it (validation happens before redemption).
    pub async fn find_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>> {
        Ok(dispatch!(self, pool => {
            match sqlx::query(
                "SELECT client_id, user_id, grant_data, expires_at, used_at, grant_id \
                 FROM authorization_codes WHERE code_hash = $1",
            )
            .bind(code_hash)
            .fetch_optional(pool)
            .await?
            {
                Some(row) => Some(CodeRecord {
                    client_id: row.try_get("client_id")?,
                    user_id: row.try_get("user_id")?,
                    grant_data: row.try_get("grant_data")?,
                    expires_at: row.try_get("expires_at")?,
                    used_at: row.try_get("used_at")?,
                    grant_id: row.try_get("grant_id")?,
                }),
                None => None,
            }
        }))
    }

    /// Revokes a token id (`jti`) or a grant id (`gid`) until `expires_at`.
    pub async fn revoke_id(&self, id: &str, expires_at: i64, now: i64) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query(
                "INSERT INTO revocations (id, expires_at, revoked_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(expires_at)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Whether an access token's `jti` or its grant's `gid` was revoked (one lookup).
    pub async fn is_revoked(&self, jti: &str, gid: Option<&str>) -> Result<bool> {
        let gid = gid.unwrap_or(jti);
        if !super::storable(jti) || !super::storable(gid) {
            return Ok(false);
        }
        let found: Option<i64> = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT revoked_at FROM revocations WHERE id = $1 OR id = $2 LIMIT 1")
                .bind(jti)
                .bind(gid)
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some())
    }

    /// Every consent this user gave this client, each a space-separated item set.
    pub async fn consents(&self, user_id: &str, client_id: &str) -> Result<Vec<String>> {
        Ok(dispatch!(self, pool => {
            sqlx::query_scalar(
                "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2",
            )
            .bind(user_id)
            .bind(client_id)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query(
                "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, client_id, scope) DO UPDATE SET granted_at = excluded.granted_at",
            )
            .bind(user_id)
            .bind(client_id)
            .bind(scope)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

impl Store {
    /// Ends the browser session `sid` and, in the same transaction, revokes the refresh
    /// families that live with it (not those issued with `offline_access`, which are not
    /// bound to a session) and, through their grant ids, the access tokens issued in
    /// them. Returns whether a live session was ended.
    pub async fn end_session(&self, sid: &str, now: i64, revoke_until: i64) -> Result<bool> {
        if !super::storable(sid) {
            return Ok(false);
        }
        Ok(dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            super::backchannel::queue_logout_notices!(tx, "b.sid = $1", sid, now);
            let ended = sqlx::query(
                "UPDATE browser_sessions SET ended_at = $2 WHERE sid = $1 AND ended_at IS NULL",
            )
            .bind(sid)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "INSERT INTO revocations (id, expires_at, revoked_at) \
                 SELECT DISTINCT family_id, $2, $3 FROM refresh_tokens \
                 WHERE session_sid = $1 AND revoked_at IS NULL \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(sid)
            .bind(revoke_until)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE session_sid = $1 AND revoked_at IS NULL",
            )
            .bind(sid)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            ended > 0
        }))
    }
}

impl Store {
    /// Records that a session was used.
    pub async fn touch_session(&self, sid: &str, now: i64) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query("UPDATE browser_sessions SET last_seen_at = $2 WHERE sid = $1")
                .bind(sid)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The user's live sessions, most recently used first.
    pub async fn list_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionInfo>> {
        let rows: Vec<SessionRow> = dispatch!(self, pool => {
            sqlx::query_as(
                "SELECT sid, created_at, last_seen_at, auth_time, user_agent, ip FROM browser_sessions \
                 WHERE user_id = $1 AND ended_at IS NULL AND expires_at > $2 \
                 ORDER BY COALESCE(last_seen_at, created_at) DESC, created_at DESC",
            )
            .bind(user_id)
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(sid, created_at, last_seen_at, auth_time, user_agent, ip)| SessionInfo {
                    sid,
                    created_at,
                    last_seen_at: last_seen_at.unwrap_or(created_at),
                    auth_time,
                    user_agent,
                    ip,
                },
            )
            .collect())
    }

    /// Signs a user out everywhere: every session ends and every refresh family of the
    /// user (bound to a session or not) is revoked, with the access tokens issued in it.
    pub async fn end_all_sessions(&self, user_id: &str, now: i64, revoke_until: i64) -> Result<()> {
        dispatch_write!(self, pool => {
            let mut tx = pool.begin().await?;
            super::accounts::revoke_everything!(tx, user_id, now, revoke_until);
            tx.commit().await?;
        });
        Ok(())
    }
}
