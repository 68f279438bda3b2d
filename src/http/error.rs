//! Internal failures as the client sees them: a fixed text and 503, never the cause and
//! never a 500. The cause is logged once, with the request id from the span.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error the client cannot fix: storage down, a key missing, a worker gone.
#[derive(Debug)]
pub struct Unavailable;

impl Unavailable {
    /// Logs the cause and returns the opaque error.
    pub fn log(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self
    }
}

impl IntoResponse for Unavailable {
    fn into_response(self) -> Response {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": "server_error",
                "error_description": "The service is temporarily unavailable; try again shortly.",
            })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        response
    }
}

/// Body for routes that do not exist.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not_found", "error_description": "No such endpoint."})),
    )
        .into_response()
}

/// A panic in a handler is a bug; the client still gets the standard 503 shape.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    Unavailable.into_response()
}
