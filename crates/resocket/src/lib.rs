//! resocket: a WebSocket client that stays connected.
//!
//! A [`Client`] reconnects with backoff and jitter, re-runs its handshake after every
//! reconnect, notices a dead peer through heartbeats, pushes back instead of buffering without
//! bound, and never drops a message without saying so. It runs on tokio and
//! [tokio-tungstenite]; [`Message`] is re-exported, so you need not depend on either directly.
//! tokio-tungstenite performs the HTTP upgrade; after it, frames go through resocket's own
//! codec, which parses them in place and hands received messages over in zero-copy batches
//! (the measurements behind that are in `BENCHMARKS.md`).
//!
//! ```no_run
//! use std::time::Duration;
//! use resocket::{Client, ClientConfig, Message};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (client, mut messages) = Client::builder("wss://stream.example.com/ws")
//!     .config(ClientConfig::fast_reconnect())
//!     .header("authorization", "Bearer s3cret")
//!     .connect()
//!     .await?;
//!
//! // Written at once while Ready; queued and written in order after a reconnect otherwise.
//! client.send(Message::text(r#"{"op":"subscribe","args":["trades"]}"#)).await?;
//!
//! while let Some(msg) = messages.recv().await {
//!     println!("{msg}");
//! }
//! println!("ended: {:?}", messages.end_reason());
//! # Ok(()) }
//! ```
//!
//! # Starting a client
//! [`ClientBuilder`] finishes in one of three ways, named as reqwest and tokio name them:
//! - [`ClientBuilder::connect`]`.await` starts the client and waits until it is `Ready` for
//!   the first time, retrying as configured; it fails with what ended the client if it never
//!   gets there (a permanent failure, [`Error::RetriesExhausted`]). The usual choice.
//! - [`ClientBuilder::spawn`] starts it in the background and returns at once: messages sent
//!   before `Ready` wait in the queue, and [`Client::ready`]`.await` waits later.
//! - [`ClientBuilder::build`] returns it unstarted, with the [`Supervisor`] task to await or
//!   spawn yourself (a custom runtime, or events observed from the very first transition).
//!
//! `connect` is `spawn` plus `ready`: waiting is a separate, explicit step, so a client that
//! must start without its server (queueing meanwhile) is not forced to wait.
//!
//! # Contracts
//! - **Lifecycle**: `Idle → Connecting → Handshaking → Ready → (Disconnected → BackingOff →
//!   Connecting …) → Closed`, published as the latest [`Status`] ([`Client::status`], a
//!   [`StatusWatch`]), as events ([`Client::events`]) and in [`Client::snapshot`].
//!   [`Client::is_closing`] is true from the moment a close is asked for until the task ends;
//!   [`Client::is_closed`] from then on. [`Messages::end_reason`] says why the stream ended
//!   ([`Ended`]).
//! - **Retry**: one backoff per client, reset only after a connection stayed `Ready` for
//!   `stable_after`; typed errors decide ([`Error::is_retryable`]), a classifier can override.
//!   [`ClientBuilder::no_reconnect`] makes a one-shot client: the first disconnect ends it, with
//!   its reason as the error (a server Close 1000 ends it cleanly).
//! - **Outbound**: one queue for the client's life, bounded by messages and bytes; messages
//!   wait while disconnected and go out in order after the handshake, batched with one flush.
//!   Only Text and Binary messages are queued; control and raw frames come back as
//!   [`SendError::Unsupported`], and [`Client::close_with`] closes, with a [`CloseCode`].
//!   [`Client`] is also a `futures::Sink<Message>` that waits for room the same way.
//! - **Inbound**: a bounded stream ([`Messages`]) whose backpressure reaches the socket. A
//!   server's Pings are answered, at most 16 Pongs between two flushes and then only the
//!   latest, so a Ping flood cannot grow memory.
//!
//! # Features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `rustls-tls-webpki-roots` | yes | `wss://` through rustls, trusting the Mozilla roots compiled in |
//! | `rustls-tls-native-roots` | no | `wss://` through rustls, trusting the host's certificate store |
//! | `native-tls` | no | `wss://` through the platform's TLS library (OpenSSL, Secure Transport, SChannel) |
//! | `native-tls-vendored` | no | `native-tls` with OpenSSL built from source and linked in |
//! | `hub` | no | the hub protocol types (`hub::protocol`) and its typed client (`hub::HubClient`); enables serde_json's `raw_value` |
//! | `metrics` | no | `extension::MetricsExtension`, through the `metrics` facade |
//!
//! Without a TLS feature the crate serves `ws://` only, and a `wss://` URL is refused by
//! [`ClientBuilder::build`] with [`ConfigError::TlsFeatureMissing`](error::ConfigError::TlsFeatureMissing),
//! whose message names the features to enable. Proxy support needs no feature.
//!
//! # TLS and proxies
//! | feature | what the host needs to build | at run time |
//! |---|---|---|
//! | `rustls-tls-webpki-roots` | nothing (pure Rust, plus ring's C and assembly, built by cargo) | nothing: the roots are compiled in |
//! | `rustls-tls-native-roots` | as above | a system certificate store (`ca-certificates` on Debian) |
//! | `native-tls` | Linux: `pkg-config` and the OpenSSL headers (`libssl-dev`); macOS, Windows: nothing | Linux: `libssl`; the system certificate store |
//! | `native-tls-vendored` | a C compiler, `perl` and `make` (OpenSSL is compiled) | the system certificate store |
//!
//! With both a rustls and a native-tls feature, rustls is used unless
//! [`ClientBuilder::tls_backend`] picks [`TlsBackend::NativeTls`] (or a native-tls connector or
//! PKCS#12 identity is given). rustls always runs with the ring crypto provider passed
//! explicitly, so it never needs (or panics for lack of) a process-level `CryptoProvider`.
//!
//! TLS settings, each usable with both backends and with each other:
//! - [`ClientBuilder::add_root_certificate_pem`]: trust a private CA besides the default roots.
//! - [`ClientBuilder::client_identity_pem`] (both backends) or
//!   `ClientBuilder::client_identity_pkcs12` (native-tls): a client certificate for mutual TLS.
//! - [`ClientBuilder::danger_accept_invalid_certs`]: accept any server certificate (tests only).
//! - [`ClientBuilder::tls_server_name`]: the name sent as SNI and checked in the certificate.
//! - [`ClientBuilder::rustls_config`] or `ClientBuilder::native_tls_connector`: a whole custom
//!   configuration. It replaces the settings above, so combining them is an error, never a
//!   silent override; so is setting two identities.
//!
//! ALPN is `http/1.1`. A rejected server certificate, and a server refusing ours, is a
//! [`TlsError::Certificate`](error::TlsError::Certificate) and is not retried.
//!
//! Proxies, for `ws://` and `wss://` (TLS runs end to end, inside the tunnel):
//! - [`ClientBuilder::proxy`] takes `http://`, `https://` (HTTP `CONNECT`, to a proxy reached
//!   over TCP or TLS), `socks5://` (the name resolved locally) or `socks5h://` (resolved by the
//!   proxy) URLs, with `user:password@` or [`ClientBuilder::proxy_credentials`] (HTTP Basic or
//!   SOCKS5 username/password).
//! - Without an explicit proxy, the environment is followed: `HTTPS_PROXY` for `wss://`,
//!   `HTTP_PROXY` for `ws://`, `ALL_PROXY` for both (lower-case names first), and `NO_PROXY`
//!   (names with their subdomains, IPs, CIDR ranges, `*`). [`ClientBuilder::no_proxy`] replaces
//!   `NO_PROXY`; [`ClientBuilder::proxy_from_env`]`(false)` ignores the environment.
//! - Failures are typed ([`ProxyError`](error::ProxyError)): rejected credentials are not
//!   retried, an unreachable proxy is, and a refused `CONNECT` keeps its HTTP status (5xx is
//!   retried, 403 is not).
//!
//! ```no_run
//! # fn run() -> Result<(), resocket::Error> {
//! let (client, messages) = resocket::Client::builder("wss://feed.internal.example/ws")
//!     .add_root_certificate_pem(std::fs::read("corp-ca.pem").unwrap())
//!     .client_identity_pem(
//!         std::fs::read("client.pem").unwrap(),
//!         std::fs::read("client.key").unwrap(),
//!     )
//!     .proxy("http://proxy.corp.example:3128")
//!     .proxy_credentials("alice", "s3cret")
//!     .spawn()?;
//! # Ok(()) }
//! ```
//!
//! [tokio-tungstenite]: https://docs.rs/tokio-tungstenite

