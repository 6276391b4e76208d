//! Proxies: the settings on the builder, proxy URLs, which proxy a target uses, and the HTTP
//! `CONNECT` (RFC 9110, section 9.3.6) and SOCKS5 (RFC 1928, RFC 1929) handshakes.
//!
//! Both handshakes are written here on top of tokio rather than taken from a crate: each is a
//! few dozen lines, and doing them ourselves keeps every failure typed
//! ([`ProxyError`](crate::error::ProxyError)) and lets the HTTP one run over TLS to an
//! `https://` proxy.

use std::{fmt, io, net::IpAddr, sync::Arc};

use base64::Engine as _;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{connect_tcp, env, env::NoProxy, unbracket, Target, TlsConnector, Wire};
use crate::{
    config::ClientConfig,
    error::{ConfigError, ProxyError, ProxySettingError, SocksReply},
    ClientBuilder, Error,
};

/// Proxy settings collected by the builder.
#[derive(Clone, Default)]
pub(crate) struct ProxyOptions {
    explicit: Option<String>,
    credentials: Option<(String, String)>,
    no_proxy: Option<String>,
    ignore_env: bool,
}

/// Proxy settings on the builder.
impl ClientBuilder {
    /// Connects through this proxy, for `ws://` and `wss://` alike.
    ///
    /// `url` is `http://host:port` (HTTP `CONNECT`), `https://host:port` (`CONNECT` over TLS to
    /// the proxy, checked with the same roots as the server), `socks5://host:port` (SOCKS5,
    /// the name resolved here) or `socks5h://host:port` (SOCKS5, the name resolved by the
    /// proxy). Credentials may be given as `user:password@` (percent-encoded) or with
    /// [`proxy_credentials`](ClientBuilder::proxy_credentials). Without a scheme, `http` is
    /// meant; the default ports are 80, 443 and 1080. The URL is checked by `build()`.
    ///
    /// An explicit proxy takes precedence over the environment. Hosts listed by
    /// [`no_proxy`](ClientBuilder::no_proxy) (or by `NO_PROXY`, unless
    /// [`proxy_from_env`](ClientBuilder::proxy_from_env) is off) are still reached directly.
    /// Default: no explicit proxy.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.transport.proxy.explicit = Some(url.into());
        self
    }

    /// Authenticates to the proxy with these credentials: HTTP Basic for `CONNECT`, RFC 1929
    /// username/password for SOCKS5. They replace any in the proxy URL, and apply to a proxy
    /// taken from the environment too. Default: none.
    pub fn proxy_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.transport.proxy.credentials = Some((username.into(), password.into()));
        self
    }

    /// Reaches these hosts directly, never through a proxy: a `NO_PROXY`-style list such as
    /// `"localhost, 127.0.0.1, .internal.example, 10.0.0.0/8"` (a name matches itself and its
    /// subdomains; `*` matches everything). Replaces the `NO_PROXY` variable. Default: the
    /// `NO_PROXY` variable when reading the environment, else nothing.
    pub fn no_proxy(mut self, list: impl Into<String>) -> Self {
        self.transport.proxy.no_proxy = Some(list.into());
        self
    }

    /// Whether to follow the proxy environment convention: `HTTPS_PROXY` (or `https_proxy`)
    /// for `wss://`, `HTTP_PROXY` (or `http_proxy`) for `ws://`, `ALL_PROXY` (or `all_proxy`)
    /// for both when the former are unset, and `NO_PROXY` (or `no_proxy`) for exceptions. The
    /// environment is read once, by `build()`. Default: `true`.
    pub fn proxy_from_env(mut self, read: bool) -> Self {
        self.transport.proxy.ignore_env = !read;
        self
    }
}

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
    fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// Opens a tunnel through this proxy to `target`.
    pub(crate) async fn tunnel(
        &self,
        target: &Target,
        config: &ClientConfig,
        tls: &TlsConnector,
    ) -> Result<Wire, Error> {
        let tcp = connect_tcp(&self.host, self.port, config)
            .await
            .map_err(|e| self.unreachable(e))?;
        match self.kind {
            Kind::Http => {
                let mut tcp = tcp;
                self.http_connect(&mut tcp, target).await?;
                Ok(Wire::Tcp(tcp))
            }
            Kind::Https => {
                // The proxy's certificate is checked against the proxy's own name, never the
                // server-name override, which is about the server.
                let mut tls = tls.wrap(tcp, &self.host).await?;
                self.http_connect(&mut tls, target).await?;
                Ok(Wire::ProxyTls(Box::new(tls)))
            }
            Kind::Socks5 { remote_dns } => {
                let address = if remote_dns {
                    SocksAddr::for_remote_dns(&target.host, target.port)
                } else {
                    SocksAddr::resolve(&target.host, target.port).await?
                };
                let mut tcp = tcp;
                self.socks5_connect(&mut tcp, &address).await?;
                Ok(Wire::Tcp(tcp))
            }
        }
    }

    /// Re-types a failure to reach the proxy (or to talk to it) as `Unreachable`.
    fn unreachable(&self, e: Error) -> Error {
        match e {
            Error::Io(source) | Error::Dns { source, .. } => {
                Error::Proxy(ProxyError::Unreachable {
                    proxy: self.authority(),
                    source,
                })
            }
            other => other,
        }
    }

    fn io_failed(&self, e: io::Error) -> Error {
        self.unreachable(Error::io(e))
    }

    /// Sends `CONNECT` and reads the answer up to the end of its headers.
    async fn http_connect<S>(&self, stream: &mut S, target: &Target) -> Result<(), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request = connect_request(target, self.auth.as_ref());
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| self.io_failed(e))?;
        stream.flush().await.map_err(|e| self.io_failed(e))?;
        let head = read_head(stream).await.map_err(|e| self.io_failed(e))?;
        let status = parse_status(&head)?;
        if status.is_success() {
            return Ok(());
        }
        Err(Error::Proxy(match status {
            StatusCode::PROXY_AUTHENTICATION_REQUIRED | StatusCode::UNAUTHORIZED => {
                ProxyError::AuthRejected {
                    status: Some(status),
                }
            }
            status => ProxyError::ConnectRefused { status },
        }))
    }

    /// Method negotiation, then username/password (when given), then `CONNECT`.
    async fn socks5_connect<S>(&self, stream: &mut S, address: &SocksAddr) -> Result<(), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let io = |e| self.io_failed(e);
        stream
            .write_all(&socks_greeting(self.auth.is_some()))
            .await
            .map_err(io)?;
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).await.map_err(io)?;
        if choice[0] != 5 {
            return Err(protocol("not a socks5 proxy"));
        }
        match (choice[1], &self.auth) {
            (0x00, _) => {}
            (0x02, Some((user, pass))) => {
                let request = socks_auth_request(user, pass).map_err(Error::Config)?;
                stream.write_all(&request).await.map_err(io)?;
                let mut status = [0u8; 2];
                stream.read_exact(&mut status).await.map_err(io)?;
                if status[1] != 0 {
                    return Err(Error::Proxy(ProxyError::AuthRejected { status: None }));
                }
            }
            // 0xFF: no method we offered is acceptable; it wants credentials we lack (or
            // another kind we do not speak).
            (0xFF, _) | (0x02, None) => {
                return Err(Error::Proxy(ProxyError::AuthRejected { status: None }))
            }
            (other, _) => return Err(protocol(&format!("socks5 method {other:#04x}"))),
        }
        let request = address.connect_request().map_err(Error::Config)?;
        stream.write_all(&request).await.map_err(io)?;
        let mut head = [0u8; 4];
        stream.read_exact(&mut head).await.map_err(io)?;
        if head[0] != 5 {
            return Err(protocol("socks5 reply has the wrong version"));
        }
        if head[1] != 0 {
            return Err(Error::Proxy(ProxyError::Socks(SocksReply::from_code(
                head[1],
            ))));
        }
        // The bound address the proxy reports is of no use to us, but it must be read off the
        // stream before the WebSocket upgrade starts.
        let rest = match head[3] {
            0x01 => 4 + 2,
            0x04 => 16 + 2,
            0x03 => {
                let mut len = [0u8; 1];
                stream.read_exact(&mut len).await.map_err(io)?;
                usize::from(len[0]) + 2
            }
            other => return Err(protocol(&format!("socks5 address type {other:#04x}"))),
        };
        let mut skip = vec![0u8; rest];
        stream.read_exact(&mut skip).await.map_err(io)?;
        Ok(())
    }
}

