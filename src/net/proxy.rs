//! Who the client really is when the server sits behind a reverse proxy.
//!
//! A proxy (nginx, Caddy) connects to us itself, so the TCP peer is the
//! proxy; the client's address travels in `X-Forwarded-For`, to which every
//! proxy on the way appends the address it received the request from. Any
//! client can send that header too, so it is believed only when the TCP
//! peer is a configured trusted proxy, and then only as far as the chain
//! of trusted proxies goes: reading right to left, the first address that
//! is not a trusted proxy is the client (the same rule as nginx's
//! `real_ip_recursive on` and Caddy's `trusted_proxies`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// One trusted proxy: an address or a CIDR range (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    prefix: u8,
}

/// A list entry that is neither an IP address nor a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRange(pub String);

impl fmt::Display for BadRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not an IP address or CIDR range", self.0)
    }
}

impl std::error::Error for BadRange {}

impl IpRange {
    /// `127.0.0.1`, `::1`, `10.0.0.0/8` or `fd00::/8`.
    pub fn parse(s: &str) -> Result<IpRange, BadRange> {
        let bad = || BadRange(s.to_string());
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpRange { net, prefix })
    }

    /// A comma-separated list; empty entries are skipped, so `""` is no proxy.
    pub fn parse_list(s: &str) -> Result<Vec<IpRange>, BadRange> {
        s.split(',')
            .filter(|e| !e.trim().is_empty())
            .map(IpRange::parse)
            .collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u128::from(u32::from(n)), 32, self.prefix)
                    == masked(u128::from(u32::from(a)), 32, self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), 128, self.prefix) == masked(u128::from(a), 128, self.prefix)
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.net.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{}/{}", self.net, self.prefix)
        }
    }
}

/// Keeps the top `prefix` bits of a `width`-bit address.
fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    let drop = u32::from(width - prefix.min(width));
    if drop >= 128 { 0 } else { bits >> drop }
}

pub fn is_trusted(ip: IpAddr, trusted: &[IpRange]) -> bool {
    trusted.iter().any(|r| r.contains(ip))
}

/// The client behind a trusted proxy, from the `X-Forwarded-For` values in
/// header order. `None` means "use the TCP peer": the peer is not trusted,
/// there is no header, or the chain holds something that is not an address
/// (then nothing left of it can be believed either).
pub fn forwarded_client(
    peer: IpAddr,
    forwarded_for: &[String],
    trusted: &[IpRange],
) -> Option<IpAddr> {
    if !is_trusted(peer, trusted) {
        return None;
    }
    let mut chain: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    let mut client = None;
    while let Some(entry) = chain.pop() {
        let ip = parse_entry(entry)?;
        client = Some(ip);
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    // All trusted: the left-most address is as far as the chain goes.
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ranges() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains(ip("10.1.2.3")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped peers match");
        let one = IpRange::parse(" 127.0.0.1 ").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = IpRange::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all = IpRange::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert_eq!(IpRange::parse("::1").unwrap().to_string(), "::1");
        assert_eq!(r.to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "::/129",
            "1.2.3.4/x",
            "1.2.3",
        ] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(IpRange::parse_list("").unwrap(), vec![]);
        assert_eq!(IpRange::parse_list("127.0.0.1, ::1,").unwrap().len(), 2);
        assert!(IpRange::parse_list("127.0.0.1,nope").is_err());
    }

    #[test]
    fn header_believed_only_from_a_trusted_peer() {
        let trusted = IpRange::parse_list("127.0.0.1").unwrap();
        let h = xff(&["203.0.113.7"]);
        assert_eq!(
            forwarded_client(ip("127.0.0.1"), &h, &trusted),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(forwarded_client(ip("198.51.100.1"), &h, &trusted), None);
        assert_eq!(forwarded_client(ip("127.0.0.1"), &h, &[]), None);
        assert_eq!(forwarded_client(ip("127.0.0.1"), &[], &trusted), None);
    }

    #[test]
    fn right_most_untrusted_address_wins() {
        let trusted = IpRange::parse_list("127.0.0.1,10.0.0.0/8").unwrap();
        let peer = ip("127.0.0.1");
        // A client forging the header: its fake entries are on the left.
        let h = xff(&["1.1.1.1, 203.0.113.7, 10.0.0.5"]);
        assert_eq!(
            forwarded_client(peer, &h, &trusted),
            Some(ip("203.0.113.7"))
        );
        // Several headers count as one list, in order.
        let h = xff(&["1.1.1.1", "203.0.113.8:4444", "10.0.0.5"]);
        assert_eq!(
            forwarded_client(peer, &h, &trusted),
            Some(ip("203.0.113.8"))
        );
        let h = xff(&["[2001:db8::1]:443"]);
        assert_eq!(
            forwarded_client(peer, &h, &trusted),
            Some(ip("2001:db8::1"))
        );
        // Only proxies: the left-most is as close to the client as we get.
        let h = xff(&["10.0.0.9, 10.0.0.5"]);
        assert_eq!(forwarded_client(peer, &h, &trusted), Some(ip("10.0.0.9")));
        // Garbage in the trusted part of the chain: fall back to the peer.
        let h = xff(&["203.0.113.7, unknown"]);
        assert_eq!(forwarded_client(peer, &h, &trusted), None);
        // Garbage left of the client does not matter.
        let h = xff(&["unknown, 203.0.113.7"]);
        assert_eq!(
            forwarded_client(peer, &h, &trusted),
            Some(ip("203.0.113.7"))
        );
    }
}
