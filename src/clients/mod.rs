//! The client registry: validation (rules in `oidc::registration`), generated secrets
//! stored as SHA-256 hashes, constant-time comparison.
//!
//! Client secrets are 256-bit random strings, not human passwords, so a fast hash is
//! enough: nobody can brute-force 2^256 (DESIGN.md; argon2 is for human passwords).

pub mod cache;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::oidc::registration::{AuthMethod, ClientMetadata, RuleError, check_client};
pub use cache::ClientCache;

pub use crate::storage::ClientRecord;
use crate::storage::{Store, StoreError};

/// Shortest accepted client secret, in bytes (DESIGN.md: secrets are at least 32 bytes).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Invalid(#[from] RuleError),
    #[error("a client with id {0:?} already exists")]
    Exists(String),
    #[error("no client with id {0:?}")]
    NotFound(String),
    #[error("client {0:?} is declared in [[clients]] of the config file; change it there")]
    ManagedByConfig(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// 32 random bytes, base64url: 43 URL-safe characters.
pub fn generate_secret() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Compares in constant time (over the hashes, so the length of the presented secret
/// does not leak either).
pub fn secret_matches(presented: &str, stored_hash: &[u8]) -> bool {
    hash_secret(presented).ct_eq(stored_hash).into()
}

/// What an operator asks for when registering a client by CLI (or, later, the API).
#[derive(Debug, Clone, Default)]
pub struct ClientSpec {
    pub id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub public: bool,
    pub first_party: bool,
    pub introspect_any: bool,
    pub scopes: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
}

/// A client declared in `[[clients]]` is rewritten from the config file at every start,
/// so a change made elsewhere (admin API, CLI) would silently come undone: refused.
pub fn changeable(client: &ClientRecord) -> Result<(), ClientError> {
    if client.source == "config" {
        return Err(ClientError::ManagedByConfig(client.id.clone()));
    }
    Ok(())
}

/// Where a declared client's secret came from, so that errors can name it without
/// showing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline,
    Env(String),
}

impl SecretSource {
    fn field(&self) -> &'static str {
        match self {
            Self::Inline => "secret",
            Self::Env(_) => "secret_env",
        }
    }

    fn shown(&self) -> String {
        match self {
            Self::Inline => "<redacted>".to_string(),
            Self::Env(var) => format!("{var:?} (value redacted)"),
        }
    }
}

/// A client an operator declares (`[[clients]]`), with its secret already resolved.
#[derive(Debug, Clone)]
pub struct Declared<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub secret: Option<(&'a SecretString, SecretSource)>,
    pub redirect_uris: &'a [String],
    pub post_logout_redirect_uris: &'a [String],
    pub grant_types: &'a [String],
    pub auth_method: Option<AuthMethod>,
    pub first_party: bool,
    pub introspect_any: bool,
    pub scopes: &'a [String],
    pub backchannel_logout_uri: Option<&'a str>,
}

/// Turns a declared client into a record. Errors name the field of the declaration.
pub fn record_from_declared(c: &Declared<'_>) -> Result<ClientRecord, RuleError> {
    let invalid = |field: &str, value: String, allowed: String| RuleError {
        field: field.to_string(),
        value,
        allowed,
    };
    let secret = c
        .secret
        .as_ref()
        .map(|(s, source)| (source.field(), (*s).clone(), source.shown()));
    let method = c.auth_method.unwrap_or(if secret.is_some() {
        AuthMethod::ClientSecretBasic
    } else {
        AuthMethod::None
    });
    let secret_hash = match (method, secret) {
        (AuthMethod::None, Some((k, _, shown))) => {
            return Err(invalid(
                k,
                shown,
                "no secret for a public client (token_endpoint_auth_method = \"none\")".into(),
            ));
        }
        (AuthMethod::None, None) => None,
        (_, None) => {
            return Err(invalid(
                "secret",
                "(missing)".into(),
                format!(
                    "a secret of at least {MIN_SECRET_BYTES} bytes, or token_endpoint_auth_method = \"none\" for a public client"
                ),
            ));
        }
        (_, Some((k, s, shown))) => {
            let len = s.expose_secret().len();
            if len < MIN_SECRET_BYTES {
                return Err(invalid(
                    k,
                    format!("{shown} of {len} bytes"),
                    format!("at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -base64 32`)"),
                ));
            }
            Some(hash_secret(s.expose_secret()))
        }
    };
    let grants = check_client(&ClientMetadata {
        id: c.id,
        name: c.name,
        redirect_uris: c.redirect_uris,
        post_logout_redirect_uris: c.post_logout_redirect_uris,
        grant_types: c.grant_types,
        auth_method: method,
        first_party: c.first_party,
        scopes: c.scopes,
        backchannel_logout_uri: c.backchannel_logout_uri,
    })?;
    Ok(ClientRecord {
        id: c.id.to_string(),
        name: c.name.map(str::to_string),
        secret_hash,
        token_endpoint_auth_method: method.as_str().to_string(),
        grant_types: grants.iter().map(|g| g.as_str().to_string()).collect(),
        scopes: c.scopes.to_vec(),
        first_party: c.first_party,
        introspect_any: c.introspect_any,
        redirect_uris: c.redirect_uris.to_vec(),
        post_logout_redirect_uris: c.post_logout_redirect_uris.to_vec(),
        backchannel_logout_uri: c.backchannel_logout_uri.map(str::to_string),
        source: "config".into(),
        created_at: 0,
        updated_at: 0,
    })
}

