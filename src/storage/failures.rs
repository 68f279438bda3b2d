//! Failed-password counters in the database, for limits shared by several instances.
//! Each change is one atomic statement (an upsert, a conditional update), so concurrent
//! failures on any instance are all counted.

use super::{Result, Store, dispatch, dispatch_write};

/// What the counters say after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    pub failures: i64,
    pub window_start: i64,
}

impl Store {
    /// Seconds left of the key's block, if blocked.
    pub async fn failure_block(&self, key: &str, now: i64) -> Result<Option<i64>> {
        if !super::storable(key) {
            return Ok(None);
        }
        let until: Option<i64> = dispatch!(self, pool => {
            sqlx::query_scalar("SELECT blocked_until FROM login_failures WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        Ok(until.filter(|u| *u > now).map(|u| u - now))
    }

    /// Counts one failure in the key's current window (a new window after `window`
    /// seconds).
    pub async fn count_failure(&self, key: &str, now: i64, window: i64) -> Result<FailureCount> {
        let (failures, window_start): (i64, i64) = dispatch_write!(self, pool => {
            sqlx::query_as(
                "INSERT INTO login_failures (key, window_start, failures, blocked_until, strikes, last_seen) \
                 VALUES ($1, $2, 1, 0, 0, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                   failures = CASE WHEN $2 - login_failures.window_start >= $3 THEN 1 \
                                   ELSE login_failures.failures + 1 END, \
                   window_start = CASE WHEN $2 - login_failures.window_start >= $3 THEN $2 \
                                       ELSE login_failures.window_start END, \
                   last_seen = $2 \
                 RETURNING failures, window_start",
            )
            .bind(key)
            .bind(now)
            .bind(window)
            .fetch_one(pool)
            .await?
        });
        Ok(FailureCount {
            failures,
            window_start,
        })
    }

    /// Turns a full window into a block: only one of several racing failures wins the
    /// conditional update, and it returns the new strike count.
    pub async fn start_block(&self, key: &str, limit: i64, now: i64) -> Result<Option<i64>> {
        Ok(dispatch_write!(self, pool => {
            sqlx::query_scalar(
                "UPDATE login_failures SET strikes = strikes + 1, failures = 0, window_start = $3 \
                 WHERE key = $1 AND failures >= $2 RETURNING strikes",
            )
            .bind(key)
            .bind(limit)
            .bind(now)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn set_block(&self, key: &str, until: i64) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query("UPDATE login_failures SET blocked_until = $2 WHERE key = $1")
                .bind(key)
                .bind(until)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn clear_failures(&self, key: &str) -> Result<()> {
        if !super::storable(key) {
            return Ok(());
        }
        dispatch_write!(self, pool => {
            sqlx::query("DELETE FROM login_failures WHERE key = $1")
                .bind(key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
