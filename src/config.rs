//! Typed settings: `config.toml` (or `--config` / `OXIDP_CONFIG`), overridden by
//! `OXIDP_<SECTION>__<KEY>` environment variables, validated once at start-up.
//!
//! Every error is one line naming the key, the value (redacted when secret) and what is
//! allowed, so an operator can fix it without reading code.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::{Host, Url};

/// The file read when neither `--config` nor `OXIDP_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";
/// Shortest accepted client secret, in bytes (DESIGN.md: secrets are at least 32 bytes).
pub const MIN_SECRET_BYTES: usize = 32;
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
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// A client declared in `config.toml`; upserted at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub id: String,
    pub name: Option<String>,
    pub secret: Option<SecretString>,
    pub secret_env: Option<String>,
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

/// Where the settings come from: `--config`, then `OXIDP_CONFIG`, then `config.toml`.
/// Only the implicit default may be missing (then built-in defaults apply).
pub fn resolve_path(cli: Option<PathBuf>) -> (PathBuf, bool) {
    if let Some(path) = cli {
        return (path, true);
    }
    match std::env::var_os("OXIDP_CONFIG") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    }
}

impl Config {
    /// Reads the file, applies `OXIDP_*` environment overrides, validates.
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => String::new(),
            Err(e) => {
                return Err(ConfigError::new(
                    "--config",
                    format!("{:?} cannot be read ({e})", path.display().to_string()),
                    "a readable TOML file",
                ));
            }
        };
        let env = std::env::vars().filter(|(k, _)| k.starts_with("OXIDP_"));
        Self::from_sources(&text, env).map_err(|mut e| {
            // A syntax error concerns the file as a whole: name the file actually read.
            if e.key == FILE_KEY {
                e.key = path.display().to_string();
            }
            e
        })
    }

    /// Builds settings from TOML text and `OXIDP_*` variables; used by `load` and by tests
    /// that must not touch the process environment.
    pub fn from_sources(
        toml: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(toml));
        let mut env_vars: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("OXIDP_") else {
                continue;
            };
            // OXIDP_CONFIG names the file; it is not a setting.
            if rest == "CONFIG" || rest.is_empty() {
                continue;
            }
            if !rest.contains("__") {
                // Not a setting (e.g. a variable named by `password_env`), unless it looks
                // like one with a single underscore: that typo would otherwise be ignored.
                let lower = rest.to_ascii_lowercase();
                if let Some(section) = SECTIONS
                    .iter()
                    .find(|s| lower.starts_with(&format!("{s}_")))
                {
                    return Err(ConfigError::new(
                        name.clone(),
                        "is not a setting",
                        format!(
                            "OXIDP_<SECTION>__<KEY> with two underscores, e.g. OXIDP_{}__{}",
                            section.to_ascii_uppercase(),
                            &rest[section.len() + 1..]
                        ),
                    ));
                }
                continue;
            }
            let key = rest.to_ascii_lowercase().replace("__", ".");
            env_vars.push((key.clone(), name.clone()));
            // Values are read as TOML-like scalars ("true", "30"), as figment's Env does.
            let value: figment::value::Value = value
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            figment = figment.merge((key, value));
        }
        let from_env = |mut e: ConfigError| {
            // Name the variable when the offending value came from the environment.
            if let Some(var) = env_vars
                .iter()
                .find(|(key, _)| *key == e.key)
                .map(|(_, v)| v)
            {
                e.key = format!("{} (from {var})", e.key);
            }
            e
        };
        let config: Config = figment.extract().map_err(figment_error).map_err(from_env)?;
        config.validate().map_err(from_env)?;
        Ok(config)
    }

    /// Every rule that serde cannot express. Returns the first violation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_bind("server.bind", &self.server.bind)?;
        if let Some(metrics) = &self.server.metrics_bind {
            validate_bind("server.metrics_bind", metrics)?;
            if metrics.parse::<SocketAddr>().ok() == self.server.bind.parse::<SocketAddr>().ok() {
                return Err(ConfigError::new(
                    "server.metrics_bind",
                    format!("{metrics:?}"),
                    "an address and port other than server.bind's",
                ));
            }
        }
        validate_issuer(&self.server.issuer)?;
        for (i, origin) in self.cors.allowed_origins.iter().enumerate() {
            validate_origin(&format!("cors.allowed_origins[{i}]"), origin)?;
        }
        for (i, proxy) in self.server.trusted_proxies.iter().enumerate() {
            if crate::ratelimit::client_ip::Block::parse(proxy).is_none() {
                return Err(ConfigError::new(
                    format!("server.trusted_proxies[{i}]"),
                    format!("{proxy:?}"),
                    "an IP address or CIDR block such as \"10.0.0.0/8\" or \"::1\"",
                ));
            }
        }
        if self.server.shutdown_timeout_seconds == 0 || self.server.shutdown_timeout_seconds > 3600
        {
            return Err(ConfigError::new(
                "server.shutdown_timeout_seconds",
                self.server.shutdown_timeout_seconds,
                "1 to 3600",
            ));
        }
        validate_database_url(self.database.url.expose_secret())?;
        if !(1..=1000).contains(&self.database.max_connections) {
            return Err(ConfigError::new(
                "database.max_connections",
                self.database.max_connections,
                "1 to 1000",
            ));
        }
        if !(1..=1440).contains(&self.database.purge_interval_minutes) {
            return Err(ConfigError::new(
                "database.purge_interval_minutes",
                self.database.purge_interval_minutes,
                "1 to 1440",
            ));
        }
        if self.database.client_cache_seconds > 3600 {
            return Err(ConfigError::new(
                "database.client_cache_seconds",
                self.database.client_cache_seconds,
                "0 to 3600",
            ));
        }
        if self.keys.dir.as_os_str().is_empty() {
            return Err(ConfigError::new("keys.dir", "\"\"", "a directory path"));
        }
        if !(1..=86_400).contains(&self.keys.reload_seconds) {
            return Err(ConfigError::new(
                "keys.reload_seconds",
                self.keys.reload_seconds,
                "1 to 86400",
            ));
        }
        self.validate_email()?;
        self.validate_tokens()?;
        if !(1..=8760).contains(&self.sessions.lifetime_hours) {
            return Err(ConfigError::new(
                "sessions.lifetime_hours",
                self.sessions.lifetime_hours,
                "1 to 8760",
            ));
        }
        self.validate_ratelimit()?;
        if !(1..=3650).contains(&self.audit.retention_days) {
            return Err(ConfigError::new(
                "audit.retention_days",
                self.audit.retention_days,
                "1 to 3650",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::new(
                "log.level",
                format!("{:?}", self.log.level),
                "a RUST_LOG-style filter such as \"info\" or \"oxidp=debug,info\"",
            ));
        }
        for (i, user) in self.users.iter().enumerate() {
            validate_seed_user(i, user)?;
        }
        let mut ids = std::collections::HashSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            crate::clients::record_from_config(i, client)?;
            if !ids.insert(client.id.as_str()) {
                return Err(ConfigError::new(
                    format!("clients[{i}].id"),
                    format!("{:?}", client.id),
                    "an id not used by another [[clients]] entry",
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, user) in self.users.iter().enumerate() {
            if !names.insert(user.username.to_lowercase()) {
                return Err(ConfigError::new(
                    format!("users[{i}].username"),
                    format!("{:?}", user.username),
                    "a username not used by another [[users]] entry",
                ));
            }
        }
        Ok(())
    }

    fn validate_email(&self) -> Result<(), ConfigError> {
        if !crate::accounts::is_valid_mailbox(&self.email.from) {
            return Err(ConfigError::new(
                "email.from",
                format!("{:?}", self.email.from),
                "an address such as \"oxidp <no-reply@example.com>\"",
            ));
        }
        match (self.email.transport, &self.email.smtp_url) {
            (EmailTransport::Smtp, None) => Err(ConfigError::new(
                "email.smtp_url",
                "(missing)",
                "an smtp:// or smtps:// URL when email.transport = \"smtp\"",
            )),
            (_, Some(url)) => {
                let ok = Url::parse(url.expose_secret())
                    .map(|u| matches!(u.scheme(), "smtp" | "smtps") && u.host().is_some())
                    .unwrap_or(false);
                if ok {
                    Ok(())
                } else {
                    Err(ConfigError::new(
                        "email.smtp_url",
                        "<redacted>",
                        "an smtp:// (STARTTLS) or smtps:// URL with a host",
                    ))
                }
            }
            (EmailTransport::File, None) => {
                if self.email.outbox_dir.as_os_str().is_empty() {
                    Err(ConfigError::new(
                        "email.outbox_dir",
                        "\"\"",
                        "a directory path",
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn validate_tokens(&self) -> Result<(), ConfigError> {
        let t = &self.tokens;
        let checks: [(&str, u64, u64, u64); 6] = [
            (
                "tokens.access_token_seconds",
                t.access_token_seconds,
                60,
                86_400,
            ),
            ("tokens.id_token_seconds", t.id_token_seconds, 60, 86_400),
            (
                "tokens.authorization_code_seconds",
                t.authorization_code_seconds,
                10,
                600,
            ),
            (
                "tokens.refresh_grace_seconds",
                t.refresh_grace_seconds,
                0,
                300,
            ),
            ("tokens.refresh_idle_days", t.refresh_idle_days, 1, 3650),
            (
                "tokens.refresh_absolute_days",
                t.refresh_absolute_days,
                1,
                3650,
            ),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::new(key, value, format!("{min} to {max}")));
            }
        }
        if t.refresh_idle_days > t.refresh_absolute_days {
            return Err(ConfigError::new(
                "tokens.refresh_idle_days",
                t.refresh_idle_days,
                format!(
                    "at most tokens.refresh_absolute_days ({})",
                    t.refresh_absolute_days
                ),
            ));
        }
        Ok(())
    }

    fn validate_ratelimit(&self) -> Result<(), ConfigError> {
        let r = &self.ratelimit;
        for (key, value) in [
            (
                "ratelimit.password_failures_per_minute",
                r.password_failures_per_minute,
            ),
            (
                "ratelimit.password_failures_per_minute_per_ip",
                r.password_failures_per_minute_per_ip,
            ),
            (
                "ratelimit.requests_per_minute_per_ip",
                r.requests_per_minute_per_ip,
            ),
        ] {
            if !(1..=100_000).contains(&value) {
                return Err(ConfigError::new(key, value, "1 to 100000"));
            }
        }
        // The GCRA period is 1 / rate: these bounds keep it between 1 µs and ~3 hours.
        if !(r.flood_requests_per_second.is_finite()
            && (0.0001..=1_000_000.0).contains(&r.flood_requests_per_second))
        {
            return Err(ConfigError::new(
                "ratelimit.flood_requests_per_second",
                r.flood_requests_per_second,
                "a number of requests per second greater than 0, from 0.0001 to 1000000",
            ));
        }
        if !(1..=1_000_000).contains(&r.flood_burst) {
            return Err(ConfigError::new(
                "ratelimit.flood_burst",
                r.flood_burst,
                "1 to 1000000",
            ));
        }
        if let Some(header) = &r.client_ip_header
            && !is_header_name(header)
        {
            return Err(ConfigError::new(
                "ratelimit.client_ip_header",
                format!("{header:?}"),
                "an HTTP header name such as \"x-end-user-ip\"",
            ));
        }
        // The shared backends come later; refuse them rather than silently run per
        // process limits that the operator believes are shared.
        if r.redis_key_prefix.is_empty()
            || r.redis_key_prefix.len() > 64
            || !r
                .redis_key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(ConfigError::new(
                "ratelimit.redis_key_prefix",
                format!("{:?}", r.redis_key_prefix),
                "1 to 64 characters: letters, digits, '-', '_', '.', ':'",
            ));
        }
        match (r.backend, &r.redis_url) {
            (RateLimitBackend::Redis, None) => Err(ConfigError::new(
                "ratelimit.redis_url",
                "(missing)",
                "a redis:// URL when ratelimit.backend = \"redis\"",
            )),
            (_, Some(url)) => {
                let ok = Url::parse(url.expose_secret())
                    .map(|u| matches!(u.scheme(), "redis" | "rediss") && u.host().is_some())
                    .unwrap_or(false);
                if ok {
                    Ok(())
                } else {
                    Err(ConfigError::new(
                        "ratelimit.redis_url",
                        "<redacted>",
                        "a redis:// or rediss:// URL with a host",
                    ))
                }
            }
            _ => Ok(()),
        }
    }

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

fn figment_error(e: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let key = if e.path.is_empty() {
        FILE_KEY.to_string()
    } else {
        key_path(&e.path)
    };
    let secret = e
        .path
        .last()
        .is_some_and(|k| k == "secret" || k == "password" || k.ends_with("url"));
    match &e.kind {
        Kind::UnknownField(field, expected) => {
            let key = if e.path.is_empty() || e.path.last() != Some(field) {
                let mut p = e.path.clone();
                p.push(field.clone());
                key_path(&p)
            } else {
                key
            };
            ConfigError::new(
                key,
                "is not a known setting",
                if expected.is_empty() {
                    "no keys here".to_string()
                } else {
                    expected.join(", ")
                },
            )
        }
        Kind::UnknownVariant(value, expected) => {
            ConfigError::new(key, format!("{value:?}"), expected.join(", "))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let value = if secret {
                "<redacted>".to_string()
            } else {
                actual.to_string()
            };
            ConfigError::new(key, value, expected.clone())
        }
        Kind::MissingField(field) => {
            let mut p = e.path.clone();
            p.push(field.to_string());
            ConfigError::new(key_path(&p), "(missing)", "a value; this key is required")
        }
        Kind::Message(msg) => ConfigError::new(key, toml_message(msg), "valid TOML"),
        other => ConfigError::new(
            key,
            other.to_string(),
            "see config.toml for the allowed values",
        ),
    }
}

/// RFC 9110 §5.1: a field name is a token (tchar characters).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `["clients", "0", "secret"]` → `clients[0].secret`, the form every message uses.
fn key_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// A TOML parse error without its source excerpt: the excerpt is a line of the file,
/// which may hold a secret.
fn toml_message(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|'))
        .collect::<Vec<_>>()
        .join(": ")
}

fn validate_bind(key: &str, bind: &str) -> Result<(), ConfigError> {
    bind.parse::<SocketAddr>().map(|_| ()).map_err(|_| {
        ConfigError::new(
            key,
            format!("{bind:?}"),
            "an IP address and port such as \"127.0.0.1:9000\" or \"[::]:9000\"",
        )
    })
}

/// Whether a URL's host is a loopback name or address (RFC 8252 §7.3, §8.3).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// OIDC Discovery 1.0 §3: the issuer is an https URL with no query or fragment. Plain
/// http is accepted only on a loopback host, for development.
pub fn validate_issuer(issuer: &str) -> Result<(), ConfigError> {
    let bad = |allowed: &str| ConfigError::new("server.issuer", format!("{issuer:?}"), allowed);
    let url = Url::parse(issuer)
        .map_err(|_| bad("an absolute https URL such as \"https://id.example.com\""))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(bad(
                "https, or http only on localhost, 127.0.0.1 or [::1] (for development)",
            ));
        }
        _ => return Err(bad("an https URL")),
    }
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("an https URL with a host and no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("a URL without user information"));
    }
    if issuer.ends_with('/') {
        return Err(bad(
            "a URL without a trailing slash, e.g. \"https://id.example.com\"",
        ));
    }
    Ok(())
}

fn validate_origin(key: &str, origin: &str) -> Result<(), ConfigError> {
    let ok = Url::parse(origin).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.path() == "/"
            && u.query().is_none()
            && u.fragment().is_none()
            && !origin.ends_with('/')
    });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("{origin:?}"),
            "an origin such as \"https://app.example.com\" (scheme, host, optional port; no path)",
        ))
    }
}

