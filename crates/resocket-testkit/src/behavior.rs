//! What a [`TestServer`](crate::TestServer) does with each upgraded connection.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::server::{lock, ServerEvent, ServerStream};

/// The handler type behind [`Behavior::Custom`].
type CustomHandler = Arc<dyn Fn(Conn) -> BoxFuture<'static, ()> + Send + Sync>;

/// How a [`TestServer`](crate::TestServer) treats the connections it accepts.
///
/// The behavior is read once per connection, when the TCP connection is accepted, so
/// [`TestServer::set_behavior`](crate::TestServer::set_behavior) never changes a live
/// connection.
#[derive(Clone)]
#[non_exhaustive]
pub enum Behavior {
    /// Echo every Text/Binary frame back; answer pings.
    Echo,
    /// Record frames as events, send nothing, answer pings.
    Silent,
    /// Complete the upgrade, then drop the TCP connection at once (no Close frame).
    DropAfterUpgrade,
    /// Complete the upgrade, then send this Close frame and finish the close handshake.
    CloseAfterUpgrade {
        /// Close code sent to the client.
        code: u16,
        /// Close reason sent to the client.
        reason: String,
    },
    /// Answer the upgrade request with this HTTP status and the given headers and body, then
    /// close.
    ///
    /// `Content-Length` and `Connection: close` are added unless given. The request still counts
    /// as a connection and produces a `Connected` then a `Closed` event.
    Reject {
        /// HTTP status code, e.g. 403, or 503 together with a `Retry-After` header.
        status: u16,
        /// Extra response headers, as (name, value).
        headers: Vec<(String, String)>,
        /// Response body.
        body: String,
    },
    /// Complete the upgrade, then answer nothing ever again (never read, so pings go unanswered)
    /// while keeping TCP open.
    ///
    /// Such a connection never produces a `Closed` event and ignores
    /// [`send_all`](crate::TestServer::send_all) and friends.
    Unresponsive,
    /// After the upgrade, send `count` Text messages "0", "1", ... "count-1" as fast as possible,
    /// then behave like [`Silent`](Behavior::Silent).
    Burst {
        /// Number of messages to send.
        count: usize,
    },
    /// Full control: the handler gets the upgraded connection.
    ///
    /// Build it with [`Behavior::custom`]. The `Connected` event is emitted before the handler
    /// runs and the `Closed` event once it returns. Custom connections are not reached by
    /// [`send_all`](crate::TestServer::send_all), `close_all` or `freeze_all`: the handler owns
    /// the socket.
    Custom(CustomHandler),
}

impl Behavior {
    /// Build a [`Behavior::Custom`] from an async closure.
    pub fn custom<F, Fut>(f: F) -> Behavior
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Behavior::Custom(Arc::new(move |conn| Box::pin(f(conn))))
    }

    /// Whether connections with this behavior obey server-wide commands (`send_all`, ...).
    pub(crate) fn takes_commands(&self) -> bool {
        matches!(
            self,
            Behavior::Echo
                | Behavior::Silent
                | Behavior::Burst { .. }
                | Behavior::CloseAfterUpgrade { .. }
        )
    }
}

impl fmt::Debug for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Behavior::Echo => f.write_str("Echo"),
            Behavior::Silent => f.write_str("Silent"),
            Behavior::DropAfterUpgrade => f.write_str("DropAfterUpgrade"),
            Behavior::CloseAfterUpgrade { code, reason } => f
                .debug_struct("CloseAfterUpgrade")
                .field("code", code)
                .field("reason", reason)
                .finish(),
            Behavior::Reject {
                status,
                headers,
                body,
            } => f
                .debug_struct("Reject")
                .field("status", status)
                .field("headers", headers)
                .field("body", body)
                .finish(),
            Behavior::Unresponsive => f.write_str("Unresponsive"),
            Behavior::Burst { count } => f.debug_struct("Burst").field("count", count).finish(),
            Behavior::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// An upgraded server-side connection handed to a [`Behavior::Custom`] handler.
pub struct Conn {
    /// Connection id, as in [`ServerEvent`].
    pub id: usize,
    /// The upgraded WebSocket.
    pub ws: WebSocketStream<ServerStream>,
    /// The upgrade request (headers, uri).
    pub request: http::Request<()>,
    events_tx: mpsc::UnboundedSender<ServerEvent>,
    /// The Close frame recorded by the handler, reported in the final `Closed` event.
    close_frame: Arc<Mutex<Option<CloseFrame>>>,
}

