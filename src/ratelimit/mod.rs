//! Brute-force protection wherever a password is typed (the login page and the password
//! grant): failed passwords are counted per username and per end-user IP in one-minute
//! windows (DESIGN.md "Password grant and rate limits"); over a limit, attempts are
//! refused before argon2 runs. A username that keeps hitting its limit is locked out
//! for exponentially longer (1, 2, 4 … 60 minutes); a success clears its record.
//!
//! Two backends keep the counters: `memory` (in the process; bounded: entries expire
//! with their window and, past `MAX_KEYS`, the least recently seen go first) and
//! `database` (the `login_failures` table, shared by every instance on one database).

pub mod client_ip;
pub mod flood;
mod redis;

pub use self::redis::RedisLimits;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Most keys kept per table; a spray of distinct usernames cannot grow memory beyond
/// this (about 100 bytes an entry).
pub const MAX_KEYS: usize = 100_000;
const WINDOW_SECONDS: i64 = 60;
const MAX_LOCKOUT_SECONDS: i64 = 3600;

/// The limits per minute (DESIGN.md "Password grant and rate limits").
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Failed passwords per username.
    pub failures_per_user: u32,
    /// Failed passwords per end-user IP.
    pub failures_per_ip: u32,
    /// Sign-up, reset and verification requests per IP.
    pub requests_per_ip: u32,
}

/// How long the caller must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl PartialOrd for RetryAfter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RetryAfter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl RetryAfter {
    pub fn seconds(&self) -> u64 {
        self.0.as_secs().max(1)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    window_start: i64,
    failures: u32,
    blocked_until: i64,
    /// How often the limit was hit in a row (drives the lockout back-off).
    strikes: u32,
    last_seen: i64,
}

