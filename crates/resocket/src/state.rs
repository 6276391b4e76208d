//! Connection state, lifecycle events, counters and snapshots.
//!
//! The supervisor owns the truth and publishes it three ways: a `watch` of [`Status`] (the latest
//! state, for `ready()`/`closed()` and dashboards), a `broadcast` of [`ConnectionEvent`] (every
//! transition, for logs and tests), and [`Stats`], plain atomics that the hot path bumps once per
//! batch and anyone can read without a lock.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{CloseFrame, Error, Negotiated};

/// Where the client is in its lifecycle.
///
/// `Idle → Connecting → Handshaking → Ready → (Disconnected → BackingOff → Connecting …) → Closed`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Built, not started.
    Idle,
    /// Opening TCP, TLS and the WebSocket upgrade; `attempt` counts from 1 in this retry cycle.
    Connecting {
        /// Attempt number in the current retry cycle.
        attempt: u32,
    },
    /// Upgraded; the application handshake (auth, subscriptions) is running.
    Handshaking,
    /// Handshake done, the queue is flowing. The only state in which `is_connected()` is true.
    Ready,
    /// The connection ended; the reason decides whether to retry.
    Disconnected {
        /// Why it ended.
        reason: Error,
    },
    /// Waiting before the next attempt.
    BackingOff {
        /// The attempt that will follow the wait.
        attempt: u32,
        /// How long the wait is.
        delay: Duration,
    },
    /// Finished for good: closed by the user, or a permanent failure (see [`Status::error`]).
    Closed,
}

impl ConnectionState {
    fn code(&self) -> u8 {
        match self {
            ConnectionState::Idle => 0,
            ConnectionState::Connecting { .. } => 1,
            ConnectionState::Handshaking => 2,
            ConnectionState::Ready => 3,
            ConnectionState::Disconnected { .. } => 4,
            ConnectionState::BackingOff { .. } => 5,
            ConnectionState::Closed => 6,
        }
    }

    /// Whether this is `Ready`.
    pub fn is_ready(&self) -> bool {
        matches!(self, ConnectionState::Ready)
    }

    /// Whether this is `Closed`.
    pub fn is_closed(&self) -> bool {
        matches!(self, ConnectionState::Closed)
    }
}

/// One lifecycle transition or notable occurrence, as broadcast by the supervisor.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A connection attempt started.
    #[non_exhaustive]
    Connecting {
        /// Attempt number in the current retry cycle (from 1).
        attempt: u32,
        /// The endpoint it goes to: its URL without credentials or query.
        endpoint: Arc<str>,
    },
    /// The upgrade succeeded; the application handshake runs next.
    Handshaking,
    /// The client is `Ready`.
    Ready {
        /// Whether this is a re-establishment (every `Ready` after the first).
        reconnect: bool,
    },
    /// The connection ended, or an attempt failed.
    Disconnected {
        /// Why.
        reason: Error,
        /// Messages that had been handed to the socket but whose flush never completed: they
        /// may or may not have reached the peer. Zero in the common case.
        unconfirmed: u64,
    },
    /// Waiting before the next attempt.
    BackingOff {
        /// The attempt that follows.
        attempt: u32,
        /// How long.
        delay: Duration,
    },
    /// Outbound messages were dropped: by the `DropOldest` policy, or because the client closed
    /// with messages still queued.
    Dropped {
        /// How many.
        count: u64,
        /// Why.
        reason: DropReason,
    },
    /// Received data messages were discarded: the application was not taking messages, and
    /// they arrived while the client was closing (which reads on until the server's Close), or
    /// were left by a handshake, past a second inbound bound (`inbound_capacity` messages and
    /// `inbound_max_bytes`, beside the stream's own). Published once per close, before
    /// `Closed`, or once per handshake; also counted in [`Counters::discarded`].
    Discarded {
        /// How many messages.
        count: u64,
    },
    /// The client finished. `error` is set for a permanent failure.
    Closed {
        /// The permanent failure, if that is why it closed.
        error: Option<Error>,
    },
}

/// Why outbound messages were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The `DropOldest` policy made room while disconnected.
    DropOldest,
    /// The client closed before they could be written.
    Shutdown,
}

