//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;

const READY_TIMEOUT: Duration = Duration::from_secs(3);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process answers: nothing else is checked, so an orchestrator does not restart a
/// healthy process because its database is away.
async fn healthz() -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(json!({"status": "ok"})),
    )
        .into_response()
}

/// Ready when the database answers a real query within a few seconds.
async fn readyz(State(state): State<AppState>) -> Response {
    let ping = tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await;
    let (status, body) = match ping {
        Ok(Ok(())) => (StatusCode::OK, json!({"status": "ready"})),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "reason": "database unreachable"}),
            )
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "reason": "database timeout"}),
            )
        }
    };
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status != StatusCode::OK {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    m.argon2_queue.set(state.accounts.password_queue() as i64);
    let (open, idle) = state.store.pool_use();
    m.db_connections.set(i64::from(open));
    m.db_idle_connections.set(idle as i64);
    if let Some(since) = state.keys.current().active_since() {
        m.signing_key_age
            .set((crate::storage::unix_now() - since).max(0));
    }
    m.audit_queue.set(state.audit.queued() as i64);
    m.audit_dropped.set(state.audit.dropped() as i64);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        state.metrics.render(),
    )
        .into_response()
}
