//! argon2id hashing off the async runtime, with bounded concurrency: each hash holds
//! 19 MiB for tens of milliseconds, so an unbounded burst would exhaust memory and starve
//! the runtime's worker threads.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// OWASP's argon2id baseline, fixed by DESIGN.md: m = 19456 KiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password worker stopped: {0}")]
    Worker(String),
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Verified against when the user is unknown or has no password, so that such a
    /// login costs the same time as a real one (no user enumeration by timing).
    dummy_hash: Arc<String>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

fn argon2() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &[u8]) -> Result<String, PasswordError> {
    argon2()?
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

impl PasswordHasher {
    /// `max_concurrent` hashes run at once (the number of cores is a good value).
    pub fn new(max_concurrent: usize) -> Result<Self, PasswordError> {
        let dummy = hash_blocking(b"oxidp dummy password for unknown users")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy_hash: Arc::new(dummy),
        })
    }

    /// A new argon2id PHC string with a random salt.
    pub async fn hash(&self, password: &SecretString) -> Result<String, PasswordError> {
        let password = password.clone();
        self.run(move || hash_blocking(password.expose_secret().as_bytes()))
            .await?
    }

    /// Whether `password` matches `hash`. With no hash (unknown user, no password set) it
    /// still spends one verification and answers false.
    pub async fn verify(
        &self,
        password: &SecretString,
        hash: Option<&str>,
    ) -> Result<bool, PasswordError> {
        let password = password.clone();
        let (hash, real) = match hash {
            Some(h) => (h.to_string(), true),
            None => (self.dummy_hash.as_str().to_string(), false),
        };
        let ok = self
            .run(move || -> Result<bool, PasswordError> {
                let argon2 = argon2()?;
                Ok(argon2
                    .verify_password(password.expose_secret().as_bytes(), hash.as_str())
                    .is_ok())
            })
            .await??;
        Ok(ok && real)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| PasswordError::Worker(e.to_string()))?;
        // spawn_blocking keeps the tracing span only if we carry it in.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(f))
            .await
            .map_err(|e| PasswordError::Worker(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = PasswordHasher::new(2).unwrap();
        let pw = SecretString::from("correct horse battery");
        let hash = hasher.hash(&pw).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify(&pw, Some(&hash)).await.unwrap());
        assert!(
            !hasher
                .verify(&SecretString::from("wrong"), Some(&hash))
                .await
                .unwrap()
        );
        // The dummy path never succeeds, even with the dummy's own password.
        let dummy = SecretString::from("oxidp dummy password for unknown users");
        assert!(!hasher.verify(&dummy, None).await.unwrap());
        // A corrupt stored hash is a mismatch, not a panic.
        assert!(!hasher.verify(&pw, Some("not a phc string")).await.unwrap());
    }
}
