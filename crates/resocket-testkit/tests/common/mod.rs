//! Helpers shared by the test kit's own integration tests.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// Upper bound for any test body.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How long "nothing happens" is watched for; the wait is the assertion.
pub const QUIET: Duration = Duration::from_millis(300);

/// Run a test body under [`TEST_TIMEOUT`].
pub async fn within<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test timed out")
}

/// A plain WebSocket client over TCP.
pub type Client = WebSocketStream<TcpStream>;

/// Open a WebSocket to `addr`, or return the handshake error.
pub async fn try_connect(addr: SocketAddr) -> Result<Client, tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let (ws, _response) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await?;
    Ok(ws)
}

/// Open a WebSocket to `addr`.
pub async fn connect(addr: SocketAddr) -> Client {
    try_connect(addr).await.expect("websocket handshake")
}

/// Next frame that is not a Pong, panicking on end of stream or error.
pub async fn next_data<S>(ws: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    loop {
        match ws.next().await {
            Some(Ok(Message::Pong(_))) => continue,
            Some(Ok(msg)) => return msg,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Read until the stream ends or fails; returns every item read, the error included.
pub async fn drain<S>(ws: &mut WebSocketStream<S>) -> Vec<Result<Message, tungstenite::Error>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    let mut seen = Vec::new();
    while let Some(item) = ws.next().await {
        let failed = item.is_err();
        seen.push(item);
        if failed {
            break;
        }
    }
    seen
}
