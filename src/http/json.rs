//! JSON request bodies of the account and admin APIs.

use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

/// A JSON body (`Content-Type: application/json`) into `T`; the error is worded for
/// `error_description`. Types refuse unknown fields, so a typo or a field that cannot
/// be changed is not silently ignored.
pub fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, String> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err("the body must be application/json".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}
