//! The SOCKS5 handshake (RFC 1928) with username/password authentication (RFC 1929), for
//! `socks5://` (the name resolved here) and `socks5h://` (the name resolved by the proxy).

use std::{io, net::IpAddr, sync::Arc};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{protocol, Proxy};
use crate::{
    error::{ConfigError, ProxyError, ProxySettingError, SocksReply},
    Error,
};

impl Proxy {
    /// Method negotiation, then username/password (when given), then `CONNECT`.
    ///
    /// Reads exactly the bytes of each reply, so that the stream is at the tunnel's first
    /// byte when it returns.
    ///
    /// # Errors
    /// [`ProxyError::AuthRejected`] when the proxy wants credentials we lack or refuses ours,
    /// [`ProxyError::Socks`] with the reply code when it refuses the `CONNECT`,
    /// [`ProxyError::Protocol`] when it does not speak SOCKS5, and
    /// [`ProxyError::Unreachable`] when the stream fails.
    pub(super) async fn socks5_connect<S>(
        &self,
        stream: &mut S,
        address: &SocksAddr,
    ) -> Result<(), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let io = |e| self.io_failed(e);
        stream
            .write_all(&greeting(self.auth.is_some()))
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
                let request = auth_request(user, pass).map_err(Error::Config)?;
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
        // At most 257 bytes, once per connection.
        let mut skip = [0u8; 255 + 2];
        stream.read_exact(&mut skip[..rest]).await.map_err(io)?;
        Ok(())
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
    pub(super) fn for_remote_dns(host: &str, port: u16) -> SocksAddr {
        match host.parse::<IpAddr>() {
            Ok(ip) => SocksAddr::Ip(ip, port),
            Err(_) => SocksAddr::Domain(host.to_owned(), port),
        }
    }

    /// With `socks5`: the name is resolved here and the proxy gets an address.
    ///
    /// # Errors
    /// [`Error::Dns`] when the name does not resolve.
    pub(super) async fn resolve(host: &str, port: u16) -> Result<SocksAddr, Error> {
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
fn greeting(with_credentials: bool) -> Vec<u8> {
    if with_credentials {
        vec![0x05, 0x02, 0x00, 0x02]
    } else {
        vec![0x05, 0x01, 0x00]
    }
}

/// RFC 1929: `VER ULEN UNAME PLEN PASSWD`.
///
/// # Errors
/// [`ProxySettingError::CredentialsTooLong`] when either part is over 255 bytes; `build()`
/// calls this to reject such credentials before any attempt.
pub(super) fn auth_request(user: &str, pass: &str) -> Result<Vec<u8>, ConfigError> {
    let too_long = || ConfigError::from(ProxySettingError::CredentialsTooLong);
    let ulen = u8::try_from(user.len()).map_err(|_| too_long())?;
    let plen = u8::try_from(pass.len()).map_err(|_| too_long())?;
    let mut request = vec![0x01, ulen];
    request.extend_from_slice(user.as_bytes());
    request.push(plen);
    request.extend_from_slice(pass.as_bytes());
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            auth_request("al", "pw").unwrap(),
            [0x01, 2, b'a', b'l', 2, b'p', b'w']
        );
        assert!(auth_request(&"x".repeat(256), "").is_err());
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 0, 2]);
    }

    fn socks5h(auth: Option<(&str, &str)>) -> Proxy {
        Proxy {
            kind: super::super::Kind::Socks5 { remote_dns: true },
            host: "proxy".into(),
            port: 1080,
            auth: auth.map(|(u, p)| (u.into(), p.into())),
        }
    }

    /// Runs the client half against answers written up front, and returns what the stream
    /// still holds after the handshake.
    async fn handshake(proxy: &Proxy, answers: &[u8]) -> (Result<(), Error>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(4096);
        server.write_all(answers).await.unwrap();
        // The proxy keeps its end open until the client is done writing, as a real one would.
        let proxy_side = tokio::spawn(async move {
            let mut requests = Vec::new();
            let _ = server.read_to_end(&mut requests).await;
        });
        let address = SocksAddr::for_remote_dns("feed.example", 443);
        let result = proxy.socks5_connect(&mut client, &address).await;
        client.shutdown().await.unwrap();
        proxy_side.await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        (result, rest)
    }

    #[tokio::test]
    async fn the_bytes_after_the_socks_reply_stay_in_the_tunnel() {
        let answers = [
            &[5, 2][..],
            &[1, 0],
            &[5, 0, 0, 3, 5],
            b"bound",
            &[0x1F, 0x90],
            b"tunnel bytes",
        ]
        .concat();
        let (result, rest) = handshake(&socks5h(Some(("al", "pw"))), &answers).await;
        result.unwrap();
        assert_eq!(rest, b"tunnel bytes");
    }

    #[tokio::test]
    async fn an_unknown_socks_reply_code_is_kept() {
        let answers = [5, 0, 5, 0x2A, 0, 1];
        let (result, _) = handshake(&socks5h(None), &answers).await;
        assert!(
            matches!(
                result,
                Err(Error::Proxy(ProxyError::Socks(SocksReply::Other(0x2A))))
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_proxy_that_wants_credentials_we_lack_is_an_auth_rejection() {
        for choice in [0x02, 0xFF] {
            let (result, _) = handshake(&socks5h(None), &[5, choice]).await;
            assert!(
                matches!(
                    result,
                    Err(Error::Proxy(ProxyError::AuthRejected { status: None }))
                ),
                "{result:?}"
            );
        }
    }
}
