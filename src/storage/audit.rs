//! The audit trail: rows are inserted (in batches) and read, never updated; the only
//! delete is the retention purge.

use sqlx::QueryBuilder;

use super::{Result, Store, dispatch, dispatch_write};

/// One event as stored. `detail` is a JSON object of non-secret facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub time: i64,
    pub kind: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub detail: String,
}

type Row = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

fn record(row: Row) -> AuditRecord {
    let (id, time, kind, outcome, actor, subject, client_id, ip, user_agent, request_id, detail) =
        row;
    AuditRecord {
        id,
        time,
        kind,
        outcome,
        actor,
        subject,
        client_id,
        ip,
        user_agent,
        request_id,
        detail,
    }
}

/// Which events to read: all conditions must hold. Results come newest first, in pages
/// of `limit`, continuing below `before_id`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub client_id: Option<String>,
    /// An exact type (`login.failed`) or a prefix ending in `.` (`admin.`).
    pub kind: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub before_id: Option<i64>,
    /// Oldest first, only ids above this (for `audit tail --follow`).
    pub after_id: Option<i64>,
    pub limit: i64,
}

const COLUMNS: &str =
    "id, time, type, outcome, actor, subject, client_id, ip, user_agent, request_id, detail";

impl Store {
    /// Appends events in one statement (one transaction).
    pub async fn insert_audit_events(&self, events: &[AuditRecord]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        dispatch_write!(self, pool => {
            let mut insert = QueryBuilder::new(
                "INSERT INTO audit_events (time, type, outcome, actor, subject, client_id, ip, user_agent, request_id, detail) ",
            );
            insert.push_values(events, |mut row, e| {
                row.push_bind(e.time)
                    .push_bind(&e.kind)
                    .push_bind(&e.outcome)
                    .push_bind(&e.actor)
                    .push_bind(&e.subject)
                    .push_bind(&e.client_id)
                    .push_bind(&e.ip)
                    .push_bind(&e.user_agent)
                    .push_bind(&e.request_id)
                    .push_bind(&e.detail);
            });
            insert.build().execute(pool).await?;
        });
        Ok(())
    }

    pub async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let rows: Vec<Row> = dispatch!(self, pool => {
            let mut select = QueryBuilder::new(format!("SELECT {COLUMNS} FROM audit_events WHERE 1 = 1"));
            if let Some(subject) = &q.subject {
                select.push(" AND subject = ").push_bind(subject);
            }
            if let Some(actor) = &q.actor {
                select.push(" AND actor = ").push_bind(actor);
            }
            if let Some(client_id) = &q.client_id {
                select.push(" AND client_id = ").push_bind(client_id);
            }
            if let Some(kind) = &q.kind {
                if let Some(prefix) = kind.strip_suffix('.') {
                    // A prefix match without LIKE, whose wildcards the value could hold.
                    select
                        .push(" AND substr(type, 1, ")
                        .push_bind((prefix.len() + 1) as i32)
                        .push(") = ")
                        .push_bind(format!("{prefix}."));
                } else {
                    select.push(" AND type = ").push_bind(kind);
                }
            }
            if let Some(since) = q.since {
                select.push(" AND time >= ").push_bind(since);
            }
            if let Some(until) = q.until {
                select.push(" AND time < ").push_bind(until);
            }
            if let Some(before) = q.before_id {
                select.push(" AND id < ").push_bind(before);
            }
            if let Some(after) = q.after_id {
                select.push(" AND id > ").push_bind(after);
                select.push(" ORDER BY id ASC LIMIT ");
            } else {
                select.push(" ORDER BY id DESC LIMIT ");
            }
            select.push_bind(q.limit);
            select.build_query_as::<Row>().fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(record).collect())
    }

    /// Deletes events older than `before` in batches; returns how many.
    pub async fn purge_audit(&self, before: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let deleted = dispatch_write!(self, pool => {
                sqlx::query(
                    "DELETE FROM audit_events WHERE id IN \
                     (SELECT id FROM audit_events WHERE time < $1 ORDER BY id LIMIT 500)",
                )
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
            });
            total += deleted;
            if deleted < 500 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}
