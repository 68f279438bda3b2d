//! The machine's argon2id ceiling for the benchmark: verifications per second with
//! oxidp's parameters (m = 19456 KiB, t = 2, p = 1) on every core at once, computed by
//! the same function oxidp's sign-ins use (one reused memory per thread), so the ratio
//! the benchmark prints measures only what the server adds around argon2.
//! `cargo run --release --example argon2_rate -- [seconds]`

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let argon2 = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19_456, 2, 1, None).expect("valid parameters"),
    );
    let hash = argon2
        .hash_password(b"benchmark password")
        .expect("hash")
        .to_string();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let hash = hash.clone();
                scope.spawn(move || {
                    let mut memory = Vec::new();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        assert!(oxidp::accounts::verify_in(
                            &mut memory,
                            b"benchmark password",
                            &hash
                        ));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let total: u64 = counts.iter().sum();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!("argon2id_verifications_per_second {rate:.1} threads {threads}");
}