mod client;
mod close_code;
mod codec;
mod config;
mod connection;
mod endpoints;
pub mod error;
pub mod extension;
pub mod handshake;
mod inbound;
mod observe;
mod queue;
pub mod retry;
mod state;
mod supervisor;
mod transport;

#[cfg(feature = "hub")]
pub mod hub;

pub use client::{Client, ClientBuilder};
pub use close_code::CloseCode;
pub use config::{ClientConfig, QueuePolicy};
pub use endpoints::RequestContext;
pub use error::{Error, Result, SendError};
pub use inbound::{Ended, Messages};
pub use observe::{Events, FanOut, RecvError, StatusWatch, TryRecvError};
pub use resocket_proto::deflate::{ClientDeflateConfig, Negotiated, NegotiationError, WindowBits};
pub use state::{ConnectionEvent, ConnectionState, Counters, DropReason, Snapshot, Status};
pub use supervisor::Supervisor;
pub use tokio_tungstenite::tungstenite::{protocol::CloseFrame, Bytes, Message, Utf8Bytes};
pub use transport::TlsBackend;

/// The rustls version the builder's [`ClientBuilder::rustls_config`] takes, re-exported so a
/// custom config is built with the same one.
#[cfg(feature = "__rustls-tls")]
pub use rustls;

/// The native-tls version the builder's [`ClientBuilder::native_tls_connector`] takes,
/// re-exported so a custom connector is built with the same one.
#[cfg(feature = "native-tls")]
pub use native_tls;

/// The common imports: `use resocket::prelude::*;`.
pub mod prelude {
    pub use crate::{
        extension::{Extension, ExtensionContext, Verdict},
        handshake::{Auth, Chain, ChannelFormat, HandshakeError, Handshaker, Matcher, Subscribe},
        retry::{Backoff, ExponentialBackoff},
        Client, ClientConfig, CloseCode, ConnectionEvent, ConnectionState, Ended, Error, Message,
        Messages, QueuePolicy, SendError,
    };
}

/// The crate README's example (the crates.io page), compiled as a doctest so it stays true. It
/// is the crate's own README, inside the package, so the doctests also run from the package.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
