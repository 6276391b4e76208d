//! An echo server on the server-role codec, for Autobahn|Testsuite's fuzzing client.
//!
//! `scripts/autobahn` runs it (release build) against `wstest -m fuzzingclient`; by hand:
//! `cargo run --release -p resocket-proto --example autobahn_server -- 127.0.0.1:9002`.
//! The HTTP upgrade is the smallest that works (no subprotocols); it answers a
//! permessage-deflate offer with the `deflate` module's `answer`: the codec is what is under
//! test.

use std::io;

use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use resocket_proto::{
    deflate::{self, Negotiated, ServerDeflateConfig},
    CloseCode, CloseFrame, Config, Message, WsError, WsStream,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tungstenite::handshake::derive_accept_key;

/// Reads the upgrade request and answers it; returns the bytes that came after the request and
/// the permessage-deflate parameters agreed on, if any.
async fn upgrade(socket: &mut TcpStream) -> io::Result<(Vec<u8>, Option<Negotiated>)> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 16 << 10 || socket.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::InvalidData.into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let key = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, value)| value.trim().to_owned())
        .ok_or(io::ErrorKind::InvalidData)?;
    let offers: Vec<HeaderValue> = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
        .filter_map(|(_, value)| HeaderValue::from_str(value.trim()).ok())
        .collect();
    let agreed = deflate::answer(&ServerDeflateConfig::default(), &offers);
    let extensions = match &agreed {
        Some((_, value)) => format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            value.to_str().expect("the answer is ascii")
        ),
        None => String::new(),
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extensions}\r\n",
        derive_accept_key(key.as_bytes())
    );
    socket.write_all(response.as_bytes()).await?;
    Ok((buf.split_off(end), agreed.map(|(negotiated, _)| negotiated)))
}

/// The close code that fails the connection for this read error (RFC 6455, 7.4.1).
fn close_code(error: &WsError) -> CloseCode {
    match error {
        WsError::Utf8(_) => CloseCode::Invalid,
        WsError::Capacity(_) => CloseCode::Size,
        // A compressed message that is not DEFLATE: invalid payload data.
        WsError::Io(e) if e.kind() == io::ErrorKind::InvalidData => CloseCode::Invalid,
        _ => CloseCode::Protocol,
    }
}

/// Echoes data messages until the close handshake, or fails the connection on a bad frame.
async fn echo(mut socket: TcpStream) -> io::Result<()> {
    let (rest, compression) = upgrade(&mut socket).await?;
    let config = Config {
        max_message_size: None,
        max_frame_size: None,
        compression,
        ..Config::server()
    };
    let mut ws = WsStream::new(socket, &rest, config);
    while let Some(msg) = ws.next().await {
        let result = match msg {
            Ok(msg) if msg.is_text() || msg.is_binary() => ws.send(msg).await,
            Ok(_) => Ok(()),
            Err(error) => {
                let close = CloseFrame {
                    code: close_code(&error),
                    reason: "".into(),
                };
                let _ = ws.send(Message::Close(Some(close))).await;
                break;
            }
        };
        if result.is_err() {
            break;
        }
    }
    // The server closes TCP once the close handshake is over (RFC 6455, 7.1.1).
    let _ = ws.close().await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("autobahn_server: listening on {}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(echo(socket));
    }
}
