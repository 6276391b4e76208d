//! The read half of the frame codec: frames parsed in place (unmasked in place in the server
//! role), data messages sliced out of the read buffer without a copy.
//!
//! The socket is read straight into a `BytesMut`. Frames are parsed where they lie, and a batch
//! of complete data messages is handed out by [`FrameReader::seal`]: one `split_to().freeze()`
//! per batch, then a `slice` (a reference count increment) per message. The bytes after the
//! batch stay in the same allocation and the next read lands behind them, so no byte is moved
//! on the way from the socket to the user; only the partial frame at the end of a full buffer
//! is copied into the next one. A batch that used only a sliver of a large buffer is copied
//! out instead (a right-sized copy), so a message kept for long pins its own bytes, not 64 KiB.
//!
//! When a buffer is full while the user still holds messages in it, the reader moves to another
//! one and keeps the old one aside: once the user has dropped those messages
//! (`BytesMut::try_reclaim` says so), it is reused. A fresh allocation per buffer cost page
//! faults and cache misses on every line the socket copied into (measured: 260 000 page faults
//! per 16 KiB burst run, against 2 000 with reuse, and half the throughput).
//!
//! The buffer adapts, as hyper's does: it starts at 4 KiB, jumps to the burst size
//! (`read_buffer_size`, 128 KiB by default) when a read fills it, and goes back to 4 KiB (and
//! lets the buffers kept aside go) after a run of small reads. An idle connection holds 4 KiB.
//!
//! Everything RFC 6455 asks of an endpoint reading is checked here: reserved bits, masking as the
//! role requires, unknown opcodes, fragmented or oversized control frames, continuation order,
//! the 64-bit length's top bit, frame and message size limits, and UTF-8 of Text payloads and
//! Close reasons. A Text message's UTF-8 is checked as its bytes arrive, fragment by fragment
//! and within a frame not yet complete (`utf8.rs`), so a bad byte fails the connection at once.
//! Errors are tungstenite's own types, so the error mapping is the same as with tungstenite's
//! reader.
//!
//! With permessage-deflate negotiated, a message whose first frame has RSV1 set is inflated
//! fragment by fragment into a buffer kept for the connection, bounded by the message
//! size limit as it inflates (a decompression bomb fails with
//! [`CapacityError::MessageTooLong`], the 1009 class; data that is not DEFLATE with an
//! `InvalidData` I/O error whose source is the [`InflateError`], the 1007 class). The message
//! is split off that buffer and handed out without a copy; the buffer's remaining room takes
//! the next messages, so one allocation serves many small ones. Its UTF-8 is checked on the
//! inflated bytes as they come, the last frame's with the whole message, once. RSV1 on a
//! continuation or control frame, or when nothing was negotiated, is
//! [`ProtocolError::NonZeroReservedBits`]. An uncompressed message takes the path above,
//! unchanged.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};

use super::{
    deflate::{InflateError, Inflater, Negotiated},
    mask::apply_mask,
    utf8::{utf8_error, Utf8Check},
    Role,
};
use tokio::io::{AsyncRead, ReadBuf};
use tungstenite::{
    error::{CapacityError, ProtocolError},
    protocol::{frame::coding::Data, CloseFrame},
    Error as WsError, Message, Utf8Bytes,
};

/// The buffer size while reads are small.
const MIN_BUFFER: usize = 4 << 10;

/// This many reads in a row of less than `MIN_BUFFER / 4` shrink the buffer back to
/// `MIN_BUFFER`.
const SMALL_READS_TO_SHRINK: u8 = 8;

/// A batch whose messages took less than 1/`SPARSE` of the buffer is copied out.
const SPARSE: usize = 16;

/// How many buffers the user still holds messages in are kept for reuse: room for the default
/// inbound bound (1 MiB) in 128 KiB buffers.
const RETIRED_BUFFERS: usize = 12;

/// The reserved header bits (RSV1 to RSV3), all refused when no extension is negotiated.
pub(crate) const RESERVED: u8 = 0x70;
/// The reserved bits refused with permessage-deflate, which defines RSV1 (RFC 7692, section 6).
pub(crate) const RESERVED_WITH_DEFLATE: u8 = 0x30;
/// RSV1: the frame starts a compressed message.
const RSV1: u8 = 0x40;

/// The room the inflate buffer is given at a time. Messages are inflated one after the other
/// into it and split off as they end, so one allocation serves many small messages, and a
/// message kept for long pins at most this much besides its own bytes.
const INFLATE_CHUNK: usize = 16 << 10;
/// Less room than this left in the inflate buffer: it gets a fresh chunk (or its own back, if
/// the user has dropped every message in it) before the next frame inflates.
const INFLATE_LOW: usize = 4 << 10;

/// The opcodes of RFC 6455, section 5.2.
mod opcode {
    pub(super) const CONTINUATION: u8 = 0x0;
    pub(super) const TEXT: u8 = 0x1;
    pub(super) const BINARY: u8 = 0x2;
    pub(super) const CLOSE: u8 = 0x8;
    pub(super) const PING: u8 = 0x9;
    pub(super) const PONG: u8 = 0xA;
}

/// The reader's role and limits, from [`Config`](super::Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    /// Decides which masking is required.
    pub(crate) role: Role,
    pub(crate) max_frame: Option<usize>,
    pub(crate) max_message: Option<usize>,
    /// The buffer size during a burst.
    pub(crate) burst_buffer: usize,
    /// The header bits a frame must leave clear: [`RESERVED`], or [`RESERVED_WITH_DEFLATE`].
    pub(crate) reserved: u8,
    /// Drop the buffer while idle ([`Config::release_idle_buffer`](super::Config)).
    pub(crate) release_idle: bool,
}

/// The stack buffer the first read after a quiet spell goes through, when the read buffer
/// was let go.
const PROBE: usize = 1024;

/// A control frame, for the stream layer to act on.
#[derive(Debug)]
pub(crate) enum Control {
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<CloseFrame>),
}

/// What one step of reading produced.
#[derive(Debug)]
pub(crate) enum Step {
    /// A complete data message of this many bytes went into the batch, or a fragment was
    /// taken in (0).
    Data(usize),
    Control(Control),
    /// The server closed the TCP stream at a frame boundary.
    Eof,
}

/// A complete frame in the buffer: its payload is `buf[start..end]`.
#[derive(Debug, Clone, Copy)]
struct Frame {
    fin: bool,
    /// RSV1, allowed only with permessage-deflate.
    compressed: bool,
    opcode: u8,
    /// The masking key of a client's frame.
    mask: Option<[u8; 4]>,
    start: usize,
    end: usize,
}

