//! `ClientConfig`: plain data with documented defaults, and its presets.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use resocket_proto::deflate::ClientDeflateConfig;

use crate::{retry::ExponentialBackoff, Message};

/// What happens to messages sent while the client is not `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueuePolicy {
    /// They wait in the queue and are written, in order, once the client is `Ready` again. When
    /// the queue is full, `try_send` fails and `send` waits. The default.
    #[default]
    Queue,
    /// Sends fail at once with [`SendError::NotConnected`](crate::SendError::NotConnected).
    Reject,
    /// They wait, but when the queue is full the oldest waiting message is dropped to make room,
    /// and a [`ConnectionEvent::Dropped`](crate::ConnectionEvent::Dropped) reports it. For feeds
    /// where only the latest values matter.
    DropOldest,
}

/// Every tunable of a client. Each field names its default; the presets change several at once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Time allowed for TCP connect, TLS and the HTTP upgrade together. Default 10 s.
    pub connect_timeout: Duration,
    /// Time allowed for the application handshake (auth, subscriptions). Default 10 s.
    pub handshake_timeout: Duration,
    /// Heartbeat: send a Ping this often. `None` turns heartbeats off. Default 20 s.
    pub ping_interval: Option<Duration>,
    /// Heartbeat: the connection is dead if nothing arrives this long after a Ping. Default 20 s.
    pub pong_timeout: Duration,
    /// An application-level heartbeat (for example `{"op":"ping"}`), sent on the ping schedule
    /// instead of a Ping frame; any frame received counts as the answer. Text or Binary only
    /// (`build()` refuses a control frame: a Close here would end every connection on the
    /// schedule). Default `None`.
    pub heartbeat_message: Option<Message>,
    /// Reconnect if no frame at all arrives for this long. Default `None` (off).
    pub idle_timeout: Option<Duration>,
    /// `TCP_NODELAY`. Default `true`: messages are batched by the writer already.
    pub tcp_nodelay: bool,
    /// TCP keepalive idle time. Default 30 s; `None` turns keepalive off.
    pub tcp_keepalive: Option<Duration>,
    /// The largest message accepted from the server. Default 64 MiB.
    pub max_message_size: Option<usize>,
    /// The largest frame accepted from the server. Default 16 MiB.
    pub max_frame_size: Option<usize>,
    /// The read buffer's size during a burst: one read from the socket takes up to this much.
    /// Default 128 KiB. A quiet connection reads into 4 KiB and grows to this size when a read
    /// fills its buffer.
    pub read_buffer_size: usize,
    /// The write buffer: frames are coalesced up to this size before a write. Default 128 KiB.
    /// Large payloads are batched too; one of half this size or more (8 KiB at least) that
    /// nothing else holds goes out from its own buffer, masked in place, with one vectored write.
    pub write_buffer_size: usize,
    /// permessage-deflate (RFC 7692): what the upgrade request offers. Default: on
    /// (`enabled: true`), offering `permessage-deflate; client_max_window_bits` at zlib level 6,
    /// as browsers and Python `websockets` do; a server that does not answer with the extension
    /// gets an uncompressed connection. Set `enabled` to `false` to send no offer. Inflated
    /// messages are bounded by `max_message_size` as they inflate. A `Sec-WebSocket-Extensions`
    /// header set by the caller (a header, the endpoint's request or the request factory)
    /// replaces the offer: the client then offers nothing of its own, and fails the upgrade if
    /// the server accepts any extension, which it could not speak.
    pub compression: ClientDeflateConfig,
    /// The outbound queue's bound in messages. Default 1024.
    pub queue_capacity: usize,
    /// The outbound queue's bound in payload bytes. Default 8 MiB.
    pub queue_max_bytes: usize,
    /// What sends do while not `Ready`. Default [`QueuePolicy::Queue`].
    pub queue_policy: QueuePolicy,
    /// The inbound buffer's bound in messages; past it the client stops reading the socket, so
    /// TCP flow control slows the server. Default 1024: with 1 KiB messages that is 1 MiB in
    /// flight, which stays in a core's cache; 4096 received 1 KiB bursts 15–25 % slower.
    pub inbound_capacity: usize,
    /// The inbound buffer's bound in payload bytes (approximate: checked per batch). Default
    /// 1 MiB, for the same reason as `inbound_capacity`: received messages are slices of the
    /// read buffers, which are reused once the user has dropped their messages, and with 1 MiB
    /// in flight they come round while still in the cache. Measured on 16 KiB bursts: 0.10 M
    /// msgs/s with 8 MiB, 0.23 M with 1 MiB (`BENCHMARKS.md`).
    ///
    /// While closing, the client reads on until the server's Close without waiting for the
    /// user, and holds up to this bound and `inbound_capacity` once more; what arrives past it is
    /// counted ([`ConnectionEvent::Discarded`](crate::ConnectionEvent::Discarded)).
    pub inbound_max_bytes: usize,
    /// Capacity of the optional fan-out to several receivers ([`Client::fan_out`](crate::Client::fan_out));
    /// a receiver that falls this far behind is told how many it missed. Default `None` (off).
    pub fan_out_capacity: Option<usize>,
    /// A connection must stay `Ready` this long before the backoff starts over. Default 10 s.
    pub stable_after: Duration,
    /// How long `close()` waits for the server's Close frame, and how long the client waits for
    /// the server to close TCP after the server's own Close (then it disconnects with that Close
    /// as the reason). Default 5 s.
    pub close_timeout: Duration,
    /// Whether `close()` first writes the messages already queued. Default `true`.
    pub drain_on_close: bool,
    /// If the very first attempt fails, stop instead of retrying (later drops still reconnect).
    /// With several endpoints, the first attempt on each: the client stops once every endpoint
    /// failed once. Default `false`.
    pub exit_on_first_failure: bool,
    /// Whether to connect again after a connection ends. Default `true`. With `false` (for
    /// one-shot clients, scripts and test agents) the first end of any kind ends the client:
    /// a failed connect, a dropped socket, a heartbeat timeout or a server Close all end it with
    /// that error as the reason ([`Client::closed`](crate::Client::closed) returns it, not
    /// [`Error::RetriesExhausted`](crate::Error::RetriesExhausted)), except a server Close with
    /// code 1000 (normal closure), which ends it cleanly: `closed()` returns `Ok`. The backoff
    /// and the retry classifier are not consulted, and with several endpoints only the first
    /// is tried. Also
    /// [`ClientBuilder::no_reconnect`](crate::ClientBuilder::no_reconnect).
    pub reconnect: bool,
    /// Delays between attempts. Default [`ExponentialBackoff::standard`]: 1 s to 60 s, doubling,
    /// equal jitter. [`ClientBuilder::backoff`](crate::ClientBuilder::backoff) replaces it with any
    /// [`Backoff`](crate::retry::Backoff).
    pub backoff: ExponentialBackoff,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(20),
            heartbeat_message: None,
            idle_timeout: None,
            tcp_nodelay: true,
            tcp_keepalive: Some(Duration::from_secs(30)),
            max_message_size: Some(64 << 20),
            max_frame_size: Some(16 << 20),
            read_buffer_size: 128 << 10,
            write_buffer_size: 128 << 10,
            compression: ClientDeflateConfig::default(),
            queue_capacity: 1024,
            queue_max_bytes: 8 << 20,
            queue_policy: QueuePolicy::Queue,
            inbound_capacity: 1024,
            inbound_max_bytes: 1 << 20,
            fan_out_capacity: None,
            stable_after: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            drain_on_close: true,
            exit_on_first_failure: false,
            reconnect: true,
            backoff: ExponentialBackoff::standard(),
        }
    }
}

