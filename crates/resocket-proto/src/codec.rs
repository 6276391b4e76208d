//! The WebSocket frame layer of a live connection, after the upgrade, in either role.
//!
//! Someone else performs the HTTP upgrade (tokio-tungstenite in the client, the server's HTTP
//! stack in a server); from the first frame on, the socket belongs to [`WsStream`]. It is
//! resocket's own because the frame layer is where the receive path spends its time, and the
//! connection task reads whole batches:
//!
//! - frames are parsed in place in the read buffer, and a batch of data messages is sliced out
//!   of it with one `split_to` and one reference count per message (`read.rs`), where
//!   tungstenite moves each message through its own read buffer and tokio-tungstenite
//!   re-registers the task's waker on every message (a fifth of the profile at 64 B);
//! - frames are encoded and masked straight into one write buffer (`write.rs`); a large payload
//!   goes out at once, behind its header in one vectored write when it can be masked in place.
//!
//! Messages, close frames and errors are tungstenite's types, so nothing above this layer
//! changes with it. The close handshake follows RFC 6455, section 7: a received Close is
//! answered with the same code and the answer is flushed; whatever the peer sends after its
//! Close is dropped unread (a data frame there never reaches the application, nor does a
//! message left unfinished before the Close). The client's stream ends when the server closes
//! TCP after both Close frames; the server's ends once both Close frames are through, for the
//! server to close TCP.
//!
//! The per-frame helpers that are not generic (header parsing, UTF-8, encoding, masking) are
//! `#[inline]`: the client calls them from another crate, where without it each frame paid a
//! call (measured at 64 B: 16.3 M msgs/s inlined within one crate, 14.2 M across crates without
//! `#[inline]`, back to 16 M with it).
//!
//! The role ([`Role`]) decides masking only: a client masks what it writes and refuses masked
//! frames, a server requires masked frames (unmasking them in place) and writes unmasked.
//!
//! Every Ping is answered, up to [`PONG_BURST`] Pongs between two flushes; past that, only the
//! latest Ping is (RFC 6455, 5.5.3 allows it), from one slot. So a peer that floods Pings and
//! never reads cannot make the write buffer grow: the buffer holds data up to
//! `write_buffer_size` (plus the one message that crossed it), at most `PONG_BURST + 1` Pongs
//! (about 2 KiB) and one Close. Reading does not stop while the buffer is full: a peer that only
//! reads once its own writes are through (a plain echo loop) would otherwise deadlock with the
//! client, and nothing the reader does adds to the buffer beyond those Pongs.

mod config;
pub mod deflate;
mod mask;
mod read;
mod utf8;
mod write;

pub use config::{Config, Role};

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tungstenite::{
    error::ProtocolError,
    protocol::{frame::coding::CloseCode, CloseFrame},
    Bytes, Error as WsError, Message,
};

use deflate::Negotiated;
use read::{Control, FrameReader, ReadLimits, Step, RESERVED, RESERVED_WITH_DEFLATE};
use write::FrameWriter;

/// How many Pings in a row are each answered before a flush; past it, the latest is. A few
/// Pings in one packet all get their Pong (peers such as Autobahn's check for it), and the
/// bound keeps a flood from growing the write buffer.
const PONG_BURST: u8 = 16;

/// Where the close handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    /// We sent a Close and wait for the peer's.
    ClosedByUs,
    /// The peer sent a Close; ours answers it.
    ClosedByPeer,
    /// Both Close frames are through; only the end of the TCP stream is left (the client's
    /// wait for the server to close it).
    CloseAcknowledged,
}

/// What a read step brought in.
#[derive(Debug)]
pub enum Incoming {
    /// A data message of this many payload bytes went into the batch (0 for a fragment that
    /// does not complete one).
    Data(usize),
    /// A Ping, answered already (its Pong waits to be written: see
    /// [`WsStream::wants_flush`]).
    Ping,
    /// A Pong, with its payload.
    Pong(Bytes),
    /// The peer's Close, answered already (the reply waits to be written).
    Close(Option<CloseFrame>),
}

