//! Everything below the WebSocket upgrade: TCP connect (resolution, nodelay, keepalive), the
//! proxy tunnel (HTTP CONNECT or SOCKS5), and TLS (rustls or native-tls).
//!
//! The builder collects [`TransportOptions`]; `build()` turns them into a [`Connector`] once,
//! and the supervisor calls [`Connector::connect`] for every attempt.
//!
//! - `tls.rs`: the TLS settings on the builder and the backend switch.
//! - `tls_rustls.rs`, `tls_native.rs`: the two backends.
//! - `proxy/`: proxy settings on the builder and which proxy a target uses (`mod.rs`), proxy
//!   URLs (`url.rs`), the `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` convention
//!   (`env.rs`), and the HTTP `CONNECT` (`connect.rs`) and SOCKS5 (`socks5.rs`) handshakes.
//! - `head_fence.rs`: the reader the upgrade runs on, so that no frame is read by tungstenite.
//!
//! # The stream types
//!
//! [`Wire`] (under the server's TLS) is tokio-util's `Either` over a TCP socket and a boxed TLS
//! session with an `https://` proxy; the test kit's `ServerStream` is the same `Either` on the
//! server side. `Either` forwards each `AsyncRead` / `AsyncWrite` call with one `match`, as a
//! hand-written enum would: no dynamic dispatch on the read path, and only the rare proxy TLS
//! session is boxed.
//!
//! # Why the proxy code is our own
//!
//! The proxy behaviour follows curl (and so reqwest, where they agree). Three crates could
//! replace parts of it; each was checked against what the tests in `proxy/` and
//! `tests/proxy.rs` pin, and each loses some of it:
//!
//! - **hyper-util's `client::proxy::matcher::Matcher`** (0.1.21) for the environment and
//!   `NO_PROXY`. It misses `NO_PROXY` entries that curl and our tests accept: entries separated
//!   by spaces, a port on an entry (`other.org:8080`, `192.168.1.5:80`), `*.svc`, `[::1]`, a
//!   host with a trailing dot, and `*` for an IP address host. It reads `HTTP_PROXY` before
//!   `http_proxy` (curl reads the lower-case one first). It drops a variable it cannot parse
//!   (`ftp://x`, a URL without a host) without a word, where we answer
//!   `ConfigError::Proxy { variable, source: ProxySettingError }` naming the variable. Its
//!   `NO_PROXY` matcher is private, so the parts that would fit cannot be taken alone. It
//!   would also bring hyper's client and `ipnet` into a crate that has no other use for them.
//! - **hyper-util's `Tunnel`** for HTTP `CONNECT`. It reads the answer in 8 KiB chunks and
//!   drops whatever follows the head, which belongs to the tunnel; we read the head a byte at
//!   a time for that reason. It keeps no status beyond 407 (`TunnelUnsuccessful`), where
//!   [`ProxyError::ConnectRefused`](crate::error::ProxyError::ConnectRefused) carries the status
//!   and 401 counts as an auth rejection. It is a tower `Service` over hyper's I/O traits, and
//!   its connect failure is a `Box<dyn Error>`.
//! - **tokio-socks** (0.5.3), or hyper-util's SOCKS connector, for SOCKS5. tokio-socks reads
//!   replies exactly, but reports every reply code past 0x08 as `UnknownAuthMethod`, where
//!   [`SocksReply::Other`](crate::error::SocksReply::Other) keeps the code, and it refuses an
//!   empty password, which `socks5://user@proxy` means. It would also add thiserror 1 beside
//!   the thiserror 2 we use. hyper-util's connector buffers past the reply, as its `Tunnel`
//!   does. Credentials too long for SOCKS5 are refused by `build()` either way.
//!
//! What remains ours is small (about two hundred lines of code for both handshakes, and as
//! much for the environment and `NO_PROXY`); each failure is a typed
//! [`ProxyError`](crate::error::ProxyError) with its source, and the unit tests beside each
//! handshake and in `env.rs` pin the behaviours above.

mod head_fence;
mod proxy;
mod tls;
#[cfg(feature = "native-tls")]
mod tls_native;
#[cfg(feature = "__rustls-tls")]
mod tls_rustls;

use std::{io, net::SocketAddr, sync::Arc};

use http::Uri;
use tokio::net::TcpStream;
use tokio_tungstenite::{tungstenite, MaybeTlsStream};
use tokio_util::either::Either;

use crate::{config::ClientConfig, error::ConfigError, Error};

pub(crate) use head_fence::HeadFence;
pub(crate) use proxy::ProxyOptions;
pub use tls::TlsBackend;
pub(crate) use tls::{TlsConnector, TlsOptions};

/// The socket a connection runs on: the wire to the server (or through a proxy), maybe
/// with TLS on top.
pub type Socket = MaybeTlsStream<Wire>;

/// Whether any TLS backend is compiled in.
pub(crate) const TLS_COMPILED: bool = cfg!(any(feature = "__rustls-tls", feature = "native-tls"));

/// The byte stream under the server's TLS: `Left`, a TCP socket (to the server, or to an
/// `http://` or SOCKS5 proxy that tunnels to it); `Right`, a TLS session with an `https://`
/// proxy that tunnels to the server.
///
/// An enum and not a `Box<dyn ..>`: every read and write is one `match` and a direct call,
/// the common case (plain TCP) is not boxed, and the type stays nameable for the handshake
/// API. tokio-util's `Either` is that enum, with every `AsyncRead` / `AsyncWrite` method
/// (vectored writes included) forwarded.
pub type Wire = Either<TcpStream, Box<MaybeTlsStream<TcpStream>>>;

