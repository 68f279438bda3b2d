//! Pure protocol rules: no I/O (no tokio, sqlx or axum here), time passed in as an
//! argument, so every rule is a plain function that is easy to unit-test.

pub mod discovery;
pub mod registration;