#[derive(Debug)]
struct Table<K> {
    limit: u32,
    lockout: bool,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new(limit: u32, lockout: bool) -> Self {
        Self {
            limit,
            lockout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn blocked(&self, key: &K, now: i64) -> Option<i64> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        (entry.blocked_until > now).then_some(entry.blocked_until - now)
    }

    /// Counts a failure; returns the block it triggered, if any.
    fn fail(&self, key: &K, now: i64) -> Option<i64> {
        let Ok(mut entries) = self.entries.lock() else {
            return None;
        };
        if entries.len() >= MAX_KEYS && !entries.contains_key(key) {
            evict(&mut entries, now);
        }
        let entry = entries.entry(key.clone()).or_default();
        if now - entry.window_start >= WINDOW_SECONDS {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures += 1;
        entry.last_seen = now;
        if entry.failures < self.limit {
            return None;
        }
        // The limit is reached: wait out the window, or, for usernames that keep
        // coming back, an exponentially longer lockout.
        entry.strikes += 1;
        let left = WINDOW_SECONDS - (now - entry.window_start);
        let wait = if self.lockout {
            lockout_seconds(i64::from(entry.strikes), left)
        } else {
            left
        };
        entry.blocked_until = now + wait.max(1);
        entry.window_start = now;
        entry.failures = 0;
        Some(wait)
    }

    fn clear(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

/// Drops entries that no longer matter; if none, the least recently seen tenth.
fn evict<K: std::hash::Hash + Eq + Clone>(entries: &mut HashMap<K, Entry>, now: i64) {
    entries.retain(|_, e| e.blocked_until > now || now - e.last_seen < WINDOW_SECONDS);
    if entries.len() >= MAX_KEYS {
        let mut seen: Vec<i64> = entries.values().map(|e| e.last_seen).collect();
        seen.sort_unstable();
        let cutoff = seen[seen.len() / 10];
        entries.retain(|_, e| e.last_seen > cutoff);
    }
}

/// The failure counters of one process.
#[derive(Debug)]
pub struct MemoryLimits {
    per_user: Table<String>,
    per_ip: Table<IpAddr>,
    requests: Table<IpAddr>,
}

impl MemoryLimits {
    pub fn new(rates: Rates) -> Self {
        Self {
            per_user: Table::new(rates.failures_per_user, true),
            per_ip: Table::new(rates.failures_per_ip, false),
            requests: Table::new(rates.requests_per_ip, false),
        }
    }

    /// Counts a sign-up, reset or verification request; refused while the IP is over
    /// its limit (the request that reaches the limit still passes).
    pub fn request(&self, ip: IpAddr, now: i64) -> Result<Option<i64>, RetryAfter> {
        if let Some(wait) = self.requests.blocked(&ip, now) {
            return Err(RetryAfter(Duration::from_secs(wait as u64)));
        }
        Ok(self.requests.fail(&ip, now))
    }

    fn user_key(username: &str) -> String {
        username.trim().to_lowercase()
    }

    /// Before a password is checked: refused while the username or the IP is blocked.
    pub fn check(&self, username: &str, ip: Option<IpAddr>, now: i64) -> Result<(), RetryAfter> {
        let user = self.per_user.blocked(&Self::user_key(username), now);
        let ip = ip.and_then(|ip| self.per_ip.blocked(&ip, now));
        match user.max(ip) {
            Some(wait) => Err(RetryAfter(Duration::from_secs(wait as u64))),
            None => Ok(()),
        }
    }

    /// After a wrong password (or unknown user: the same thing to the counters).
    pub fn failed(&self, username: &str, ip: Option<IpAddr>, now: i64) -> Triggered {
        Triggered {
            user: self.per_user.fail(&Self::user_key(username), now),
            ip: ip.and_then(|ip| self.per_ip.fail(&ip, now)),
        }
    }

    /// After a correct password: the username starts afresh (the IP does not: one good
    /// account must not launder an attacker's guesses at others).
    pub fn succeeded(&self, username: &str) {
        self.per_user.clear(&Self::user_key(username));
    }

    /// Keys held (for tests and metrics).
    pub fn keys(&self) -> (usize, usize) {
        (self.per_user.len(), self.per_ip.len())
    }
}

/// The blocks (in seconds) that one failure started, if it reached a limit: the moment
/// worth an audit event, rather than every refusal that follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Triggered {
    pub user: Option<i64>,
    pub ip: Option<i64>,
}

/// Lockout length after `strikes` hits of the limit in a row: the rest of the window the
/// first time, then 2, 4, 8 … minutes, at most an hour.
fn lockout_seconds(strikes: i64, window_left: i64) -> i64 {
    if strikes <= 1 {
        window_left.max(1)
    } else {
        (WINDOW_SECONDS << (strikes - 1).min(6)).min(MAX_LOCKOUT_SECONDS)
    }
}

/// The counters in the database: the same rules, shared by all instances.
#[derive(Debug, Clone)]
pub struct DatabaseLimits {
    store: crate::storage::Store,
    per_user: i64,
    per_ip: i64,
    per_request: i64,
}

impl DatabaseLimits {
    async fn blocked(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<i64>, crate::storage::StoreError> {
        self.store.failure_block(key, now).await
    }

    async fn fail(
        &self,
        key: &str,
        limit: i64,
        lockout: bool,
        now: i64,
    ) -> Result<Option<i64>, crate::storage::StoreError> {
        let count = self.store.count_failure(key, now, WINDOW_SECONDS).await?;
        if count.failures < limit {
            return Ok(None);
        }
        if let Some(strikes) = self.store.start_block(key, limit, now).await? {
            let left = WINDOW_SECONDS - (now - count.window_start);
            let wait = if lockout {
                lockout_seconds(strikes, left)
            } else {
                left.max(1)
            };
            self.store.set_block(key, now + wait).await?;
            return Ok(Some(wait));
        }
        Ok(None)
    }
}

/// A backend failed; the caller answers 503 (a security control fails closed).
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(transparent)]
    Database(#[from] crate::storage::StoreError),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

/// The brute-force limits, whichever backend keeps them.
#[derive(Debug)]
pub enum Limits {
    Memory(MemoryLimits),
    Database(DatabaseLimits),
    Redis(RedisLimits),
}

fn user_key(username: &str) -> String {
    format!("user:{}", username.trim().to_lowercase())
}

fn ip_key(ip: IpAddr) -> String {
    format!("ip:{ip}")
}

fn request_key(ip: IpAddr) -> String {
    format!("req:{ip}")
}

impl Limits {
    pub fn memory(rates: Rates) -> Self {
        Self::Memory(MemoryLimits::new(rates))
    }

    pub fn database(store: crate::storage::Store, rates: Rates) -> Self {
        Self::Database(DatabaseLimits {
            store,
            per_user: i64::from(rates.failures_per_user),
            per_ip: i64::from(rates.failures_per_ip),
            per_request: i64::from(rates.requests_per_ip),
        })
    }

    /// A sign-up, password-reset or verification request from `ip`: counted, and refused
    /// once the IP is over `ratelimit.requests_per_minute_per_ip`.
    /// Counts a request; refused while the IP is blocked. `Ok(Some(seconds))`: this
    /// request was the last allowed, and the block of that length starts now.
    pub async fn request(
        &self,
        ip: IpAddr,
        now: i64,
    ) -> Result<Result<Option<i64>, RetryAfter>, LimitError> {
        let key = request_key(ip);
        match self {
            Self::Memory(m) => Ok(m.request(ip, now)),
            Self::Database(d) => {
                if let Some(wait) = d.blocked(&key, now).await? {
                    return Ok(Err(RetryAfter(Duration::from_secs(wait as u64))));
                }
                Ok(Ok(d.fail(&key, d.per_request, false, now).await?))
            }
            Self::Redis(r) => {
                if let Some(wait) = r.blocked(&key).await? {
                    return Ok(Err(wait));
                }
                Ok(Ok(r.fail(&key, r.per_request, false).await?))
            }
        }
    }

    /// Before a password is checked: refused while the username or the IP is blocked.
    pub async fn check(
        &self,
        username: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Result<(), RetryAfter>, LimitError> {
        match self {
            Self::Memory(m) => Ok(m.check(username, ip, now)),
            Self::Database(d) => {
                let user = d.blocked(&user_key(username), now).await?;
                let ip = match ip {
                    Some(ip) => d.blocked(&ip_key(ip), now).await?,
                    None => None,
                };
                Ok(match user.max(ip) {
                    Some(wait) => Err(RetryAfter(Duration::from_secs(wait as u64))),
                    None => Ok(()),
                })
            }
            Self::Redis(r) => {
                let user = r.blocked(&user_key(username)).await?;
                let ip = match ip {
                    Some(ip) => r.blocked(&ip_key(ip)).await?,
                    None => None,
                };
                Ok(match user.max(ip) {
                    Some(wait) => Err(wait),
                    None => Ok(()),
                })
            }
        }
    }

    /// Counts a failed password; says which limits this failure just reached.
    pub async fn failed(
        &self,
        username: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Triggered, LimitError> {
        match self {
            Self::Memory(m) => Ok(m.failed(username, ip, now)),
            Self::Database(d) => {
                let user = d.fail(&user_key(username), d.per_user, true, now).await?;
                let ip = match ip {
                    Some(ip) => d.fail(&ip_key(ip), d.per_ip, false, now).await?,
                    None => None,
                };
                Ok(Triggered { user, ip })
            }
            Self::Redis(r) => {
                let user = r.fail(&user_key(username), r.per_user, true).await?;
                let ip = match ip {
                    Some(ip) => r.fail(&ip_key(ip), r.per_ip, false).await?,
                    None => None,
                };
                Ok(Triggered { user, ip })
            }
        }
    }

    pub async fn succeeded(&self, username: &str) -> Result<(), LimitError> {
        match self {
            Self::Memory(m) => {
                m.succeeded(username);
                Ok(())
            }
            Self::Database(d) => Ok(d.store.clear_failures(&user_key(username)).await?),
            Self::Redis(r) => Ok(r.clear(&user_key(username)).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(failures_per_user: u32, failures_per_ip: u32) -> Rates {
        Rates {
            failures_per_user,
            failures_per_ip,
            requests_per_ip: 10,
        }
    }

    #[test]
    fn requests_per_ip_pass_up_to_the_limit_then_wait_out_the_minute() {
        let limits = MemoryLimits::new(rates(5, 30));
        let ip: IpAddr = "198.51.100.4".parse().unwrap();
        for _ in 0..10 {
            assert!(limits.request(ip, 100).is_ok());
        }
        let wait = limits.request(ip, 101).unwrap_err();
        assert!((58..=60).contains(&wait.seconds()), "{wait:?}");
        assert!(limits.request("198.51.100.5".parse().unwrap(), 101).is_ok());
        // Requests do not count as failed passwords, and the block ends with the window.
        assert!(limits.check("anyone", Some(ip), 101).is_ok());
        assert!(limits.request(ip, 161).is_ok());
    }

    #[test]
    fn five_failures_block_the_username_for_the_rest_of_the_minute() {
        let limits = MemoryLimits::new(rates(5, 30));
        for _ in 0..4 {
            limits.failed("Alice", None, 1000);
            assert!(limits.check("alice", None, 1000).is_ok());
        }
        limits.failed("alice", None, 1010);
        let wait = limits.check("ALICE ", None, 1010).unwrap_err();
        assert!(wait.seconds() <= 60 && wait.seconds() >= 49, "{wait:?}");
        assert!(
            limits.check("bob", None, 1010).is_ok(),
            "other users unaffected"
        );
        assert!(limits.check("alice", None, 1071).is_ok(), "block ends");
    }

    #[test]
    fn repeated_blocks_back_off_exponentially_and_success_resets() {
        let limits = MemoryLimits::new(rates(2, 100));
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..4 {
            limits.failed("u", None, now);
            limits.failed("u", None, now);
            let wait = limits.check("u", None, now).unwrap_err().seconds();
            waits.push(wait);
            now += wait as i64;
        }
        assert_eq!(waits, vec![60, 120, 240, 480]);
        limits.succeeded("u");
        limits.failed("u", None, now);
        assert!(limits.check("u", None, now).is_ok());
    }

    #[test]
    fn ip_limit_counts_across_usernames_and_success_does_not_clear_it() {
        let limits = MemoryLimits::new(rates(5, 3));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        limits.failed("a", Some(ip), 0);
        limits.failed("b", Some(ip), 0);
        limits.succeeded("c");
        limits.failed("c", Some(ip), 0);
        assert!(limits.check("d", Some(ip), 1).is_err());
        assert!(
            limits
                .check("d", Some("203.0.113.8".parse().unwrap()), 1)
                .is_ok()
        );
    }

    #[test]
    fn memory_is_bounded() {
        let limits = MemoryLimits::new(rates(5, 30));
        for i in 0..(MAX_KEYS + 5_000) {
            limits.failed(&format!("user{i}"), None, 0);
        }
        assert!(limits.keys().0 <= MAX_KEYS);
    }
}
