//! Signing keys: RSA-2048 private keys as PKCS#8 PEM files in `keys.dir` (mode 0600),
//! their life cycle (created, activated, retired) in the `signing_keys` table. The newest
//! activated key that is not retired signs; every key that is not retired is published.
//!
//! Files are only ever created (`create_new`), never rewritten, so a corrupt or
//! unexpected file stops start-up instead of being replaced.

mod files;
mod jwk;
mod pool;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use josekit::jws::alg::rsassa::{RsassaJwsSigner, RsassaJwsVerifier};
use josekit::jws::{JwsHeader, JwsVerifier};
use josekit::jwt::JwtPayload;
use serde_json::{Map, Value};

pub use jwk::rfc7638_thumbprint;

use crate::storage::{KeyRecord, Store, StoreError};

pub const ALG: &str = "RS256";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "key file {path} is corrupt or not an RSA private key ({reason}); fix or remove it, it is never overwritten"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "key {kid} is registered in the database but {path} is missing; restore the file or retire the key"
    )]
    Missing { kid: String, path: PathBuf },
    #[error("cannot generate an RSA key: {0}")]
    Generate(String),
    #[error("no key with kid {0}")]
    UnknownKid(String),
    #[error("cannot start the signing threads: {0}")]
    Threads(std::io::Error),
    #[error("{0}")]
    Refused(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One loaded private key.
pub struct SigningKey {
    pub kid: String,
    signer: RsassaJwsSigner,
    verifier: RsassaJwsVerifier,
    /// The public JWK (kty, n, e, kid, use, alg).
    public_jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn signer(&self) -> &RsassaJwsSigner {
        &self.signer
    }

    pub fn public_jwk(&self) -> &serde_json::Value {
        &self.public_jwk
    }
}

/// What is published and what signs, as one immutable snapshot.
#[derive(Debug)]
pub struct KeySet {
    pub active: Arc<SigningKey>,
    /// Every published key, the active one first.
    pub published: Vec<Arc<SigningKey>>,
    /// The JWKS document, serialised once per change.
    pub jwks: bytes::Bytes,
    /// The records this set was built from, to notice changes cheaply.
    records: Vec<KeyRecord>,
}

impl KeySet {
    /// When the active key started signing (Unix seconds), for the key-age metric.
    pub fn active_since(&self) -> Option<i64> {
        self.records
            .iter()
            .find(|r| r.kid == self.active.kid)
            .map(|r| r.activated_at)
    }
}

/// Why a JWT was not accepted. Deliberately coarse: callers answer `invalid_token`.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is signed by an unknown or retired key")]
    UnknownKey,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("signing failed: {0}")]
    Sign(String),
}

impl KeySet {
    /// Signs `claims` with the active key: RS256, `kid` = its thumbprint, `typ` when
    /// given (RFC 9068 §2.1 `at+jwt`).
    pub fn sign(
        &self,
        typ: Option<&str>,
        claims: Map<String, Value>,
    ) -> Result<String, TokenError> {
        let mut header = JwsHeader::new();
        if let Some(typ) = typ {
            header.set_token_type(typ);
        }
        header.set_key_id(self.active.kid.clone());
        let payload = JwtPayload::from_map(claims).map_err(|e| TokenError::Sign(e.to_string()))?;
        josekit::jwt::encode_with_signer(&payload, &header, &self.active.signer)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// Checks the signature against the published key named by `kid` (RS256 only) and
    /// returns the claims and the `typ` header. Time and audience are the caller's rules.
    pub fn verify(&self, token: &str) -> Result<(Map<String, Value>, Option<String>), TokenError> {
        if token.len() > 16 * 1024 || token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        let header = josekit::jwt::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let kid = header
            .claim("kid")
            .and_then(Value::as_str)
            .ok_or(TokenError::UnknownKey)?;
        let key = self
            .published
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::UnknownKey)?;
        let verifier: &dyn JwsVerifier = &key.verifier;
        let (payload, header) = josekit::jwt::decode_with_verifier(token, verifier)
            .map_err(|_| TokenError::BadSignature)?;
        Ok((
            payload.claims_set().clone(),
            header.token_type().map(str::to_string),
        ))
    }
}

impl KeySet {
    /// A set of one key, from PEM, with no files or database behind it: lets the fuzz
    /// target (fuzz/fuzz_targets/jwt.rs) drive the real `verify` without I/O.
    pub fn from_private_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = Arc::new(files::from_pem(PathBuf::from("<memory>"), pem)?.to_signing_key()?);
        let jwks = jwk::jwks_document(std::iter::once(key.public_jwk()));
        Ok(Self {
            active: key.clone(),
            published: vec![key],
            jwks,
            records: Vec::new(),
        })
    }
}

/// Shared, hot-swappable key set.
#[derive(Clone)]
pub struct KeyRing {
    dir: PathBuf,
    store: Store,
    current: Arc<ArcSwap<KeySet>>,
    signers: pool::SignPool,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("dir", &self.dir).finish()
    }
}

/// The status of a key as `keys list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Published,
    Retired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Published => "published",
            Self::Retired => "retired",
        }
    }
}

/// Records with their status, newest activation first.
pub fn statuses(records: &[KeyRecord]) -> Vec<(KeyRecord, KeyStatus)> {
    let mut active_seen = false;
    records
        .iter()
        .map(|r| {
            let status = if r.retired_at.is_some() {
                KeyStatus::Retired
            } else if !active_seen {
                active_seen = true;
                KeyStatus::Active
            } else {
                KeyStatus::Published
            };
            (r.clone(), status)
        })
        .collect()
}

