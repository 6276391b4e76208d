//! The codec's settings: which end of the connection it plays, its size limits, and the
//! permessage-deflate parameters the upgrade agreed on.

use super::deflate::Negotiated;

/// Which end of the connection the codec plays (RFC 6455, 5.1 and 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Masks every frame it writes with a fresh random key; refuses masked frames.
    Client,
    /// Requires every frame it reads to be masked; writes unmasked frames.
    Server,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

/// The codec's role, limits and compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Which end of the connection this is. Default: set by [`Config::client`] or
    /// [`Config::server`].
    pub role: Role,
    /// The largest message, in payload bytes, fragments joined; `None` for no limit. Default:
    /// 64 MiB.
    pub max_message_size: Option<usize>,
    /// The largest single frame, in payload bytes; `None` for no limit. Default: 16 MiB.
    pub max_frame_size: Option<usize>,
    /// The read buffer's size during a burst (it starts at 4 KiB and grows to this when a read
    /// fills it). Default: 128 KiB.
    pub read_buffer_size: usize,
    /// Frames are coalesced up to this many bytes before they are written. Default: 128 KiB.
    /// Large payloads are batched too. A client's payload of half this size or more (8 KiB at
    /// least) that nothing else holds, and a server's of 8 KiB or more, go out from their own
    /// buffer with one vectored write, uncopied.
    pub write_buffer_size: usize,
    /// permessage-deflate (RFC 7692) as the upgrade negotiated it (see
    /// [`deflate`](crate::deflate)): data messages are then compressed as they are written, and
    /// messages whose first frame has RSV1 set are inflated as they are read, up to
    /// `max_message_size`. `None`: no extension, and RSV1 on any frame is a protocol error.
    /// Default: `None`.
    pub compression: Option<Negotiated>,
    /// The zlib level of outgoing compressed messages, 0 (stored) to 9 (smallest, slowest);
    /// higher is taken as 9. Unused without `compression`. Default: 6.
    pub compression_level: u8,
    /// Let the read buffer go whenever the socket has nothing more and every byte read was
    /// parsed, outside bursts: an idle connection then holds no read buffer, and the first
    /// read after a quiet spell goes through a small buffer on the stack and is copied into a
    /// fresh one. For servers holding many mostly idle connections. Default: `false` (an idle
    /// connection keeps 4 KiB).
    pub release_idle_buffer: bool,
}

impl Config {
    /// The default limits, in the client role.
    pub fn client() -> Config {
        Config::with_role(Role::Client)
    }

    /// The default limits, in the server role.
    pub fn server() -> Config {
        Config::with_role(Role::Server)
    }

    fn with_role(role: Role) -> Config {
        Config {
            role,
            max_message_size: Some(64 << 20),
            max_frame_size: Some(16 << 20),
            read_buffer_size: 128 << 10,
            write_buffer_size: 128 << 10,
            compression: None,
            compression_level: 6,
            release_idle_buffer: false,
        }
    }
}
