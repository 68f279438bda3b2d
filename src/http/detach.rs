//! Requests that may write run to completion even when the client goes away.
//!
//! hyper drops a handler's future when its connection closes, and the timeout layer drops
//! it when time is up. A future dropped between two statements of a sequence, or in the
//! middle of opening a transaction, is the one way a request could leave half its work
//! behind: sqlx 0.9.0 returned a PostgreSQL connection whose `BEGIN` was cancelled to the
//! pool still inside that transaction (sqlx#4393, fixed in 0.9.1), and the next requests
//! on it ran in a transaction nobody committed. Running the handler as its own task takes
//! cancellation out of the picture: the client may stop waiting, the work still finishes
//! (or rolls back) as a whole.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error;

/// Middleware: runs the rest of the stack in a spawned task and waits for it. A panic in
/// the handler becomes the same 503 the panic guard gives.
pub async fn run_to_completion(request: Request, next: Next) -> Response {
    let task = tokio::spawn(next.run(request).in_current_span());
    match task.await {
        Ok(response) => response,
        Err(e) if e.is_panic() => error::panic_response(e.into_panic()),
        // Only a runtime shutting down cancels a task; nobody is waiting for this answer.
        Err(_) => error::Unavailable.into_response(),
    }
}
