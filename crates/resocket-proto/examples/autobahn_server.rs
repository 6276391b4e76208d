//! An echo server on the server-role codec, with the hub's upgrade path, for
//! Autobahn|Testsuite's fuzzing client.
//!
//! `scripts/autobahn` runs it (release build) against `wstest -m fuzzingclient`; by hand:
//! `cargo run --release -p resocket-proto --example autobahn_server -- 127.0.0.1:9002`.
//! The upgrade goes as in `resocket-hub`: hyper serves HTTP/1.1, [`upgrade::accept`] checks the
//! request and settles permessage-deflate (here on the client's terms, so every parameter of
//! RFC 7692 is exercised), the `101` is [`Accepted::response`], and the socket hyper hands over
//! after it (`hyper::upgrade::on`) goes to the codec.

use std::{convert::Infallible, io};

use futures_util::{SinkExt, StreamExt};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use resocket_proto::{
    deflate::{Negotiated, ServerDeflateConfig},
    upgrade::{self, Accepted},
    CloseCode, CloseFrame, Config, Message, WsError, WsStream,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};

/// Answers one request: a refusal, or the `101` with the echo loop spawned behind it.
async fn answer(mut request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let deflate = ServerDeflateConfig::default();
    let accepted: Accepted =
        match upgrade::accept(request.method(), request.headers(), &[], Some(&deflate)) {
            Ok(accepted) => accepted,
            Err(refused) => return Ok(refused.response().map(|()| refused.to_string())),
        };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let compression = accepted.compression();
    tokio::spawn(async move {
        // hyper keeps any bytes read past the request inside `Upgraded`.
        if let Ok(upgraded) = on_upgrade.await {
            echo(TokioIo::new(upgraded), compression).await;
        }
    });
    Ok(accepted.response().map(|()| String::new()))
}

/// Serves HTTP/1.1 on one socket until it is upgraded or closed.
async fn serve(socket: TcpStream) {
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(socket), service_fn(answer))
        .with_upgrades()
        .await;
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
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(socket: S, compression: Option<Negotiated>) {
    let config = Config {
        max_message_size: None,
        max_frame_size: None,
        compression,
        ..Config::server()
    };
    let mut ws = WsStream::new(socket, &[], config);
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
        tokio::spawn(serve(socket));
    }
}
