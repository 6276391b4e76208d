//! The bare clients' WebSocket upgrade, done by hand on a TCP stream: the request (with the
//! hub's subprotocol, and a permessage-deflate offer when asked), and the check of the answer.

use resocket_proto::deflate::{self, ClientDeflateConfig, Negotiated};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// What the bare clients offer when compressing: the default offer of resocket (and of
/// browsers), `permessage-deflate; client_max_window_bits`.
pub fn offer() -> HeaderValue {
    deflate::offer(&ClientDeflateConfig::default()).expect("enabled")
}

/// Upgrades `stream` at `/ws` of `host`, offering the hub's subprotocol when `hub_protocol`
/// and permessage-deflate when `deflate`; appends what followed the response head to `buf` and
/// returns what the server agreed to (`None`: no compression).
///
/// # Panics
/// If the server does not switch protocols, or answers an extension header the offer does not
/// allow.
pub async fn upgrade(
    stream: &mut TcpStream,
    host: &str,
    hub_protocol: bool,
    deflate: bool,
    buf: &mut Vec<u8>,
) -> Option<Negotiated> {
    let proto = if hub_protocol {
        "Sec-WebSocket-Protocol: resocket.v1\r\n"
    } else {
        ""
    };
    let extensions = if deflate {
        format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            offer().to_str().expect("ascii")
        )
    } else {
        String::new()
    };
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {proto}{extensions}\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read_buf(buf).await.unwrap();
        assert!(n > 0, "server closed the connection during the upgrade");
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    let answers: Vec<HeaderValue> = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, value)| HeaderValue::from_str(value.trim()).expect("a header value"))
        .collect();
    let mut config = ClientDeflateConfig::default();
    config.enabled = deflate;
    deflate::accept_response(&config, &answers).expect("a valid permessage-deflate answer")
}
