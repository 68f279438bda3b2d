//! Where the settings come from: the file, then `OXIDP_*` variables; the variables that
//! `*_env` settings name are read here, once.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::SecretString;

use super::validate::client_record;
use super::{Config, ConfigError, DEFAULT_CONFIG_PATH, FILE_KEY, SECTIONS, SeedUser};

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
        let mut config: Config = figment.extract().map_err(figment_error).map_err(from_env)?;
        config.read_secret_variables();
        config.validate().map_err(from_env)?;
        Ok(config)
    }

    /// Reads the variables that `password_env` and `secret_env` name, once: validation
    /// and start-up use what was read here.
    fn read_secret_variables(&mut self) {
        let read = |var: &Option<String>| {
            var.as_ref()
                .and_then(|v| std::env::var(v).ok())
                .map(SecretString::from)
        };
        for user in &mut self.users {
            user.password_from_env = read(&user.password_env);
        }
        for client in &mut self.clients {
            client.secret_from_env = read(&client.secret_env);
        }
    }

    /// The `[[clients]]` entries as records (already validated).
    pub fn client_records(&self) -> Result<Vec<crate::clients::ClientRecord>, ConfigError> {
        self.clients
            .iter()
            .enumerate()
            .map(|(i, c)| client_record(i, c))
            .collect()
    }

    /// The `[[users]]` entries as the accounts service seeds them.
    pub fn seed_users(&self) -> Vec<crate::accounts::Seed> {
        self.users.iter().map(SeedUser::seed).collect()
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
