//! Which address is the end user's: the peer, or — behind trusted reverse proxies —
//! the nearest untrusted address in `X-Forwarded-For` (RFC 7239 §5.2 semantics: each
//! proxy appends the address it received from, so the list is read from the right).

use std::net::IpAddr;

/// An address or a CIDR block from `server.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    network: IpAddr,
    prefix: u8,
}

impl Block {
    /// `"10.0.0.1"`, `"10.0.0.0/8"`, `"::1"`, `"fd00::/8"`.
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let network: IpAddr = addr.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V4(a)) => n.to_ipv4_mapped().is_some_and(|n| {
                self.prefix >= 96 && prefix_eq(&n.octets(), &a.octets(), self.prefix - 96)
            }),
            (IpAddr::V4(_), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|a| self.contains(IpAddr::V4(a))),
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// The end user's address: `peer` unless it is a trusted proxy, then the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn end_user(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Block]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|b| b.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut last = peer;
    for entry in header.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            // A malformed hop: stop at the last address we could trust to be real.
            return last;
        };
        if !is_trusted(ip) {
            return ip;
        }
        last = ip;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks() {
        let b = Block::parse("10.0.0.0/8").unwrap();
        assert!(b.contains(ip("10.1.2.3")) && !b.contains(ip("11.0.0.1")));
        assert!(
            Block::parse("192.168.1.7")
                .unwrap()
                .contains(ip("192.168.1.7"))
        );
        assert!(
            !Block::parse("192.168.1.7")
                .unwrap()
                .contains(ip("192.168.1.8"))
        );
        assert!(Block::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(
            Block::parse("127.0.0.1")
                .unwrap()
                .contains(ip("::ffff:127.0.0.1"))
        );
        assert!(
            Block::parse("10.0.0.0/12")
                .unwrap()
                .contains(ip("10.15.255.255"))
        );
        assert!(
            !Block::parse("10.0.0.0/12")
                .unwrap()
                .contains(ip("10.16.0.0"))
        );
        for bad in ["", "10.0.0.0/33", "x", "10.0.0.0/", "::/129"] {
            assert!(Block::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_read_only_behind_trusted_proxies() {
        let trusted = vec![Block::parse("10.0.0.0/8").unwrap()];
        // Direct client: the header is a lie it may tell; ignored.
        assert_eq!(
            end_user(ip("198.51.100.1"), Some("1.2.3.4"), &trusted),
            ip("198.51.100.1")
        );
        // Behind one proxy: the address the proxy saw.
        assert_eq!(
            end_user(ip("10.0.0.5"), Some("1.2.3.4, 198.51.100.9"), &trusted),
            ip("198.51.100.9")
        );
        // Behind two proxies: skip the inner one.
        assert_eq!(
            end_user(ip("10.0.0.5"), Some("198.51.100.9, 10.0.0.6"), &trusted),
            ip("198.51.100.9")
        );
        // A forged left part cannot win.
        assert_eq!(
            end_user(ip("10.0.0.5"), Some("garbage, 198.51.100.9"), &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(end_user(ip("10.0.0.5"), None, &trusted), ip("10.0.0.5"));
        assert_eq!(
            end_user(ip("10.0.0.5"), Some("10.0.0.7, nonsense"), &trusted),
            ip("10.0.0.5")
        );
    }
}
