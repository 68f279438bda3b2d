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
    /// Too many verifications are already waiting: refuse rather than pile up.
    #[error("too many password checks are waiting")]
    Busy,
}

/// How many hashes may wait for a worker, per worker, before new ones are refused.
const QUEUE_PER_WORKER: usize = 16;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Hashes running or waiting, and how many that may be.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    max_in_flight: usize,
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
        let workers = max_concurrent.max(1);
        Ok(Self {
            permits: Arc::new(Semaphore::new(workers)),
            in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            max_in_flight: workers * (1 + QUEUE_PER_WORKER),
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
        // Bounded queue: under a flood, answer "busy" at once instead of letting
        // requests (each holding a connection) wait behind thousands of others.
        let guard =
            InFlight::enter(&self.in_flight, self.max_in_flight).ok_or(PasswordError::Busy)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| PasswordError::Worker(e.to_string()))?;
        // spawn_blocking keeps the tracing span only if we carry it in.
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || span.in_scope(f))
            .await
            .map_err(|e| PasswordError::Worker(e.to_string()));
        drop(guard);
        result
    }
}

/// Counts a hash as in flight until dropped.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a std::sync::atomic::AtomicUsize, max: usize) -> Option<Self> {
        use std::sync::atomic::Ordering;
        let previous = counter.fetch_add(1, Ordering::AcqRel);
        if previous >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(counter))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let hasher = PasswordHasher::new(1).unwrap();
        let pw = SecretString::from("correct horse battery");
        let hash = hasher.hash(&pw).await.unwrap();
        // 1 worker + 16 waiting may be in flight; the rest are refused immediately.
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let (h, p, hash) = (hasher.clone(), pw.clone(), hash.clone());
            tasks.push(tokio::spawn(async move { h.verify(&p, Some(&hash)).await }));
        }
        let mut busy = 0;
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(true) => ok += 1,
                Err(PasswordError::Busy) => busy += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(
            busy > 0 && ok >= 1 && ok + busy == 40,
            "ok {ok}, busy {busy}"
        );
    }

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
