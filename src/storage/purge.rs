//! Housekeeping: deleting what has expired, in small batches so no statement holds a
//! long lock (SQLite has one writer; PostgreSQL rows stay lockable between batches).

use super::{Result, Store, dispatch_write};

const BATCH: i64 = 500;

/// Rows deleted per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    pub codes: u64,
    pub requests: u64,
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub revocations: u64,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.codes + self.requests + self.sessions + self.refresh_tokens + self.revocations
    }
}

/// (table, key, condition) — every condition is served by an index on its time column.
const TARGETS: [(&str, &str, &str); 7] = [
    ("authorization_codes", "code_hash", "expires_at < $1"),
    ("authorization_requests", "id_hash", "expires_at < $1"),
    (
        "browser_sessions",
        "id_hash",
        "expires_at < $1 OR ended_at IS NOT NULL",
    ),
    (
        "refresh_tokens",
        "token_hash",
        "expires_at < $1 OR family_expires_at < $1",
    ),
    ("revocations", "id", "expires_at < $1"),
    // Counters idle for an hour hold neither a live window nor a block (blocks last at
    // most an hour).
    (
        "login_failures",
        "key",
        "last_seen < $1 - 3600 AND blocked_until < $1",
    ),
    // Who took part in a session matters only while the session exists.
    (
        "session_clients",
        "sid",
        "created_at <= $1 AND NOT EXISTS (SELECT 1 FROM browser_sessions b WHERE b.sid = session_clients.sid)",
    ),
];

impl Store {
    /// Deletes expired codes, pending requests, ended or expired sessions, expired
    /// refresh tokens and revocations that outlived what they revoked.
    pub async fn purge_expired(&self, now: i64) -> Result<Purged> {
        let mut counts = [0u64; 7];
        for (i, (table, key, condition)) in TARGETS.iter().enumerate() {
            let sql = format!(
                "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {condition} LIMIT {BATCH})"
            );
            loop {
                let deleted = dispatch_write!(self, pool => {
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(now)
                        .execute(pool)
                        .await?
                        .rows_affected()
                });
                counts[i] += deleted;
                if deleted < BATCH as u64 {
                    break;
                }
                // Let other writers in between batches.
                tokio::task::yield_now().await;
            }
        }
        let [
            codes,
            requests,
            sessions,
            refresh_tokens,
            revocations,
            _counters,
            _participants,
        ] = counts;
        Ok(Purged {
            codes,
            requests,
            sessions,
            refresh_tokens,
            revocations,
        })
    }
}
