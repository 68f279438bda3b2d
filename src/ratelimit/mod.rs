//! Brute-force protection wherever a password is typed (the login page, the password
//! grant, the account page and API): failed passwords are counted per account and per
//! end-user IP in one-minute windows (DESIGN.md "Password grant and rate limits"); over
//! a limit, attempts are refused before argon2 runs. An account that keeps hitting its
//! limit is locked out for exponentially longer (1, 2, 4 … 60 minutes); a success
//! clears its record.
//!
//! Keys: [`account_key`] resolves a typed name (username or e-mail) to the account it
//! signs in to, so every name of one account shares one count; [`ip_bucket`] counts an
//! IPv6 end user by its /64.
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

/// Whose failed passwords an attempt counts against: the account the typed name
/// resolves to, or — for a name no account has — the normalised name itself. The two
/// kinds have distinct prefixes, so no typed name can collide with an account's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountKey(String);

impl AccountKey {
    /// The account with this id (`sub`): a signed-in user proving their password.
    pub fn user(id: &str) -> Self {
        Self(format!("acct:{id}"))
    }

    /// A name that matches no account, trimmed and lower-cased as sign-in compares it.
    /// No account name is longer than 254 bytes, so longer input is cut (names sharing
    /// the first 256 characters share a count): a key stays small in every backend.
    fn unknown(typed: &str) -> Self {
        let name: String = typed.trim().to_lowercase().chars().take(256).collect();
        Self(format!("name:{name}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key for a typed sign-in name, resolved as sign-in resolves it (username, then
/// e-mail, both case-insensitive). Every attempt, known name or not, costs the same
/// lookup that sign-in makes anyway, and the answer to the caller never depends on
/// which kind of key was used (no enumeration by response or timing).
pub async fn account_key(
    store: &crate::storage::Store,
    typed: &str,
) -> Result<AccountKey, crate::storage::StoreError> {
    let typed = typed.trim();
    // The same bounds as `Accounts::authenticate`: no lookup for what no account has.
    let user = if !typed.is_empty() && typed.len() <= 254 {
        store.find_user_by_login(typed).await?
    } else {
        None
    };
    Ok(match user {
        Some(user) => AccountKey::user(&user.id),
        None => AccountKey::unknown(typed),
    })
}

/// The address a per-IP limit counts: an IPv4 address itself (an IPv4-mapped IPv6
/// address as its IPv4 address); an IPv6 address by its /64, the smallest block a site
/// is normally given (RFC 6177, RFC 4291 §2.5.4), so one end user cannot rotate through
/// its 2^64 interface ids to reset the count.
pub fn ip_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
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
    per_user: Table<AccountKey>,
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
        let ip = ip_bucket(ip);
        if let Some(wait) = self.requests.blocked(&ip, now) {
            return Err(RetryAfter(Duration::from_secs(wait as u64)));
        }
        Ok(self.requests.fail(&ip, now))
    }

    /// Before a password is checked: refused while the account or the IP is blocked.
    pub fn check(
        &self,
        account: &AccountKey,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<(), RetryAfter> {
        let user = self.per_user.blocked(account, now);
        let ip = ip.and_then(|ip| self.per_ip.blocked(&ip_bucket(ip), now));
        match user.max(ip) {
            Some(wait) => Err(RetryAfter(Duration::from_secs(wait as u64))),
            None => Ok(()),
        }
    }

    /// After a wrong password (or unknown user: the same thing to the counters).
    pub fn failed(&self, account: &AccountKey, ip: Option<IpAddr>, now: i64) -> Triggered {
        Triggered {
            user: self.per_user.fail(account, now),
            ip: ip.and_then(|ip| self.per_ip.fail(&ip_bucket(ip), now)),
        }
    }

    /// After a correct password: the account starts afresh, under every name (the IP
    /// does not: one good account must not launder an attacker's guesses at others).
    pub fn succeeded(&self, account: &AccountKey) {
        self.per_user.clear(account);
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

fn ip_key(ip: IpAddr) -> String {
    format!("ip:{}", ip_bucket(ip))
}

fn request_key(ip: IpAddr) -> String {
    format!("req:{}", ip_bucket(ip))
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

    /// Before a password is checked: refused while the account or the IP is blocked.
    pub async fn check(
        &self,
        account: &AccountKey,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Result<(), RetryAfter>, LimitError> {
        match self {
            Self::Memory(m) => Ok(m.check(account, ip, now)),
            Self::Database(d) => {
                let user = d.blocked(account.as_str(), now).await?;
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
                let user = r.blocked(account.as_str()).await?;
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
        account: &AccountKey,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Triggered, LimitError> {
        match self {
            Self::Memory(m) => Ok(m.failed(account, ip, now)),
            Self::Database(d) => {
                let user = d.fail(account.as_str(), d.per_user, true, now).await?;
                let ip = match ip {
                    Some(ip) => d.fail(&ip_key(ip), d.per_ip, false, now).await?,
                    None => None,
                };
                Ok(Triggered { user, ip })
            }
            Self::Redis(r) => {
                let user = r.fail(account.as_str(), r.per_user, true).await?;
                let ip = match ip {
                    Some(ip) => r.fail(&ip_key(ip), r.per_ip, false).await?,
                    None => None,
                };
                Ok(Triggered { user, ip })
            }
        }
    }

    pub async fn succeeded(&self, account: &AccountKey) -> Result<(), LimitError> {
        match self {
            Self::Memory(m) => {
                m.succeeded(account);
                Ok(())
            }
            Self::Database(d) => Ok(d.store.clear_failures(account.as_str()).await?),
            Self::Redis(r) => Ok(r.clear(account.as_str()).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(typed: &str) -> AccountKey {
        AccountKey::unknown(typed)
    }

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
        assert!(limits.check(&name("anyone"), Some(ip), 101).is_ok());
        assert!(limits.request(ip, 161).is_ok());
    }

    #[test]
    fn five_failures_block_the_username_for_the_rest_of_the_minute() {
        let limits = MemoryLimits::new(rates(5, 30));
        for _ in 0..4 {
            limits.failed(&name("Alice"), None, 1000);
            assert!(limits.check(&name("alice"), None, 1000).is_ok());
        }
        limits.failed(&name("alice"), None, 1010);
        let wait = limits.check(&name("ALICE "), None, 1010).unwrap_err();
        assert!(wait.seconds() <= 60 && wait.seconds() >= 49, "{wait:?}");
        assert!(
            limits.check(&name("bob"), None, 1010).is_ok(),
            "other users unaffected"
        );
        assert!(
            limits.check(&name("alice"), None, 1071).is_ok(),
            "block ends"
        );
    }

    #[test]
    fn repeated_blocks_back_off_exponentially_and_success_resets() {
        let limits = MemoryLimits::new(rates(2, 100));
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..4 {
            limits.failed(&name("u"), None, now);
            limits.failed(&name("u"), None, now);
            let wait = limits.check(&name("u"), None, now).unwrap_err().seconds();
            waits.push(wait);
            now += wait as i64;
        }
        assert_eq!(waits, vec![60, 120, 240, 480]);
        limits.succeeded(&name("u"));
        limits.failed(&name("u"), None, now);
        assert!(limits.check(&name("u"), None, now).is_ok());
    }

    #[test]
    fn ip_limit_counts_across_usernames_and_success_does_not_clear_it() {
        let limits = MemoryLimits::new(rates(5, 3));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        limits.failed(&name("a"), Some(ip), 0);
        limits.failed(&name("b"), Some(ip), 0);
        limits.succeeded(&name("c"));
        limits.failed(&name("c"), Some(ip), 0);
        assert!(limits.check(&name("d"), Some(ip), 1).is_err());
        assert!(
            limits
                .check(&name("d"), Some("203.0.113.8".parse().unwrap()), 1)
                .is_ok()
        );
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_ipv4_by_the_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(ip_bucket(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_ne!(ip_bucket(ip("203.0.113.7")), ip_bucket(ip("203.0.113.8")));
        assert_eq!(ip_bucket(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(
            ip_bucket(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            ip_bucket(ip("2001:db8:1:2::1")),
            ip_bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            ip_bucket(ip("2001:db8:1:2::1")),
            ip_bucket(ip("2001:db8:1:3::1"))
        );
        assert_eq!(ip_key(ip("2001:db8::1")), "ip:2001:db8::");
        assert_eq!(request_key(ip("2001:db8::9")), "req:2001:db8::");

        // The memory backend counts one /64 as one end user.
        let limits = MemoryLimits::new(rates(5, 2));
        limits.failed(&name("a"), Some(ip("2001:db8::1")), 0);
        limits.failed(&name("b"), Some(ip("2001:db8::2")), 0);
        assert!(
            limits
                .check(&name("c"), Some(ip("2001:db8::3")), 1)
                .is_err()
        );
        assert!(
            limits
                .check(&name("c"), Some(ip("2001:db8:0:1::3")), 1)
                .is_ok()
        );
    }

    #[test]
    fn account_keys_are_apart_from_typed_names() {
        assert_eq!(name(" Bob ").as_str(), "name:bob");
        assert_eq!(AccountKey::user("123").as_str(), "acct:123");
        assert_ne!(AccountKey::user("bob"), name("bob"));
        assert_eq!(name(&"x".repeat(5000)).as_str().len(), "name:".len() + 256);
    }

    #[test]
    fn memory_is_bounded() {
        let limits = MemoryLimits::new(rates(5, 30));
        for i in 0..(MAX_KEYS + 5_000) {
            limits.failed(&name(&format!("user{i}")), None, 0);
        }
        assert!(limits.keys().0 <= MAX_KEYS);
    }
}
