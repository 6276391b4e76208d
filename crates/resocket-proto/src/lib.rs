//! The WebSocket frame codec of resocket (RFC 6455, after the HTTP upgrade).
//!
//! [`WsStream`] takes a socket once the upgrade is done and speaks frames over it, in either
//! role: a [`Role::Client`] masks what it writes and refuses masked input; a [`Role::Server`]
//! requires masked input and writes unmasked. The receive path is built for throughput:
//! frames are parsed in place in the read buffer, and a batch of data messages is sliced out of
//! it with one reference count per message ([`WsStream::poll_step`], [`WsStream::seal`]);
//! frames are encoded straight into one write buffer.
//!
//! The crate holds no reconnect, handshake or queue logic: the `resocket` client wraps it
//! with those, and a server can use it directly. Messages, close frames and errors are
//! [tungstenite]'s types, re-exported here.
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use resocket_proto::{Config, WsStream};
//!
//! # async fn echo(socket: tokio::net::TcpStream) -> Result<(), resocket_proto::WsError> {
//! // `socket` has just answered a WebSocket upgrade with `101 Switching Protocols`.
//! let mut ws = WsStream::new(socket, &[], Config::server());
//! while let Some(msg) = ws.next().await {
//!     let msg = msg?;
//!     if msg.is_text() || msg.is_binary() {
//!         ws.send(msg).await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! [tungstenite]: https://docs.rs/tungstenite

mod codec;
pub mod upgrade;

pub use codec::{deflate, Config, Incoming, Role, WsStream};
pub use tungstenite::{
    error::{CapacityError, ProtocolError},
    protocol::{frame::coding::CloseCode, CloseFrame},
    Bytes, Error as WsError, Message, Utf8Bytes,
};

/// The README's example (the crates.io page), compiled as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