fn protocol(what: &str) -> Error {
    Error::Proxy(ProxyError::Protocol(what.to_owned()))
}

fn authority(host: &str, port: u16) -> String {
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

/// The `CONNECT` request head, with Basic credentials when given.
fn connect_request(target: &Target, auth: Option<&(String, String)>) -> String {
    let authority = authority(&target.host, target.port);
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, pass)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// The longest `CONNECT` answer head we read before deciding the proxy is broken.
const MAX_HEAD: usize = 16 * 1024;

/// Reads up to and including the blank line that ends the answer's headers.
///
/// One byte at a time on purpose: whatever follows the head belongs to the tunnel (the TLS or
/// WebSocket handshake), so nothing past it may be read here. A head is a few hundred bytes,
/// once per connection.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "proxy answer head too long",
            ));
        }
        head.push(stream.read_u8().await?);
    }
    Ok(head)
}

/// The status of `HTTP/1.x NNN reason`.
fn parse_status(head: &[u8]) -> Result<StatusCode, Error> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| protocol("proxy answer is not http"))?;
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => {
            StatusCode::from_bytes(code.as_bytes())
                .map_err(|_| protocol("proxy answer has no valid status"))
        }
        _ => Err(protocol("proxy answer is not http")),
    }
}

/// The destination as a SOCKS5 request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SocksAddr {
    /// `ATYP` 0x01 or 0x04.
    Ip(IpAddr, u16),
    /// `ATYP` 0x03: the proxy resolves the name (`socks5h`).
    Domain(String, u16),
}

