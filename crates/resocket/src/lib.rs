//! resocket: a WebSocket client that stays connected.
//!
//! A [`Client`] reconnects with backoff and jitter, re-runs its handshake after every
//! reconnect, notices a dead peer through heartbeats, pushes back instead of buffering without
//! bound, and never drops a message without saying so. It runs on tokio and
//! [tokio-tungstenite]; [`Message`] is re-exported, so you need not depend on either directly.
//!
//! ```no_run
//! use std::time::Duration;
//! use resocket::{Client, ClientConfig, Message};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (client, mut messages) = Client::builder("wss://stream.example.com/ws")
//!     .config(ClientConfig::fast_reconnect())
//!     .header("authorization", "Bearer s3cret")
//!     .connect()?;
//!
//! // Queued while connecting; written in order once the client is Ready.
//! client.send(Message::text(r#"{"op":"subscribe","args":["trades"]}"#)).await?;
//!
//! while let Some(msg) = messages.recv().await {
//!     println!("{msg}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Contracts
//! - **Lifecycle**: `Idle → Connecting → Handshaking → Ready → (Disconnected → BackingOff →
//!   Connecting …) → Closed`, published on a `watch` ([`Client::status`]), as events
//!   ([`Client::events`]) and in [`Client::snapshot`].
//! - **Retry**: one backoff per client, reset only after a connection stayed `Ready` for
//!   `stable_after`; typed errors decide ([`Error::is_retryable`]), a classifier can override.
//! - **Outbound**: one queue for the client's life, bounded by messages and bytes; messages
//!   wait while disconnected and go out in order after the handshake, batched with one flush.
//! - **Inbound**: a bounded stream ([`Messages`]) whose backpressure reaches the socket.
//!
//! # Features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `rustls-tls-webpki-roots` | yes | `wss://` through rustls, trusting the Mozilla roots compiled in |
//! | `rustls-tls-native-roots` | no | `wss://` through rustls, trusting the host's certificate store |
//! | `hub` | no | the hub protocol types (`hub::protocol`) |
//! | `metrics` | no | `extension::MetricsExtension`, through the `metrics` facade |
//!
//! Without a TLS feature the crate serves `ws://` only, and a `wss://` URL is refused by
//! `connect()` with [`ConfigError::TlsFeatureMissing`](error::ConfigError::TlsFeatureMissing).
//!
//! [tokio-tungstenite]: https://docs.rs/tokio-tungstenite

mod client;
mod config;
mod connection;
pub mod error;
pub mod extension;
pub mod handshake;
mod inbound;
mod queue;
pub mod retry;
mod state;
mod supervisor;
mod transport;

#[cfg(feature = "hub")]
pub mod hub;

pub use client::{Client, ClientBuilder};
pub use config::{ClientConfig, QueuePolicy};
pub use error::{Error, Result, SendError};
pub use inbound::Messages;
pub use state::{ConnectionEvent, ConnectionState, Counters, DropReason, Snapshot, Status};
pub use supervisor::Supervisor;
pub use tokio_tungstenite::tungstenite::{
    protocol::{frame::coding::CloseCode, CloseFrame},
    Bytes, Message, Utf8Bytes,
};

/// The common imports: `use resocket::prelude::*;`.
pub mod prelude {
    pub use crate::{
        extension::{Extension, ExtensionContext, Verdict},
        handshake::{Auth, Chain, ChannelFormat, HandshakeError, Handshaker, Matcher, Subscribe},
        retry::{Backoff, ExponentialBackoff},
        Client, ClientConfig, ConnectionEvent, ConnectionState, Error, Message, Messages,
        QueuePolicy, SendError,
    };
}

/// The README's example, compiled as a doctest so it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