impl KeyRing {
    /// Start-up: registers key files the database does not know yet, generates a key
    /// when none can sign, and loads every published key.
    pub async fn load(store: Store, dir: &Path) -> Result<Self, KeyError> {
        files::ensure_dir(dir)?;
        let on_disk = files::scan(dir)?;
        let known = store.list_keys().await?;
        let now = crate::storage::unix_now();
        for key in &on_disk {
            if !known.iter().any(|r| r.kid == key.kid) {
                store
                    .insert_key(&KeyRecord {
                        kid: key.kid.clone(),
                        alg: ALG.into(),
                        created_at: key.created_at.unwrap_or(now),
                        activated_at: key.created_at.unwrap_or(now),
                        retired_at: None,
                    })
                    .await?;
            }
        }
        let mut records = store.list_keys().await?;
        let mut on_disk = on_disk;
        if records.iter().all(|r| r.retired_at.is_some()) {
            generate_and_register(&store, dir, &records).await?;
            records = store.list_keys().await?;
            on_disk = files::scan(dir)?;
        }
        let set = build_set(dir, records, on_disk)?;
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Ok(Self {
            dir: dir.to_path_buf(),
            store,
            current: Arc::new(ArcSwap::from_pointee(set)),
            signers: pool::SignPool::new(cores).map_err(KeyError::Threads)?,
        })
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Runs `sign` with the current key set on a signing thread (`pool`): requests sign
    /// through this, never on a runtime worker.
    pub async fn sign_with<T: Send + 'static>(
        &self,
        sign: impl FnOnce(&KeySet) -> T + Send + 'static,
    ) -> Result<T, TokenError> {
        self.signers.run(self.current(), sign).await
    }

    /// Re-reads the key table; rebuilds the set when a key was rotated in or retired
    /// (by the CLI or another instance). Returns whether anything changed.
    pub async fn reload(&self) -> Result<bool, KeyError> {
        let records = self.store.list_keys().await?;
        if records == self.current.load().records {
            return Ok(false);
        }
        if records.iter().all(|r| r.retired_at.is_some()) {
            // Keep signing with what we have rather than publish an empty set.
            return Err(KeyError::Refused(
                "every key is retired; keeping the current set",
            ));
        }
        let on_disk = files::scan(&self.dir)?;
        let set = build_set(&self.dir, records, on_disk)?;
        tracing::info!(active = %set.active.kid, published = set.published.len(), "signing keys reloaded");
        self.current.store(Arc::new(set));
        Ok(true)
    }

    /// Generates a new key that signs from now on; older keys stay published.
    pub async fn rotate(store: &Store, dir: &Path) -> Result<String, KeyError> {
        files::ensure_dir(dir)?;
        let records = store.list_keys().await?;
        generate_and_register(store, dir, &records).await
    }

    /// Removes a key from the JWKS. The active key is refused. The file is renamed to
    /// `<kid>.pem.retired`, kept for the operator but never loaded again.
    pub async fn retire(store: &Store, dir: &Path, kid: &str) -> Result<(), KeyError> {
        match store.retire_key(kid, crate::storage::unix_now()).await {
            Err(StoreError::NotFound) => return Err(KeyError::UnknownKid(kid.to_string())),
            Err(StoreError::Refused(why)) => return Err(KeyError::Refused(why)),
            other => other?,
        }
        files::set_aside(dir, kid)
    }
}

async fn generate_and_register(
    store: &Store,
    dir: &Path,
    records: &[KeyRecord],
) -> Result<String, KeyError> {
    let key = tokio::task::spawn_blocking({
        let dir = dir.to_path_buf();
        move || files::generate(&dir)
    })
    .await
    .map_err(|e| KeyError::Generate(e.to_string()))??;
    let now = crate::storage::unix_now();
    // Strictly newer than every existing activation, so the new key wins the ordering
    // even when two rotations happen within one second.
    let latest = records.iter().map(|r| r.activated_at).max().unwrap_or(0);
    let registered = store
        .insert_key(&KeyRecord {
            kid: key.kid.clone(),
            alg: ALG.into(),
            created_at: now,
            activated_at: now.max(latest + 1),
            retired_at: None,
        })
        .await;
    if let Err(e) = registered {
        // An unregistered file would be picked up (and activated) at the next start.
        let _ = std::fs::remove_file(files::path_of(dir, &key.kid));
        return Err(e.into());
    }
    Ok(key.kid)
}

fn build_set(
    dir: &Path,
    records: Vec<KeyRecord>,
    on_disk: Vec<files::LoadedKey>,
) -> Result<KeySet, KeyError> {
    let mut published = Vec::new();
    for (record, status) in statuses(&records) {
        if status == KeyStatus::Retired {
            continue;
        }
        let Some(loaded) = on_disk.iter().find(|k| k.kid == record.kid) else {
            return Err(KeyError::Missing {
                path: files::path_of(dir, &record.kid),
                kid: record.kid,
            });
        };
        published.push(Arc::new(loaded.to_signing_key()?));
    }
    let Some(active) = published.first().cloned() else {
        return Err(KeyError::Refused("no key can sign"));
    };
    let jwks = jwk::jwks_document(published.iter().map(|k| k.public_jwk()));
    Ok(KeySet {
        active,
        published,
        jwks,
        records,
    })
}
