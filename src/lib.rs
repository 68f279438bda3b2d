//! oxidp: a self-hosted OpenID Connect provider.
//!
//! Layering (see docs/architecture.md): `cli → startup → http → authn → accounts |
//! clients | keys → storage`; everyone may call the pure `oidc` rules; `config` and
//! `telemetry` are leaves.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod accounts;
pub mod audit;
pub mod authn;
pub mod cli;
pub mod clients;
pub mod config;
pub mod email;
pub mod grants;
pub mod http;
pub mod keys;
pub mod memory;
pub mod oidc;
pub mod private_files;
pub mod ratelimit;
pub mod sessions;
pub mod startup;
pub mod storage;
pub mod telemetry;
