//! Back-Channel Logout bookkeeping: which clients took part in a session, and the
//! outbox of logout tokens still to deliver.

use sqlx::Row;

use super::{Result, Store, dispatch, dispatch_write};

/// A delivery that is due: tell `client_id` at `uri` that session `sid` of `sub` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub client_id: String,
    pub uri: String,
    pub sub: String,
    pub sid: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

/// Inside the transaction `$tx` that ends sessions, before they are marked ended: one
/// delivery per (live session, client with a `backchannel_logout_uri` that took part in
/// it). `$which` is a predicate on `b` (the session) with `$1` (and `$3` when `$extra`
/// is given); `$2` is now.
macro_rules! queue_logout_notices {
    ($tx:ident, $which:literal, $key:expr, $now:expr) => {{
        super::backchannel::queue_logout_notices!(@bind $tx, $which, $key, $now,)
    }};
    ($tx:ident, $which:literal, $key:expr, $now:expr, $extra:expr) => {{
        super::backchannel::queue_logout_notices!(@bind $tx, $which, $key, $now, .bind($extra))
    }};
    (@bind $tx:ident, $which:literal, $key:expr, $now:expr, $($more:tt)*) => {{
        sqlx::query(concat!(
            "INSERT INTO logout_deliveries (id, client_id, uri, sub, sid, attempts, next_attempt_at, created_at) \
             SELECT b.sid || ' ' || c.id, c.id, c.backchannel_logout_uri, b.user_id, b.sid, 0, $2, $2 \
             FROM browser_sessions b \
             JOIN session_clients sc ON sc.sid = b.sid \
             JOIN clients c ON c.id = sc.client_id \
             WHERE ",
            $which,
            " AND b.ended_at IS NULL AND c.backchannel_logout_uri IS NOT NULL \
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind($key)
        .bind($now)
        $($more)*
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(super) use queue_logout_notices;

impl Store {
    /// Records that `client_id` received tokens in session `sid`.
    pub async fn add_session_client(&self, sid: &str, client_id: &str, now: i64) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query(
                "INSERT INTO session_clients (sid, client_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (sid, client_id) DO NOTHING",
            )
            .bind(sid)
            .bind(client_id)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deliveries whose time has come, oldest first.
    pub async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<Delivery>> {
        Ok(dispatch!(self, pool => {
            let rows = sqlx::query(
                "SELECT id, client_id, uri, sub, sid, attempts, next_attempt_at FROM logout_deliveries \
                 WHERE next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(Delivery {
                    id: row.try_get("id")?,
                    client_id: row.try_get("client_id")?,
                    uri: row.try_get("uri")?,
                    sub: row.try_get("sub")?,
                    sid: row.try_get("sid")?,
                    attempts: row.try_get("attempts")?,
                    next_attempt_at: row.try_get("next_attempt_at")?,
                });
            }
            out
        }))
    }

    /// Takes a delivery for this process until `until`: only one of several instances
    /// that saw it due wins (the row still has the time they saw).
    pub async fn claim_delivery(&self, delivery: &Delivery, until: i64) -> Result<bool> {
        Ok(dispatch_write!(self, pool => {
            sqlx::query(
                "UPDATE logout_deliveries SET next_attempt_at = $3 WHERE id = $1 AND next_attempt_at = $2",
            )
            .bind(&delivery.id)
            .bind(delivery.next_attempt_at)
            .bind(until)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        }))
    }

    pub async fn delivery_done(&self, id: &str) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query("DELETE FROM logout_deliveries WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub async fn delivery_failed(
        &self,
        id: &str,
        attempts: i64,
        next: i64,
        error: &str,
    ) -> Result<()> {
        dispatch_write!(self, pool => {
            sqlx::query(
                "UPDATE logout_deliveries SET attempts = $2, next_attempt_at = $3, last_error = $4 WHERE id = $1",
            )
            .bind(id)
            .bind(attempts)
            .bind(next)
            .bind(error)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
