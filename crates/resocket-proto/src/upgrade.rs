//! The server's side of the HTTP/1.1 upgrade (RFC 6455, section 4.2): checking a request and
//! writing the `101 Switching Protocols` answer, with the subprotocol and permessage-deflate
//! chosen.
//!
//! It works on [`http`] types and performs no I/O, so any HTTP server can use it: check the
//! request with [`accept`] (answering [`UpgradeError::status`] when it fails), send
//! [`Accepted::response`], take the socket over from the server (hyper's
//! `hyper::upgrade::on`), and hand it to [`WsStream`](crate::WsStream) with
//! [`Accepted::compression`] in its [`Config`](crate::Config). Checks of the application's own
//! (origin, credentials, capacity) go before the answer, so they can refuse with a status of
//! their choice.

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::deflate::{self, Negotiated, ServerDeflateConfig};

/// The only WebSocket version RFC 6455 defines.
const VERSION: &str = "13";

/// Why a request is not a WebSocket upgrade the server can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The method is not `GET`.
    #[error("a websocket upgrade must be a get request")]
    Method,
    /// `Upgrade: websocket` or `Connection: upgrade` is missing.
    #[error("not a websocket upgrade request")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported websocket version")]
    Version,
    /// `Sec-WebSocket-Key` is missing.
    #[error("missing sec-websocket-key")]
    MissingKey,
}

impl UpgradeError {
    /// The HTTP status to refuse the request with: 405, 426 (with `Sec-WebSocket-Version: 13`,
    /// see [`UpgradeError::response`]) or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            UpgradeError::Method => StatusCode::METHOD_NOT_ALLOWED,
            UpgradeError::NotUpgrade | UpgradeError::Version => StatusCode::UPGRADE_REQUIRED,
            UpgradeError::MissingKey => StatusCode::BAD_REQUEST,
        }
    }

    /// The refusal: the status, and the headers RFC 6455 asks for with it (the version the
    /// server speaks, and `Upgrade: websocket` with 426).
    pub fn response(&self) -> Response<()> {
        let mut response = Response::new(());
        *response.status_mut() = self.status();
        if self.status() == StatusCode::UPGRADE_REQUIRED {
            let headers = response.headers_mut();
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static(VERSION),
            );
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        response
    }
}

/// An upgrade the server agreed to: the `101` to send and what it settled.
#[derive(Debug, Clone)]
pub struct Accepted {
    accept_key: HeaderValue,
    protocol: Option<HeaderValue>,
    extensions: Option<HeaderValue>,
    compression: Option<Negotiated>,
}

impl Accepted {
    /// The `101 Switching Protocols` response: `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept`, and the chosen subprotocol and extensions, if any.
    pub fn response(&self) -> Response<()> {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept_key.clone());
        if let Some(protocol) = &self.protocol {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol.clone());
        }
        if let Some(extensions) = &self.extensions {
            headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, extensions.clone());
        }
        response
    }

    /// The subprotocol chosen, if the client offered one the server speaks.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_ref().and_then(|p| p.to_str().ok())
    }

    /// The permessage-deflate parameters agreed on, for [`Config::compression`](crate::Config).
    pub fn compression(&self) -> Option<Negotiated> {
        self.compression
    }
}

/// Checks an upgrade request and settles its terms: the first subprotocol the client offers
/// that is in `protocols` (none when no offer matches: the client decides whether to go on),
/// and permessage-deflate as [`deflate::answer`] picks it under `deflate` (`None`: never
/// compress). An offer the server cannot take means no compression, never a refusal.
///
/// # Errors
///
/// [`UpgradeError`] when the request is not a WebSocket upgrade RFC 6455 lets a server accept.
pub fn accept(
    method: &Method,
    headers: &HeaderMap,
    protocols: &[&str],
    deflate: Option<&ServerDeflateConfig>,
) -> Result<Accepted, UpgradeError> {
    if method != Method::GET {
        return Err(UpgradeError::Method);
    }
    if !has_token(headers, &header::UPGRADE, "websocket")
        || !has_token(headers, &header::CONNECTION, "upgrade")
    {
        return Err(UpgradeError::NotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes().trim_ascii() != VERSION.as_bytes())
    {
        return Err(UpgradeError::Version);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeError::MissingKey)?;
    let accept_key = HeaderValue::try_from(tungstenite::handshake::derive_accept_key(
        key.as_bytes().trim_ascii(),
    ))
    .expect("base64 is a valid header value");
    let protocol = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|offered| protocols.contains(offered))
        .map(|p| HeaderValue::from_str(p).expect("a header's own token"));
    let agreed = deflate
        .and_then(|cfg| deflate::answer(cfg, headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS)));
    let (compression, extensions) = match agreed {
        Some((negotiated, value)) => (Some(negotiated), Some(value)),
        None => (None, None),
    };
    Ok(Accepted {
        accept_key,
        protocol,
        extensions,
        compression,
    })
}

/// Whether a comma-separated header holds `token` (case-insensitive), in any of its lines.
fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]
        .iter()
        .chain(extra)
        {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn the_rfc_example_key_is_answered() {
        let accepted = accept(&Method::GET, &request(&[]), &[], None).unwrap();
        let response = accepted.response();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            response.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(!response
            .headers()
            .contains_key(header::SEC_WEBSOCKET_PROTOCOL));
    }

    #[test]
    fn the_first_offered_protocol_the_server_speaks_is_chosen() {
        let headers = request(&[("sec-websocket-protocol", "chat, resocket.v1, other")]);
        let accepted = accept(&Method::GET, &headers, &["other", "resocket.v1"], None).unwrap();
        assert_eq!(accepted.protocol(), Some("resocket.v1"));
    }

    #[test]
    fn an_unacceptable_deflate_offer_means_no_compression() {
        let headers = request(&[("sec-websocket-extensions", "permessage-deflate; foo=1")]);
        let accepted = accept(
            &Method::GET,
            &headers,
            &[],
            Some(&ServerDeflateConfig::default()),
        )
        .unwrap();
        assert_eq!(accepted.compression(), None);
        assert!(!accepted
            .response()
            .headers()
            .contains_key(header::SEC_WEBSOCKET_EXTENSIONS));
    }

    #[test]
    fn requests_that_are_not_upgrades_are_refused_with_their_status() {
        assert_eq!(
            accept(&Method::POST, &request(&[]), &[], None).unwrap_err(),
            UpgradeError::Method
        );
        let mut headers = request(&[]);
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let error = accept(&Method::GET, &headers, &[], None).unwrap_err();
        assert_eq!(error.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(
            error.response().headers()[header::SEC_WEBSOCKET_VERSION],
            "13"
        );
        headers = request(&[]);
        headers.remove(header::SEC_WEBSOCKET_KEY);
        assert_eq!(
            accept(&Method::GET, &headers, &[], None)
                .unwrap_err()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }
}
