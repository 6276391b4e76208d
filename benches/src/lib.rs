//! Shared pieces of the `client` benchmark (`benches/client.rs`): loopback servers, the
//! contenders (raw tokio-tungstenite, resocket, peer crates), timing and the printed report;
//! and the JSON feed and permessage-deflate server of the compressed receive case.
//!
//! Every contender talks to its own in-process tokio-tungstenite server on `127.0.0.1:0`, so
//! the server side is identical for all of them and only the client code differs.

pub mod feed;
pub mod measure;
pub mod peer_stream_tungstenite;
pub mod peer_tokio_websockets;
pub mod peer_yawc;
pub mod raw;
pub mod raw_tcp;
pub mod report;
pub mod resocket_client;
pub mod server;

/// The workspace README's example, compiled as a doctest so it stays true. It lives here, in a
/// crate that is never published, because the README is outside every published package.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct WorkspaceReadmeDoctests;

use std::{
    future::Future,
    pin::Pin,
    time::{Duration, Instant},
};

/// What a receiving contender expects of each payload, and what its user code does with it.
#[derive(Debug, Clone, Copy)]
pub struct Payload {
    /// Every payload must have this many bytes.
    pub size: usize,
    /// The work done per payload.
    pub consumer: Consumer,
}

/// The user code's work per received payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// Checks the length only, so that the figure is the library's own cost.
    LengthOnly,
    /// Reads every byte, as a parser would: FNV-1a over the payload, a serial chain of one
    /// multiply per byte (about 2 µs per KiB here, the order of a JSON parse).
    ReadAll,
}

impl Payload {
    /// Checks a received payload and does the consumer's work on it.
    pub fn take(&self, data: &[u8]) {
        assert_eq!(data.len(), self.size, "payload of the wrong size");
        if self.consumer == Consumer::ReadAll {
            std::hint::black_box(fnv1a(data));
        }
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

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
