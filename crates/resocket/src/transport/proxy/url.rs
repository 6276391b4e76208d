//! One proxy as configured: its URL parsed into the handshake it speaks, its address and its
//! credentials, shown without the credentials.

use std::{fmt, sync::Arc};

use crate::error::ProxySettingError;
use crate::transport::unbracket;

/// The handshake a proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// HTTP `CONNECT` over plain TCP.
    Http,
    /// HTTP `CONNECT` over TLS to the proxy.
    Https,
    /// SOCKS5; `remote_dns` (`socks5h`) sends the name for the proxy to resolve.
    Socks5 { remote_dns: bool },
}

/// One parsed proxy.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    pub(crate) kind: Kind,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) auth: Option<(String, String)>,
}

/// Shows the proxy without its credentials, for logs and errors.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Socks5 { remote_dns: false } => "socks5",
            Kind::Socks5 { remote_dns: true } => "socks5h",
        };
        write!(f, "{scheme}://{}", self.authority())
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Proxy {
    /// Parses a proxy URL; the error says why, never echoing the URL (it may hold a password).
    pub(crate) fn parse(url: &str) -> Result<Proxy, ProxySettingError> {
        let url = url.trim();
        let owned;
        let url = if url.contains("://") {
            url
        } else {
            owned = format!("http://{url}");
            &owned
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ProxySettingError::InvalidUrl(Arc::new(e)))?;
        let (kind, default_port) = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => (Kind::Http, 80),
            Some("https") => (Kind::Https, 443),
            Some("socks5") => (Kind::Socks5 { remote_dns: false }, 1080),
            Some("socks5h") => (Kind::Socks5 { remote_dns: true }, 1080),
            Some(other) => return Err(ProxySettingError::UnsupportedScheme(other.to_owned())),
            // A URL without `://` was given `http://` above; one with it has a scheme.
            None => return Err(ProxySettingError::UnsupportedScheme(String::new())),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or(ProxySettingError::MissingHost)?;
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
        let auth = match authority.rsplit_once('@') {
            None => None,
            Some((userinfo, _)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Some((decode(user)?, decode(pass)?))
            }
        };
        Ok(Proxy {
            kind,
            host: unbracket(host).to_owned(),
            port: uri.port_u16().unwrap_or(default_port),
            auth,
        })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub(crate) fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(super) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn decode(part: &str) -> Result<String, ProxySettingError> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(ProxySettingError::CredentialsNotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_credentials_and_defaults() {
        let p = Proxy::parse("http://al%40ice:p%3Ass@proxy.corp:3128").unwrap();
        assert_eq!(p.kind, Kind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
        assert_eq!(p.auth, Some(("al@ice".into(), "p:ss".into())));
        assert_eq!(
            p.to_string(),
            "http://proxy.corp:3128",
            "no credentials shown"
        );

        let p = Proxy::parse("proxy.corp").unwrap();
        assert_eq!((p.kind, p.port), (Kind::Http, 80));
        let p = Proxy::parse("https://[::1]").unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port), (Kind::Https, "::1", 443));
        let p = Proxy::parse("SOCKS5H://bob@10.0.0.1").unwrap();
        assert_eq!(p.kind, Kind::Socks5 { remote_dns: true });
        assert_eq!(p.port, 1080);
        assert_eq!(p.auth, Some(("bob".into(), String::new())));
        assert!(matches!(
            Proxy::parse("socks4://x:1"),
            Err(ProxySettingError::UnsupportedScheme(s)) if s == "socks4"
        ));
        let leaky = Proxy::parse("http://user:hunter2@/").unwrap_err();
        let mut chain = leaky.to_string();
        let mut source = std::error::Error::source(&leaky);
        while let Some(e) = source {
            chain.push_str(&e.to_string());
            source = e.source();
        }
        assert!(!chain.contains("hunter2"), "{chain}");
    }
}
