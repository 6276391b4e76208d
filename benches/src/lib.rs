//! Shared pieces of the `client` benchmark (`benches/client.rs`): loopback servers, the
//! contenders (raw tokio-tungstenite, resocket, peer crates), timing and the printed report.
//!
//! Every contender talks to its own in-process tokio-tungstenite server on `127.0.0.1:0`, so
//! the server side is identical for all of them and only the client code differs.

pub mod measure;
pub mod peer_stream_tungstenite;
pub mod peer_tokio_websockets;
pub mod raw;
pub mod report;
pub mod resocket_client;
pub mod server;

use std::{
    future::Future,
    pin::Pin,
    time::{Duration, Instant},
};

/// A boxed future; contenders are kept as trait objects so that rounds can be interleaved.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A throughput case: one round moves `n` messages and reports how long that took.
pub trait Throughput: Send + 'static {
    /// Runs one round of `n` messages and returns its duration. Panics if a message is lost,
    /// so a contender cannot look fast by skipping work.
    fn round(&mut self, n: u64) -> BoxFut<'_, Duration>;
}

/// A latency case: one round makes `n` round trips, one in flight at a time.
pub trait RoundTrip: Send + 'static {
    /// Runs `n` round trips and returns the duration of each.
    fn round(&mut self, n: u64) -> BoxFut<'_, Vec<Duration>>;
}

/// A recovery case: a connected client whose server is about to be stopped and restarted.
pub trait Recover: Send + 'static {
    /// Waits until user code has the next message (the greeting a [`server::Mode::Greet`]
    /// server sends on every new connection) and returns when it had it.
    fn greeting(&mut self) -> BoxFut<'_, Instant>;
}
