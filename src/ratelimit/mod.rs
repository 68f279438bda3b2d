//! Brute-force protection wherever a password is typed (the login page and the password
//! grant): failed passwords are counted per username and per end-user IP in one-minute
//! windows (DESIGN.md "Password grant and rate limits"); over a limit, attempts are
//! refused before argon2 runs. A username that keeps hitting its limit is locked out
//! for exponentially longer (1, 2, 4 … 60 minutes); a success clears its record.
//!
//! This is the in-process (`memory`) backend. Its memory is bounded: entries expire
//! with their window and, past `MAX_KEYS`, the oldest windows are dropped first.

pub mod client_ip;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Most keys kept per table; a spray of distinct usernames cannot grow memory beyond
/// this (about 100 bytes an entry).
pub const MAX_KEYS: usize = 100_000;
const WINDOW_SECONDS: i64 = 60;
const MAX_LOCKOUT_SECONDS: i64 = 3600;

/// How long the caller must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

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
        let wait = if self.lockout && entry.strikes > 1 {
            (WINDOW_SECONDS << (entry.strikes - 1).min(6)).min(MAX_LOCKOUT_SECONDS)
        } else {
            WINDOW_SECONDS - (now - entry.window_start)
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
pub struct Limits {
    per_user: Table<String>,
    per_ip: Table<IpAddr>,
}

impl Limits {
    pub fn new(failures_per_user: u32, failures_per_ip: u32) -> Self {
        Self {
            per_user: Table::new(failures_per_user, true),
            per_ip: Table::new(failures_per_ip, false),
        }
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
    pub fn failed(&self, username: &str, ip: Option<IpAddr>, now: i64) {
        self.per_user.fail(&Self::user_key(username), now);
        if let Some(ip) = ip {
            self.per_ip.fail(&ip, now);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_block_the_username_for_the_rest_of_the_minute() {
        let limits = Limits::new(5, 30);
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
        let limits = Limits::new(2, 100);
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
        let limits = Limits::new(5, 3);
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
        let limits = Limits::new(5, 30);
        for i in 0..(MAX_KEYS + 5_000) {
            limits.failed(&format!("user{i}"), None, 0);
        }
        assert!(limits.keys().0 <= MAX_KEYS);
    }
}
