//! Pure protocol rules: no I/O (no tokio, sqlx or axum here), time passed in as an
//! argument, so every rule is a plain function that is easy to unit-test.

pub mod authorize;
pub mod claims;
pub mod decision;
pub mod discovery;
pub mod error;
pub mod logout;
pub mod params;
pub mod pkce;
pub mod registration;
pub mod tokens;

pub use error::{Error, ErrorCode};