/// The part of a text frame that was unmasked and checked while the rest had not arrived. It
/// belongs to the frame at `pos`; only text frames ever set it, so binary ones pay nothing.
#[derive(Debug, Default, Clone, Copy)]
struct Ahead {
    /// Payload bytes unmasked and fed to `utf8`.
    done: usize,
    /// The UTF-8 check of the message up to `done` (meaningful when `done > 0`).
    utf8: Utf8Check,
}

/// A data message parsed in place whose payload is not yet sliced out of the buffer.
#[derive(Debug, Clone, Copy)]
struct Placed {
    /// The message's slot in its batch, held by an empty placeholder until the batch seals.
    index: usize,
    start: usize,
    end: usize,
    text: bool,
}

/// A fragmented message being assembled.
#[derive(Debug)]
struct Partial {
    data: Vec<u8>,
    text: bool,
    /// The UTF-8 check of `data` (text only), or of the inflated bytes so far.
    utf8: Utf8Check,
    /// The message is compressed: `data` stays empty, the inflated bytes are in the
    /// [`Inflate`] buffer.
    compressed: bool,
}

/// A connection's decompressor and the buffer each compressed message is inflated into.
#[derive(Debug)]
struct Inflate {
    inflater: Inflater,
    out: BytesMut,
}

/// Reads frames from the socket and turns them into messages.
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// `buf[..pos]` is parsed, `buf[pos..]` is not yet.
    buf: BytesMut,
    pos: usize,
    placed: Vec<Placed>,
    /// Buffers given up while the user still held messages in them, oldest first.
    retired: VecDeque<BytesMut>,
    /// Whether `buf` was allocated at the buffer size (not for one larger frame).
    standard: bool,
    partial: Option<Partial>,
    /// The incomplete frame at `pos`, as far as it was checked.
    ahead: Ahead,
    eof: bool,
    /// The capacity the next allocation asks for.
    size: usize,
    small_reads: u8,
    limits: ReadLimits,
    /// With permessage-deflate: built on the first compressed message, so a connection that
    /// never gets one holds no zlib state.
    inflate: Option<Box<Inflate>>,
    /// What builds `inflate` when the first compressed message arrives.
    lazy_inflater: Option<(Negotiated, Option<usize>)>,
}

impl FrameReader {
    /// A reader whose buffer starts with `already_read`: bytes that came in with the upgrade
    /// response. `inflater` inflates compressed messages, when permessage-deflate is on.
    pub(crate) fn new(
        limits: ReadLimits,
        already_read: &[u8],
        inflater: Option<Inflater>,
    ) -> FrameReader {
        let mut buf = BytesMut::with_capacity(MIN_BUFFER.max(already_read.len()));
        buf.extend_from_slice(already_read);
        FrameReader {
            buf,
            pos: 0,
            placed: Vec::new(),
            retired: VecDeque::new(),
            standard: already_read.len() <= MIN_BUFFER,
            partial: None,
            ahead: Ahead::default(),
            eof: false,
            size: MIN_BUFFER,
            small_reads: 0,
            limits,
            inflate: inflater.map(|inflater| {
                Box::new(Inflate {
                    inflater,
                    out: BytesMut::new(),
                })
            }),
            lazy_inflater: None,
        }
    }

    /// A reader whose inflater, if `compression` is set, is built when the first compressed
    /// message arrives, bounded by the message size limit.
    pub(crate) fn with_compression(
        limits: ReadLimits,
        already_read: &[u8],
        compression: Option<Negotiated>,
    ) -> FrameReader {
        let mut reader = FrameReader::new(limits, already_read, None);
        reader.lazy_inflater = compression.map(|n| (n, limits.max_message));
        reader
    }