/// The latest lifecycle facts, from [`Client::status`](crate::Client::status).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The current state.
    pub state: ConnectionState,
    /// The attempt number in the current retry cycle (0 before the first).
    pub attempt: u32,
    /// The endpoint of the current or latest attempt (its URL without credentials or query),
    /// `None` before the first.
    pub endpoint: Option<Arc<str>>,
    /// Re-establishments: every `Ready` after the first.
    pub reconnects: u64,
    /// When the current connection became `Ready`.
    pub connected_at: Option<Instant>,
    /// The most recent error (a failed attempt or a disconnect).
    pub last_error: Option<Error>,
    /// The most recent Close frame received from the server.
    pub last_close: Option<CloseFrame>,
    /// Set when the client closed because of a permanent failure.
    pub error: Option<Error>,
    /// permessage-deflate as the current or latest connection negotiated it; `None` when it
    /// went uncompressed, or before the first.
    pub compression: Option<Negotiated>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: ConnectionState::Idle,
            attempt: 0,
            endpoint: None,
            reconnects: 0,
            connected_at: None,
            last_error: None,
            last_close: None,
            error: None,
            compression: None,
        }
    }
}

/// Lock-free counters and the state code, shared by the supervisor and every handle.
///
/// Writers bump them once per batch (not per message); readers use relaxed loads, since each
/// figure is independent and only needs to be eventually exact.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    state: AtomicU8,
    /// Set by the first handle that asks to close; never cleared.
    close_requested: AtomicBool,
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) unconfirmed: AtomicU64,
    pub(crate) rtt_micros: AtomicU64,
    pub(crate) pings: AtomicU64,
}

impl Stats {
    pub(crate) fn set_state(&self, state: &ConnectionState) {
        self.state.store(state.code(), Relaxed);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.state.load(Relaxed) == 3
    }

    /// Records that a handle asked to close.
    pub(crate) fn request_close(&self) {
        self.close_requested.store(true, Relaxed);
    }

    /// Whether a handle asked to close.
    pub(crate) fn is_close_requested(&self) -> bool {
        self.close_requested.load(Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }

    pub(crate) fn counters(&self) -> Counters {
        let rtt = self.rtt_micros.load(Relaxed);
        Counters {
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
            unconfirmed: self.unconfirmed.load(Relaxed),
            pings: self.pings.load(Relaxed),
            rtt: (rtt > 0).then(|| Duration::from_micros(rtt)),
        }
    }
}

/// Traffic counters over the client's whole life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Data messages received (Text and Binary).
    pub messages_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Data messages handed to the socket.
    pub messages_out: u64,
    /// Payload bytes handed to the socket.
    pub bytes_out: u64,
    /// Outbound messages dropped (see [`ConnectionEvent::Dropped`]).
    pub dropped: u64,
    /// Received messages discarded past the inbound bound while closing or after a handshake
    /// (see [`ConnectionEvent::Discarded`]).
    pub discarded: u64,
    /// Outbound messages whose flush never completed before a disconnect.
    pub unconfirmed: u64,
    /// Heartbeat pings sent.
    pub pings: u64,
    /// The latest heartbeat round-trip time.
    pub rtt: Option<Duration>,
}

/// A point-in-time view of the client: status plus counters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Snapshot {
    /// The current state.
    pub state: ConnectionState,
    /// The attempt number in the current retry cycle.
    pub attempt: u32,
    /// The endpoint of the current or latest attempt (its URL without credentials or query),
    /// `None` before the first: while `Ready`, the endpoint connected to.
    pub endpoint: Option<Arc<str>>,
    /// Re-establishments so far.
    pub reconnects: u64,
    /// When the current connection became `Ready`.
    pub connected_at: Option<Instant>,
    /// How long the current connection has been `Ready`.
    pub uptime: Option<Duration>,
    /// The most recent error.
    pub last_error: Option<Error>,
    /// The most recent Close frame from the server.
    pub last_close: Option<CloseFrame>,
    /// Traffic counters.
    pub counters: Counters,
    /// permessage-deflate as the current or latest connection negotiated it (window sizes,
    /// context takeover each way); `None` when it went uncompressed, or before the first.
    pub compression: Option<Negotiated>,
}

impl Snapshot {
    pub(crate) fn new(status: &Status, stats: &Stats) -> Snapshot {
        let connected_at = status
            .state
            .is_ready()
            .then_some(status.connected_at)
            .flatten();
        Snapshot {
            state: status.state.clone(),
            attempt: status.attempt,
            endpoint: status.endpoint.clone(),
            reconnects: status.reconnects,
            connected_at,
            uptime: connected_at.map(|t| t.elapsed()),
            last_error: status.last_error.clone(),
            last_close: status.last_close.clone(),
            counters: stats.counters(),
            compression: status.compression,
        }
    }
}
