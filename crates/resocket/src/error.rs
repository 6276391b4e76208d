//! The crate's one error type, its detail enums, and the retry policy that reads them.
//!
//! Every failure keeps its typed source (the `io::ErrorKind`, the HTTP status and headers, the
//! Close frame, the TLS error), so that [`Error::is_retryable`] can decide from facts, not from
//! strings. The policy is the documented default; a user-supplied classifier
//! ([`ClientBuilder::retry_if`](crate::ClientBuilder::retry_if)) can override it.

use std::{fmt, io, sync::Arc, time::Duration};

use http::{HeaderMap, StatusCode};
use tokio_tungstenite::tungstenite;

use crate::CloseFrame;

/// A specialized `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in resocket.
///
/// The error is cheap to clone (its non-`Clone` sources sit behind an `Arc`), because the same
/// failure is reported in several places: the lifecycle event, the snapshot and
/// [`Client::closed`](crate::Client::closed).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was rejected by `build()`; nothing was attempted.
    ///
    /// The message shows the [`ConfigError`] and its causes (the parser's or TLS library's
    /// error), since a configuration error is read by a person fixing a setting; match on the
    /// `ConfigError` for its typed parts.
    #[error("invalid configuration: {}", Chain(.0))]
    Config(ConfigError),

    /// The host name could not be resolved.
    #[error("could not resolve host {host}")]
    Dns {
        /// The host that did not resolve.
        host: String,
        /// The resolver's error.
        #[source]
        source: Arc<io::Error>,
    },

    /// A socket operation failed: connection refused or reset, unreachable network, and so on.
    #[error("i/o error")]
    Io(#[source] Arc<io::Error>),

    /// The TCP connect, TLS handshake and HTTP upgrade did not finish within `connect_timeout`.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),

    /// The TLS layer failed; see [`TlsError`] for the kind.
    #[error("tls error")]
    Tls(#[source] TlsError),

    /// Reaching the server through a proxy failed; see [`ProxyError`] for the kind.
    #[error("proxy error")]
    Proxy(#[source] ProxyError),

    /// The server answered the upgrade request with a non-101 HTTP status.
    #[error("server answered the upgrade with http {}", .0.status)]
    Http(Box<HttpFailure>),

    /// The application handshake (auth, subscribe) failed.
    #[error("handshake failed")]
    Handshake(#[source] Arc<crate::handshake::HandshakeError>),

    /// The peer broke the WebSocket protocol (or sent something the limits reject).
    #[error("websocket protocol error")]
    Protocol(#[source] Arc<tungstenite::Error>),

    /// The server's `Sec-WebSocket-Extensions` answer is not one the offer allows (an
    /// extension that was not offered, or permessage-deflate parameters it may not set): the
    /// upgrade fails (RFC 7692, section 5). Not retried: the server answers the same way
    /// again; turn `ClientConfig::compression` off, or fix the server.
    #[error("server answered the extension offer with what it may not")]
    Negotiation(#[source] resocket_proto::deflate::NegotiationError),

    /// The peer closed the connection with a Close frame (or without one: `frame` is `None`).
    #[error("server closed the connection{}", fmt_close(.frame))]
    ServerClosed {
        /// The Close frame the peer sent, if any.
        frame: Option<CloseFrame>,
    },

    /// No Pong (or any other frame) arrived within `pong_timeout` after a Ping.
    #[error("no answer to a heartbeat within {0:?}")]
    HeartbeatTimeout(Duration),

    /// Nothing arrived within the configured idle timeout.
    #[error("no frame received for {0:?}")]
    IdleTimeout(Duration),

    /// The backoff gave up: `with_max_attempts` retries were spent (or retries are off, as with
    /// [`NoRetry`](crate::retry::NoRetry): then after one attempt).
    ///
    /// Unlike the other variants, the message includes the last attempt's error (also the
    /// `source`), so that printing this error alone says what happened: "gave up after 1
    /// attempt: server closed the connection with code 1000".
    #[error("gave up after {attempts} {}: {last}", if *.attempts == 1 { "attempt" } else { "attempts" })]
    RetriesExhausted {
        /// How many connection attempts were made in this retry cycle.
        attempts: u32,
        /// The error of the last attempt.
        #[source]
        last: Box<Error>,
    },

    /// The client was closed, by [`Client::close`](crate::Client::close) or by dropping it.
    #[error("client is closed")]
    Closed,

    /// [`Client::close_with`](crate::Client::close_with) was given a code or reason that may
    /// not be sent; nothing was done.
    #[error("invalid close frame: {0}")]
    InvalidCloseFrame(CloseFrameError),
}

/// Why a Close frame may not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseFrameError {
    /// The code is reserved or unassigned: only 1000–1003, 1007–1014 and 3000–4999 may be sent.
    #[error("close code {0} may not be sent (allowed: 1000-1003, 1007-1014, 3000-4999)")]
    Code(u16),
    /// The reason is longer than the 123 bytes a Close frame has room for.
    #[error("close reason is {0} bytes, more than the 123 a close frame holds")]
    ReasonTooLong(usize),
}

/// A configuration value that `build()` rejected.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL did not parse, or has no scheme: the URL or HTTP error from the parser.
    #[error("url does not parse")]
    InvalidUrl(#[source] Arc<tungstenite::Error>),
    /// The URL's scheme is not `ws` or `wss`.
    #[error("unsupported url scheme {0:?} (expected ws or wss)")]
    UnsupportedScheme(String),
    /// The URL names no host.
    #[error("url has no host")]
    MissingHost,
    /// A `wss://` URL was given to a build without a TLS feature.
    #[error("wss:// needs a tls feature: enable `rustls-tls-webpki-roots` (the default), `rustls-tls-native-roots` or `native-tls`")]
    TlsFeatureMissing,
    /// A capacity or size setting was zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// A header name or value was not valid HTTP.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// A message setting holds a kind of message it cannot hold (for example a Close frame as
    /// `heartbeat_message`, which would end the connection on the ping schedule).
    #[error("{0} must be a text or binary message")]
    NotData(&'static str),
    /// A setting needed by the call was never given (for example `channel_format` for
    /// `subscribe_channel`).
    #[error("{0} was not configured")]
    Missing(&'static str),
    /// A TLS setting could not be used (for example a PEM file with no certificate, or two
    /// settings that contradict each other).
    #[error("tls setting rejected: {reason}")]
    Tls {
        /// What was wrong with the setting.
        reason: String,
        /// The TLS library's or the PEM reader's error, when one caused it.
        #[source]
        source: Option<TlsSettingError>,
    },
    /// A proxy setting could not be used (a proxy URL that does not parse, an unknown scheme),
    /// whether it came from the builder or from the environment.
    #[error("proxy setting{} rejected", from_variable(*.variable))]
    Proxy {
        /// The environment variable the setting came from (`HTTPS_PROXY`, ...); `None` when it
        /// was given to the builder.
        variable: Option<&'static str>,
        /// What is wrong with it.
        #[source]
        source: ProxySettingError,
    },
}

impl ConfigError {
    pub(crate) fn tls(reason: impl Into<String>) -> ConfigError {
        ConfigError::Tls {
            reason: reason.into(),
            source: None,
        }
    }

    // Only the TLS backends read certificates and keys.
    #[cfg_attr(
        not(any(feature = "__rustls-tls", feature = "native-tls")),
        allow(dead_code)
    )]
    pub(crate) fn tls_caused_by(
        reason: impl Into<String>,
        source: impl Into<TlsSettingError>,
    ) -> ConfigError {
        ConfigError::Tls {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    pub(crate) fn invalid_url(e: tungstenite::Error) -> ConfigError {
        ConfigError::InvalidUrl(Arc::new(e))
    }
}

/// An error and its sources, joined with ": ".
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

fn from_variable(variable: Option<&str>) -> String {
    variable.map(|v| format!(" from {v}")).unwrap_or_default()
}

/// The error of the library that refused a TLS setting.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSettingError {
    /// A PEM input could not be read.
    #[error(transparent)]
    Pem(Arc<io::Error>),
    /// rustls refused the setting (a certificate, a key, the protocol versions).
    #[cfg(feature = "__rustls-tls")]
    #[error(transparent)]
    Rustls(rustls::Error),
    /// native-tls refused the setting.
    #[cfg(feature = "native-tls")]
    #[error(transparent)]
    NativeTls(Arc<native_tls::Error>),
}

impl From<io::Error> for TlsSettingError {
    fn from(e: io::Error) -> Self {
        TlsSettingError::Pem(Arc::new(e))
    }
}

#[cfg(feature = "__rustls-tls")]
impl From<rustls::Error> for TlsSettingError {
    fn from(e: rustls::Error) -> Self {
        TlsSettingError::Rustls(e)
    }
}

#[cfg(feature = "native-tls")]
impl From<native_tls::Error> for TlsSettingError {
    fn from(e: native_tls::Error) -> Self {
        TlsSettingError::NativeTls(Arc::new(e))
    }
}

/// What is wrong with a proxy setting.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxySettingError {
    /// The proxy URL does not parse.
    #[error("proxy url does not parse")]
    InvalidUrl(#[source] Arc<http::uri::InvalidUri>),
    /// The proxy URL's scheme is not `http`, `https`, `socks5` or `socks5h`.
    #[error("unsupported proxy scheme {0:?} (expected http, https, socks5 or socks5h)")]
    UnsupportedScheme(String),
    /// The proxy URL names no host.
    #[error("proxy url has no host")]
    MissingHost,
    /// The user name or password in the proxy URL is not UTF-8 once percent-decoded.
    #[error("proxy credentials are not utf-8 once percent-decoded")]
    CredentialsNotUtf8(#[source] std::str::Utf8Error),
    /// SOCKS5 limits user name and password to 255 bytes each.
    #[error("socks5 username and password are limited to 255 bytes")]
    CredentialsTooLong,
    /// SOCKS5 limits host names to 255 bytes.
    #[error("host name too long for socks5 (over 255 bytes)")]
    HostTooLong,
}

impl From<ProxySettingError> for ConfigError {
    fn from(source: ProxySettingError) -> Self {
        ConfigError::Proxy {
            variable: None,
            source,
        }
    }
}

/// What went wrong on the way through a proxy.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy rejected the credentials, or wants credentials that were not given: HTTP 407
    /// (or 401) to `CONNECT`, a failed SOCKS5 username/password exchange, or no SOCKS5 method
    /// both sides accept. Not retried.
    #[error("proxy rejected the credentials")]
    AuthRejected {
        /// The HTTP status of an HTTP proxy's answer; `None` for SOCKS5.
        status: Option<StatusCode>,
    },
    /// The proxy could not be resolved or reached, or dropped the connection during its
    /// handshake. Retried.
    #[error("proxy {proxy} is unreachable")]
    Unreachable {
        /// The proxy's `host:port`.
        proxy: String,
        /// The resolver's or socket's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// An HTTP proxy answered `CONNECT` with a non-2xx status other than 401/407. Retried for
    /// 408, 429 and 5xx (the proxy or its path to the server is having trouble), not otherwise
    /// (403 and the like are policy).
    #[error("proxy refused the tunnel with http {status}")]
    ConnectRefused {
        /// The status the proxy answered with.
        status: StatusCode,
    },
    /// A SOCKS5 proxy refused the connection with this reply code.
    #[error("socks5 proxy refused the connection: {0}")]
    Socks(SocksReply),
    /// The proxy's answer was not HTTP or SOCKS5 (the wrong kind of proxy, or not a proxy).
    /// Not retried.
    #[error("proxy answered with something unexpected: {0}")]
    Protocol(String),
}

impl ProxyError {
    /// Whether the default policy retries after this proxy failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProxyError::Unreachable { .. } => true,
            ProxyError::ConnectRefused { status } => {
                let s = status.as_u16();
                s == 408 || s == 429 || status.is_server_error()
            }
            ProxyError::Socks(reply) => reply.is_retryable(),
            ProxyError::AuthRejected { .. } | ProxyError::Protocol(_) => false,
        }
    }
}

/// A SOCKS5 reply code other than success (RFC 1928, section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SocksReply {
    /// `0x01`: general SOCKS server failure. Retried.
    #[error("general failure")]
    GeneralFailure,
    /// `0x02`: connection not allowed by the proxy's rules. Not retried.
    #[error("connection not allowed by ruleset")]
    NotAllowed,
    /// `0x03`: network unreachable from the proxy. Retried.
    #[error("network unreachable")]
    NetworkUnreachable,
    /// `0x04`: host unreachable from the proxy. Retried.
    #[error("host unreachable")]
    HostUnreachable,
    /// `0x05`: the server refused the proxy's connection. Retried.
    #[error("connection refused")]
    ConnectionRefused,
    /// `0x06`: TTL expired. Retried.
    #[error("ttl expired")]
    TtlExpired,
    /// `0x07`: the proxy does not support `CONNECT`. Not retried.
    #[error("command not supported")]
    CommandNotSupported,
    /// `0x08`: the proxy does not support the address type (for example domain names).
    /// Not retried.
    #[error("address type not supported")]
    AddressTypeNotSupported,
    /// Any other code. Not retried.
    #[error("reply code {0:#04x}")]
    Other(u8),
}

impl SocksReply {
    /// The reply for a non-zero SOCKS5 reply code.
    pub fn from_code(code: u8) -> SocksReply {
        match code {
            0x01 => SocksReply::GeneralFailure,
            0x02 => SocksReply::NotAllowed,
            0x03 => SocksReply::NetworkUnreachable,
            0x04 => SocksReply::HostUnreachable,
            0x05 => SocksReply::ConnectionRefused,
            0x06 => SocksReply::TtlExpired,
            0x07 => SocksReply::CommandNotSupported,
            0x08 => SocksReply::AddressTypeNotSupported,
            other => SocksReply::Other(other),
        }
    }

    /// Whether the failure may go away by itself (the server or the path to it is down).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SocksReply::GeneralFailure
                | SocksReply::NetworkUnreachable
                | SocksReply::HostUnreachable
                | SocksReply::ConnectionRefused
                | SocksReply::TtlExpired
        )
    }
}

/// What kind of TLS failure happened.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The server's certificate was rejected (unknown issuer, expired, wrong name). Not retried.
    #[error("server certificate rejected")]
    Certificate(#[source] Arc<io::Error>),
    /// The host name is not a valid TLS server name.
    #[error("invalid tls server name {0:?}")]
    InvalidServerName(String),
    /// Any other TLS handshake failure. Retried.
    #[error("tls handshake failed")]
    Handshake(#[source] Arc<io::Error>),
}

/// The upgrade response of a refused handshake: status, headers and (a prefix of) the body.
#[derive(Debug, Clone)]
pub struct HttpFailure {
    /// The HTTP status the server answered with.
    pub status: StatusCode,
    /// The response headers (for example `Retry-After` or `WWW-Authenticate`).
    pub headers: HeaderMap,
    /// The response body, if the server sent one.
    pub body: Option<Vec<u8>>,
}

fn fmt_close(frame: &Option<CloseFrame>) -> String {
    match frame {
        Some(f) if f.reason.is_empty() => format!(" with code {}", u16::from(f.code)),
        Some(f) => format!(" with code {} ({})", u16::from(f.code), f.reason),
        None => " without a close frame".to_owned(),
    }
}

impl Error {
    /// Whether the default policy retries after this error.
    ///
    /// Retried: connection refused/reset/unreachable, DNS failures, timeouts, heartbeat and idle
    /// timeouts, TLS failures other than a rejected certificate, HTTP 408/425/429/5xx, and every
    /// server Close except the "go away" codes. Not retried: configuration errors, HTTP 4xx (401,
    /// 403, 404, ...), other non-101 statuses, certificate errors, permanent handshake failures,
    /// Close codes 1003, 1008, 1010 and the application codes 4001, 4003 and 4004 (the
    /// common mirrors of HTTP 401/403/404), and [`Error::Closed`].
    ///
    /// Proxies ([`Error::Proxy`], see [`ProxyError::is_retryable`]): an unreachable proxy is
    /// retried (it may be restarting); rejected credentials (HTTP 407 or 401 to `CONNECT`, SOCKS5
    /// authentication failure) are not. A `CONNECT` refused with a status is retried for 408,
    /// 429 and 5xx (the proxy or its path to the server is down) and not for other statuses
    /// (403 and the like are the proxy's policy). SOCKS5 refusals are retried for general
    /// failure, unreachable network or host, connection refused and TTL expired, and not for
    /// "not allowed", unsupported command or address type.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Dns { .. }
            | Error::Io(_)
            | Error::ConnectTimeout(_)
            | Error::HeartbeatTimeout(_)
            | Error::IdleTimeout(_)
            | Error::Protocol(_) => true,
            Error::Tls(TlsError::Handshake(_)) => true,
            Error::Proxy(p) => p.is_retryable(),
            Error::Tls(_) => false,
            Error::Http(h) => {
                let s = h.status.as_u16();
                s == 408 || s == 425 || s == 429 || h.status.is_server_error()
            }
            Error::Handshake(h) => h.is_retryable(),
            Error::ServerClosed { frame } => match frame {
                None => true,
                Some(f) => !matches!(u16::from(f.code), 1003 | 1008 | 1010 | 4001 | 4003 | 4004),
            },
            Error::Config(_)
            | Error::RetriesExhausted { .. }
            | Error::Closed
            | Error::InvalidCloseFrame(_)
            | Error::Negotiation(_) => false,
        }
    }

    /// Whether this is a timeout: connect, application handshake, heartbeat or idle.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::ConnectTimeout(_) | Error::HeartbeatTimeout(_) | Error::IdleTimeout(_) => true,
            Error::Handshake(h) => h.is_timeout(),
            Error::Io(e) => e.kind() == io::ErrorKind::TimedOut,
            _ => false,
        }
    }

    /// Whether the client was closed on purpose ([`Error::Closed`]).
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    /// Whether this is a rejected server certificate.
    pub fn is_certificate(&self) -> bool {
        matches!(self, Error::Tls(TlsError::Certificate(_)))
    }

    /// The HTTP status of a refused upgrade.
    pub fn http_status(&self) -> Option<StatusCode> {
        match self {
            Error::Http(h) => Some(h.status),
            Error::RetriesExhausted { last, .. } => last.http_status(),
            _ => None,
        }
    }

    /// The response of a refused upgrade (status, headers, body).
    pub fn http_response(&self) -> Option<&HttpFailure> {
        match self {
            Error::Http(h) => Some(h),
            _ => None,
        }
    }

    /// The `io::ErrorKind` behind a socket error.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io(e) | Error::Dns { source: e, .. } => Some(e.kind()),
            _ => None,
        }
    }

    /// The Close frame the server sent, when the server closed the connection (also when that
    /// was the last attempt before [`Error::RetriesExhausted`]).
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        match self {
            Error::ServerClosed { frame } => frame.as_ref(),
            Error::RetriesExhausted { last, .. } => last.close_frame(),
            _ => None,
        }
    }

    /// The delay the server asked for with `Retry-After` (seconds form) on a 429 or 503.
    pub fn retry_after(&self) -> Option<Duration> {
        let h = self.http_response()?;
        let value = h.headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
        value.trim().parse::<u64>().ok().map(Duration::from_secs)
    }

    pub(crate) fn io(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }

    /// Maps an error of the WebSocket engine, keeping its typed parts.
    pub(crate) fn from_ws(e: tungstenite::Error) -> Error {
        match e {
            tungstenite::Error::Io(io) => Error::io(io),
            tungstenite::Error::Http(resp) => {
                let (parts, body) = (*resp).into_parts();
                Error::Http(Box::new(HttpFailure {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                }))
            }
            // A close handshake that finished: the server's doing, as far as the caller knows.
            // `AlreadyClosed` (a closed connection used again) is a different thing, a bug on
            // this side, and stays a protocol error with its typed source.
            tungstenite::Error::ConnectionClosed => Error::ServerClosed { frame: None },
            tungstenite::Error::Url(
                tungstenite::error::UrlError::NoHostName
                | tungstenite::error::UrlError::EmptyHostName,
            ) => Error::Config(ConfigError::MissingHost),
            e @ (tungstenite::Error::Url(_) | tungstenite::Error::HttpFormat(_)) => {
                Error::Config(ConfigError::invalid_url(e))
            }
            other => Error::Protocol(Arc::new(other)),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

/// Why a message could not be queued; the message is handed back inside.
///
/// Mirrors `tokio::sync::mpsc::error::TrySendError`: the caller decides whether to retry,
/// buffer or drop, and nothing is lost without the caller's say.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError<T> {
    /// The queue is at its message or byte bound.
    Full(T),
    /// The client is not `Ready` and the queue policy is `Reject`.
    NotConnected(T),
    /// `send_timeout` waited for room and the time ran out.
    Timeout(T),
    /// The client is closed; nothing will be sent any more.
    Closed(T),
    /// Only Text and Binary messages can be sent. Close with
    /// [`Client::close_with`](crate::Client::close_with); Pings are the heartbeat's
    /// (`ping_interval`) and Pongs the client's own answer to the server's Pings; raw frames
    /// could split a message across a reconnect.
    Unsupported(T),
}

impl<T> SendError<T> {
    /// Takes the unsent message back.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(t)
            | SendError::NotConnected(t)
            | SendError::Timeout(t)
            | SendError::Closed(t)
            | SendError::Unsupported(t) => t,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }

    /// Whether the send timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::Timeout(_))
    }

    /// Whether the client is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }

    /// Whether the message was rejected because the client was not connected.
    pub fn is_not_connected(&self) -> bool {
        matches!(self, SendError::NotConnected(_))
    }

    /// Whether the message is of a kind that cannot be sent: a control frame or a raw frame.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, SendError::Unsupported(_))
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Full(_) => "outbound queue is full",
            SendError::NotConnected(_) => "client is not connected",
            SendError::Timeout(_) => "timed out waiting for room in the outbound queue",
            SendError::Closed(_) => "client is closed",
            SendError::Unsupported(_) => "only text and binary messages can be sent",
        })
    }
}