impl Conn {
    /// Report a frame the handler received, so tests see it as a [`ServerEvent`].
    ///
    /// Text and Binary become [`ServerEvent::Message`], Ping becomes [`ServerEvent::Ping`], and a
    /// Close frame is kept for the [`ServerEvent::Closed`] emitted when the handler returns. Pong
    /// and raw frames are ignored.
    pub fn record(&self, msg: &Message) {
        let event = match msg {
            Message::Text(_) | Message::Binary(_) => ServerEvent::Message {
                conn: self.id,
                msg: msg.clone(),
            },
            Message::Ping(payload) => ServerEvent::Ping {
                conn: self.id,
                payload: payload.clone(),
            },
            Message::Close(frame) => {
                *lock(&self.close_frame) = frame.clone();
                return;
            }
            Message::Pong(_) | Message::Frame(_) => return,
        };
        // The receiver lives as long as the server; a send error means nobody listens any more.
        let _ = self.events_tx.send(event);
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// A server-wide order sent to one live connection.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send this message.
    Send(Message),
    /// Send this Close frame, then finish the close handshake.
    Close(CloseFrame),
    /// Stop reading and writing for good.
    Freeze,
}

/// What a connection task needs besides its socket.
pub(crate) struct Link {
    pub(crate) id: usize,
    pub(crate) request: http::Request<()>,
    pub(crate) events_tx: mpsc::UnboundedSender<ServerEvent>,
    pub(crate) cmd_rx: Option<mpsc::UnboundedReceiver<Command>>,
}

impl Link {
    fn emit(&self, event: ServerEvent) {
        // The receiver lives as long as the server; a send error means nobody listens any more.
        let _ = self.events_tx.send(event);
    }
}

/// Run `behavior` on an upgraded connection; returns the Close frame the client sent, if any.
///
/// Never returns for [`Behavior::Unresponsive`] and frozen connections: those end when the
/// server aborts the task.
pub(crate) async fn run(
    behavior: Behavior,
    mut ws: WebSocketStream<ServerStream>,
    mut link: Link,
) -> Option<CloseFrame> {
    match behavior {
        Behavior::Echo => serve(&mut ws, true, &mut link).await,
        Behavior::Silent => serve(&mut ws, false, &mut link).await,
        Behavior::DropAfterUpgrade => {
            drop(ws);
            None
        }
        Behavior::CloseAfterUpgrade { code, reason } => {
            let frame = CloseFrame {
                code: code.into(),
                reason: reason.into(),
            };
            // A failure here surfaces again on the next read, which ends the loop.
            let _ = ws.close(Some(frame)).await;
            serve(&mut ws, false, &mut link).await
        }
        // Reject is answered during the upgrade; it never reaches here.
        Behavior::Reject { .. } => None,
        Behavior::Unresponsive => {
            // Holding `ws` keeps the TCP connection open; never polling it leaves pings unanswered.
            let _ws = ws;
            std::future::pending().await
        }
        Behavior::Burst { count } => {
            if burst(&mut ws, count).await.is_err() {
                return None;
            }
            serve(&mut ws, false, &mut link).await
        }
        Behavior::Custom(handler) => {
            let close_frame = Arc::new(Mutex::new(None));
            let conn = Conn {
                id: link.id,
                ws,
                request: link.request,
                events_tx: link.events_tx,
                close_frame: Arc::clone(&close_frame),
            };
            handler(conn).await;
            let frame = lock(&close_frame).take();
            frame
        }
    }
}

/// Queue every burst message with `feed` and flush once: one syscall per buffer, not per message.
async fn burst(
    ws: &mut WebSocketStream<ServerStream>,
    count: usize,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    for i in 0..count {
        ws.feed(Message::text(i.to_string())).await?;
    }
    ws.flush().await
}

/// The read loop shared by Echo and Silent; also obeys server-wide commands.
async fn serve(
    ws: &mut WebSocketStream<ServerStream>,
    echo: bool,
    link: &mut Link,
) -> Option<CloseFrame> {
    let mut frame = None;
    let mut cmd_rx = link.cmd_rx.take();
    loop {
        tokio::select! {
            // Commands first: after `freeze_all` returns, no later frame may still be answered.
            biased;
            cmd = recv_command(&mut cmd_rx) => match cmd {
                None => cmd_rx = None,
                // Send errors surface again on the next read, which ends the loop.
                Some(Command::Send(msg)) => {
                    let _ = ws.send(msg).await;
                }
                Some(Command::Close(close)) => {
                    let _ = ws.close(Some(close)).await;
                }
                Some(Command::Freeze) => std::future::pending::<()>().await,
            },
            msg = ws.next() => match msg {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    link.emit(ServerEvent::Message { conn: link.id, msg: msg.clone() });
                    if echo {
                        let _ = ws.send(msg).await;
                    }
                }
                Some(Ok(Message::Ping(payload))) => {
                    link.emit(ServerEvent::Ping { conn: link.id, payload });
                }
                Some(Ok(Message::Close(close))) => frame = close,
                Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(error)) => {
                    tracing::debug!(conn = link.id, %error, "test server connection ended");
                    return frame;
                }
                None => return frame,
            },
        }
    }
}

/// Next command, or wait forever when this connection takes none.
async fn recv_command(rx: &mut Option<mpsc::UnboundedReceiver<Command>>) -> Option<Command> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