fn validate_database_url(url: &str) -> Result<(), ConfigError> {
    let bad = || {
        ConfigError::new(
            "database.url",
            redact_url(url),
            "\"sqlite://path/to/file.db\", \"sqlite:///absolute/path.db\" or \"postgres://user@host/db\"",
        )
    };
    match DatabaseKind::of(url) {
        Some(DatabaseKind::Sqlite) => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(bad());
            }
            Ok(())
        }
        Some(DatabaseKind::Postgres) => {
            let parsed = Url::parse(url).map_err(|_| bad())?;
            if parsed.host().is_none() && !url.contains("host=") {
                return Err(bad());
            }
            Ok(())
        }
        None => Err(bad()),
    }
}

/// A database URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            format!("{:?}", u.as_str())
        }
        Ok(_) => format!("{url:?}"),
        Err(_) => "\"<unparseable, redacted>\"".to_string(),
    }
}

fn validate_seed_user(i: usize, user: &SeedUser) -> Result<(), ConfigError> {
    let key = |k: &str| format!("users[{i}].{k}");
    if let Err(msg) = crate::accounts::validate_username(&user.username) {
        return Err(ConfigError::new(
            key("username"),
            format!("{:?}", user.username),
            msg,
        ));
    }
    if crate::accounts::normalize_email(&user.email).is_none() {
        return Err(ConfigError::new(
            key("email"),
            format!("{:?}", user.email),
            "an e-mail address such as \"alice@example.com\"",
        ));
    }
    match (&user.password, &user.password_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key("password_env"),
                "set together with password",
                "either password or password_env, not both",
            ));
        }
        (Some(p), None) => {
            if let Err(msg) =
                crate::accounts::check_password(p.expose_secret(), &user.username, &user.email)
            {
                return Err(ConfigError::new(key("password"), "<redacted>", msg));
            }
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(p) => {
                if let Err(msg) = crate::accounts::check_password(&p, &user.username, &user.email) {
                    return Err(ConfigError::new(
                        key("password_env"),
                        format!("{var:?} (value redacted)"),
                        msg,
                    ));
                }
            }
            Err(_) => {
                return Err(ConfigError::new(
                    key("password_env"),
                    format!("{var:?} is not set"),
                    "the name of an environment variable that holds the password",
                ));
            }
        },
        (None, None) => {}
    }
    for (j, role) in user.roles.iter().enumerate() {
        if let Err(msg) = crate::accounts::validate_role(role) {
            return Err(ConfigError::new(
                format!("users[{i}].roles[{j}]"),
                format!("{role:?}"),
                msg,
            ));
        }
    }
    Ok(())
}

impl SeedUser {
    /// The configured password, read from the environment when `password_env` is used.
    pub fn resolved_password(&self) -> Option<SecretString> {
        match (&self.password, &self.password_env) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(var)) => std::env::var(var).ok().map(SecretString::from),
            (None, None) => None,
        }
    }
}

impl ClientConfig {
    /// The configured secret, read from the environment when `secret_env` is used.
    pub fn resolved_secret(&self) -> Option<SecretString> {
        match (&self.secret, &self.secret_env) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(var)) => std::env::var(var).ok().map(SecretString::from),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
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
