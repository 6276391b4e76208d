//! Inflating incoming messages (RFC 7692, section 7.2.2), bounded by the message size limit
//! while it inflates, so a small payload that expands without end (a decompression bomb) costs
//! no more memory than the limit.

use bytes::BytesMut;
use flate2::{Decompress, DecompressError, FlushDecompress, Status};

use super::{deflater::SYNC_TAIL, Negotiated, Role, WindowBits};

/// The most output one zlib call may write: the limit is checked between calls.
const MAX_STEP: usize = 64 << 10;
/// The least room offered to zlib, so small messages take one call.
const MIN_STEP: usize = 512;
/// Room offered beyond the expected output: zlib takes its fast loop only while at least 260
/// bytes of room are left, so without it the last quarter of a 1 KiB message took the slow one.
const FAST_LOOP_ROOM: usize = 320;
/// The room offered for the appended tail: it ends an empty stored block and nearly always
/// inflates to nothing, and the room is zeroed before zlib writes to it.
const TAIL_STEP: usize = 64;
/// The largest last fragment copied to go to zlib in one call with the tail: below this, a
/// second call costs more than the copy.
const JOINED_TAIL_MAX: usize = 4 << 10;

/// The decompressor of one connection's incoming messages. It keeps its state (the window, with
/// context takeover) from one message to the next; build it once per connection.
///
/// A compressed message is fed fragment by fragment, in order, as its frames arrive: the
/// payload of each frame, the last one with `fin` set. The output of all fragments is the
/// message. After an error the stream is out of step with the peer's and the connection must
/// fail.
#[derive(Debug)]
pub struct Inflater {
    decompress: Decompress,
    /// The peer starts each message with an empty window.
    no_context_takeover: bool,
    /// The most bytes one message may inflate to; `None` for no limit.
    max_message: Option<usize>,
    /// Bytes inflated for the current message so far.
    inflated: usize,
    /// Compressed bytes fed for the current message so far.
    fed: usize,
    /// The current message held a final (BFINAL) block: the peer's stream ended, the rest of
    /// the message is ignored, and the next message starts a new stream.
    stream_ended: bool,
    /// A small last fragment with the tail appended, reused from message to message.
    joined: Vec<u8>,
}

