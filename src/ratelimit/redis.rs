//! The counters in Redis (`ratelimit.backend = "redis"`), shared by every instance that
//! uses the same server and key prefix. A failure is counted by one Lua script, so
//! concurrent failures on any instance are counted exactly and one of them starts the
//! block.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{MAX_LOCKOUT_SECONDS, RetryAfter, WINDOW_SECONDS};

/// KEYS: count, strikes, blocked. ARGV: limit, window, lockout (1/0), max lockout.
/// Returns the block length started, or 0.
const FAIL: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n < tonumber(ARGV[1]) then return 0 end
local left = redis.call('TTL', KEYS[1])
if left < 1 then left = 1 end
redis.call('DEL', KEYS[1])
local s = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local wait = left
if ARGV[3] == '1' and s > 1 then
  local e = s - 1
  if e > 6 then e = 6 end
  wait = math.min(tonumber(ARGV[2]) * (2 ^ e), tonumber(ARGV[4]))
end
wait = math.floor(wait)
redis.call('SET', KEYS[3], '1', 'EX', wait)
return wait
";

#[derive(Clone)]
pub struct RedisLimits {
    conn: ConnectionManager,
    prefix: String,
    pub(super) per_user: i64,
    pub(super) per_ip: i64,
    pub(super) per_request: i64,
    script: redis::Script,
}

impl std::fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimits")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLimits {
    pub async fn connect(url: &str, prefix: &str, rates: super::Rates) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
            per_user: i64::from(rates.failures_per_user),
            per_ip: i64::from(rates.failures_per_ip),
            per_request: i64::from(rates.requests_per_ip),
            script: redis::Script::new(FAIL),
        })
    }

    fn key(&self, kind: &str, key: &str) -> String {
        format!("{}:rl:{kind}:{key}", self.prefix)
    }

    pub async fn blocked(&self, key: &str) -> redis::RedisResult<Option<RetryAfter>> {
        let mut conn = self.conn.clone();
        let ttl: i64 = redis::cmd("TTL")
            .arg(self.key("blocked", key))
            .query_async(&mut conn)
            .await?;
        Ok((ttl > 0).then(|| RetryAfter(Duration::from_secs(ttl as u64))))
    }

    /// Counts one event for `key`; reaching `limit` blocks it (with the exponential
    /// lockout when `lockout`).
    pub async fn fail(
        &self,
        key: &str,
        limit: i64,
        lockout: bool,
    ) -> redis::RedisResult<Option<i64>> {
        let mut conn = self.conn.clone();
        let wait: i64 = self
            .script
            .key(self.key("count", key))
            .key(self.key("strikes", key))
            .key(self.key("blocked", key))
            .arg(limit)
            .arg(WINDOW_SECONDS)
            .arg(if lockout { 1 } else { 0 })
            .arg(MAX_LOCKOUT_SECONDS)
            .invoke_async(&mut conn)
            .await?;
        Ok((wait > 0).then_some(wait))
    }

    pub async fn clear(&self, key: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.key("count", key))
            .arg(self.key("strikes", key))
            .arg(self.key("blocked", key))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