    /// Reads the next frame and acts on it: a data message goes into `batch` (possibly as a
    /// placeholder: call [`FrameReader::seal`] before the batch leaves), a control frame is
    /// returned. `Pending` only when the socket has nothing more. An empty `batch` is given
    /// room for `capacity` messages when the first one arrives, not before: the connection
    /// polls for reads on every wake-up, most of which bring nothing.
    pub(crate) fn poll_step<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        batch: &mut Vec<Message>,
        capacity: usize,
    ) -> Poll<Result<Step, WsError>> {
        let Some(frame) = ready!(self.poll_frame(io, cx, batch))? else {
            return Poll::Ready(Ok(Step::Eof));
        };
        if batch.capacity() == 0 && frame.fin && frame.opcode < 0x3 {
            batch.reserve_exact(capacity);
        }
        Poll::Ready(match frame.opcode {
            opcode::TEXT | opcode::BINARY => self.data_frame(&frame, batch),
            opcode::CONTINUATION => self.continuation(&frame, batch),
            opcode::CLOSE | opcode::PING | opcode::PONG => self.control(&frame).map(Step::Control),
            op @ 0x3..=0x7 => Err(ProtocolError::UnknownDataFrameType(op).into()),
            op => Err(ProtocolError::UnknownControlFrameType(op).into()),
        })
    }

    /// The first frame of a Text or Binary message: the whole message, placed in the batch where
    /// it lies, or the first fragment of one, or a compressed one to inflate.
    #[inline]
    fn data_frame(&mut self, frame: &Frame, batch: &mut Vec<Message>) -> Result<Step, WsError> {
        let text = frame.opcode == opcode::TEXT;
        if self.partial.is_some() {
            let data = if text { Data::Text } else { Data::Binary };
            return Err(ProtocolError::ExpectedFragment(data).into());
        }
        self.check_message_size(frame.end - frame.start)?;
        if frame.compressed {
            return self.inflate(frame, text, batch);
        }
        let ahead = if text {
            std::mem::take(&mut self.ahead)
        } else {
            Ahead::default()
        };
        if frame.fin {
            self.place(frame, text, ahead, batch)
        } else {
            self.first_fragment(frame, text, ahead)
        }
    }

    /// A whole uncompressed message: checked (Text), then held in the batch by a placeholder
    /// until [`FrameReader::seal`] slices its payload out of the buffer.
    #[inline]
    fn place(
        &mut self,
        frame: &Frame,
        text: bool,
        ahead: Ahead,
        batch: &mut Vec<Message>,
    ) -> Result<Step, WsError> {
        if ahead.done > 0 {
            let mut utf8 = ahead.utf8;
            utf8.feed(&self.buf[frame.start + ahead.done..frame.end])?;
            utf8.finish()?;
        } else if text {
            check_utf8(&self.buf[frame.start..frame.end])?;
        }
        self.placed.push(Placed {
            index: batch.len(),
            start: frame.start,
            end: frame.end,
            text,
        });
        // Neither placeholder allocates.
        batch.push(if text {
            Message::Text(Utf8Bytes::from_static(""))
        } else {
            Message::Binary(Bytes::new())
        });
        Ok(Step::Data(frame.end - frame.start))
    }

    /// The first fragment of an uncompressed message: copied out, to be joined by the rest.
    fn first_fragment(&mut self, frame: &Frame, text: bool, ahead: Ahead) -> Result<Step, WsError> {
        let data = self.buf[frame.start..frame.end].to_vec();
        let mut utf8 = ahead.utf8;
        if text {
            utf8.feed(&data[ahead.done..])?;
        }
        self.partial = Some(Partial {
            data,
            text,
            utf8,
            compressed: false,
        });
        Ok(Step::Data(0))
    }

    /// A continuation frame: joined to the message so far, which goes into the batch when this
    /// frame is its last.
    fn continuation(&mut self, frame: &Frame, batch: &mut Vec<Message>) -> Result<Step, WsError> {
        let Some(partial) = self.partial.as_mut() else {
            return Err(ProtocolError::UnexpectedContinueFrame.into());
        };
        // RSV1 marks the first frame of a compressed message only (RFC 7692, 6.1).
        if frame.compressed {
            return Err(ProtocolError::NonZeroReservedBits.into());
        }
        if partial.compressed {
            let text = partial.text;
            return self.inflate(frame, text, batch);
        }
        let total = partial.data.len() + frame.end - frame.start;
        if let Some(max) = self.limits.max_message {
            if total > max {
                return Err(too_long(total, max));
            }
        }
        // A text message fails on the fragment that breaks its UTF-8, not at its end
        // (RFC 6455, 8.1): the peer may never send the end.
        if partial.text {
            let ahead = std::mem::take(&mut self.ahead);
            if ahead.done > 0 {
                partial.utf8 = ahead.utf8;
            }
            let rest = &self.buf[frame.start + ahead.done..frame.end];
            partial.utf8.feed(rest)?;
            if frame.fin {
                partial.utf8.finish()?;
            }
        }
        partial
            .data
            .extend_from_slice(&self.buf[frame.start..frame.end]);
        if !frame.fin {
            return Ok(Step::Data(0));
        }
        let Partial { data, text, .. } = self.partial.take().expect("checked above");
        let data = Bytes::from(data);
        batch.push(if text {
            Message::Text(Utf8Bytes::try_from(data).map_err(|e| WsError::Utf8(e.to_string()))?)
        } else {
            Message::Binary(data)
        });
        Ok(Step::Data(total))
    }

    /// A Close, Ping or Pong frame, after the checks RFC 6455 asks of control frames.
    fn control(&mut self, frame: &Frame) -> Result<Control, WsError> {
        // All control frames MUST have a payload of 125 bytes or less and MUST NOT be
        // fragmented (RFC 6455, 5.5).
        if !frame.fin {
            return Err(ProtocolError::FragmentedControlFrame.into());
        }
        // Control frames are never compressed (RFC 7692, 6.1).
        if frame.compressed {
            return Err(ProtocolError::NonZeroReservedBits.into());
        }
        if frame.end - frame.start > 125 {
            return Err(ProtocolError::ControlFrameTooBig.into());
        }
        let payload = Bytes::copy_from_slice(&self.buf[frame.start..frame.end]);
        Ok(match frame.opcode {
            opcode::PING => Control::Ping(payload),
            opcode::PONG => Control::Pong(payload),
            _ => Control::Close(parse_close(payload)?),
        })
    }

    /// Inflates a frame of a compressed message (the first, with `text` from its opcode, or a
    /// continuation) onto the message so far; a message complete goes into `batch`.
    fn inflate(
        &mut self,
        frame: &Frame,
        text: bool,
        batch: &mut Vec<Message>,
    ) -> Result<Step, WsError> {
        if self.inflate.is_none() {
            if let Some((negotiated, max)) = self.lazy_inflater {
                self.inflate = Some(Box::new(Inflate {
                    inflater: Inflater::new(self.limits.role, &negotiated, max),
                    out: BytesMut::new(),
                }));
            }
        }
        let Some(inflate) = self.inflate.as_deref_mut() else {
            // RSV1 passes the header check only with permessage-deflate.
            return Err(ProtocolError::NonZeroReservedBits.into());
        };
        if inflate.out.capacity() - inflate.out.len() < INFLATE_LOW {
            inflate.out.reserve(INFLATE_CHUNK);
        }
        let before = inflate.out.len();
        inflate
            .inflater
            .inflate(
                &self.buf[frame.start..frame.end],
                frame.fin,
                &mut inflate.out,
            )
            .map_err(inflate_error)?;
        let mut utf8 = self.partial.as_ref().map(|p| p.utf8).unwrap_or_default();
        if text && !frame.fin {
            // On the inflated bytes: the compressed ones are not text. The last frame's are
            // checked with the whole message below, by the check `Utf8Bytes` makes anyway.
            utf8.feed(&inflate.out[before..])?;
        }
        if !frame.fin {
            self.partial = Some(Partial {
                data: Vec::new(),
                text,
                utf8,
                compressed: true,
            });
            return Ok(Step::Data(0));
        }
        self.partial = None;
        let len = inflate.out.len();
        // Handed out in place: the rest of the buffer's room takes the next messages.
        let data = inflate.out.split().freeze();
        batch.push(if text {
            Message::Text(Utf8Bytes::try_from(data).map_err(|e| utf8_error(e, 0))?)
        } else {
            Message::Binary(data)
        });
        Ok(Step::Data(len))
    }

    /// Reads and drops everything up to the end of the stream: what comes after the peer's
    /// Close. Frames already placed in a batch stay, for [`FrameReader::seal`]; the unparsed
    /// rest of the buffer, and a message left unfinished, are dropped. `Ok` at the end.
    pub(crate) fn poll_discard<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.partial = None;
        self.buf.truncate(self.pos);
        let mut scratch = [0u8; 2048];
        while !self.eof {
            let mut read = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
            self.eof = read.filled().is_empty();
        }
        Poll::Ready(Ok(()))
    }

    /// Slices every placed message out of the buffer. Call before `batch` leaves the reader.
    #[inline]
    pub(crate) fn seal(&mut self, batch: &mut [Message]) {
        let (Some(first), Some(last)) = (self.placed.first(), self.placed.last()) else {
            return;
        };
        let (base, shared) = if (last.end - first.start) * SPARSE < self.size {
            // A sliver of the buffer: a right-sized copy, and the buffer stays unshared.
            let copy = Bytes::copy_from_slice(&self.buf[first.start..last.end]);
            self.buf.advance(self.pos);
            (first.start, copy)
        } else {
            (0, self.buf.split_to(self.pos).freeze())
        };
        self.pos = 0;
        for placed in self.placed.drain(..) {
            let payload = shared.slice(placed.start - base..placed.end - base);
            batch[placed.index] = if placed.text {
                Message::Text(
                    Utf8Bytes::try_from(payload).expect("the payload was checked as UTF-8"),
                )
            } else {
                Message::Binary(payload)
            };
        }
    }

    /// The next complete frame, reading from the socket as needed; `None` at the end of the
    /// stream.
    fn poll_frame<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        batch: &mut [Message],
    ) -> Poll<Result<Option<Frame>, WsError>> {
        loop {
            let unparsed = &self.buf[self.pos..];
            let need = match parse_header(unparsed, &self.limits)? {
                Some((frame, total)) if total <= unparsed.len() => {
                    let frame = Frame {
                        start: self.pos + frame.start,
                        end: self.pos + frame.end,
                        ..frame
                    };
                    self.pos += total;
                    // Unmasked where it lies: the payload is then sliced out like a server's.
                    if let Some(key) = frame.mask {
                        let done = self.ahead.done;
                        apply_mask(
                            &mut self.buf[frame.start + done..frame.end],
                            key_at(key, done),
                        );
                    }
                    return Poll::Ready(Ok(Some(frame)));
                }
                Some((frame, total)) => {
                    self.check_ahead(&frame)?;
                    total
                }
                // At most 14 header bytes: one more is always worth asking for.
                None => unparsed.len() + 1,
            };
            if self.eof {
                return Poll::Ready(if self.pos == self.buf.len() {
                    Ok(None)
                } else {
                    Err(ProtocolError::ResetWithoutClosingHandshake.into())
                });
            }
            if self.buf.capacity() == 0 {
                ready!(self.poll_read_after_release(io, cx))?;
                continue;
            }
            self.make_room(batch, need);
            let spare = self.buf.capacity() - self.buf.len();
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut self.buf);
            let Poll::Ready(read) = read else {
                self.release_if_idle();
                return Poll::Pending;
            };
            let n = read?;
            self.adapt(n, spare);
            if n == 0 {
                self.eof = true;
            }
        }
    }

    /// Lets the buffer go when nothing in it is left to parse or slice, outside a burst
    /// (buffers kept for reuse during a burst stay), and with it an inflater that keeps no
    /// context between messages.
    fn release_if_idle(&mut self) {
        if self.limits.release_idle
            && self.pos == self.buf.len()
            && self.placed.is_empty()
            && self.size == MIN_BUFFER
            && self.retired.is_empty()
        {
            self.buf = BytesMut::new();
            self.pos = 0;
            self.standard = true;
            // Without context takeover nothing in the inflater outlives a message: it goes with
            // the buffer, and the next compressed message builds it again.
            if self.partial.is_none()
                && self
                    .inflate
                    .as_ref()
                    .is_some_and(|i| !i.inflater.keeps_context())
            {
                self.inflate = None;
            }
        }
    }

    /// The first read after the buffer was let go: into a small stack buffer, so a wake-up
    /// that brings nothing allocates nothing; what arrives goes into a fresh buffer.
    fn poll_read_after_release<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), WsError>> {
        let mut probe = [0u8; PROBE];
        let mut read = ReadBuf::new(&mut probe);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            self.eof = true;
        } else {
            self.buf = BytesMut::with_capacity(self.size.max(n));
            self.buf.extend_from_slice(read.filled());
            self.adapt(n, PROBE.min(self.size));
        }
        Poll::Ready(Ok(()))
    }

    /// Unmasks and checks the UTF-8 of what has arrived of an incomplete text frame (`frame`'s
    /// offsets relative to `pos`), so that a bad byte fails the connection when it arrives, not
    /// once the frame is complete: a peer may send a large frame slowly, or never finish it.
    fn check_ahead(&mut self, frame: &Frame) -> Result<(), WsError> {
        let utf8 = match (frame.opcode, &self.partial) {
            // A compressed message's UTF-8 is checked once it is inflated.
            (opcode::TEXT, None) if !frame.compressed => Utf8Check::default(),
            (opcode::CONTINUATION, Some(partial)) if partial.text && !partial.compressed => {
                partial.utf8
            }
            // Not text, or a protocol error that the complete frame reports.
            _ => return Ok(()),
        };
        let start = self.pos + frame.start;
        let here = (self.buf.len() - start.min(self.buf.len())).min(frame.end - frame.start);
        let done = self.ahead.done;
        if here <= done {
            return Ok(());
        }
        if done == 0 {
            self.ahead.utf8 = utf8;
        }
        let new = &mut self.buf[start + done..start + here];
        if let Some(key) = frame.mask {
            apply_mask(new, key_at(key, done));
        }
        self.ahead.utf8.feed(new)?;
        self.ahead.done = here;
        Ok(())
    }

    /// Makes room for `need` unparsed bytes and a worthwhile read after them.
    fn make_room(&mut self, batch: &mut [Message], need: usize) {
        let unparsed = self.buf.len() - self.pos;
        let spare = self.buf.capacity() - self.buf.len();
        // A large frame gets room as its bytes arrive, doubling, not all that its header
        // claims: the claim alone must not make the client allocate (up to `max_frame_size`,
        // or without bound when that is `None`).
        let need = need.min(unparsed.saturating_mul(2).max(self.size));
        let wanted = (need - unparsed.min(need)).max(self.size / 4);
        if spare >= wanted {
            return;
        }
        // Placed messages go out with what is parsed; only the unparsed tail is carried over.
        self.seal(batch);
        if self.pos > 0 {
            self.buf.advance(self.pos);
            self.pos = 0;
        }
        let size = self.size.max(need);
        let additional = (size - self.buf.len()).max(wanted);
        // In place, when no message holds the buffer any more.
        if self.buf.try_reclaim(additional) {
            return;
        }
        // Otherwise the oldest retired buffer, once its messages are all gone, or a new one;
        // only the unparsed tail is copied over. A reused buffer is still in the cache and
        // its pages are mapped, where a fresh one costs the allocator a trip to the kernel
        // (page faults, heap trimming) and the socket's copy a cache miss on every line.
        let reusable = self
            .retired
            .front_mut()
            .is_some_and(|old| old.try_reclaim(size));
        let mut next = if reusable {
            self.retired.pop_front().expect("checked non-empty")
        } else {
            BytesMut::with_capacity(size)
        };
        next.extend_from_slice(&self.buf);
        let mut old = std::mem::replace(&mut self.buf, next);
        // A buffer sized for one huge frame is not kept: it would hold its memory for reuse.
        let old_standard = std::mem::replace(&mut self.standard, reusable || size == self.size);
        if self.size > MIN_BUFFER && old_standard {
            old.clear();
            if self.retired.len() == RETIRED_BUFFERS {
                self.retired.pop_front();
            }
            self.retired.push_back(old);
        }
    }

    /// Grows the buffer size after a read that filled the free space; shrinks it after a run of
    /// small reads.
    fn adapt(&mut self, n: usize, spare: usize) {
        if n == spare && n > 0 {
            self.size = self.limits.burst_buffer.max(MIN_BUFFER);
            self.small_reads = 0;
        } else if n < MIN_BUFFER / 4 {
            self.small_reads = self.small_reads.saturating_add(1);
            if self.small_reads >= SMALL_READS_TO_SHRINK && self.size > MIN_BUFFER {
                self.size = MIN_BUFFER;
                self.retired = VecDeque::new();
                if self.placed.is_empty() && self.buf.capacity() > MIN_BUFFER {
                    // A fresh small buffer: the large one goes once its messages are dropped.
                    let mut small = BytesMut::with_capacity(MIN_BUFFER.max(self.buf.len()));
                    small.extend_from_slice(&self.buf[self.pos..]);
                    self.buf = small;
                    self.standard = true;
                    self.pos = 0;
                }
            }
        } else {
            self.small_reads = 0;
        }
    }

    #[inline]
    fn check_message_size(&self, len: usize) -> Result<(), WsError> {
        match self.limits.max_message {
            Some(max) if len > max => Err(too_long(len, max)),
            _ => Ok(()),
        }
    }
}

