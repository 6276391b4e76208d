//! The write half of the frame codec: frames (masked in the client role) coalesced into one
//! buffer that goes out in as few `write` calls as the socket allows.
//!
//! Every frame is encoded straight into the buffer (header, then in the client role the masking
//! key, payload XOR-ed with the key while it is still in cache), so a batch of messages becomes one contiguous write.
//! The buffer is written out when it reaches `write_buffer_size` or on flush.
//!
//! With permessage-deflate, each Text and Binary message is compressed whole into a scratch
//! buffer kept for the connection, then goes out as one frame with RSV1 set; control frames are
//! never compressed (RFC 7692, section 6.1).

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use rand::{rngs::StdRng, RngCore, SeedableRng};
use tokio::io::AsyncWrite;
use tungstenite::{protocol::CloseFrame, Message};

use super::{
    deflate::{Deflater, Negotiated},
    mask::apply_mask,
    Role,
};

/// The first header byte's bit that marks a compressed message (RFC 7692, section 6).
const RSV1: u8 = 0x40;

/// Writes frames into a buffer and the buffer to the socket.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    buf: Vec<u8>,
    /// `buf[..written]` is already on the socket.
    written: usize,
    /// Frames are coalesced up to this many bytes before a write.
    write_buffer_size: usize,
    /// Masking keys must be unpredictable (RFC 6455, 5.3): a ChaCha generator seeded by the OS.
    /// `None` in the server role, which does not mask.
    rng: Option<StdRng>,
    /// The compressor, when permessage-deflate was negotiated.
    deflate: Option<Lazy>,
}

/// A compressor built on the first message it compresses: zlib's state is a few hundred KiB,
/// and a connection that never sends a data message through the codec (a server that writes
/// frames it encoded once for many connections, or one that is idle) should not hold it.
#[derive(Debug)]
enum Lazy {
    Built(Box<Compress>),
    Later {
        role: Role,
        negotiated: Negotiated,
        level: u8,
    },
}

impl Lazy {
    fn get(&mut self) -> &mut Compress {
        if let Lazy::Later {
            role,
            negotiated,
            level,
        } = *self
        {
            *self = Lazy::Built(Box::new(Compress::new(Deflater::new(
                role,
                &negotiated,
                level,
            ))));
        }
        match self {
            Lazy::Built(compress) => compress,
            Lazy::Later { .. } => unreachable!("built above"),
        }
    }
}

/// A connection's compressor and the buffer each message is compressed into before it is
/// framed: kept, so a message allocates only when it is larger than any before it.
#[derive(Debug)]
pub(crate) struct Compress {
    deflater: Deflater,
    scratch: Vec<u8>,
}

impl Compress {
    pub(crate) fn new(deflater: Deflater) -> Compress {
        Compress {
            deflater,
            scratch: Vec::new(),
        }
    }
}

impl FrameWriter {
    pub(crate) fn new(
        role: Role,
        write_buffer_size: usize,
        deflater: Option<Deflater>,
    ) -> FrameWriter {
        FrameWriter {
            buf: Vec::new(),
            written: 0,
            write_buffer_size: write_buffer_size.max(1),
            rng: (role == Role::Client).then(StdRng::from_os_rng),
            deflate: deflater.map(|d| Lazy::Built(Box::new(Compress::new(d)))),
        }
    }

    /// A writer whose compressor, if `compression` is set, is built when the first data
    /// message is encoded, at zlib `level`.
    pub(crate) fn with_compression(
        role: Role,
        write_buffer_size: usize,
        compression: Option<Negotiated>,
        level: u8,
    ) -> FrameWriter {
        let mut writer = FrameWriter::new(role, write_buffer_size, None);
        writer.deflate = compression.map(|negotiated| Lazy::Later {
            role,
            negotiated,
            level,
        });
        writer
    }

    /// Encodes one message as a single frame.
    #[inline]
    pub(crate) fn encode(&mut self, msg: &Message) {
        match msg {
            Message::Text(text) => self.data(0x1, text.as_bytes()),
            Message::Binary(data) => self.data(0x2, data),
            Message::Ping(data) => self.frame(true, 0x9, data),
            Message::Pong(data) => self.frame(true, 0xA, data),
            Message::Close(close) => self.close(close.as_ref()),
            Message::Frame(frame) => {
                let header = frame.header();
                self.frame(header.is_final, header.opcode.into(), frame.payload());
            }
        }
    }

    /// Encodes a data message as one frame, compressed when permessage-deflate is on.
    #[inline]
    fn data(&mut self, opcode: u8, payload: &[u8]) {
        if let Some(mut lazy) = self.deflate.take() {
            self.compressed(lazy.get(), opcode, payload);
            self.deflate = Some(lazy);
        } else {
            self.frame(true, opcode, payload);
        }
    }

    fn compressed(&mut self, compress: &mut Compress, opcode: u8, payload: &[u8]) {
        let Compress { deflater, scratch } = compress;
        scratch.clear();
        match deflater.compress(payload, scratch) {
            Ok(()) => self.frame(true, RSV1 | opcode, scratch),
            // zlib misuse, which no input causes: the message still goes, uncompressed (a
            // frame without RSV1 is always valid), and the compressor was reset.
            Err(_) => self.frame(true, opcode, payload),
        }
        // One huge message must not keep its scratch buffer for the connection's life.
        if scratch.capacity() > 4 * self.write_buffer_size {
            *scratch = Vec::new();
        }
    }

