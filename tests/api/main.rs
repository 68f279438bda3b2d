//! Black-box API tests: one binary, one module per area. Each test starts the real
//! server on a random port against a fresh database (SQLite, or PostgreSQL when
//! TEST_DATABASE_URL is set).

mod helpers;

mod account_api;
mod account_pages;
mod account_security;
mod admin;
mod audit;
mod backchannel;
mod bad_input;
mod cli;
mod client_security;
mod config_errors;
mod consent_security;
mod cors;
mod discovery;
mod faults;
mod flow;
mod grants;
mod hardening;
mod health;
mod hostile_input;
mod infra_security;
mod keys;
mod lifecycle;
mod logout;
mod password;
mod prompt;
mod ratelimit;
mod refresh;
mod sessions;
