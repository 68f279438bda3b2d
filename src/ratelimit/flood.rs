//! Flood control: a per-client-address request rate (GCRA, through `tower_governor`'s
//! keyed limiter) in front of the routes that cost CPU or mail. Per instance, in
//! memory; the failure counters in this module's parent are a different job (they
//! count failed passwords and mails per account and address, shareable across
//! instances).
//!
//! The key is the client's address as resolved through `server.trusted_proxies`
//! (`client_ip::end_user`): `X-Forwarded-For` is read only from a trusted peer, so a
//! client cannot pick its own bucket. IPv6 addresses are keyed per /64, which one host
//! usually holds whole. Loopback is exempt by default (local tools, health checks,
//! tests); behind a proxy on the same host, list it in `server.trusted_proxies` so the
//! end user's address, not the proxy's, is the key.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use tower_governor::GovernorError;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

use super::client_ip::{Block, end_user};
use crate::config::RateLimitConfig;

/// The client address of a request, as the key of its bucket.
#[derive(Debug, Clone)]
pub struct ClientKey {
    trusted: Arc<Vec<Block>>,
}

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or(GovernorError::UnableToExtractKey)?;
        let forwarded = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        // Keyed like the failure counters: IPv6 by its /64, mapped IPv4 as IPv4.
        Ok(super::ip_bucket(end_user(peer, forwarded, &self.trusted)))
    }
}

/// What a request gets from flood control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over the rate: retry after this many seconds (at least 1).
    Refuse(u64),
}

pub struct Flood {
    config: GovernorConfig<ClientKey, NoOpMiddleware>,
    /// The same extractor the config holds (which does not hand it out).
    key: ClientKey,
    exempt_loopback: bool,
    clock: DefaultClock,
}

impl std::fmt::Debug for Flood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flood")
            .field("exempt_loopback", &self.exempt_loopback)
            .finish_non_exhaustive()
    }
}

impl Flood {
    /// `None` when `ratelimit.flood_control = false`. The settings are validated
    /// (rate within 0.0001 to 1e6 per second, burst ≥ 1), so the period is a valid,
    /// non-zero duration.
    pub fn from_config(config: &RateLimitConfig, trusted: Arc<Vec<Block>>) -> Option<Self> {
        if !config.flood_control {
            return None;
        }
        let period = Duration::try_from_secs_f64(1.0 / config.flood_requests_per_second).ok()?;
        let key = ClientKey { trusted };
        let built = GovernorConfigBuilder::default()
            .period(period)
            .burst_size(config.flood_burst)
            .key_extractor(key.clone())
            .finish()?;
        Some(Self {
            config: built,
            key,
            exempt_loopback: config.flood_exempt_loopback,
            clock: DefaultClock::default(),
        })
    }

    /// One request: takes a cell from its address's bucket.
    pub fn check<T>(&self, request: &Request<T>) -> Verdict {
        // No peer address (a request not from the listener, e.g. a unit test through
        // `oneshot`): nothing to key on, so not limited.
        let Ok(key) = self.key.extract(request) else {
            return Verdict::Pass;
        };
        self.check_key(key)
    }

    /// The limiter's decision for an already resolved address.
    pub fn check_key(&self, key: IpAddr) -> Verdict {
        if self.exempt_loopback && key.is_loopback() {
            return Verdict::Pass;
        }
        match self.config.limiter().check_key(&key) {
            Ok(()) => Verdict::Pass,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                // RFC 9110 §10.2.3: whole seconds; rounded up so a client that waits
                // exactly that long finds a cell.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Verdict::Refuse(secs.max(1))
            }
        }
    }

    /// Forgets addresses whose buckets are full again, so the table holds only the
    /// recently active ones. Called periodically.
    pub fn prune(&self) {
        let limiter = self.config.limiter();
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.config.limiter().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::ip_bucket as bucket;

    #[test]
    fn ipv6_is_keyed_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(bucket(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