impl<T> std::error::Error for SendError<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(code: u16, reason: &str) -> Error {
        Error::ServerClosed {
            frame: Some(CloseFrame {
                code: code.into(),
                reason: reason.to_owned().into(),
            }),
        }
    }

    #[test]
    fn retries_exhausted_says_what_the_last_attempt_ended_with() {
        let error = Error::RetriesExhausted {
            attempts: 1,
            last: Box::new(closed(1000, "")),
        };
        assert_eq!(
            error.to_string(),
            "gave up after 1 attempt: server closed the connection with code 1000"
        );
        let source = std::error::Error::source(&error).expect("the last error is the source");
        assert_eq!(source.to_string(), closed(1000, "").to_string());
        assert_eq!(u16::from(error.close_frame().unwrap().code), 1000);
        let error = Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(closed(1011, "restart")),
        };
        assert_eq!(
            error.to_string(),
            "gave up after 3 attempts: server closed the connection with code 1011 (restart)"
        );
    }

    #[test]
    fn a_finished_close_and_a_closed_connection_used_again_are_distinct() {
        let normal = Error::from_ws(tungstenite::Error::ConnectionClosed);
        assert!(
            matches!(normal, Error::ServerClosed { frame: None }),
            "{normal:?}"
        );
        let misuse = Error::from_ws(tungstenite::Error::AlreadyClosed);
        match &misuse {
            Error::Protocol(source) => {
                assert!(matches!(**source, tungstenite::Error::AlreadyClosed))
            }
            other => panic!("AlreadyClosed became {other:?}"),
        }
    }

    #[test]
    fn a_config_error_shows_its_cause() {
        let error = Error::Config(ConfigError::Proxy {
            variable: Some("HTTPS_PROXY"),
            source: ProxySettingError::UnsupportedScheme("socks4".into()),
        });
        assert_eq!(
            error.to_string(),
            "invalid configuration: proxy setting from HTTPS_PROXY rejected: unsupported proxy \
             scheme \"socks4\" (expected http, https, socks5 or socks5h)"
        );
    }

    #[test]
    fn a_handshake_timeout_is_a_timeout() {
        let error = Error::Handshake(Arc::new(crate::handshake::HandshakeError::timed_out(
            "auth",
            Duration::from_secs(2),
        )));
        assert!(error.is_timeout());
        assert!(error.is_retryable());
        let other = Error::Handshake(Arc::new(crate::handshake::HandshakeError::retryable(
            "busy",
        )));
        assert!(!other.is_timeout());
    }
}
