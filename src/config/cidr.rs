//! An address range written `10.0.0.0/8`, `::1/128` or a bare address, as
//! used by `traffic.override_trusted`. The range and its test are
//! `ipnet`'s; this adds the config's spelling (a bare address is one host).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::str::FromStr;

/// An [`IpNet`] that also reads a bare address (as `/32` or `/128`) and
/// counts an IPv4-mapped IPv6 peer as IPv4. The address is kept as written
/// (`10.1.2.3/8` stays so when shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    pub const fn new_v4(a: [u8; 4], prefix: u8) -> Self {
        Cidr(IpNet::V4(Ipv4Net::new_assert(
            std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]),
            prefix,
        )))
    }

    pub const IPV6_LOOPBACK: Cidr = Cidr(IpNet::V6(Ipv6Net::new_assert(
        std::net::Ipv6Addr::LOCALHOST,
        128,
    )));

    /// Is `ip` in this range? An IPv4-mapped IPv6 peer counts as IPv4.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or address/prefix"))?;
        let Some(prefix) = prefix else {
            return Ok(Cidr(IpNet::from(addr)));
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_error = || format!("{s:?}: prefix must be 0 to {max}");
        let prefix = prefix.trim().parse::<u8>().map_err(|_| prefix_error())?;
        IpNet::new(addr, prefix)
            .map(Cidr)
            .map_err(|_| prefix_error())
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(loopback.contains(ip("127.9.9.9")));
        assert!(loopback.contains(ip("::ffff:127.0.0.1")));
        assert!(!loopback.contains(ip("128.0.0.1")));
        assert!(!loopback.contains(ip("::1")));
        let host: Cidr = "10.1.2.3".parse().unwrap();
        assert!(host.contains(ip("10.1.2.3")));
        assert!(!host.contains(ip("10.1.2.4")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(Cidr::IPV6_LOOPBACK.contains(ip("::1")));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in ["10.0.0.0/33", "::/129", "localhost", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        let err = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert!(err.ends_with("prefix must be 0 to 32"), "{err}");
        let err = "::/200".parse::<Cidr>().unwrap_err();
        assert!(err.ends_with("prefix must be 0 to 128"), "{err}");
        let err = "10.0.0/8".parse::<Cidr>().unwrap_err();
        assert!(
            err.ends_with("is not an address or address/prefix"),
            "{err}"
        );
    }

    #[test]
    fn bare_addresses_are_one_host_and_ranges_keep_their_spelling() {
        assert_eq!(
            "10.1.2.3".parse::<Cidr>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap(), Cidr::IPV6_LOOPBACK);
        assert_eq!(
            " 10.1.2.3 / 8 ".parse::<Cidr>().unwrap().to_string(),
            "10.1.2.3/8"
        );
        assert_eq!(
            "127.0.0.0/8".parse::<Cidr>().unwrap(),
            Cidr::new_v4([127, 0, 0, 0], 8)
        );
        // /0 holds every address of its family and none of the other.
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        assert!(!all6.contains(ip("192.0.2.1")));
        assert!(
            !all6.contains(ip("::ffff:192.0.2.1")),
            "a mapped peer is IPv4"
        );
    }

    #[test]
    fn ranges_round_trip_through_serde() {
        let v: Vec<Cidr> = serde_json::from_str(r#"["10.0.0.0/8", "::1"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"["10.0.0.0/8","::1/128"]"#
        );
        assert!(serde_json::from_str::<Cidr>(r#""10.0.0.0/40""#).is_err());
    }
}
