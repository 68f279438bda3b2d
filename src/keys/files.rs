//! Key files: scanning, generating (0600 in a 0700 directory), setting aside.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use josekit::jwk::KeyPair;
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jws::RS256;

use super::{KeyError, SigningKey};

const KEY_BITS: u32 = 2048;

pub(super) struct LoadedKey {
    pub kid: String,
    pub created_at: Option<i64>,
    path: PathBuf,
    key_pair: RsaKeyPair,
}

impl LoadedKey {
    pub fn to_signing_key(&self) -> Result<SigningKey, KeyError> {
        let corrupt = |reason: String| KeyError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let (_, public_jwk) =
            super::jwk::public_jwk(&self.key_pair).ok_or_else(|| corrupt("no modulus".into()))?;
        let mut signer = RS256
            .signer_from_der(self.key_pair.to_der_private_key())
            .map_err(|e| corrupt(e.to_string()))?;
        signer.set_key_id(self.kid.clone());
        let verifier = RS256
            .verifier_from_der(self.key_pair.to_der_public_key())
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(SigningKey {
            kid: self.kid.clone(),
            signer,
            verifier,
            public_jwk,
        })
    }
}

pub(super) fn path_of(dir: &Path, kid: &str) -> PathBuf {
    dir.join(format!("{kid}.pem"))
}

/// Creates the directory with mode 0700 when it does not exist yet.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    let write = |source| KeyError::Write {
        path: dir.to_path_buf(),
        source,
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(dir = %dir.display(), "key directory is readable by group or others; chmod 700 it");
            }
            Ok(())
        }
        Ok(_) => Err(write(std::io::Error::other(
            "exists and is not a directory",
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(write)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(write)
        }
        Err(e) => Err(KeyError::Read {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

/// Loads every `*.pem` file. Anything unreadable or not an RSA key of at least 2048 bits
/// is an error: start-up must not paper over a damaged key.
pub(super) fn scan(dir: &Path) -> Result<Vec<LoadedKey>, KeyError> {
    let read = |path: &Path, source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut keys = Vec::new();
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| read(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    paths.sort();
    for path in paths {
        let meta = fs::metadata(&path).map_err(|e| read(&path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "key file is readable by group or others; chmod 600 it");
        }
        let pem = fs::read(&path).map_err(|e| read(&path, e))?;
        let mut key = from_pem(path, &pem)?;
        key.created_at = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        if keys.iter().any(|k: &LoadedKey| k.kid == key.kid) {
            tracing::warn!(file = %key.path.display(), kid = %key.kid, "duplicate key file ignored");
            continue;
        }
        keys.push(key);
    }
    Ok(keys)
}

/// A key from PEM bytes (a key file's, or the fuzz target's), named `path` in errors;
/// refused when it is not RSA or shorter than `KEY_BITS`. No creation time.
pub(super) fn from_pem(path: PathBuf, pem: &[u8]) -> Result<LoadedKey, KeyError> {
    let corrupt = |reason: String| KeyError::Corrupt {
        path: path.clone(),
        reason,
    };
    let key_pair = RS256
        .key_pair_from_pem(pem)
        .map_err(|e| corrupt(e.to_string()))?;
    // key_len() is the modulus size in bytes.
    if key_pair.key_len() * 8 < KEY_BITS {
        return Err(corrupt(format!(
            "{} bits; at least {KEY_BITS} required",
            key_pair.key_len() * 8
        )));
    }
    let (kid, _) = super::jwk::public_jwk(&key_pair).ok_or_else(|| corrupt("no modulus".into()))?;
    Ok(LoadedKey {
        kid,
        created_at: None,
        path,
        key_pair,
    })
}

/// Generates an RSA-2048 key and writes it as `<kid>.pem`, mode 0600, never replacing
/// an existing file. Blocking: run it off the async runtime.
pub(super) fn generate(dir: &Path) -> Result<LoadedKey, KeyError> {
    let key_pair = RS256
        .generate_key_pair(KEY_BITS)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let (kid, _) = super::jwk::public_jwk(&key_pair)
        .ok_or_else(|| KeyError::Generate("generated key has no modulus".into()))?;
    let path = path_of(dir, &kid);
    let write = |source| KeyError::Write {
        path: path.clone(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(write)?;
    let pem = key_pair.to_pem_private_key();
    let written = file.write_all(&pem).and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A half-written key would stop every later start-up; remove what we created.
        let _ = fs::remove_file(&path);
        return Err(write(e));
    }
    Ok(LoadedKey {
        kid,
        created_at: None,
        path,
        key_pair,
    })
}

/// Renames a retired key's file so it is never loaded again but stays recoverable.
pub(super) fn set_aside(dir: &Path, kid: &str) -> Result<(), KeyError> {
    let target = scan(dir)?.into_iter().find(|k| k.kid == kid);
    if let Some(key) = target {
        let mut retired = key.path.clone().into_os_string();
        retired.push(".retired");
        fs::rename(&key.path, &retired).map_err(|source| KeyError::Write {
            path: key.path.clone(),
            source,
        })?;
    }
    Ok(())
}