/// A WebSocket connection over `S`, from the first frame on.
#[derive(Debug)]
pub struct WsStream<S> {
    io: S,
    reader: FrameReader,
    writer: FrameWriter,
    /// The Pong owed for the latest Ping, not yet in the write buffer. One slot, not a queue:
    /// once [`PONG_BURST`] Pongs wait unflushed, a Ping replaces the previous one's Pong here
    /// (RFC 6455, 5.5.3 allows answering only the most recent Ping), so a peer that floods
    /// Pings and never reads cannot grow the write buffer.
    pong: Option<Bytes>,
    /// Pongs encoded since the last completed flush.
    pongs_unflushed: u8,
    state: State,
    role: Role,
    compression: Option<Negotiated>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Takes over `io` after the upgrade; `already_read` are the bytes that arrived behind the
    /// upgrade (the request or the response).
    pub fn new(io: S, already_read: &[u8], config: impl Into<Config>) -> WsStream<S> {
        let config = config.into();
        let limits = ReadLimits {
            role: config.role,
            max_frame: config.max_frame_size,
            max_message: config.max_message_size,
            burst_buffer: config.read_buffer_size,
            reserved: if config.compression.is_some() {
                RESERVED_WITH_DEFLATE
            } else {
                RESERVED
            },
            release_idle: config.release_idle_buffer,
        };
        let role = config.role;
        let vectored = io.is_write_vectored();
        WsStream {
            io,
            // Both zlib states are built on first use: an idle connection holds neither.
            reader: FrameReader::with_compression(limits, already_read, config.compression),
            writer: FrameWriter::with_compression(
                role,
                config.write_buffer_size,
                config.compression,
                config.compression_level,
                vectored,
            ),
            compression: config.compression,
            pong: None,
            pongs_unflushed: 0,
            state: State::Active,
            role: config.role,
        }
    }

