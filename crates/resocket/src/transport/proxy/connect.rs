//! The HTTP `CONNECT` handshake (RFC 9110, section 9.3.6), over TCP to an `http://` proxy or
//! over TLS to an `https://` one.

use std::io;

use base64::Engine as _;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{protocol, url::authority, Proxy};
use crate::{error::ProxyError, transport::Target, Error};

/// The longest `CONNECT` answer head we read before deciding the proxy is broken.
const MAX_HEAD: usize = 16 * 1024;

impl Proxy {
    /// Sends `CONNECT` and reads the answer up to the end of its headers, and not a byte more.
    ///
    /// # Errors
    /// [`ProxyError::AuthRejected`] on 401 or 407, [`ProxyError::ConnectRefused`] with the
    /// status on any other non-2xx, [`ProxyError::Protocol`] when the answer is not HTTP, and
    /// [`ProxyError::Unreachable`] when the stream fails.
    pub(super) async fn http_connect<S>(&self, stream: &mut S, target: &Target) -> Result<(), Error>
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_request_carries_basic_credentials() {
        let auth = ("alice".to_owned(), "s3cret".to_owned());
        let target = Target {
            host: "::1".into(),
            port: 9000,
            tls: true,
        };
        let request = connect_request(&target, Some(&auth));
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

    #[tokio::test]
    async fn the_bytes_after_the_connect_answer_stay_in_the_tunnel() {
        let (mut client, mut proxy) = tokio::io::duplex(1024);
        proxy
            .write_all(b"HTTP/1.1 200 OK\r\nVia: p\r\n\r\n\x16\x03\x01server hello")
            .await
            .unwrap();
        drop(proxy);
        let head = read_head(&mut client).await.unwrap();
        assert_eq!(head, b"HTTP/1.1 200 OK\r\nVia: p\r\n\r\n");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"\x16\x03\x01server hello");
    }

    #[tokio::test]
    async fn an_endless_connect_answer_is_cut_at_its_bound() {
        let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
        while answer.len() < 1024 * 1024 {
            answer.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let mut stream: &[u8] = &answer;
        let error = read_head(&mut stream).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(answer.len() - stream.len(), MAX_HEAD, "read past the bound");
    }
}
