//! Internal failures as the client sees them: a fixed text and 503, never the cause and
//! never a 500. The cause is logged once, with the request id from the span.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error the client cannot fix: storage down, a key missing, a worker gone.
#[derive(Debug)]
pub struct Unavailable;

/// The cause of an internal error, kept until the error is rendered and logged.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// An error with its chain of causes, for the one log line an internal error gets.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

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

/// axum answers a body over the limit (413) or an unsupported method (405) in plain
/// text; clients of an OAuth server expect the standard JSON error shape everywhere.
pub async fn standard_rejection(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !plain {
        return response;
    }
    let description = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.",
        StatusCode::METHOD_NOT_ALLOWED => "This method is not allowed here.",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "The request body has an unsupported type.",
        _ => return response,
    };
    let mut out = (
        status,
        Json(json!({"error": "invalid_request", "error_description": description})),
    )
        .into_response();
    if let Some(allow) = response.headers().get(axum::http::header::ALLOW) {
        out.headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    out
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
