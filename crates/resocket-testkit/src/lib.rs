//! Servers and proxies that misbehave on purpose, for testing resilient WebSocket clients.
//!
//! Everything binds `127.0.0.1:0`, never a fixed port, and stops with its handle.
//!
//! - [`TestServer`]: an in-process WebSocket server whose [`Behavior`] decides what each
//!   connection gets: echo, silence, a close right after the upgrade, an HTTP rejection, a dead
//!   peer, a burst of messages, or a handler of your own. Everything it sees comes back as
//!   [`ServerEvent`]s.
//! - [`FaultProxy`]: a TCP proxy that cuts, refuses, black-holes, stalls or delays the traffic
//!   between any client and server.
//! - [`Exchange`]: an exchange-style feed that demands auth, confirms subscriptions, sends
//!   ticks and application-level pings.
//! - [`raw_frame`]: a server frame as raw bytes, valid or not, for servers written by hand.
//! - [`PeerServer`]: Python `websockets` or Node `ws` as a child process, an independent
//!   implementation of RFC 6455 to test against.
//! - [`RedisServer`] (Unix): a throwaway `redis-server` on a unix socket, for the hub's
//!   Redis engine.
//! - [`RedisCluster`] (Unix): a throwaway three-master Redis Cluster on free ports, and which
//!   shard holds a key.
//! - [`raise_open_file_limit`] (Unix): the soft open-file limit up to the hard one, for
//!   tests that hold thousands of sockets.
//! - `TestPki` (feature `pki`): a private CA made at test time, with rustls server configs
//!   (plain or mTLS) and client identities, for `wss://` tests.
//!
//! # Example
//!
//! ```
//! use futures_util::{SinkExt, StreamExt};
//! use resocket_testkit::{Behavior, Message, TestServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut server = TestServer::start(Behavior::Echo).await;
//! let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
//! let (mut ws, _) = tokio_tungstenite::client_async(server.url(), tcp).await.unwrap();
//!
//! ws.send(Message::text("hello")).await.unwrap();
//! assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
//! assert_eq!(server.next_message().await, (0, Message::text("hello")));
//! # }
//! ```
//!
//! # Features
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `pki` | on | `TestPki`, a private CA made with rcgen at test time |
//!
//! Without `pki` the servers still serve `wss://` with any rustls config you pass
//! ([`TestServer::start_tls`]); only the certificate generator (and rcgen) is left out.
//! TLS uses rustls with the ring provider, passed explicitly, so no process-level default
//! provider is needed.

mod behavior;
mod exchange;
mod guard;
#[cfg(unix)]
mod limits;
mod peer;
mod proxy;
mod raw_frame;
#[cfg(unix)]
mod redis;
#[cfg(unix)]
mod redis_cluster;
mod server;
mod tasks;
#[cfg(feature = "pki")]
mod tls;

pub use behavior::{Behavior, Conn};
pub use exchange::Exchange;
pub use guard::{closed_port, within};
#[cfg(unix)]
pub use limits::raise_open_file_limit;
pub use peer::{Peer, PeerServer};
pub use proxy::{Direction, Fault, FaultProxy};
pub use raw_frame::raw_frame;
#[cfg(unix)]
pub use redis::RedisServer;
#[cfg(unix)]
pub use redis_cluster::RedisCluster;
pub use server::{ServerEvent, ServerStream, TestServer};
#[cfg(feature = "pki")]
pub use tls::TestPki;
pub use tokio_tungstenite::tungstenite::protocol::CloseFrame;
pub use tokio_tungstenite::tungstenite::Message;

/// The README's example (the crates.io page), compiled as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
