//! RS256 signatures off the async runtime, on threads that yield to it (issue 11).
//!
//! One signature is ~0.3–0.7 ms of CPU. Signed on a runtime worker, it blocks every
//! task queued behind that worker for as long, and the tasks that suffer most are the
//! ones holding something shared: a refresh holding SQLite's one writer connection
//! waits for a worker at each of its ~6 hand-offs (acquire, BEGIN, UPDATE, INSERT,
//! COMMIT, release). Measured (docs/performance.md, "Signing threads"): the writer was
//! busy ~250 µs per rotation yet requests queued 60 ms for it, and the machine sat a
//! third idle. Here the runtime only coordinates; the signatures run on `cores`
//! threads at a lower scheduling priority (nice +10), so a runtime worker woken by a
//! database reply takes a core at once and the signing threads soak up the rest.

use std::sync::Arc;

use super::{KeySet, TokenError};

/// Lower than the runtime's threads (nice 0): the kernel then prefers a woken runtime
/// worker over a signing thread, without starving signatures when the runtime is idle.
const NICE: libc::c_int = 10;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct SignPool {
    jobs: flume::Sender<Job>,
}

impl std::fmt::Debug for SignPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignPool").finish_non_exhaustive()
    }
}

impl SignPool {
    /// `workers` threads; they stop when the last clone of the pool is dropped. Jobs
    /// queue without bound: each comes from a request in flight, which the server's
    /// connection handling already bounds.
    pub fn new(workers: usize) -> std::io::Result<Self> {
        let (jobs, queue) = flume::unbounded::<Job>();
        for i in 0..workers.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("oxidp-sign-{i}"))
                .spawn(move || {
                    lower_priority();
                    while let Ok(job) = queue.recv() {
                        job();
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` with `keys` on a signing thread.
    pub async fn run<T: Send + 'static>(
        &self,
        keys: Arc<KeySet>,
        f: impl FnOnce(&KeySet) -> T + Send + 'static,
    ) -> Result<T, TokenError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let job: Job = Box::new(move || {
            let _ = reply.send(span.in_scope(|| f(&keys)));
        });
        self.jobs
            .send(job)
            .map_err(|_| TokenError::Sign("the signing threads have stopped".into()))?;
        answer
            .await
            .map_err(|_| TokenError::Sign("a signing thread stopped".into()))
    }
}

/// Per-thread nice on Linux (`setpriority` on a thread id changes only that thread).
/// Raising one's own nice needs no privilege; if it is refused anyway the thread keeps
/// running at normal priority, which is correct, only less responsive under load.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid and setpriority only read and set this thread's scheduling value.
    unsafe {
        let tid = libc::gettid();
        #[allow(clippy::useless_conversion)]
        let who = libc::id_t::try_from(tid).unwrap_or(0);
        if who != 0 {
            libc::setpriority(libc::PRIO_PROCESS, who, NICE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_off_the_runtime_and_returns_their_result() {
        let pool = SignPool::new(2).unwrap();
        let pem = josekit::jws::RS256
            .generate_key_pair(2048)
            .unwrap()
            .to_pem_private_key();
        let keys = Arc::new(KeySet::from_private_pem(&pem).unwrap());
        let caller = std::thread::current().id();
        let (token, thread, name) = pool
            .run(keys.clone(), move |k| {
                let claims = serde_json::json!({"sub": "x"}).as_object().unwrap().clone();
                (
                    k.sign(Some("at+jwt"), claims).unwrap(),
                    std::thread::current().id(),
                    std::thread::current().name().map(str::to_string),
                )
            })
            .await
            .unwrap();
        assert_ne!(thread, caller);
        assert!(name.unwrap().starts_with("oxidp-sign-"));
        let (claims, typ) = keys.verify(&token).unwrap();
        assert_eq!(claims["sub"], "x");
        assert_eq!(typ.as_deref(), Some("at+jwt"));
    }
}
