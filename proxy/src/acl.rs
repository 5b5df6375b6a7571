//! Client access lists: `--allow CIDR` and `--deny CIDR`. A client is
//! served if no deny entry matches it and, when there are allow entries,
//! one of them does. IPv4-mapped IPv6 clients (`::ffff:a.b.c.d`, as a
//! dual-stack listener sees them) are matched as IPv4.

use std::net::IpAddr;

/// One network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{addr}\" is not an IPv4 or IPv6 address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix \"/{p}\" must be 0..={max}"))?,
            None => max,
        };
        // Clients are matched as IPv4 when they are IPv4-mapped, so a
        // network inside `::ffff:0:0/96` is kept as the IPv4 network it
        // is; kept as IPv6 it would never match the clients it names.
        if let IpAddr::V6(v6) = net {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return Ok(Cidr {
                    net: IpAddr::V4(v4),
                    prefix: prefix - 96,
                });
            }
        }
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = ((prefix / 8) as usize, prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// The allow and deny lists together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl Acl {
    /// Whether a client at `ip` may be served.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|c| c.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn prefixes_match_on_bit_boundaries() {
        let c = Cidr::parse("10.1.128.0/17").expect("cidr");
        assert!(c.contains(ip("10.1.200.7")));
        assert!(!c.contains(ip("10.1.127.255")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("all")
            .contains(ip("192.0.2.1")));
        assert!(Cidr::parse("::1").expect("host").contains(ip("::1")));
        assert!(!Cidr::parse("::1").expect("host").contains(ip("127.0.0.1")));
    }

    #[test]
    fn mapped_ipv6_clients_match_ipv4_networks() {
        assert!(Cidr::parse("127.0.0.0/8")
            .expect("cidr")
            .contains(ip("::ffff:127.0.0.1")));
    }

    /// The defect the fuzz target found: `::ffff:10.0.0.0/104` was kept
    /// as an IPv6 network while mapped clients are matched as IPv4, so it
    /// matched no client at all, not even its own address.
    #[test]
    fn ipv4_mapped_networks_match_the_clients_they_name() {
        let c = Cidr::parse("::ffff:10.0.0.0/104").expect("cidr");
        assert!(c.contains(ip("::ffff:10.1.2.3")) && c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")) && !c.contains(ip("::1")));
        let host = Cidr::parse("::ffff:192.0.2.1").expect("host");
        assert!(host.contains(ip("192.0.2.1")) && !host.contains(ip("192.0.2.2")));
        assert_eq!(Cidr::parse("::ffff:0.0.0.0/96"), Cidr::parse("0.0.0.0/0"));
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let acl = Acl {
            allow: vec![Cidr::parse("127.0.0.0/8").expect("a")],
            deny: vec![Cidr::parse("127.0.0.2").expect("d")],
        };
        assert!(acl.permits(ip("127.0.0.1")));
        assert!(!acl.permits(ip("127.0.0.2")));
        assert!(!acl.permits(ip("10.0.0.1")));
        assert!(Acl::default().permits(ip("10.0.0.1")));
    }

    #[test]
    fn bad_cidrs_say_what_is_wrong() {
        assert!(Cidr::parse("1.2.3.4/33")
            .expect_err("prefix")
            .contains("0..=32"));
        assert!(Cidr::parse("1.2.3/8")
            .expect_err("addr")
            .contains("not an IPv4"));
    }
}