/// Where to connect, parsed once from the request URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
}

impl Target {
    pub(crate) fn from_uri(uri: &Uri) -> Result<Target, ConfigError> {
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            Some(other) => return Err(ConfigError::UnsupportedScheme(other.to_owned())),
            None => {
                return Err(ConfigError::invalid_url(tungstenite::Error::Url(
                    tungstenite::error::UrlError::UnsupportedUrlScheme,
                )))
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or(ConfigError::MissingHost)?;
        let host = unbracket(host).to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if tls && !TLS_COMPILED {
            return Err(ConfigError::TlsFeatureMissing);
        }
        Ok(Target { host, port, tls })
    }
}

/// `Uri::host` keeps the brackets of an IPv6 literal; resolvers and TLS names want them off.
pub(crate) fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Resolves and connects, trying each resolved address in turn.
///
/// Failures are reported as they would be for a server; the proxy code re-types them as
/// [`ProxyError::Unreachable`](crate::error::ProxyError::Unreachable) when the host is a proxy.
async fn connect_tcp(host: &str, port: u16, config: &ClientConfig) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::Dns {
            host: host.to_owned(),
            source: Arc::new(e),
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                tune(&stream, config).map_err(Error::io)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(Error::io(last))
}

fn tune(stream: &TcpStream, config: &ClientConfig) -> io::Result<()> {
    stream.set_nodelay(config.tcp_nodelay)?;
    if let Some(idle) = config.tcp_keepalive {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(idle);
        socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)?;
    }
    Ok(())
}

/// Everything the builder collected about how to reach the server.
#[derive(Clone, Default)]
pub(crate) struct TransportOptions {
    pub(crate) tls: TlsOptions,
    pub(crate) proxy: ProxyOptions,
}

/// Opens sockets for every attempt: built once from [`TransportOptions`] at build time.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    tls: TlsConnector,
    proxies: proxy::Routes,
    server_name: Option<String>,
}

impl Connector {
    /// Checks the options and builds what every attempt shares (TLS configs, proxy routes).
    ///
    /// `tls_needed` is whether the server may be `wss://`; an `https://` proxy needs TLS too.
    pub(crate) fn build(
        options: &TransportOptions,
        tls_needed: bool,
    ) -> Result<Connector, ConfigError> {
        let proxies = proxy::Routes::build(&options.proxy, |name| std::env::var(name).ok())?;
        let tls = TlsConnector::build(&options.tls, tls_needed || proxies.needs_tls())?;
        Ok(Connector {
            tls,
            proxies,
            server_name: options.tls.server_name.clone(),
        })
    }

    /// TCP (to the server or through its proxy), then TLS when the target asks for it.
    pub(crate) async fn connect(
        &self,
        target: &Target,
        config: &ClientConfig,
    ) -> Result<Socket, Error> {
        let wire = match self.proxies.for_target(target) {
            Some(proxy) => {
                tracing::debug!(proxy = %proxy, "connecting through a proxy");
                proxy.tunnel(target, config, &self.tls).await?
            }
            None => Wire::Left(connect_tcp(&target.host, target.port, config).await?),
        };
        if target.tls {
            let name = self.server_name.as_deref().unwrap_or(&target.host);
            self.tls.wrap(wire, name).await
        } else {
            Ok(MaybeTlsStream::Plain(wire))
        }
    }
}

/// Maps an error of the WebSocket upgrade, like [`Error::from_ws`], but recognises a TLS
/// certificate rejection that only surfaces after the TLS handshake.
///
/// With TLS 1.3 the client finishes its handshake before the server has checked the client
/// certificate; a server that wants one (and got none, or a bad one) answers with an alert that
/// the client reads during the upgrade. That is a permanent certificate failure, not a flaky
/// socket.
pub(crate) fn upgrade_error(e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Io(io) => match tls::classify_late_io(io) {
            Ok(tls_error) => Error::Tls(tls_error),
            Err(io) => Error::io(io),
        },
        other => Error::from_ws(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_urls_are_typed() {
        let t = Target::from_uri(&"ws://example.com/feed".parse().unwrap()).unwrap();
        assert_eq!(
            t,
            Target {
                host: "example.com".into(),
                port: 80,
                tls: false
            }
        );
        let t = Target::from_uri(&"ws://[::1]:9000/".parse().unwrap()).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(matches!(
            Target::from_uri(&"http://example.com/".parse().unwrap()),
            Err(ConfigError::UnsupportedScheme(s)) if s == "http"
        ));
        assert!(matches!(
            Target::from_uri(&"/just/a/path".parse().unwrap()),
            Err(ConfigError::InvalidUrl(_))
        ));
    }

    #[test]
    fn wss_without_a_tls_feature_names_the_feature() {
        let result = Target::from_uri(&"wss://example.com/".parse().unwrap());
        if TLS_COMPILED {
            assert!(result.unwrap().tls);
        } else {
            let error = result.unwrap_err();
            assert!(matches!(error, ConfigError::TlsFeatureMissing), "{error:?}");
            assert!(error.to_string().contains("rustls-tls-webpki-roots"));
        }
    }
}