impl SocksAddr {
    /// With `socks5h`: an IP literal stays an address, a name goes to the proxy as a name.
    fn for_remote_dns(host: &str, port: u16) -> SocksAddr {
        match host.parse::<IpAddr>() {
            Ok(ip) => SocksAddr::Ip(ip, port),
            Err(_) => SocksAddr::Domain(host.to_owned(), port),
        }
    }

    /// With `socks5`: the name is resolved here and the proxy gets an address.
    async fn resolve(host: &str, port: u16) -> Result<SocksAddr, Error> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocksAddr::Ip(ip, port));
        }
        let dns = |source| Error::Dns {
            host: host.to_owned(),
            source: Arc::new(source),
        };
        let mut addrs = tokio::net::lookup_host((host, port)).await.map_err(dns)?;
        addrs
            .next()
            .map(|addr| SocksAddr::Ip(addr.ip(), port))
            .ok_or_else(|| {
                dns(io::Error::new(
                    io::ErrorKind::NotFound,
                    "host resolved to no address",
                ))
            })
    }

    /// `VER CMD RSV ATYP DST.ADDR DST.PORT` for `CONNECT`.
    fn connect_request(&self) -> Result<Vec<u8>, ConfigError> {
        let mut request = vec![0x05, 0x01, 0x00];
        let port = match self {
            SocksAddr::Ip(IpAddr::V4(ip), port) => {
                request.push(0x01);
                request.extend_from_slice(&ip.octets());
                port
            }
            SocksAddr::Ip(IpAddr::V6(ip), port) => {
                request.push(0x04);
                request.extend_from_slice(&ip.octets());
                port
            }
            SocksAddr::Domain(name, port) => {
                let len = u8::try_from(name.len())
                    .map_err(|_| ConfigError::from(ProxySettingError::HostTooLong))?;
                request.push(0x03);
                request.push(len);
                request.extend_from_slice(name.as_bytes());
                port
            }
        };
        request.extend_from_slice(&port.to_be_bytes());
        Ok(request)
    }
}

/// The method offer: no authentication, plus username/password when we have credentials.
fn socks_greeting(with_credentials: bool) -> Vec<u8> {
    if with_credentials {
        vec![0x05, 0x02, 0x00, 0x02]
    } else {
        vec![0x05, 0x01, 0x00]
    }
}