/// A compressed message that could not be inflated: too big (the 1009 class, as a message over
/// the limit), or not DEFLATE (the 1007 class, with the [`InflateError`] as the source).
fn inflate_error(e: InflateError) -> WsError {
    match e {
        InflateError::TooBig { limit } => too_long(limit.saturating_add(1), limit),
        e => WsError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    }
}

fn too_long(size: usize, max_size: usize) -> WsError {
    WsError::Capacity(CapacityError::MessageTooLong { size, max_size })
}

/// The masking key as it applies from payload byte `offset` on.
fn key_at(mut key: [u8; 4], offset: usize) -> [u8; 4] {
    key.rotate_left(offset % 4);
    key
}

#[inline]
fn check_utf8(bytes: &[u8]) -> Result<(), WsError> {
    std::str::from_utf8(bytes)
        .map(drop)
        .map_err(|e| WsError::Utf8(e.to_string()))
}

/// Parses a frame header at the start of `buf`. Returns the frame (payload offsets relative to
/// `buf`) and its total length, or `None` when the header is not complete yet.
#[inline]
fn parse_header(buf: &[u8], limits: &ReadLimits) -> Result<Option<(Frame, usize)>, WsError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    // MUST be 0 unless an extension defines them (RFC 6455, 5.2): RSV1 is permessage-deflate's.
    if b0 & limits.reserved != 0 {
        return Err(ProtocolError::NonZeroReservedBits.into());
    }
    let masked = b1 & 0x80 != 0;
    match limits.role {
        // A client MUST close a connection if it detects a masked frame (RFC 6455, 5.1).
        Role::Client if masked => return Err(ProtocolError::MaskedFrameFromServer.into()),
        // A server MUST close the connection upon receiving an unmasked frame (RFC 6455, 5.1).
        Role::Server if !masked => return Err(ProtocolError::UnmaskedFrameFromClient.into()),
        _ => {}
    }
    let (len, header) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(ext) => (u64::from(u16::from_be_bytes([ext[0], ext[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            // The most significant bit MUST be 0 (RFC 6455, 5.2). tungstenite has no variant
            // for a bad length, and this one says which part of the frame header is wrong.
            Some(ext) if ext[0] & 0x80 != 0 => {
                let name = tungstenite::http::HeaderName::from_static("payload-length");
                return Err(ProtocolError::InvalidHeader(Box::new(name)).into());
            }
            Some(ext) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(ext);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    let (mask, header) = if masked {
        match buf.get(header..header + 4) {
            Some(key) => (Some([key[0], key[1], key[2], key[3]]), header + 4),
            None => return Ok(None),
        }
    } else {
        (None, header)
    };
    let max = limits.max_frame.unwrap_or(usize::MAX);
    let len = match usize::try_from(len) {
        Ok(len) if len <= max && len <= usize::MAX - header => len,
        _ => return Err(too_long(usize::try_from(len).unwrap_or(usize::MAX), max)),
    };
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        compressed: b0 & RSV1 != 0,
        opcode: b0 & 0x0F,
        mask,
        start: header,
        end: header + len,
    };
    Ok(Some((frame, header + len)))
}

/// A Close frame's payload: nothing, or a code and a UTF-8 reason.
fn parse_close(payload: Bytes) -> Result<Option<CloseFrame>, WsError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::InvalidCloseSequence.into()),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]).into();
            let reason = Utf8Bytes::try_from(payload.slice(2..))
                .map_err(|e| WsError::Utf8(e.to_string()))?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod deflate_tests;