    /// Reads one frame and acts on it. Data messages go into `batch`, which is given room for
    /// `capacity` messages when it has none; call [`WsStream::seal`] before the batch leaves.
    /// `Ok(None)` is the end of the stream after the close handshake.
    ///
    /// # Errors
    ///
    /// A protocol violation by the peer, a limit crossed, invalid UTF-8, or an I/O error; the
    /// connection is then unusable.
    #[inline]
    pub fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut Vec<Message>,
        capacity: usize,
    ) -> Poll<Result<Option<Incoming>, WsError>> {
        if matches!(self.state, State::ClosedByPeer | State::CloseAcknowledged) {
            return self.poll_after_close(cx).map_ok(|()| None);
        }
        let incoming = match ready!(self.reader.poll_step(&mut self.io, cx, batch, capacity))? {
            Step::Eof => {
                return Poll::Ready(Err(ProtocolError::ResetWithoutClosingHandshake.into()))
            }
            Step::Data(len) => Incoming::Data(len),
            Step::Control(Control::Ping(payload)) => {
                if self.state == State::Active {
                    self.answer_ping(payload);
                }
                Incoming::Ping
            }
            Step::Control(Control::Pong(payload)) => Incoming::Pong(payload),
            Step::Control(Control::Close(close)) => {
                if self.state == State::Active {
                    // Echo the code, unless it is one a peer may not send (RFC 6455, 7.4).
                    let reply = close.as_ref().map(|frame| {
                        if frame.code.is_allowed() {
                            frame.clone()
                        } else {
                            CloseFrame {
                                code: CloseCode::Protocol,
                                reason: "Protocol violation".into(),
                            }
                        }
                    });
                    self.place_pong();
                    self.writer.close(reply.as_ref());
                    self.state = State::ClosedByPeer;
                } else {
                    self.state = State::CloseAcknowledged;
                }
                Incoming::Close(close)
            }
        };
        Poll::Ready(Ok(Some(incoming)))
    }

    /// Once the peer's Close is in: our Close goes out, then nothing the peer sends counts.
    /// A data frame behind a Close is not part of the connection (RFC 6455, 5.5.1: the peer
    /// sends nothing after its Close), so it is dropped unparsed, with a message left
    /// unfinished before the Close. The server ends the stream as soon as its Close is
    /// written, to close TCP itself (RFC 6455, 7.1.1); the client waits for the server to.
    fn poll_after_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        ready!(self.poll_flush(cx))?;
        if self.role == Role::Server {
            return Poll::Ready(Ok(()));
        }
        match ready!(self.reader.poll_discard(&mut self.io, cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            // After both Close frames a reset is just how the server hung up (as tungstenite).
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(WsError::Io(e))),
        }
    }

    /// The permessage-deflate parameters in force, from [`Config::compression`].
    pub fn compression(&self) -> Option<Negotiated> {
        self.compression
    }

    /// Slices the batch's messages out of the read buffer.
    pub fn seal(&mut self, batch: &mut [Message]) {
        self.reader.seal(batch);
    }

    /// Encodes a frame that was encoded already, for this role and this connection's
    /// extensions (unmasked in the server role; RSV1 only where permessage-deflate was
    /// negotiated), so one encoding serves many connections: its bytes are copied into the
    /// write buffer as they are. Call [`WsStream::poll_ready`] first, as for
    /// [`WsStream::start_send`].
    ///
    /// # Errors
    ///
    /// [`ProtocolError::SendAfterClosing`] after a Close either way.
    pub fn start_send_encoded(&mut self, frame: &[u8]) -> Result<(), WsError> {
        if self.state != State::Active {
            return Err(ProtocolError::SendAfterClosing.into());
        }
        self.writer.encoded(frame);
        Ok(())
    }

    /// Whether data messages may still be sent: no Close has gone either way.
    pub fn accepts_data(&self) -> bool {
        self.state == State::Active
    }

    /// Whether frames wait to be written: a Pong or a Close reply.
    pub fn wants_flush(&self) -> bool {
        self.writer.pending() > 0 || self.pong.is_some()
    }

    /// Encodes the Pong for a Ping at once, within the burst; past it, leaves it in the slot.
    fn answer_ping(&mut self, payload: Bytes) {
        if self.pong.is_none() && self.pongs_unflushed < PONG_BURST {
            self.writer.encode(&Message::Pong(payload));
            self.pongs_unflushed += 1;
        } else {
            self.pong = Some(payload);
        }
    }

    /// Encodes the owed Pong, if any, behind what the write buffer holds.
    fn place_pong(&mut self) {
        if let Some(payload) = self.pong.take() {
            self.writer.encode(&Message::Pong(payload));
        }
    }

    /// Whether another message may be encoded now: the write buffer is below its size, or was
    /// written out to below it.
    ///
    /// # Errors
    ///
    /// The socket's write error.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.writer
            .poll_ready(&mut self.io, cx)
            .map_err(WsError::Io)
    }

    /// Encodes a message. After a Close, only another Close is accepted (and ignored).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::SendAfterClosing`] for a data message after a Close.
    pub fn start_send(&mut self, msg: Message) -> Result<(), WsError> {
        match (&msg, self.state) {
            (Message::Close(_), State::Active) => {
                // The owed Pong goes before our Close: nothing may follow a Close.
                self.place_pong();
                self.writer.encode(&msg);
                self.state = State::ClosedByUs;
                Ok(())
            }
            (Message::Close(_), _) => Ok(()),
            (_, State::Active) => {
                self.writer.encode_owned(msg);
                Ok(())
            }
            _ => Err(ProtocolError::SendAfterClosing.into()),
        }
    }

    /// Writes out everything encoded, and the owed Pong, and flushes the socket.
    ///
    /// # Errors
    ///
    /// The socket's write error (not a hang-up after the peer's Close: the handshake is over).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        loop {
            // The slot's Pong joins the buffer only once everything before it is written, so
            // while the socket takes nothing, the next Ping replaces it instead of adding a
            // frame.
            if self.pong.is_some() && self.writer.pending() == 0 {
                self.place_pong();
            }
            ready!(self.poll_flush_buffer(cx))?;
            self.pongs_unflushed = 0;
            if self.pong.is_none() {
                return Poll::Ready(Ok(()));
            }
        }
    }

    fn poll_flush_buffer(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        match ready!(self.writer.poll_flush(&mut self.io, cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            // The peer sent its Close and hung up before our answer went out: the close
            // handshake is over all the same, and the read side reports the end.
            Err(e)
                if matches!(self.state, State::ClosedByPeer | State::CloseAcknowledged)
                    && is_hang_up(&e) =>
            {
                self.writer.discard();
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(WsError::Io(e))),
        }
    }
}

