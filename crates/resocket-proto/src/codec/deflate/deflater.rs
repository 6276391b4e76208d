//! Compressing outgoing messages (RFC 7692, section 7.2.1).

use flate2::{Compress, CompressError, Compression, FlushCompress};

use super::{Negotiated, Role};

/// The empty stored block a sync flush ends with; section 7.2.1 removes it from the payload and
/// the receiver appends it again.
pub(super) const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Room for the block headers and the sync flush around a message, past its own length.
const SLACK: usize = 64;

/// The compressor of one connection's outgoing messages. It keeps its state (the window, with
/// context takeover) from one message to the next; build it once per connection.
#[derive(Debug)]
pub struct Deflater {
    compress: Compress,
    /// The negotiation asked this side to start each message with an empty window.
    no_context_takeover: bool,
}

/// The compressor failed: a zlib misuse, never the content of a message.
#[derive(Debug, thiserror::Error)]
#[error("deflate failed")]
pub struct DeflateError(#[source] CompressError);

impl Deflater {
    /// A compressor for the messages that `role` sends, as `negotiated`, at zlib `level`
    /// (0 to 9; higher is taken as 9).
    ///
    /// zlib cannot compress raw DEFLATE with a 256-byte window: when the peer allowed only
    /// 8 bits, messages go out as stored blocks, which hold no back-references and so fit any
    /// window.
    pub fn new(role: Role, negotiated: &Negotiated, level: u8) -> Deflater {
        let direction = negotiated.sent_by(role);
        let (level, bits) = if direction.window_bits.get() < 9 {
            (Compression::none(), 9)
        } else {
            (
                Compression::new(u32::from(level.min(9))),
                direction.window_bits.get(),
            )
        };
        Deflater {
            compress: Compress::new_with_window_bits(level, false, bits),
            no_context_takeover: direction.no_context_takeover,
        }
    }

    /// Compresses one whole message and appends the payload to send (with RSV1 set on its
    /// first frame) to `out`. `out` keeps its capacity between calls, so a reused buffer
    /// allocates only when a message is larger than any before it.
    ///
    /// A message may be split into several frames after compression: the fragments together
    /// carry the payload appended here.
    ///
    /// # Errors
    ///
    /// [`DeflateError`] when zlib reports misuse, which no input causes; the compressor is
    /// reset, and the message must not be sent.
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let start = out.len();
        let result = self.flush_message(message, out);
        if result.is_err() {
            out.truncate(start);
            self.compress.reset();
            return result;
        }
        if out.len() == start {
            // zlib writes nothing for an empty message right after a flush. An empty payload
            // would leave the peer's inflater inside the block header it makes of the tail,
            // so send an empty stored block's header instead (section 7.2.3.6).
            out.push(0x00);
        } else {
            debug_assert!(out[start..].ends_with(&SYNC_TAIL), "a sync flush ends so");
            if out[start..].ends_with(&SYNC_TAIL) {
                out.truncate(out.len() - SYNC_TAIL.len());
            }
        }
        if self.no_context_takeover {
            self.compress.reset();
        }
        Ok(())
    }

    /// Feeds `message` and a sync flush through zlib until both are fully out.
    fn flush_message(&mut self, mut message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        loop {
            // Compressed data is rarely larger than its input plus block headers; when it
            // is, the loop comes back for more room.
            out.reserve(message.len() + SLACK);
            let before = self.compress.total_in();
            self.compress
                .compress_vec(message, out, FlushCompress::Sync)
                .map_err(DeflateError)?;
            let consumed = usize::try_from(self.compress.total_in() - before)
                .expect("no more than the input length");
            message = &message[consumed..];
            // zlib has finished a flush once it leaves output room unused.
            if message.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}
