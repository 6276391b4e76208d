//! The resocket hub: a pub/sub WebSocket server with history, recovery and guards.
//!
//! Clients connect to `GET /ws` (subprotocol `resocket.v1`), subscribe to rooms and publish
//! JSON messages. Every room numbers its messages with a growing offset and keeps a bounded
//! history, so a client that reconnects with `since` gets exactly what it missed, or is told
//! it cannot. Publishes are acknowledged with their offset and applied once per message id.
//! Tokens, an origin allow-list, size and rate limits, byte-bounded outbound queues and
//! server pings keep one client from hurting the others. The wire protocol is in
//! `PROTOCOL.md`; its frame types are [`resocket::hub::protocol`].
//!
//! ```no_run
//! use resocket_hub::{Hub, Token};
//!
//! # async fn run() -> resocket_hub::Result<()> {
//! let secret = "at least sixteen bytes of secret";
//! let token = Token::new("alice").subscribe("news.*").publish("news.*").sign(secret.as_bytes());
//! println!("connect with: Authorization: Bearer {token}");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! Hub::builder().jwt_secret(secret).serve(listener).await
//! # }
//! ```
//!
//! Tokens are JWTs: HS256 under the hub's secret, or RS*, PS*, ES* and EdDSA under an
//! identity provider's public keys, from PEM files or a JWKS file that is reread when it
//! changes ([`HubBuilder::jwks_file`]), with optional `iss` and `aud` rules.
//!
//! Routes: `/ws`, `/healthz`, `/metrics` (Prometheus text), `/` (a live dashboard) and, with
//! an admin secret, `POST /admin/revoke`.
//! To mount the hub in an existing axum app, use [`Hub::router`].
//!
//! Rooms live in this process by default. With [`HubBuilder::redis`] they live in Redis, and
//! several hub processes serve the same rooms: a client may publish, subscribe and recover on
//! any of them (see "Several hub nodes" in `PROTOCOL.md`).
//!
//! This crate has no cargo features.

mod accept;
mod budget;
mod config;
mod connection;
mod engine;
mod error;
mod file_watch;
mod frame;
mod glob;
mod health;
mod http;
mod hub;
mod keys;
mod latency;
mod metrics;
mod nodes;
mod outbox;
mod rate;
mod registry;
mod revocation;
mod room;
mod stats;
mod tls;
mod token;
mod wire;

pub use config::{HubBuilder, OriginPolicy};
pub use error::{Error, Result, TokenError};
pub use hub::Hub;
pub use keys::JwtAlgorithm;
pub use metrics::rss_bytes;
pub use nodes::NODES_ROOM;
pub use stats::STATS_ROOM;
pub use tls::server_config_from_pem;
pub use token::{sign, Claims, Token};

/// The hub's wire protocol, re-exported from the client crate.
pub use resocket::hub::protocol;

/// The README's example (the crates.io page), compiled as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
