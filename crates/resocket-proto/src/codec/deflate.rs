//! permessage-deflate (RFC 7692): negotiating it in the upgrade, and compressing and inflating
//! message payloads once it is on.
//!
//! The module knows nothing of frames or sockets. A connection uses it in two steps:
//!
//! 1. **Negotiation**: the client sends [`offer`] in its
//!    `Sec-WebSocket-Extensions` request header and checks the server's answer with
//!    [`accept_response`]; a server picks the first offer it can take with [`answer`]. Both
//!    yield a [`Negotiated`]: the window size and context takeover of each direction.
//! 2. **Messages**: a [`Deflater`] compresses each outgoing message whole (raw DEFLATE, sync
//!    flush, the trailing `00 00 ff ff` removed, RFC 7692 section 7.2.1); an [`Inflater`] takes
//!    the payload of an incoming compressed message one fragment at a time and inflates it,
//!    bounded by the message size limit as it goes (section 7.2.2).
//!
//! The frame layer owns the rest of the RFC: RSV1 is set on the first frame of a compressed
//! message only; RSV1 on a continuation frame or a control frame, or on any frame when nothing
//! was negotiated, is a protocol error (section 6 and RFC 6455, section 5.2).
//!
//! The DEFLATE engine is zlib-rs through `flate2`: pure Rust, and unlike miniz_oxide it honours
//! window sizes below 32 KiB.

mod deflater;
mod header;
mod inflater;
mod negotiation;
#[cfg(test)]
mod tests;

use std::fmt;

pub use deflater::{DeflateError, Deflater};
pub use inflater::{InflateError, Inflater};
pub use negotiation::{
    accept_response, answer, offer, ClientDeflateConfig, NegotiationError, ServerDeflateConfig,
};

/// The extension token in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// Which end of the connection a [`Deflater`] or [`Inflater`] sits on: the codec's own.
pub use super::Role;

/// The base-2 logarithm of an LZ77 sliding window: 8 (256 bytes) to 15 (32 KiB), as RFC 7692
/// allows in `server_max_window_bits` and `client_max_window_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowBits(u8);

impl WindowBits {
    /// The smallest window RFC 7692 allows: 256 bytes.
    pub const MIN: WindowBits = WindowBits(8);
    /// The largest window, and the one that applies when nothing limits it: 32 KiB.
    pub const MAX: WindowBits = WindowBits(15);

    /// `bits` as a window size, or `None` outside 8..=15.
    pub const fn new(bits: u8) -> Option<WindowBits> {
        if bits >= Self::MIN.0 && bits <= Self::MAX.0 {
            Some(WindowBits(bits))
        } else {
            None
        }
    }

    /// The number of bits, 8 to 15.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl Default for WindowBits {
    /// 15: what applies when no `*_max_window_bits` parameter limits a direction.
    fn default() -> WindowBits {
        WindowBits::MAX
    }
}

impl fmt::Display for WindowBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What one direction of a connection agreed on: how the sender compresses its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Direction {
    /// The sender's LZ77 window is at most this large, so the receiver needs no more.
    pub window_bits: WindowBits,
    /// The sender starts every message with an empty window: no message refers back to an
    /// earlier one, so one compressed message can be sent as is on any connection that agreed
    /// on the same `Direction`.
    pub no_context_takeover: bool,
}

/// permessage-deflate as agreed in the upgrade: the parameters of RFC 7692, section 7.1, with
/// the defaults filled in (15 bits and context takeover where the handshake said nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Negotiated {
    /// `server_no_context_takeover`: the server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`: the client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits`: the largest window the server compresses with.
    pub server_max_window_bits: WindowBits,
    /// `client_max_window_bits`: the largest window the client compresses with.
    pub client_max_window_bits: WindowBits,
}

impl Negotiated {
    /// How messages sent by `sender` are compressed.
    pub fn sent_by(&self, sender: Role) -> Direction {
        match sender {
            Role::Client => Direction {
                window_bits: self.client_max_window_bits,
                no_context_takeover: self.client_no_context_takeover,
            },
            Role::Server => Direction {
                window_bits: self.server_max_window_bits,
                no_context_takeover: self.server_no_context_takeover,
            },
        }
    }
}

impl Default for Negotiated {
    /// A bare `permessage-deflate`: 15-bit windows and context takeover both ways.
    fn default() -> Negotiated {
        Negotiated {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: WindowBits::MAX,
            client_max_window_bits: WindowBits::MAX,
        }
    }
}
