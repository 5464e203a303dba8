//! Web addresses that receive an export by HTTP POST, and the rule for which IP addresses a
//! delivery may connect to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::Invalid;

/// Which web addresses are acceptable. Production allows only `https://` to public addresses;
/// local development and tests may allow `http://`, loopback and private ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebPolicy {
    /// `https://` and public IP addresses only.
    #[default]
    PublicOnly,
    /// Also `http://`, loopback and private ranges.
    AllowPrivate,
}

impl WebPolicy {
    /// Whether a delivery may connect to this address.
    #[must_use]
    pub fn permits(self, ip: IpAddr) -> bool {
        self == Self::AllowPrivate || is_public_ip(ip)
    }
}

/// An absolute `https://` URL (or `http://` under [`WebPolicy::AllowPrivate`]) without
/// credentials or fragment. Host names are checked again, on every address they resolve to,
/// when the delivery connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebAddress(Url);

impl WebAddress {
    /// Parses a web address under a policy.
    ///
    /// # Errors
    /// When the text is not an acceptable absolute web address.
    pub fn parse(text: &str, policy: WebPolicy) -> Result<Self, Invalid> {
        let bad = |why: &str| Invalid::new(format!("invalid web address: {why}"));
        if text.len() > 2048 {
            return Err(bad("it is longer than 2048 characters"));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("it holds whitespace or a control character"));
        }
        let url = Url::parse(text).map_err(|_| bad("it is not an absolute URL"))?;
        match (url.scheme(), policy) {
            ("https", _) | ("http", WebPolicy::AllowPrivate) => {}
            _ => return Err(bad("only https:// addresses are accepted")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("it must not hold a user name or password"));
        }
        if url.fragment().is_some() {
            return Err(bad("it must not hold a fragment"));
        }
        let ip = match url.host() {
            None => return Err(bad("it has no host")),
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let local = name == "localhost"
                    || [".localhost", ".local", ".internal", ".localdomain"]
                        .iter()
                        .any(|suffix| name.ends_with(suffix))
                    || !name.contains('.');
                if local && policy == WebPolicy::PublicOnly {
                    return Err(bad("the host is not a public host name"));
                }
                None
            }
        };
        if let Some(ip) = ip
            && !policy.permits(ip)
        {
            return Err(bad("the host is not a public IP address"));
        }
        Ok(Self(url))
    }

    /// The URL.
    #[must_use]
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for WebAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// Whether an IP address is globally routable: not loopback, private, link-local, shared,
/// documentation, benchmarking, multicast, reserved, or an IPv6 form that embeds such an IPv4
/// address.
#[must_use]
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address that decides.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || s[0..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible and other ::/96 forms
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo, benchmarking
        || s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_addresses_parse() {
        for good in [
            "https://hooks.example.com/datarequest",
            "https://hooks.example.com:8443/a?b=c",
            "https://93.184.216.34/in",
            "https://[2606:4700::1111]/in",
        ] {
            assert!(WebAddress::parse(good, WebPolicy::PublicOnly).is_ok(), "{good} should parse");
        }
    }

    #[test]
    fn unsafe_or_malformed_addresses_are_refused_in_production() {
        for bad in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "https://hooks.example.com/#frag",
            "https://localhost/",
            "https://api.localhost/",
            "https://intranet/",
            "https://metadata.internal/",
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest/meta-data",
            "https://192.168.1.1/",
            "https://172.20.0.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:a00:1::]/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://hooks.example.com/a b",
            "https://hooks.example.com/\r\nX: y",
            "not a url",
            "//hooks.example.com/",
            "https://",
        ] {
            assert!(WebAddress::parse(bad, WebPolicy::PublicOnly).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn allow_private_admits_http_and_loopback_but_not_credentials() {
        assert!(WebAddress::parse("http://127.0.0.1:9000/hook", WebPolicy::AllowPrivate).is_ok());
        assert!(WebAddress::parse("http://localhost:9000/hook", WebPolicy::AllowPrivate).is_ok());
        assert!(WebAddress::parse("http://u:p@127.0.0.1/", WebPolicy::AllowPrivate).is_err());
        assert!(WebAddress::parse("ftp://127.0.0.1/", WebPolicy::AllowPrivate).is_err());
    }

    #[test]
    fn public_ip_classification() {
        let public = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"];
        let private = [
            "127.0.0.1",
            "10.0.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.100.100.100",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
        ];
        for ip in public {
            assert!(is_public_ip(ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))), "{ip} is public");
        }
        for ip in private {
            assert!(!is_public_ip(ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))), "{ip} is not public");
        }
    }
}
