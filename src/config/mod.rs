//! Typed settings: `config.toml` (or `--config` / `OXIDP_CONFIG`), overridden by
//! `OXIDP_<SECTION>__<KEY>` environment variables, validated once at start-up.
//!
//! Every error is one line naming the key, the value (redacted when secret) and what is
//! allowed, so an operator can fix it without reading code.

//!
//! `mod.rs` holds the schema (one struct per section) and the error type; `load.rs`
//! where the settings come from; `validate.rs` every rule serde cannot express.

mod load;
mod validate;

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::oidc::registration::AuthMethod;

pub use load::resolve_path;
pub use validate::{redact_url, validate_issuer};

/// The file read when neither `--config` nor `OXIDP_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";
/// Stands for "the file as a whole" in errors that no single key causes.
const FILE_KEY: &str = "config.toml";
/// Top-level tables, for recognising `OXIDP_<SECTION>__<KEY>` typos.
const SECTIONS: [&str; 11] = [
    "server",
    "database",
    "keys",
    "email",
    "accounts",
    "tokens",
    "sessions",
    "ratelimit",
    "cors",
    "log",
    "audit",
];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub keys: KeysConfig,
    pub email: EmailConfig,
    pub accounts: AccountsConfig,
    pub tokens: TokensConfig,
    pub sessions: SessionsConfig,
    pub ratelimit: RateLimitConfig,
    pub cors: CorsConfig,
    pub log: LogConfig,
    pub audit: AuditConfig,
    pub users: Vec<SeedUser>,
    pub clients: Vec<ClientConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: String,
    pub issuer: String,
    /// How long in-flight requests may run after SIGINT/SIGTERM before the process exits.
    pub shutdown_timeout_seconds: u64,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// A separate listener for `/metrics`, `/healthz` and `/readyz` (then not served on
    /// `bind`), so they can stay on an internal interface.
    pub metrics_bind: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:9000".into(),
            issuer: "http://localhost:9000".into(),
            shutdown_timeout_seconds: 30,
            trusted_proxies: Vec::new(),
            metrics_bind: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// May carry a password, so it is never printed.
    pub url: SecretString,
    pub max_connections: u32,
    /// How often expired codes, sessions, refresh tokens and revocations are deleted.
    pub purge_interval_minutes: u64,
    /// How long a client read from the database is reused before it is read again, so
    /// that client authentication costs no query; 0 reads it on every request. Changes
    /// made by another process (`oxidp client remove`) reach a running server within it.
    pub client_cache_seconds: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://data/oxidp.db"),
            max_connections: 10,
            purge_interval_minutes: 15,
            client_cache_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    pub dir: PathBuf,
    /// How often a running server re-reads the key list, so that `oxidp keys rotate`
    /// (or another instance) takes effect without a restart.
    pub reload_seconds: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("keys"),
            reload_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTransport {
    File,
    Smtp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    pub transport: EmailTransport,
    pub outbox_dir: PathBuf,
    pub from: String,
    pub smtp_url: Option<SecretString>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: EmailTransport::File,
            outbox_dir: PathBuf::from("data/outbox"),
            from: "oxidp <no-reply@localhost>".into(),
            smtp_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    pub allow_registration: bool,
    pub require_verified_email: bool,
    /// `true`: the sign-up page signs a new account in at once, as before verification.
    /// That answer differs from the one for an address that has an account, so it tells
    /// who has one (user enumeration); the default signs in when the mailed link is
    /// opened in the same browser, and both answers are the same page.
    pub sign_in_after_registration: bool,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            allow_registration: true,
            require_verified_email: false,
            sign_in_after_registration: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    pub access_token_seconds: u64,
    pub id_token_seconds: u64,
    pub authorization_code_seconds: u64,
    pub refresh_grace_seconds: u64,
    pub refresh_idle_days: u64,
    pub refresh_absolute_days: u64,
}

impl TokensConfig {
    /// The longest a refresh family can live, in seconds: also how long a revocation
    /// must be remembered.
    pub fn refresh_lifetime_seconds(&self) -> i64 {
        self.refresh_absolute_days as i64 * 86_400
    }
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            access_token_seconds: 3600,
            id_token_seconds: 3600,
            authorization_code_seconds: 60,
            refresh_grace_seconds: 10,
            refresh_idle_days: 14,
            refresh_absolute_days: 90,
        }
    }
}