/// Whether a write failed because the peer has closed the connection.
fn is_hang_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Message by message, with control frames, as tokio-tungstenite's stream yields them: for the
/// application handshake, which reads a few frames. The connection reads batches instead.
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsStream<S> {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.wants_flush() {
                // Answers to pings go out even while the handshake only reads.
                if let Poll::Ready(Err(e)) = this.poll_flush(cx) {
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let mut batch = Vec::new();
            let incoming = match ready!(this.poll_step(cx, &mut batch, 1)) {
                Ok(Some(incoming)) => incoming,
                Ok(None) => return Poll::Ready(None),
                Err(e) => return Poll::Ready(Some(Err(e))),
            };
            this.seal(&mut batch);
            let msg = match incoming {
                Incoming::Data(_) => match batch.pop() {
                    Some(msg) => msg,
                    // A fragment: the message is not complete yet.
                    None => continue,
                },
                Incoming::Ping => continue,
                Incoming::Pong(payload) => Message::Pong(payload),
                Incoming::Close(close) => Message::Close(close),
            };
            return Poll::Ready(Some(Ok(msg)));
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsStream<S> {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.get_mut().poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), WsError> {
        self.get_mut().start_send(msg)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.get_mut().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        ready!(this.poll_flush(cx))?;
        Pin::new(&mut this.io)
            .poll_shutdown(cx)
            .map_err(|e: io::Error| WsError::Io(e))
    }
}

#[cfg(test)]
mod tests {
    use resocket_testkit::raw_frame;
    use tokio::io::ReadBuf;

    use super::*;

    /// Reads `wire`, then the end of the stream if `eof`, or nothing; takes writes only while
    /// `writable`.
    struct Peer {
        wire: Vec<u8>,
        at: usize,
        eof: bool,
        writable: bool,
        written: Vec<u8>,
    }

    impl Peer {
        fn new(wire: Vec<u8>, eof: bool) -> Peer {
            Peer {
                wire,
                at: 0,
                eof,
                writable: true,
                written: Vec::new(),
            }
        }
    }

    impl AsyncRead for Peer {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = buf.remaining().min(self.wire.len() - self.at);
            if n == 0 && !self.eof {
                return Poll::Pending;
            }
            let at = self.at;
            buf.put_slice(&self.wire[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Peer {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if !self.writable {
                return Poll::Pending;
            }
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn pings_the_socket_cannot_answer_leave_a_bounded_burst_of_pongs_and_the_latest() {
        let wire: Vec<u8> = (0..10_000u32)
            .flat_map(|i| raw_frame(true, 0x9, &i.to_be_bytes()))
            .collect();
        let peer = Peer {
            writable: false,
            ..Peer::new(wire, false)
        };
        let mut ws = WsStream::new(peer, &[], Config::client());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut pings = 0;
        loop {
            // As the connection does: a flush attempt after every read.
            if ws.wants_flush() {
                assert!(ws.poll_flush(&mut cx).is_pending());
            }
            match ws.poll_step(&mut cx, &mut Vec::new(), 16) {
                Poll::Ready(Ok(Some(Incoming::Ping))) => pings += 1,
                Poll::Pending => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(pings, 10_000);
        // The burst of Pong frames (2 header bytes, 4 of mask, 4 of payload each) waits, and
        // the slot holds one more.
        let burst = usize::from(PONG_BURST);
        assert_eq!(ws.writer.pending(), burst * 10);
        ws.io.writable = true;
        assert!(ws.poll_flush(&mut cx).is_ready());
        let written = &ws.io.written;
        let frames = written.len() / 10;
        assert_eq!(frames, burst + 1, "Pongs for one blocked socket");
        let last = &written[written.len() - 10..];
        assert_eq!(last[0], 0x8A, "a Pong");
        let unmasked: Vec<u8> = (0..4).map(|i| last[6 + i] ^ last[2 + i]).collect();
        assert_eq!(unmasked, 9_999u32.to_be_bytes(), "answers the latest Ping");
    }

    /// Steps through everything `ws` reads, as the connection does (sealing each batch, no
    /// flush of its own); returns the data messages and how it ended.
    fn drive<S: AsyncRead + AsyncWrite + Unpin>(
        ws: &mut WsStream<S>,
    ) -> (Vec<Message>, Poll<Result<(), WsError>>) {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut messages = Vec::new();
        for _ in 0..100 {
            let mut batch = Vec::new();
            let step = ws.poll_step(&mut cx, &mut batch, 16);
            ws.seal(&mut batch);
            messages.append(&mut batch);
            match step {
                Poll::Ready(Ok(Some(_))) => {}
                Poll::Ready(Ok(None)) => return (messages, Poll::Ready(Ok(()))),
                Poll::Ready(Err(e)) => return (messages, Poll::Ready(Err(e))),
                Poll::Pending => return (messages, Poll::Pending),
            }
        }
        panic!("the stream never ended");
    }

    /// Autobahn 2.10.
    #[test]
    fn every_ping_of_a_few_in_one_read_is_answered() {
        let wire: Vec<u8> = (0..10u8).flat_map(|i| raw_frame(true, 0x9, &[i])).collect();
        let mut ws = WsStream::new(Peer::new(wire, false), &[], Config::client());
        let (_, end) = drive(&mut ws);
        assert!(end.is_pending());
        let waker = futures_util::task::noop_waker();
        assert!(ws.poll_flush(&mut Context::from_waker(&waker)).is_ready());
        let payloads: Vec<u8> = ws.io.written.chunks(7).map(|f| f[6] ^ f[2]).collect();
        assert_eq!(payloads, (0..10).collect::<Vec<u8>>());
    }

    fn close_1000() -> Vec<u8> {
        raw_frame(true, 0x8, &1000u16.to_be_bytes())
    }

    /// Autobahn 7.1.4.
    #[test]
    fn data_after_the_peers_close_never_reaches_the_application() {
        let mut wire = close_1000();
        wire.extend(raw_frame(true, 0x1, b"Hello World!"));
        let mut ws = WsStream::new(Peer::new(wire, true), &[], Config::client());
        let (messages, end) = drive(&mut ws);
        assert_eq!(messages, vec![]);
        assert!(matches!(end, Poll::Ready(Ok(()))), "{end:?}");
    }

    /// Autobahn 7.1.5.
    #[test]
    fn a_message_fragmented_across_the_close_never_reaches_the_application() {
        let mut wire = raw_frame(false, 0x1, b"fragment1");
        wire.extend(close_1000());
        wire.extend(raw_frame(true, 0x0, b"fragment2"));
        let mut ws = WsStream::new(Peer::new(wire, true), &[], Config::client());
        let (messages, end) = drive(&mut ws);
        assert_eq!(messages, vec![]);
        assert!(matches!(end, Poll::Ready(Ok(()))), "{end:?}");
    }

    /// Autobahn 7.1.2 to 7.1.5: the close is clean only if our Close goes out.
    #[test]
    fn the_close_reply_is_flushed_and_what_follows_is_ignored() {
        let mut wire = raw_frame(true, 0x2, b"before");
        wire.extend(close_1000());
        wire.extend(raw_frame(true, 0x9, b"ping after"));
        wire.extend(raw_frame(true, 0x1, b"text after"));
        wire.extend([0xFF; 7]);
        let mut ws = WsStream::new(Peer::new(wire, true), &[], Config::client());
        let (messages, end) = drive(&mut ws);
        assert_eq!(messages, vec![Message::binary(&b"before"[..])]);
        assert!(matches!(end, Poll::Ready(Ok(()))), "{end:?}");
        let written = &ws.io.written;
        assert_eq!(
            written.len(),
            8,
            "one masked Close, nothing else: {written:?}"
        );
        assert_eq!(written[..2], [0x88, 0x82]);
        let code: Vec<u8> = (0..2).map(|i| written[6 + i] ^ written[2 + i]).collect();
        assert_eq!(code, 1000u16.to_be_bytes());
    }

    #[test]
    fn server_role_ends_the_stream_once_its_close_reply_is_written() {
        let mut client = FrameWriter::new(Role::Client, 1 << 10, None, false);
        client.encode(&Message::text("hi"));
        client.close(Some(&CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        }));
        // The client never closes TCP: the server does, once the handshake is through.
        let peer = Peer::new(client.written_for_test().to_vec(), false);
        let mut ws = WsStream::new(peer, &[], Config::server());
        let (messages, end) = drive(&mut ws);
        assert_eq!(messages, vec![Message::text("hi")]);
        assert!(matches!(end, Poll::Ready(Ok(()))), "{end:?}");
        assert_eq!(
            ws.io.written,
            [0x88, 0x02, 0x03, 0xE9],
            "an unmasked Close 1001"
        );
    }
}
