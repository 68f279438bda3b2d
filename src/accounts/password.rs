//! argon2id hashing off the async runtime, with bounded concurrency: each hash holds
//! 19 MiB for tens of milliseconds, so an unbounded burst would exhaust memory and starve
//! the runtime's worker threads.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _,
    Version,
};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

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

/// A worker with nothing to do for this long gives its 19 MiB back: idle servers stay
/// small, and under load (a job at least every few seconds) the block is reused.
const KEEP_MEMORY_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// A unit of work for an argon2 thread, given that thread's reusable memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Dedicated argon2 threads fed by a bounded queue. A worker takes the next job the
/// moment it finishes one (no hand-off through the async runtime, so cores do not idle
/// between sign-ins under load), keeps its own 19 MiB, and a full queue answers "busy"
/// at once instead of letting requests pile up.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: flume::Sender<Job>,
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

/// Whether `password` matches the PHC string `phc`, computed in `memory` when it is the
/// size the stored parameters need: reusing a worker's 19 MiB saves allocating and
/// zeroing it for every sign-in (argon2 overwrites every block it reads). Stored hashes
/// with other parameters are verified the ordinary way.
pub fn verify_in(memory: &mut Vec<Block>, password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    if blocks > MEMORY_KIB as usize {
        // Only hashes made with stronger parameters than ours; no pooled memory for them.
        return argon2.verify_password(password, phc).is_ok();
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    argon2
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.ct_eq(expected.as_bytes()))
}

fn hash_blocking(password: &[u8]) -> Result<String, PasswordError> {
    argon2()?
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

impl PasswordHasher {
    /// `workers` argon2 threads (the number of cores is a good value); they stop when
    /// the last clone of the hasher is dropped.
    pub fn new(workers: usize) -> Result<Self, PasswordError> {
        let dummy = hash_blocking(b"oxidp dummy password for unknown users")?;
        let workers = workers.max(1);
        let (jobs, queue) = flume::bounded::<Job>(workers * QUEUE_PER_WORKER);
        for i in 0..workers {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("oxidp-argon2-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        let job = match queue.recv_timeout(KEEP_MEMORY_IDLE) {
                            Ok(job) => job,
                            Err(flume::RecvTimeoutError::Timeout) => {
                                memory = Vec::new();
                                match queue.recv() {
                                    Ok(job) => job,
                                    Err(_) => break,
                                }
                            }
                            Err(flume::RecvTimeoutError::Disconnected) => break,
                        };
                        job(&mut memory);
                    }
                })
                .map_err(|e| PasswordError::Worker(e.to_string()))?;
        }
        Ok(Self {
            jobs,
            dummy_hash: Arc::new(dummy),
        })
    }

    /// A new argon2id PHC string with a random salt.
    /// Verifications and hashes waiting for a worker (a metric).
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }

    pub async fn hash(&self, password: &SecretString) -> Result<String, PasswordError> {
        let password = password.clone();
        self.run(move |_| hash_blocking(password.expose_secret().as_bytes()))
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
            .run(move |memory| verify_in(memory, password.expose_secret().as_bytes(), &hash))
            .await?;
        Ok(ok && real)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        // The worker thread keeps the request's tracing span only if we carry it in.
        let span = tracing::Span::current();
        let job: Job = Box::new(move |memory| {
            let _ = reply.send(span.in_scope(|| f(memory)));
        });
        self.jobs.try_send(job).map_err(|e| match e {
            flume::TrySendError::Full(_) => PasswordError::Busy,
            flume::TrySendError::Disconnected(_) => {
                PasswordError::Worker("the argon2 threads have stopped".into())
            }
        })?;
        answer
            .await
            .map_err(|e| PasswordError::Worker(e.to_string()))
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
        // 1 running + 16 waiting may be in flight; the rest are refused immediately.
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

    #[test]
    fn verification_in_reused_memory_agrees_with_argon2() {
        let mut memory = Vec::new();
        let ours = hash_blocking(b"first password").unwrap();
        assert!(verify_in(&mut memory, b"first password", &ours));
        assert_eq!(memory.len(), MEMORY_KIB as usize);
        // The memory now holds the last computation; the next one must not depend on it.
        assert!(!verify_in(&mut memory, b"first passworD", &ours));
        assert!(verify_in(&mut memory, b"first password", &ours));
        // Hashes made with other (weaker or stronger) parameters still verify.
        for (m, t) in [(1024, 1), (MEMORY_KIB + 1024, 1)] {
            let other = Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(m, t, 1, None).unwrap(),
            )
            .hash_password(b"other password")
            .unwrap()
            .to_string();
            assert!(verify_in(&mut memory, b"other password", &other), "{other}");
            assert!(
                !verify_in(&mut memory, b"other passwore", &other),
                "{other}"
            );
        }
        for broken in [
            "",
            "not a phc string",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
        ] {
            assert!(!verify_in(&mut memory, b"x", broken), "{broken}");
        }
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
