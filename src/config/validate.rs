//! Every rule that serde cannot express, each error one line naming the key.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{
    ClientConfig, Config, ConfigError, DatabaseKind, EmailTransport, RateLimitBackend, SeedUser,
};
use crate::clients::{Declared, SecretSource, record_from_declared};
use crate::oidc::registration::is_loopback;

impl Config {
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
            client_record(i, client)?;
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
}

/// RFC 9110 §5.1: a field name is a token (tchar characters).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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

pub(super) fn validate_database_url(url: &str) -> Result<(), ConfigError> {
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
        (None, Some(var)) => match &user.password_from_env {
            Some(p) => {
                if let Err(msg) =
                    crate::accounts::check_password(p.expose_secret(), &user.username, &user.email)
                {
                    return Err(ConfigError::new(
                        key("password_env"),
                        format!("{var:?} (value redacted)"),
                        msg,
                    ));
                }
            }
            None => {
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
    /// The configured password (`password`, or what `password_env` named at load).
    pub fn resolved_password(&self) -> Option<SecretString> {
        self.password
            .clone()
            .or_else(|| self.password_from_env.clone())
    }

    pub(super) fn seed(&self) -> crate::accounts::Seed {
        crate::accounts::Seed {
            username: self.username.clone(),
            email: self.email.clone(),
            password: self.resolved_password(),
            name: self.name.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            roles: self.roles.clone(),
        }
    }
}

/// A `[[clients]]` entry as a record; errors name the config key.
pub(super) fn client_record(
    i: usize,
    c: &ClientConfig,
) -> Result<crate::clients::ClientRecord, ConfigError> {
    let key = |field: &str| format!("clients[{i}].{field}");
    let secret = match (&c.secret, &c.secret_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key("secret_env"),
                "set together with secret",
                "either secret or secret_env, not both",
            ));
        }
        (None, Some(var)) => match &c.secret_from_env {
            Some(s) => Some((s, SecretSource::Env(var.clone()))),
            None => {
                return Err(ConfigError::new(
                    key("secret_env"),
                    format!("{var:?} is not set"),
                    "the name of an environment variable that holds the secret",
                ));
            }
        },
        (Some(s), None) => Some((s, SecretSource::Inline)),
        (None, None) => None,
    };
    record_from_declared(&Declared {
        id: &c.id,
        name: c.name.as_deref(),
        secret,
        redirect_uris: &c.redirect_uris,
        post_logout_redirect_uris: &c.post_logout_redirect_uris,
        grant_types: &c.grant_types,
        auth_method: c.token_endpoint_auth_method,
        first_party: c.first_party,
        introspect_any: c.introspect_any,
        scopes: &c.scopes,
        backchannel_logout_uri: c.backchannel_logout_uri.as_deref(),
    })
    .map_err(|e| ConfigError::new(key(&e.field), e.value, e.allowed))
}
