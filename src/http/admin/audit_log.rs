//! `GET /api/v1/admin/audit`: the audit trail, newest first, filtered by subject, actor,
//! client, type (exact, or a prefix ending in `.`) and time range.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::{Admin, AdminError, AdminResult, json_response, page_limit};
use crate::http::AppState;
use crate::storage::AuditQuery;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/admin/audit", get(query))
}

#[derive(Deserialize)]
struct Filter {
    subject: Option<String>,
    actor: Option<String>,
    client_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A time bound: Unix seconds or RFC 3339.
fn time_bound(name: &str, value: Option<&str>) -> Result<Option<i64>, AdminError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(seconds) = value.parse::<i64>() {
        return Ok(Some(seconds));
    }
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| Some(t.unix_timestamp()))
        .map_err(|_| {
            AdminError::BadRequest(format!(
                "{name} must be Unix seconds or an RFC 3339 time such as 2026-01-31T12:00:00Z"
            ))
        })
}

fn text(name: &str, value: Option<String>) -> Result<Option<String>, AdminError> {
    match value.filter(|v| !v.is_empty()) {
        Some(v) if v.len() > 256 => Err(AdminError::BadRequest(format!("{name} is too long"))),
        other => Ok(other),
    }
}

async fn query(_: Admin, State(state): State<AppState>, Query(f): Query<Filter>) -> AdminResult {
    let limit = page_limit(f.limit.as_deref())?;
    let before_id = match f.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| AdminError::BadRequest("cursor is not valid".into()))?,
        ),
    };
    let query = AuditQuery {
        subject: text("subject", f.subject)?,
        actor: text("actor", f.actor)?,
        client_id: text("client_id", f.client_id)?,
        kind: text("type", f.kind)?,
        since: time_bound("since", f.since.as_deref())?,
        until: time_bound("until", f.until.as_deref())?,
        before_id,
        after_id: None,
        limit: limit + 1,
    };
    let mut events = state.store.query_audit(&query).await?;
    let next = (events.len() as i64 > limit).then(|| {
        events.truncate(limit as usize);
        events.last().map(|e| e.id.to_string())
    });
    Ok(json_response(
        StatusCode::OK,
        json!({
            "items": events.iter().map(crate::audit::to_json).collect::<Vec<_>>(),
            "next_cursor": next.flatten(),
        }),
    ))
}