    /// Encodes a Close frame: empty, or the code and the reason.
    pub(crate) fn close(&mut self, close: Option<&CloseFrame>) {
        match close {
            None => self.frame(true, 0x8, &[]),
            Some(close) => {
                let mut payload = Vec::with_capacity(2 + close.reason.len());
                payload.extend_from_slice(&u16::from(close.code).to_be_bytes());
                payload.extend_from_slice(close.reason.as_bytes());
                self.frame(true, 0x8, &payload);
            }
        }
    }

    /// Encodes one frame; `opcode` may carry RSV1.
    #[inline]
    fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let len = payload.len();
        self.buf.reserve(14 + len);
        self.buf.push((u8::from(fin) << 7) | opcode);
        let mask_bit = if self.rng.is_some() { 0x80 } else { 0 };
        if len < 126 {
            self.buf.push(mask_bit | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            self.buf.push(mask_bit | 126);
            self.buf.extend_from_slice(&short.to_be_bytes());
        } else {
            self.buf.push(mask_bit | 127);
            self.buf.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match &mut self.rng {
            Some(rng) => {
                let key = rng.next_u32().to_ne_bytes();
                self.buf.extend_from_slice(&key);
                let start = self.buf.len();
                self.buf.extend_from_slice(payload);
                apply_mask(&mut self.buf[start..], key);
            }
            None => self.buf.extend_from_slice(payload),
        }
    }

    /// Appends a frame encoded already, as this role writes them (unmasked in the server
    /// role), so one encoding can serve many connections.
    #[inline]
    pub(crate) fn encoded(&mut self, frame: &[u8]) {
        self.buf.extend_from_slice(frame);
    }

    /// Drops whatever is not written yet: the peer is gone.
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
        self.written = 0;
    }

    /// Everything encoded and not yet written.
    #[cfg(test)]
    pub(crate) fn written_for_test(&self) -> &[u8] {
        &self.buf[self.written..]
    }

    /// Bytes encoded but not yet written to the socket.
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Whether another frame may be encoded now: the buffer is below `write_buffer_size`, or
    /// was written out to below it.
    pub(crate) fn poll_ready<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending() >= self.write_buffer_size {
            ready!(self.poll_write_out(io, cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes out everything encoded, then flushes the socket (TLS needs it).
    pub(crate) fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_out(io, cx))?;
        Pin::new(io).poll_flush(cx)
    }

    fn poll_write_out<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        // One huge message must not keep its buffer for the connection's life.
        if self.buf.capacity() > 4 * self.write_buffer_size {
            self.buf.shrink_to(self.write_buffer_size);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes one masked client frame: (fin, opcode, unmasked payload, frame length).
    fn decode(wire: &[u8]) -> (bool, u8, Vec<u8>, usize) {
        assert_eq!(wire[1] & 0x80, 0x80, "client frames are masked");
        let (len, mut at) = match wire[1] & 0x7F {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let key = &wire[at..at + 4];
        at += 4;
        let payload = wire[at..at + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        (wire[0] & 0x80 != 0, wire[0] & 0x0F, payload, at + len)
    }

    #[test]
    fn frames_of_every_length_encoding_decode_back() {
        for len in [0usize, 1, 7, 8, 9, 125, 126, 65_535, 65_536, 100_003] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut writer = FrameWriter::new(Role::Client, 1 << 20, None);
            writer.encode(&Message::binary(payload.clone()));
            let (fin, opcode, got, total) = decode(&writer.buf);
            assert!(fin);
            assert_eq!(opcode, 0x2);
            assert_eq!(total, writer.buf.len());
            assert_eq!(got, payload, "length {len}");
        }
    }

    #[test]
    fn server_frames_are_not_masked() {
        for len in [0usize, 125, 126, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut writer = FrameWriter::new(Role::Server, 1 << 20, None);
            writer.encode(&Message::binary(payload.clone()));
            let header = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(writer.buf[0], 0x82);
            assert_eq!(writer.buf[1] & 0x80, 0, "no mask bit");
            assert_eq!(writer.buf[header..], payload[..], "length {len}");
        }
    }

    #[test]
    fn close_frames_carry_code_and_reason_and_keys_differ() {
        let mut writer = FrameWriter::new(Role::Client, 1 << 20, None);
        writer.encode(&Message::Close(Some(CloseFrame {
            code: 4000.into(),
            reason: "bye".into(),
        })));
        let (_, opcode, payload, first) = decode(&writer.buf);
        assert_eq!(opcode, 0x8);
        assert_eq!(payload, [0x0F, 0xA0, b'b', b'y', b'e']);
        writer.encode(&Message::text("x"));
        let key_of = |frame: &[u8]| frame[2..6].to_vec();
        assert_ne!(key_of(&writer.buf), key_of(&writer.buf[first..]));
    }
}