#[cfg(test)]
mod tests {
    use resocket_testkit::raw_frame as frame;

    use super::*;

    const LIMITS: ReadLimits = ReadLimits {
        role: Role::Client,
        max_frame: Some(1 << 20),
        max_message: Some(2 << 20),
        burst_buffer: 64 << 10,
        reserved: RESERVED,
        release_idle: false,
    };

    const SERVER: ReadLimits = ReadLimits {
        role: Role::Server,
        ..LIMITS
    };

    /// Reads everything `wire` holds, fed `chunk` bytes per read; returns the messages, the
    /// control frames and how it ended.
    fn read_all(wire: &[u8], chunk: usize) -> (Vec<Message>, Vec<Control>, Result<(), WsError>) {
        read_all_as(LIMITS, wire, chunk)
    }

    fn read_all_as(
        limits: ReadLimits,
        wire: &[u8],
        chunk: usize,
    ) -> (Vec<Message>, Vec<Control>, Result<(), WsError>) {
        let mut io = tokio_test_io(wire, chunk);
        let mut reader = FrameReader::new(limits, &[], None);
        let mut messages = Vec::new();
        let mut controls = Vec::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let end = loop {
            let mut batch = Vec::new();
            let step = reader.poll_step(&mut io, &mut cx, &mut batch, 64);
            reader.seal(&mut batch);
            messages.append(&mut batch);
            match step {
                Poll::Ready(Ok(Step::Data(_))) => {}
                Poll::Ready(Ok(Step::Control(c))) => controls.push(c),
                Poll::Ready(Ok(Step::Eof)) => break Ok(()),
                Poll::Ready(Err(e)) => break Err(e),
                Poll::Pending => unreachable!("the test reader never blocks"),
            }
        };
        (messages, controls, end)
    }