/// Browser origins allowed to call the token, UserInfo, introspection and revocation
/// endpoints (and the account API), with credentials. Exact origins only; never `*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// How long a browser session at oxidp (single sign-on) lasts after login.
    pub lifetime_hours: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self { lifetime_hours: 12 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit events older than this are deleted by the purge task.
    pub retention_days: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 365,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    Memory,
    Database,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub backend: RateLimitBackend,
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key, so deployments (or tests) can share one server.
    pub redis_key_prefix: String,
    pub client_ip_header: Option<String>,
    pub password_failures_per_minute: u32,
    pub password_failures_per_minute_per_ip: u32,
    pub requests_per_minute_per_ip: u32,
    /// Flood control: a per-client-address request rate in front of the routes that
    /// cost CPU or mail (`ratelimit::flood`).
    pub flood_control: bool,
    /// Sustained requests per second per client address (GCRA emission rate).
    pub flood_requests_per_second: f64,
    /// Requests a client address may send at once before the rate applies.
    pub flood_burst: u32,
    /// Loopback clients (local tools, health checks, a proxy on the same host that is
    /// not in `server.trusted_proxies`) are not limited.
    pub flood_exempt_loopback: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            backend: RateLimitBackend::Memory,
            redis_url: None,
            redis_key_prefix: "oxidp".into(),
            client_ip_header: None,
            password_failures_per_minute: 5,
            password_failures_per_minute_per_ip: 30,
            requests_per_minute_per_ip: 10,
            flood_control: true,
            flood_requests_per_second: 20.0,
            flood_burst: 100,
            flood_exempt_loopback: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter; `RUST_LOG` itself wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// A user upserted at start-up (development and tests). Seeded users count as
/// e-mail-verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub username: String,
    pub email: String,
    pub password: Option<SecretString>,
    pub password_env: Option<String>,
    /// The value of `password_env`, read once when the settings are loaded.
    #[serde(skip)]
    pub password_from_env: Option<SecretString>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A client declared in `config.toml`; upserted at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub id: String,
    pub name: Option<String>,
    pub secret: Option<SecretString>,
    pub secret_env: Option<String>,
    /// The value of `secret_env`, read once when the settings are loaded.
    #[serde(skip)]
    pub secret_from_env: Option<SecretString>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_method: Option<AuthMethod>,
    #[serde(default)]
    pub first_party: bool,
    #[serde(default)]
    pub introspect_any: bool,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Back-Channel Logout 1.0: where logout tokens are POSTed when a session ends.
    pub backchannel_logout_uri: Option<String>,
}

fn default_grant_types() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}

/// A setting that cannot be used: the key, the offending value (redacted when secret)
/// and what is allowed. Displayed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub allowed: String,
}

impl ConfigError {
    pub fn new(
        key: impl Into<String>,
        value: impl fmt::Display,
        allowed: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid setting {}: {} (allowed: {})",
            self.key, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}
impl Config {
    /// The database flavour selected by `database.url`.
    pub fn database_kind(&self) -> DatabaseKind {
        DatabaseKind::of(self.database.url.expose_secret()).unwrap_or(DatabaseKind::Sqlite)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::validate::validate_database_url;
    use super::*;

    fn load(toml: &str) -> Result<Config, ConfigError> {
        Config::from_sources(toml, Vec::new())
    }

    #[test]
    fn defaults_are_valid_and_match_the_contract() {
        let c = load("").unwrap();
        assert_eq!(c.server.bind, "127.0.0.1:9000");
        assert_eq!(c.server.issuer, "http://localhost:9000");
        assert_eq!(c.database.url.expose_secret(), "sqlite://data/oxidp.db");
        assert_eq!(c.keys.dir, PathBuf::from("keys"));
        assert_eq!(c.tokens.refresh_grace_seconds, 10);
        assert_eq!(c.ratelimit.password_failures_per_minute, 5);
    }

    #[test]
    fn env_overrides_file() {
        let c = Config::from_sources(
            "[database]\nurl = \"sqlite://a.db\"\n",
            vec![(
                "OXIDP_DATABASE__URL".to_string(),
                "sqlite://b.db".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(c.database.url.expose_secret(), "sqlite://b.db");
    }

    #[test]
    fn issuer_rules() {
        for ok in [
            "https://id.example.com",
            "http://localhost:9000",
            "http://127.0.0.1:1",
            "http://[::1]:8",
            "https://x.example/idp",
        ] {
            assert!(validate_issuer(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://id.example.com",
            "ftp://x",
            "https://x/?a=b",
            "https://x#f",
            "https://x/",
            "not a url",
            "",
        ] {
            assert!(validate_issuer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn database_url_password_is_redacted() {
        let e = load("[database]\nurl = \"mysql://u:hunter2@h/db\"\n").unwrap_err();
        assert_eq!(e.key, "database.url");
        assert!(!e.to_string().contains("hunter2"));
        let e = validate_database_url("postgres://u:hunter2@/db");
        assert!(e.is_err_and(|e| !e.to_string().contains("hunter2")));
    }

    #[test]
    fn debug_print_redacts_secrets() {
        let c = load(
            "[database]\nurl = \"postgres://u:hunter2@localhost/db\"\n[[clients]]\nid = \"a\"\nsecret = \"0123456789abcdef0123456789abcdef-secret\"\nredirect_uris = [\"https://a.example/cb\"]\n",
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!dbg.contains("0123456789abcdef"), "{dbg}");
    }
}
