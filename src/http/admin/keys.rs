//! Signing keys: list, rotate (a new key signs from now on; older ones stay published),
//! retire (removed from the JWKS; the active key is refused). The same operations as
//! `oxidp keys …`; this instance reloads its key set at once, others within
//! `keys.reload_seconds`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Admin, AdminError, AdminResult, json_response, plausible_id};
use crate::http::AppState;
use crate::keys::{KeyError, KeyRing, statuses};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/keys", get(list))
        .route("/api/v1/admin/keys/rotate", post(rotate))
        .route("/api/v1/admin/keys/{kid}/retire", post(retire))
}

fn key_error(e: KeyError) -> AdminError {
    match e {
        KeyError::UnknownKid(_) => AdminError::NotFound,
        KeyError::Refused(why) => AdminError::Conflict("key_refused", why.to_string()),
        other => AdminError::internal(&other),
    }
}

async fn reload(state: &AppState) {
    if let Err(e) = state.keys.reload().await {
        tracing::warn!(error = %e, "signing keys not reloaded after an admin change");
    }
}

async fn list(_: Admin, State(state): State<AppState>) -> AdminResult {
    let records = state.store.list_keys().await?;
    let items: Vec<Value> = statuses(&records)
        .into_iter()
        .map(|(r, status)| {
            json!({
                "kid": r.kid,
                "alg": r.alg,
                "status": status.as_str(),
                "created_at": r.created_at,
                "activated_at": r.activated_at,
                "retired_at": r.retired_at,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, json!({ "items": items })))
}

async fn rotate(admin: Admin, State(state): State<AppState>) -> AdminResult {
    let kid = KeyRing::rotate(&state.store, &state.config.keys.dir)
        .await
        .map_err(key_error)?;
    reload(&state).await;
    state.audit(
        &admin.audit,
        admin
            .event("admin.key.rotated")
            .subject(format!("key:{kid}")),
    );
    Ok(json_response(
        StatusCode::CREATED,
        json!({ "kid": kid, "status": "active" }),
    ))
}

async fn retire(
    admin: Admin,
    State(state): State<AppState>,
    Path(kid): Path<String>,
) -> AdminResult {
    plausible_id(&kid)?;
    KeyRing::retire(&state.store, &state.config.keys.dir, &kid)
        .await
        .map_err(key_error)?;
    reload(&state).await;
    state.audit(
        &admin.audit,
        admin
            .event("admin.key.retired")
            .subject(format!("key:{kid}")),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