    /// A reader over `wire` that hands out at most `chunk` bytes per read.
    fn tokio_test_io(wire: &[u8], chunk: usize) -> Chunked {
        Chunked {
            data: wire.to_vec(),
            at: 0,
            chunk,
        }
    }

    struct Chunked {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self
                .chunk
                .min(buf.remaining())
                .min(self.data.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    /// Hands out its chunks one read each, then has nothing (`Pending`), never the end.
    struct Trickle(VecDeque<Vec<u8>>);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            match self.0.pop_front() {
                Some(chunk) => {
                    buf.put_slice(&chunk);
                    Poll::Ready(Ok(()))
                }
                None => Poll::Pending,
            }
        }
    }

    #[test]
    fn an_idle_reader_lets_an_inflater_without_context_go_and_inflates_on_after() {
        use crate::codec::deflate::Deflater;
        let negotiated = Negotiated {
            server_no_context_takeover: true,
            ..Negotiated::default()
        };
        let compressed = |text: &[u8]| {
            let mut out = Vec::new();
            Deflater::new(Role::Server, &negotiated, 6)
                .compress(text, &mut out)
                .unwrap();
            let mut f = frame(true, 0x1, &out);
            f[0] |= 0x40;
            f
        };
        let limits = ReadLimits {
            release_idle: true,
            reserved: RESERVED_WITH_DEFLATE,
            ..LIMITS
        };
        let mut io = Trickle(VecDeque::from([compressed(b"first message")]));
        let mut reader = FrameReader::with_compression(limits, &[], Some(negotiated));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut batch = Vec::new();
        assert!(matches!(
            reader.poll_step(&mut io, &mut cx, &mut batch, 4),
            Poll::Ready(Ok(Step::Data(13)))
        ));
        reader.seal(&mut batch);
        assert_eq!(batch, vec![Message::text("first message")]);
        assert!(reader.inflate.is_some());
        assert!(reader
            .poll_step(&mut io, &mut cx, &mut batch, 4)
            .is_pending());
        assert!(reader.inflate.is_none(), "an idle reader holds no inflater");
        io.0.push_back(compressed(b"second message"));
        batch.clear();
        assert!(matches!(
            reader.poll_step(&mut io, &mut cx, &mut batch, 4),
            Poll::Ready(Ok(Step::Data(14)))
        ));
        reader.seal(&mut batch);
        assert_eq!(batch, vec![Message::text("second message")]);
    }

    #[test]
    fn an_idle_reader_lets_its_buffer_go_and_reads_on_after() {
        let limits = ReadLimits {
            release_idle: true,
            ..LIMITS
        };
        let whole = frame(true, 0x1, b"first");
        let second = frame(true, 0x2, &[7u8; 300]);
        let (head, tail) = second.split_at(5);
        let mut io = Trickle(VecDeque::from([whole, head.to_vec()]));
        let mut reader = FrameReader::new(limits, &[], None);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut batch = Vec::new();
        assert!(matches!(
            reader.poll_step(&mut io, &mut cx, &mut batch, 4),
            Poll::Ready(Ok(Step::Data(5)))
        ));
        reader.seal(&mut batch);
        assert_eq!(batch, vec![Message::text("first")]);
        // Half a frame in: the buffer holds it.
        assert!(reader
            .poll_step(&mut io, &mut cx, &mut batch, 4)
            .is_pending());
        assert!(reader.buf.capacity() > 0, "a partial frame is kept");
        io.0.push_back(tail.to_vec());
        batch.clear();
        assert!(matches!(
            reader.poll_step(&mut io, &mut cx, &mut batch, 4),
            Poll::Ready(Ok(Step::Data(300)))
        ));
        reader.seal(&mut batch);
        assert_eq!(payloads(&batch), vec![vec![7u8; 300]]);
        // Nothing left to parse and nothing arriving: no buffer.
        assert!(reader
            .poll_step(&mut io, &mut cx, &mut batch, 4)
            .is_pending());
        assert_eq!(reader.buf.capacity(), 0, "an idle reader holds no buffer");
        // A wake-up that brings nothing allocates nothing either.
        assert!(reader
            .poll_step(&mut io, &mut cx, &mut batch, 4)
            .is_pending());
        assert_eq!(reader.buf.capacity(), 0);
        io.0.push_back(frame(true, 0x1, b"again"));
        batch.clear();
        assert!(matches!(
            reader.poll_step(&mut io, &mut cx, &mut batch, 4),
            Poll::Ready(Ok(Step::Data(5)))
        ));
        reader.seal(&mut batch);
        assert_eq!(batch, vec![Message::text("again")]);
    }

    fn payloads(messages: &[Message]) -> Vec<Vec<u8>> {
        messages
            .iter()
            .map(|m| m.clone().into_data().to_vec())
            .collect()
    }

