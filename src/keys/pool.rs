//! RS256 signatures off the async runtime (issue 11).
//!
//! One signature is ~0.3–0.7 ms of CPU. Signed on a runtime worker, it blocks every
//! task queued behind that worker for as long, and the tasks that suffer most are the
//! ones holding something shared: a refresh holding SQLite's one writer connection
//! waits for a worker at each hand-off to the connection's thread and back (the
//! rotation had six then: acquire, BEGIN, UPDATE, INSERT, COMMIT, release). Measured
//! (docs/performance.md, "Signing threads"): the writer was busy ~250 µs per rotation
//! yet requests queued 60 ms for it, and the machine sat a third idle. Here the runtime only coordinates and the signatures run on `cores`
//! threads of their own: a runtime worker woken by a database reply is free to run it.
//! (Signing threads at nice +10 were measured too: 8 % fewer refreshes per second, the
//! extra preemptions cost more CPU than the quicker wake-ups saved.)

use std::sync::Arc;

use super::{KeySet, TokenError};

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