/// Why an incoming compressed message could not be inflated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The message inflates to more than the limit; inflating stopped there. The connection
    /// closes with 1009 (message too big).
    #[error("inflated message exceeds {limit} bytes")]
    TooBig {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The payload is not valid DEFLATE data, or refers back past the window. The connection
    /// closes with 1007 (invalid payload data).
    #[error("invalid compressed data")]
    Invalid(#[source] DecompressError),
}

impl Inflater {
    /// A decompressor for the messages that `role`'s peer sends, as `negotiated`, stopping any
    /// message that inflates past `max_message` bytes.
    pub fn new(role: Role, negotiated: &Negotiated, max_message: Option<usize>) -> Inflater {
        let direction = negotiated.sent_by(role.peer());
        // A window at least as large as the sender's decodes its data. flate2 takes no fewer
        // than 9 bits, and its reset keeps the state in place only at 15 (any other size is
        // rebuilt), so a peer that resets every message gets 15 and no allocation per
        // message. zlib-rs holds a 32 KiB window at any size, so nothing is lost.
        let bits = if direction.no_context_takeover {
            WindowBits::MAX.get()
        } else {
            direction.window_bits.get().max(9)
        };
        Inflater {
            decompress: Decompress::new_with_window_bits(false, bits),
            no_context_takeover: direction.no_context_takeover,
            max_message,
            inflated: 0,
            fed: 0,
            stream_ended: false,
            joined: Vec::new(),
        }
    }

    /// Inflates the payload of one frame of a compressed message and appends it to `out`;
    /// `fin` marks the last frame of the message. Over the whole message, `out` grows by at
    /// most one byte past the limit (the byte that shows it crossed).
    ///
    /// A message whose payload is empty altogether inflates to an empty message and leaves the
    /// stream as it was: zlib writes nothing for an empty message right after a flush, and
    /// senders that pass that on as an empty payload expect no more, where appending the tail
    /// would leave the stream inside a block header.
    ///
    /// # Errors
    ///
    /// [`InflateError::TooBig`] as soon as the message passes the limit;
    /// [`InflateError::Invalid`] for data that is not DEFLATE. Either way the connection must
    /// fail.
    pub fn inflate(
        &mut self,
        fragment: &[u8],
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        self.fed += fragment.len();
        let step = fragment
            .len()
            .saturating_mul(4)
            .saturating_add(FAST_LOOP_ROOM)
            .clamp(MIN_STEP, MAX_STEP);
        let mut result;
        if fin && !fragment.is_empty() && fragment.len() <= JOINED_TAIL_MAX {
            // One zlib call for a small message, not two.
            let mut joined = std::mem::take(&mut self.joined);
            joined.clear();
            joined.extend_from_slice(fragment);
            joined.extend_from_slice(&SYNC_TAIL);
            result = self.feed(&joined, step, out);
            self.joined = joined;
        } else {
            result = self.feed(fragment, step, out);
            if result.is_ok() && fin && self.fed > 0 {
                result = self.feed(&SYNC_TAIL, TAIL_STEP, out);
            }
        }
        if fin || result.is_err() {
            self.end_message();
        }
        result
    }

    /// Whether a message may refer back to an earlier one: the inflater then holds state a
    /// later message needs, and must live as long as the connection.
    pub(crate) fn keeps_context(&self) -> bool {
        !self.no_context_takeover
    }

    fn end_message(&mut self) {
        if self.no_context_takeover || self.stream_ended {
            self.decompress.reset(false);
        }
        self.inflated = 0;
        self.fed = 0;
        self.stream_ended = false;
    }

    /// Inflates `input` onto `out`, offering zlib `step` bytes of room first, twice as much
    /// each time it fills them.
    fn feed(
        &mut self,
        mut input: &[u8],
        mut step: usize,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        loop {
            if self.stream_ended {
                // Section 7.2.3.4: what follows a final block (a padding byte, the tail we
                // append) starts no new stream, and zlib-based peers ignore it too.
                return Ok(());
            }
            let budget = self
                .max_message
                .map_or(usize::MAX, |max| max - self.inflated);
            // One byte past the budget is room enough to see the limit crossed.
            let room = step.min(budget.saturating_add(1));
            let start = out.len();
            // Safe code cannot hand zlib uninitialised memory in a `BytesMut` (flate2's
            // `decompress_uninit` writes it, but only `unsafe` `set_len` could keep it), so
            // the room is zeroed; it costs a fraction of inflating into it, kept small by
            // sizing the room to the input.
            out.resize(start + room, 0);
            let (in_before, out_before) = (self.decompress.total_in(), self.decompress.total_out());
            let status =
                self.decompress
                    .decompress(input, &mut out[start..], FlushDecompress::None);
            let consumed = to_usize(self.decompress.total_in() - in_before);
            let written = to_usize(self.decompress.total_out() - out_before);
            out.truncate(start + written);
            let status = status.map_err(InflateError::Invalid)?;
            input = &input[consumed..];
            self.inflated += written;
            if let Some(limit) = self.max_message.filter(|&max| self.inflated > max) {
                return Err(InflateError::TooBig { limit });
            }
            match status {
                Status::StreamEnd => self.stream_ended = true,
                // zlib stops early only for want of input, once it leaves room unused.
                Status::Ok | Status::BufError if written < room => return Ok(()),
                Status::Ok | Status::BufError => step = (step * 2).min(MAX_STEP),
            }
        }
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).expect("no more than one buffer's length")
}

#[cfg(test)]
mod tests {
    use super::{super::Deflater, *};

    /// Bytes that do not compress: a large last fragment stays large once compressed.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn only_a_small_last_fragment_is_copied_to_join_the_tail() {
        let negotiated = Negotiated {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Negotiated::default()
        };
        let mut deflater = Deflater::new(Role::Client, &negotiated, 6);
        let mut inflater = Inflater::new(Role::Server, &negotiated, Some(1 << 20));
        for len in [100, 3_000, 200_000] {
            let message = noise(len);
            let mut compressed = Vec::new();
            deflater.compress(&message, &mut compressed).unwrap();
            let mut out = BytesMut::new();
            inflater.inflate(&compressed, true, &mut out).unwrap();
            assert!(out[..] == message[..], "{len} bytes inflate back");
            // A peer's large frames must not grow a buffer the inflater keeps.
            assert!(
                inflater.joined.capacity() <= 2 * (JOINED_TAIL_MAX + SYNC_TAIL.len()),
                "{len}: kept {} bytes",
                inflater.joined.capacity()
            );
        }
    }
}