    #[test]
    fn messages_of_every_length_encoding_come_out_whole_at_any_read_size() {
        let sizes = [0usize, 1, 125, 126, 1000, 65_535, 65_536, 200_000];
        let mut wire = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..size).map(|b| (b + i) as u8).collect();
            wire.extend(frame(true, opcode::BINARY, &payload));
        }
        wire.extend(frame(true, opcode::TEXT, "héllo".as_bytes()));
        for chunk in [1, 7, 1000, 1 << 20] {
            let (messages, controls, end) = read_all(&wire, chunk);
            end.unwrap();
            assert!(controls.is_empty());
            assert_eq!(messages.len(), sizes.len() + 1, "chunk {chunk}");
            for (i, (got, &size)) in payloads(&messages).iter().zip(&sizes).enumerate() {
                let want: Vec<u8> = (0..size).map(|b| (b + i) as u8).collect();
                assert_eq!(got, &want, "message {i}, chunk {chunk}");
            }
            assert_eq!(messages.last().unwrap(), &Message::text("héllo"));
        }
    }

    /// What a client writes, masked, for a server to read.
    fn client_wire(messages: &[Message]) -> Vec<u8> {
        let mut writer = super::super::write::FrameWriter::new(Role::Client, 1 << 20, None, false);
        for msg in messages {
            writer.encode(msg);
        }
        writer.written_for_test().to_vec()
    }

    #[test]
    fn server_role_unmasks_client_frames_in_place_at_any_read_size() {
        let sent: Vec<Message> = [0usize, 1, 7, 125, 126, 65_536, 100_003]
            .iter()
            .map(|&size| Message::binary((0..size).map(|b| (b * 31) as u8).collect::<Vec<_>>()))
            .chain([
                Message::text("héllo"),
                Message::text("é€𝄞".repeat(50)),
                Message::Ping("p".into()),
            ])
            .collect();
        let wire = client_wire(&sent);
        for chunk in [1, 13, 4096, 1 << 20] {
            let (messages, controls, end) = read_all_as(SERVER, &wire, chunk);
            end.unwrap();
            assert_eq!(messages, sent[..sent.len() - 1], "chunk {chunk}");
            assert!(matches!(&controls[..], [Control::Ping(p)] if p == &b"p"[..]));
        }
    }

    #[test]
    fn server_role_refuses_unmasked_frames_and_client_role_masked_ones() {
        let (_, _, end) = read_all_as(SERVER, &frame(true, opcode::TEXT, b"plain"), 64);
        assert!(
            matches!(
                end,
                Err(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient))
            ),
            "{end:?}"
        );
        let (_, _, end) = read_all(&client_wire(&[Message::text("masked")]), 64);
        assert!(
            matches!(
                end,
                Err(WsError::Protocol(ProtocolError::MaskedFrameFromServer))
            ),
            "{end:?}"
        );
    }

    #[test]
    fn fragments_are_assembled_and_control_frames_may_come_between_them() {
        let mut wire = frame(false, opcode::TEXT, b"hel");
        wire.extend(frame(true, opcode::PING, b"p"));
        wire.extend(frame(false, opcode::CONTINUATION, b"lo "));
        wire.extend(frame(true, opcode::CONTINUATION, b"world"));
        wire.extend(frame(true, opcode::CLOSE, &[0x03, 0xE8, b'b', b'y', b'e']));
        let (messages, controls, end) = read_all(&wire, 3);
        end.unwrap();
        assert_eq!(messages, vec![Message::text("hello world")]);
        assert!(matches!(&controls[0], Control::Ping(p) if p == &b"p"[..]));
        match &controls[1] {
            Control::Close(Some(close)) => {
                assert_eq!(u16::from(close.code), 1000);
                assert_eq!(close.reason.as_str(), "bye");
            }
            other => panic!("expected a Close, got {other:?}"),
        }
    }

    #[test]
    fn protocol_violations_are_typed_errors() {
        let masked = vec![0x82, 0x81, 1, 2, 3, 4, 5];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (masked, "MaskedFrameFromServer"),
            (vec![0xC2, 0x00], "NonZeroReservedBits"),
            (frame(true, 0x3, b""), "UnknownDataFrameType"),
            (frame(true, 0xB, b""), "UnknownControlFrameType"),
            (frame(false, opcode::PING, b""), "FragmentedControlFrame"),
            (frame(true, opcode::PING, &[0; 126]), "ControlFrameTooBig"),
            (
                frame(true, opcode::CONTINUATION, b"x"),
                "UnexpectedContinueFrame",
            ),
            (
                [
                    frame(false, opcode::TEXT, b"a"),
                    frame(true, opcode::TEXT, b"b"),
                ]
                .concat(),
                "ExpectedFragment",
            ),
            (frame(true, opcode::CLOSE, &[3]), "InvalidCloseSequence"),
            (
                frame(true, opcode::BINARY, b"cut")[..4].to_vec(),
                "ResetWithoutClosingHandshake",
            ),
        ];
        for (wire, name) in cases {
            let (_, _, end) = read_all(&wire, 1 << 16);
            let error = end.expect_err(name);
            assert!(format!("{error:?}").contains(name), "{name}: got {error:?}");
        }
    }

    #[test]
    fn invalid_utf8_and_oversized_frames_are_refused() {
        let (_, _, end) = read_all(&frame(true, opcode::TEXT, &[0xFF, 0xFE]), 64);
        assert!(matches!(end, Err(WsError::Utf8(_))));
        let mut split = frame(false, opcode::TEXT, &[0xE2, 0x82]);
        split.extend(frame(true, opcode::CONTINUATION, &[0x28]));
        assert!(matches!(read_all(&split, 64).2, Err(WsError::Utf8(_))));
        let big = frame(true, opcode::BINARY, &vec![0; (1 << 20) + 1]);
        assert!(matches!(
            read_all(&big[..16], 64).2,
            Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))
        ));
        let mut long = frame(false, opcode::BINARY, &vec![0; 1 << 20]);
        long.extend(frame(false, opcode::CONTINUATION, &vec![0; 1 << 20]));
        long.extend(frame(true, opcode::CONTINUATION, b"x"));
        assert!(matches!(
            read_all(&long, 1 << 16).2,
            Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))
        ));
    }

    #[test]
    fn invalid_utf8_in_a_fragment_fails_before_the_message_ends() {
        // The message never ends: only the bad fragment can fail it.
        let mut wire = frame(false, opcode::TEXT, b"good ");
        wire.extend(frame(false, opcode::CONTINUATION, &[b'x', 0xFF, b'y']));
        wire.extend(frame(false, opcode::CONTINUATION, b"more"));
        let (messages, _, end) = read_all(&wire, 64);
        assert!(messages.is_empty());
        assert!(matches!(end, Err(WsError::Utf8(_))), "{end:?}");
        let (_, _, end) = read_all(&frame(false, opcode::TEXT, &[0xC0, 0x80]), 64);
        assert!(
            matches!(end, Err(WsError::Utf8(_))),
            "a bad first fragment: {end:?}"
        );
    }

    /// Autobahn 6.4.3 and 6.4.4: the frame never completes, so only its first bytes can fail it.
    #[test]
    fn invalid_utf8_in_a_text_frame_fails_before_the_frame_is_complete() {
        let mut payload = b"ok \xF4\x90\x80\x80".to_vec();
        payload.resize(100, b'x');
        let cut = |wire: Vec<u8>| wire[..wire.len() - 92].to_vec();
        let client = cut(frame(true, opcode::TEXT, &payload));
        let mut server = client_wire(&[Message::binary(payload.clone())]);
        server[0] = 0x80 | opcode::TEXT;
        let server = cut(server);
        for chunk in [1, 4, 64] {
            for (limits, wire) in [(LIMITS, &client), (SERVER, &server)] {
                let (_, _, end) = read_all_as(limits, wire, chunk);
                assert!(
                    matches!(&end, Err(WsError::Utf8(e)) if e.contains("index 3")),
                    "{:?}, chunk {chunk}: {end:?}",
                    limits.role
                );
            }
        }
        // The same within a fragmented message, across the fragment boundary.
        let mut wire = frame(false, opcode::TEXT, b"ok \xF4");
        wire.extend(cut(frame(true, opcode::CONTINUATION, &payload[4..])));
        let (_, _, end) = read_all(&wire, 64);
        assert!(matches!(end, Err(WsError::Utf8(_))), "{end:?}");
    }

    #[test]
    fn a_code_point_split_across_fragments_is_valid() {
        let euro = "€".as_bytes();
        let mut wire = frame(false, opcode::TEXT, &[b'a', euro[0]]);
        wire.extend(frame(false, opcode::CONTINUATION, &euro[1..2]));
        wire.extend(frame(true, opcode::CONTINUATION, &[euro[2], b'b']));
        for chunk in [1, 64] {
            let (messages, _, end) = read_all(&wire, chunk);
            end.unwrap();
            assert_eq!(messages, vec![Message::text("a€b")]);
        }
        // Cut at the end of the message, it is invalid.
        let mut cut = frame(false, opcode::TEXT, &[b'a', euro[0]]);
        cut.extend(frame(true, opcode::CONTINUATION, &euro[1..2]));
        assert!(matches!(read_all(&cut, 64).2, Err(WsError::Utf8(_))));
    }

    #[test]
    fn a_64_bit_length_with_the_top_bit_set_is_a_protocol_error() {
        let mut wire = vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 5];
        wire.extend_from_slice(b"hello");
        let unlimited = ReadLimits {
            max_frame: None,
            max_message: None,
            ..LIMITS
        };
        for limits in [LIMITS, unlimited] {
            let (messages, _, end) = read_all_as(limits, &wire, 64);
            assert!(messages.is_empty());
            assert!(
                matches!(end, Err(WsError::Protocol(ProtocolError::InvalidHeader(_)))),
                "{end:?}"
            );
        }
    }

    #[test]
    fn a_sparse_batch_is_copied_and_a_full_one_shares_the_buffer() {
        let mut reader = FrameReader::new(LIMITS, &[], None);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut io = tokio_test_io(&frame(true, opcode::BINARY, b"one"), 64);
        let mut batch = Vec::new();
        assert!(matches!(
            reader.poll_step(&mut io, &mut cx, &mut batch, 64),
            Poll::Ready(Ok(Step::Data(3)))
        ));
        reader.seal(&mut batch);
        assert_eq!(batch, vec![Message::binary(&b"one"[..])]);
        // A copy: in place, the payload would sit 3 bytes before the unread rest (the frame
        // was 2 header bytes and 3 payload bytes).
        let ptr = |m: &Message| m.clone().into_data().as_ptr() as usize;
        assert_eq!(reader.pos, 0);
        assert_ne!(ptr(&batch[0]), reader.buf.as_ptr() as usize - 3);

        let wire: Vec<u8> = (0..64u8)
            .flat_map(|i| frame(true, opcode::BINARY, &[i; 1024]))
            .collect();
        let mut io = tokio_test_io(&wire, wire.len());
        let mut batch = Vec::new();
        while batch.len() < 3 {
            assert!(reader
                .poll_step(&mut io, &mut cx, &mut batch, 64)
                .is_ready());
        }
        reader.seal(&mut batch);
        assert_eq!(
            ptr(&batch[1]) - ptr(&batch[0]),
            1024 + 4,
            "a full batch is sliced out of the read buffer, not copied"
        );
        assert_eq!(batch[2], Message::binary(vec![2u8; 1024]));
    }

    #[test]
    fn reused_buffers_never_overwrite_a_message_the_user_still_holds() {
        let count = 3000usize;
        let wire: Vec<u8> = (0..count)
            .flat_map(|i| frame(true, opcode::BINARY, &[(i % 251) as u8; 1024]))
            .collect();
        let mut io = tokio_test_io(&wire, 20_000);
        let mut reader = FrameReader::new(LIMITS, &[], None);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut kept = Vec::new();
        let mut seen = 0usize;
        while seen < count {
            let mut batch = Vec::new();
            while batch.len() < 40 && seen + batch.len() < count {
                assert!(matches!(
                    reader.poll_step(&mut io, &mut cx, &mut batch, 64),
                    Poll::Ready(Ok(Step::Data(1024)))
                ));
            }
            reader.seal(&mut batch);
            for msg in batch {
                // Every 7th message is kept to the end; the rest are dropped at once, so their
                // buffers come back for reuse while the kept ones still point into them.
                if seen % 7 == 0 {
                    kept.push((seen, msg));
                }
                seen += 1;
            }
        }
        assert!(!reader.retired.is_empty(), "the burst retired buffers");
        for (i, msg) in kept {
            assert_eq!(
                msg,
                Message::binary(vec![(i % 251) as u8; 1024]),
                "message {i}"
            );
        }
    }

    #[test]
    fn a_huge_declared_length_allocates_only_what_arrives() {
        let limits = ReadLimits {
            max_frame: None,
            max_message: None,
            ..LIMITS
        };
        let mut wire = vec![0x82, 127];
        wire.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        wire.extend_from_slice(&[7; 100_000]);
        let mut io = tokio_test_io(&wire, 1 << 16);
        let mut reader = FrameReader::new(limits, &[], None);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut batch = Vec::new();
        let end = loop {
            match reader.poll_step(&mut io, &mut cx, &mut batch, 64) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => break e,
                Poll::Pending => unreachable!(),
            }
        };
        assert!(matches!(
            end,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        ));
        assert!(reader.buf.capacity() < 1 << 20, "{}", reader.buf.capacity());
    }

    /// Random input: never a panic, and the same messages and the same end however the bytes
    /// are split into reads.
    #[test]
    fn random_bytes_read_the_same_at_any_read_size_and_never_panic() {
        let mut rng = fastrand::Rng::with_seed(6455);
        for round in 0..3000 {
            let len = rng.usize(0..200);
            let mut wire: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if round % 2 == 0 && !wire.is_empty() {
                // Half the inputs start like a plausible frame, to get past the first checks.
                wire[0] &= 0x8F;
                if wire.len() > 1 {
                    wire[1] &= 0x7F;
                }
            }
            let (messages, controls, end) = read_all(&wire, 1);
            let (messages2, controls2, end2) = read_all(&wire, rng.usize(2..300));
            assert_eq!(messages, messages2, "input {wire:?}");
            assert_eq!(format!("{controls:?}"), format!("{controls2:?}"));
            assert_eq!(format!("{end:?}"), format!("{end2:?}"), "input {wire:?}");
        }
    }
}