#[derive(Clone, Debug)]
pub struct Clients {
    store: Store,
}

impl Clients {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Validates, generates a secret for a confidential client, stores only its hash.
    /// Returns the record and the secret in clear, to be shown once.
    pub async fn add(
        &self,
        spec: ClientSpec,
    ) -> Result<(ClientRecord, Option<SecretString>), ClientError> {
        let (record, secret) = prepare(spec)?;
        let stored = self.insert(&record).await?;
        Ok((stored, secret))
    }

    /// Stores a prepared client; `Exists` when the id is taken.
    pub async fn insert(&self, record: &ClientRecord) -> Result<ClientRecord, ClientError> {
        match self.store.insert_client(record).await {
            Err(StoreError::Conflict(_)) => return Err(ClientError::Exists(record.id.clone())),
            other => other?,
        }
        self.store
            .get_client(&record.id)
            .await?
            .ok_or_else(|| ClientError::NotFound(record.id.clone()))
    }

    pub async fn list(&self) -> Result<Vec<ClientRecord>, ClientError> {
        Ok(self.store.list_clients().await?)
    }

    pub async fn get(&self, id: &str) -> Result<ClientRecord, ClientError> {
        self.store
            .get_client(id)
            .await?
            .ok_or_else(|| ClientError::NotFound(id.to_string()))
    }

    /// Removes a client that is not declared in `[[clients]]`; returns what it was.
    pub async fn remove(&self, id: &str) -> Result<ClientRecord, ClientError> {
        let client = self.get(id).await?;
        changeable(&client)?;
        match self.store.remove_client(id).await {
            Err(StoreError::NotFound) => Err(ClientError::NotFound(id.to_string())),
            other => {
                other?;
                Ok(client)
            }
        }
    }

    /// Upserts the declared clients (`[[clients]]`) in one transaction.
    pub async fn sync_declared(&self, records: &[ClientRecord]) -> Result<(), ClientError> {
        Ok(self.store.upsert_clients(records).await?)
    }
}

/// Checks a client definition and generates its secret, without touching storage:
/// bad input is refused before anything is opened or written.
pub fn prepare(spec: ClientSpec) -> Result<(ClientRecord, Option<SecretString>), ClientError> {
    let method = if spec.public {
        AuthMethod::None
    } else {
        AuthMethod::ClientSecretBasic
    };
    let grant_types = if spec.grant_types.is_empty() {
        default_grants(&spec)
    } else {
        spec.grant_types.clone()
    };
    let grants = check_client(&ClientMetadata {
        id: &spec.id,
        name: spec.name.as_deref(),
        redirect_uris: &spec.redirect_uris,
        post_logout_redirect_uris: &spec.post_logout_redirect_uris,
        grant_types: &grant_types,
        auth_method: method,
        first_party: spec.first_party,
        scopes: &spec.scopes,
        backchannel_logout_uri: spec.backchannel_logout_uri.as_deref(),
    })?;
    let secret = (!spec.public).then(generate_secret);
    let record = ClientRecord {
        id: spec.id.clone(),
        name: spec.name,
        secret_hash: secret.as_ref().map(|s| hash_secret(s.expose_secret())),
        token_endpoint_auth_method: method.as_str().to_string(),
        grant_types: grants.iter().map(|g| g.as_str().to_string()).collect(),
        scopes: spec.scopes,
        first_party: spec.first_party,
        introspect_any: spec.introspect_any,
        redirect_uris: spec.redirect_uris,
        post_logout_redirect_uris: spec.post_logout_redirect_uris,
        backchannel_logout_uri: spec.backchannel_logout_uri,
        source: "cli".into(),
        created_at: 0,
        updated_at: 0,
    };
    Ok((record, secret))
}

/// Without `--grant-type`: the code flow with refresh when redirect URIs are given,
/// otherwise client credentials (a service client).
fn default_grants(spec: &ClientSpec) -> Vec<String> {
    if spec.redirect_uris.is_empty() && !spec.public {
        vec!["client_credentials".into()]
    } else {
        vec!["authorization_code".into(), "refresh_token".into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_url_safe_and_compared_by_hash() {
        let s = generate_secret();
        let s = s.expose_secret();
        assert_eq!(s.len(), 43);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(s, generate_secret().expose_secret());
        let hash = hash_secret(s);
        assert!(secret_matches(s, &hash));
        assert!(!secret_matches("wrong", &hash));
        assert!(!secret_matches("", &hash));
    }
}