impl ClientConfig {
    /// For feeds where a gap costs money: fast backoff (100 ms to 5 s), heartbeat every 5 s with
    /// a 5 s timeout, 5 s connect timeout, stable after 5 s.
    pub fn fast_reconnect() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            ping_interval: Some(Duration::from_secs(5)),
            pong_timeout: Duration::from_secs(5),
            stable_after: Duration::from_secs(5),
            backoff: ExponentialBackoff::fast(),
            ..ClientConfig::default()
        }
    }

    /// For long-lived links to servers that must not be stormed: conservative backoff (2 s to
    /// 120 s), heartbeat every 30 s with a 30 s timeout, 30 s connect timeout, stable after 30 s.
    pub fn stable_connection() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(30),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(30),
            stable_after: Duration::from_secs(30),
            backoff: ExponentialBackoff::conservative(),
            ..ClientConfig::default()
        }
    }

    pub(crate) fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_message_size(self.max_message_size)
            .max_frame_size(self.max_frame_size)
    }

    pub(crate) fn validate(&self) -> Result<(), crate::error::ConfigError> {
        use crate::error::ConfigError::Zero;
        let checks = [
            (self.queue_capacity, "queue_capacity"),
            (self.queue_max_bytes, "queue_max_bytes"),
            (self.inbound_capacity, "inbound_capacity"),
            (self.inbound_max_bytes, "inbound_max_bytes"),
            (self.read_buffer_size, "read_buffer_size"),
            (self.fan_out_capacity.unwrap_or(1), "fan_out_capacity"),
        ];
        for (value, name) in checks {
            if value == 0 {
                return Err(Zero(name));
            }
        }
        if self.ping_interval.is_some_and(|d| d.is_zero()) {
            return Err(Zero("ping_interval"));
        }
        if self.connect_timeout.is_zero() {
            return Err(Zero("connect_timeout"));
        }
        if self
            .heartbeat_message
            .as_ref()
            .is_some_and(|m| !(m.is_text() || m.is_binary()))
        {
            return Err(crate::error::ConfigError::NotData("heartbeat_message"));
        }
        Ok(())
    }
}
