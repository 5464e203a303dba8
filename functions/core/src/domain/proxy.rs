//! The client's address behind reverse proxies: `X-Forwarded-For` is believed only when the
//! connection comes from a proxy the operator named (`DATAREQUEST_TRUSTED_PROXIES`), and then
//! only up to the first address, from the right, that is not such a proxy: everything left of
//! it was written by the client and may be forged.

use std::net::{IpAddr, SocketAddr};

use super::Invalid;

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `address` or `address/prefix`.
    ///
    /// # Errors
    /// When it is not an IP address, or the prefix is longer than the address.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let invalid = || Invalid::new("must be an IP address or a network such as 10.0.0.0/8");
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(invalid)?,
        };
        // A mapped IPv4 address (`::ffff:10.0.0.0/104`) is the IPv4 network it maps.
        let canonical = address.to_canonical();
        let prefix = if address.is_ipv6() && canonical.is_ipv4() { prefix.saturating_sub(96) } else { prefix };
        Ok(Self { address: canonical, prefix })
    }

    /// Whether `ip` is in this network.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed; none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    /// Parses a list of addresses and networks separated by commas or spaces.
    ///
    /// # Errors
    /// When an item is not an address or a network.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .map(Network::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `ip` is one of the proxies.
    #[must_use]
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }

    /// The client of a connection from `peer` that carried these `X-Forwarded-For` values (in
    /// the order of the headers): the peer itself unless it is a trusted proxy; else the
    /// rightmost address of the header that is not a trusted proxy. When every address is a
    /// proxy's, or one cannot be read, the leftmost proxy address read is the client.
    #[must_use]
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let values: Vec<&str> = forwarded.into_iter().collect();
        for item in values.iter().rev().flat_map(|value| value.rsplit(',')) {
            let Some(ip) = forwarded_address(item) else { return client };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// One address of `X-Forwarded-For`: bare, or with a port (`1.2.3.4:80`, `[::1]:80`).
fn forwarded_address(item: &str) -> Option<IpAddr> {
    let item = item.trim();
    let ip = item.parse::<IpAddr>().ok().or_else(|| item.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| unreachable!("a test address"))
    }

    fn proxies(text: &str) -> TrustedProxies {
        TrustedProxies::parse(text).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn networks_hold_the_addresses_their_prefix_covers() {
        let net = |t: &str| Network::parse(t).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(net("10.0.0.0/8").contains(ip("10.200.1.1")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("10.0.0.1")));
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")), "a mapped IPv4 address is the IPv4 address");
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x", "10.0.0/8"] {
            assert!(Network::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("127.0.0.1"), ["198.51.100.7"]), ip("127.0.0.1"), "no proxy is trusted");
        let local = proxies("127.0.0.1, 10.0.0.0/8");
        assert_eq!(local.client(ip("192.0.2.1"), ["198.51.100.7"]), ip("192.0.2.1"), "a stranger's header is ignored");
        assert_eq!(local.client(ip("127.0.0.1"), ["198.51.100.7"]), ip("198.51.100.7"));
        assert_eq!(local.client(ip("127.0.0.1"), []), ip("127.0.0.1"), "a proxy without the header");
    }

    #[test]
    fn the_client_is_the_rightmost_address_that_is_no_trusted_proxy() {
        let local = proxies("127.0.0.1 10.0.0.0/8");
        // The client forged the first address; the proxies appended the others.
        let chain = ["203.0.113.66, 198.51.100.7", "10.1.2.3"];
        assert_eq!(local.client(ip("127.0.0.1"), chain), ip("198.51.100.7"));
        assert_eq!(local.client(ip("127.0.0.1"), ["198.51.100.7:4711"]), ip("198.51.100.7"), "with a port");
        assert_eq!(local.client(ip("127.0.0.1"), ["10.0.0.9, 10.0.0.8"]), ip("10.0.0.9"), "proxies only");
        assert_eq!(local.client(ip("127.0.0.1"), ["nonsense, 10.0.0.8"]), ip("10.0.0.8"), "up to what can be read");
    }
}
