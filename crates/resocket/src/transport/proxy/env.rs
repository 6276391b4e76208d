//! The proxy environment convention: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`.
//!
//! Everything here is a pure function of a lookup (`name -> value`), so tests pass a map
//! instead of mutating the process environment, which other tests share.

use std::net::IpAddr;

use crate::transport::unbracket;

/// The variables that name the proxy for `ws://` targets, in order of precedence: the
/// lower-case form first, as curl and most tools read it.
const WS_VARS: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];
/// The variables that name the proxy for `wss://` targets, in order of precedence.
const WSS_VARS: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
/// The variables that list hosts to reach directly.
const NO_PROXY_VARS: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// A variable that was set (non-empty), with its name for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Var {
    pub(crate) name: &'static str,
    pub(crate) value: String,
}

/// The raw proxy settings found in the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EnvProxies {
    pub(crate) ws: Option<Var>,
    pub(crate) wss: Option<Var>,
    pub(crate) no_proxy: Option<Var>,
}

/// Reads the convention through `lookup`. An empty value counts as unset, as in curl.
pub(crate) fn read(lookup: impl Fn(&str) -> Option<String>) -> EnvProxies {
    let first = |names: &[&'static str]| {
        names.iter().find_map(|&name| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(|value| Var { name, value })
        })
    };
    EnvProxies {
        ws: first(&WS_VARS),
        wss: first(&WSS_VARS),
        no_proxy: first(&NO_PROXY_VARS),
    }
}

/// Hosts reached directly, never through the proxy: the `NO_PROXY` syntax.
///
/// Entries are separated by commas (or white space). `*` matches every host. An IP address
/// matches that address, and `10.0.0.0/8` or `fd00::/8` a network. A name matches itself and
/// its subdomains: `example.com`, `.example.com` and `*.example.com` all match
/// `example.com` and `api.example.com`. A port on an entry is ignored. Names are not resolved:
/// `127.0.0.1` does not match `localhost`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    all: bool,
    nets: Vec<(IpAddr, u8)>,
    domains: Vec<String>,
}

impl NoProxy {
    /// Parses a `NO_PROXY` list; entries that make no sense are skipped, as other tools do.
    pub(crate) fn parse(list: &str) -> NoProxy {
        let mut no_proxy = NoProxy::default();
        for entry in list.split(|c: char| c == ',' || c.is_whitespace()) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no_proxy.all = true;
            } else if let Some(net) = parse_net(entry) {
                no_proxy.nets.push(net);
            } else {
                let name = strip_port(entry)
                    .trim_start_matches("*.")
                    .trim_start_matches('.')
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                if let Ok(ip) = unbracket(&name).parse::<IpAddr>() {
                    no_proxy.nets.push((ip, full_prefix(ip)));
                } else if !name.is_empty() {
                    no_proxy.domains.push(name);
                }
            }
        }
        no_proxy
    }

    /// Whether `host` (a name or an IP literal, as in the URL) is to be reached directly.
    pub(crate) fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = unbracket(host).trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.nets.iter().any(|&(net, bits)| contains(net, bits, ip));
        }
        self.domains.iter().any(|domain| {
            host == *domain
                || (host.len() > domain.len()
                    && host.ends_with(domain.as_str())
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
        })
    }
}

/// `1.2.3.4`, `[::1]`, `10.0.0.0/8`, `fd00::/8`.
fn parse_net(entry: &str) -> Option<(IpAddr, u8)> {
    match entry.split_once('/') {
        Some((ip, bits)) => {
            let ip: IpAddr = unbracket(ip).parse().ok()?;
            let bits: u8 = bits.parse().ok()?;
            (bits <= full_prefix(ip)).then_some((ip, bits))
        }
        None => {
            let ip: IpAddr = unbracket(entry).parse().ok()?;
            Some((ip, full_prefix(ip)))
        }
    }
}

/// `host:80` -> `host`, `[::1]:80` -> `[::1]`; a bare IPv6 address is left alone.
fn strip_port(entry: &str) -> &str {
    match entry.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => entry,
    }
}

fn full_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn wss_reads_https_proxy_and_ws_reads_http_proxy() {
        let found = read(env(&[
            ("HTTPS_PROXY", "http://secure:3128"),
            ("HTTP_PROXY", "http://plain:3128"),
            ("NO_PROXY", "localhost"),
        ]));
        assert_eq!(found.wss.unwrap().value, "http://secure:3128");
        assert_eq!(found.ws.unwrap().value, "http://plain:3128");
        assert_eq!(found.no_proxy.unwrap().name, "NO_PROXY");
    }

    #[test]
    fn lower_case_wins_and_all_proxy_is_the_fallback() {
        let found = read(env(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:1"),
            ("ALL_PROXY", "socks5h://all:1080"),
        ]));
        assert_eq!(found.wss.unwrap().name, "https_proxy");
        assert_eq!(found.ws.unwrap().name, "ALL_PROXY");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let found = read(env(&[
            ("https_proxy", ""),
            ("HTTPS_PROXY", "http://upper:1"),
        ]));
        assert_eq!(found.wss.unwrap().name, "HTTPS_PROXY");
        assert_eq!(read(env(&[])), EnvProxies::default());
    }

    #[test]
    fn no_proxy_matches_domain_suffixes() {
        let list = NoProxy::parse("example.com, .corp.internal,*.svc ,other.org:8080");
        for host in [
            "example.com",
            "api.example.com",
            "EXAMPLE.com.",
            "corp.internal",
            "a.b.corp.internal",
            "x.svc",
            "other.org",
        ] {
            assert!(list.matches(host), "{host} should bypass");
        }
        for host in ["notexample.com", "example.com.evil", "internal", "svc2"] {
            assert!(!list.matches(host), "{host} should use the proxy");
        }
    }

    #[test]
    fn no_proxy_matches_ips_and_networks() {
        let list = NoProxy::parse("127.0.0.1 10.0.0.0/8,[::1],fd00::/8,192.168.1.5:80");
        for host in [
            "127.0.0.1",
            "10.200.3.4",
            "::1",
            "[::1]",
            "fd12::1",
            "192.168.1.5",
        ] {
            assert!(list.matches(host), "{host} should bypass");
        }
        for host in ["127.0.0.2", "11.0.0.1", "::2", "192.168.1.6", "localhost"] {
            assert!(!list.matches(host), "{host} should use the proxy");
        }
    }

    #[test]
    fn star_matches_everything_and_empty_nothing() {
        assert!(NoProxy::parse("*").matches("anything.example"));
        assert!(!NoProxy::parse("").matches("anything.example"));
        assert!(!NoProxy::parse(" , ,").matches("127.0.0.1"));
    }
}