/// RFC 1929: `VER ULEN UNAME PLEN PASSWD`.
fn socks_auth_request(user: &str, pass: &str) -> Result<Vec<u8>, ConfigError> {
    let too_long = || ConfigError::from(ProxySettingError::CredentialsTooLong);
    let ulen = u8::try_from(user.len()).map_err(|_| too_long())?;
    let plen = u8::try_from(pass.len()).map_err(|_| too_long())?;
    let mut request = vec![0x01, ulen];
    request.extend_from_slice(user.as_bytes());
    request.push(plen);
    request.extend_from_slice(pass.as_bytes());
    Ok(request)
}

/// Which proxy each kind of target goes through, decided once at build time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    ws: Option<Proxy>,
    wss: Option<Proxy>,
    bypass: NoProxy,
}

impl Routes {
    /// Resolves the builder's settings and, unless turned off, the environment (through
    /// `lookup`, so tests need not touch the process environment).
    pub(crate) fn build(
        options: &ProxyOptions,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Routes, ConfigError> {
        let found = if options.ignore_env {
            env::EnvProxies::default()
        } else {
            env::read(lookup)
        };
        let with_credentials = |mut proxy: Proxy| -> Result<Proxy, ConfigError> {
            if let Some(credentials) = &options.credentials {
                proxy.auth = Some(credentials.clone());
            }
            if let (Kind::Socks5 { .. }, Some((user, pass))) = (proxy.kind, &proxy.auth) {
                socks_auth_request(user, pass)?;
            }
            Ok(proxy)
        };
        let (ws, wss) = match &options.explicit {
            Some(url) => {
                let proxy = Proxy::parse(url)?;
                let proxy = with_credentials(proxy)?;
                (Some(proxy.clone()), Some(proxy))
            }
            None => {
                let from_var = |var: Option<env::Var>| -> Result<Option<Proxy>, ConfigError> {
                    var.map(|var| {
                        Proxy::parse(&var.value)
                            .map_err(|source| ConfigError::Proxy {
                                variable: Some(var.name),
                                source,
                            })
                            .and_then(with_credentials)
                    })
                    .transpose()
                };
                (from_var(found.ws)?, from_var(found.wss)?)
            }
        };
        let bypass = match (&options.no_proxy, found.no_proxy) {
            (Some(list), _) => NoProxy::parse(list),
            (None, Some(var)) => NoProxy::parse(&var.value),
            (None, None) => NoProxy::default(),
        };
        Ok(Routes { ws, wss, bypass })
    }

    /// Whether a route needs TLS to its proxy.
    pub(crate) fn needs_tls(&self) -> bool {
        [&self.ws, &self.wss]
            .into_iter()
            .flatten()
            .any(|p| p.kind == Kind::Https)
    }

    /// The proxy for this target, or `None` to connect directly.
    pub(crate) fn for_target(&self, target: &Target) -> Option<&Proxy> {
        let proxy = if target.tls { &self.wss } else { &self.ws };
        proxy
            .as_ref()
            .filter(|_| !self.bypass.matches(&target.host))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn target(host: &str, port: u16, tls: bool) -> Target {
        Target {
            host: host.into(),
            port,
            tls,
        }
    }

    fn routes(options: ProxyOptions, pairs: &[(&str, &str)]) -> Result<Routes, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Routes::build(&options, move |name| map.get(name).cloned())
    }

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

    #[test]
    fn connect_request_carries_basic_credentials() {
        let auth = ("alice".to_owned(), "s3cret".to_owned());
        let request = connect_request(&target("::1", 9000, true), Some(&auth));
        assert_eq!(
            request,
            "CONNECT [::1]:9000 HTTP/1.1\r\nHost: [::1]:9000\r\n\
             Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n"
        );
    }

    #[test]
    fn connect_answers_are_typed() {
        assert_eq!(
            parse_status(b"HTTP/1.0 200 Connection established\r\n\r\n").unwrap(),
            StatusCode::OK
        );
        assert_eq!(
            parse_status(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").unwrap(),
            StatusCode::PROXY_AUTHENTICATION_REQUIRED
        );
        assert!(matches!(
            parse_status(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(Error::Proxy(ProxyError::Protocol(_)))
        ));
    }

    #[test]
    fn socks5h_sends_the_name_and_socks5_an_address() {
        let by_name = SocksAddr::for_remote_dns("feed.example", 443);
        assert_eq!(
            by_name.connect_request().unwrap(),
            [
                &[0x05, 0x01, 0x00, 0x03, 12][..],
                b"feed.example",
                &[0x01, 0xBB]
            ]
            .concat()
        );
        let literal = SocksAddr::for_remote_dns("127.0.0.1", 80);
        assert_eq!(
            literal.connect_request().unwrap(),
            [0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 80]
        );
        let v6 = SocksAddr::Ip("::1".parse().unwrap(), 1);
        assert_eq!(v6.connect_request().unwrap()[3], 0x04);
        let long = SocksAddr::Domain("a".repeat(256), 1);
        assert!(long.connect_request().is_err());
    }

    #[tokio::test]
    async fn socks5_without_remote_dns_resolves_locally() {
        let addr = SocksAddr::resolve("localhost", 80).await.unwrap();
        assert!(matches!(addr, SocksAddr::Ip(ip, 80) if ip.is_loopback()));
    }

    #[test]
    fn socks_credentials_are_encoded_per_rfc_1929() {
        assert_eq!(
            socks_auth_request("al", "pw").unwrap(),
            [0x01, 2, b'a', b'l', 2, b'p', b'w']
        );
        assert!(socks_auth_request(&"x".repeat(256), "").is_err());
        assert_eq!(socks_greeting(false), [5, 1, 0]);
        assert_eq!(socks_greeting(true), [5, 2, 0, 2]);
    }

    #[test]
    fn env_proxies_route_by_scheme_and_no_proxy_bypasses() {
        let r = routes(
            ProxyOptions::default(),
            &[
                ("HTTPS_PROXY", "http://secure:3128"),
                ("HTTP_PROXY", "socks5h://plain:1080"),
                ("NO_PROXY", "localhost,.internal"),
            ],
        )
        .unwrap();
        assert_eq!(
            r.for_target(&target("feed.example", 443, true))
                .unwrap()
                .host,
            "secure"
        );
        assert_eq!(
            r.for_target(&target("feed.example", 80, false))
                .unwrap()
                .host,
            "plain"
        );
        assert!(r.for_target(&target("localhost", 80, false)).is_none());
        assert!(r.for_target(&target("api.internal", 443, true)).is_none());
    }

    #[test]
    fn the_environment_can_be_ignored() {
        let options = ProxyOptions {
            ignore_env: true,
            ..ProxyOptions::default()
        };
        let r = routes(options, &[("ALL_PROXY", "http://p:1")]).unwrap();
        assert!(r.for_target(&target("x", 80, false)).is_none());
    }

    #[test]
    fn explicit_proxy_wins_and_builder_no_proxy_replaces_the_variable() {
        let options = ProxyOptions {
            explicit: Some("socks5://explicit:1080".into()),
            credentials: Some(("u".into(), "p".into())),
            no_proxy: Some("only.this".into()),
            ignore_env: false,
        };
        let r = routes(
            options,
            &[
                ("HTTPS_PROXY", "http://env:1"),
                ("NO_PROXY", "feed.example"),
            ],
        )
        .unwrap();
        let p = r.for_target(&target("feed.example", 443, true)).unwrap();
        assert_eq!(p.host, "explicit");
        assert_eq!(p.auth, Some(("u".into(), "p".into())));
        assert!(r.for_target(&target("only.this", 443, true)).is_none());
    }

    #[test]
    fn a_bad_proxy_variable_is_a_config_error_naming_it() {
        let error = routes(ProxyOptions::default(), &[("https_proxy", "ftp://x")]).unwrap_err();
        assert!(error.to_string().contains("https_proxy"), "{error}");
        let r = routes(ProxyOptions::default(), &[("ALL_PROXY", "https://p")]).unwrap();
        assert!(r.needs_tls());
    }
}
