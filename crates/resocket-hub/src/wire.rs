//! A server frame encoded once, header and payload, shared by every connection it goes to; its
//! permessage-deflate form is made on first need, once, and shared as well.
//!
//! The hub answers permessage-deflate only with `server_no_context_takeover` and a 32 KiB
//! window (see [`deflate_config`]), so a compressed message depends on nothing sent before it
//! on the connection: the same compressed bytes are valid on every connection that
//! negotiated compression. Fan-out therefore costs a reference count per subscriber, whatever
//! each one negotiated.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use bytes::{Buf, Bytes};
use resocket_proto::deflate::{Deflater, Negotiated, Role, ServerDeflateConfig, WindowBits};
use serde::Serialize;

/// The opcode of a text frame, with FIN.
const FIN_TEXT: u8 = 0x81;
/// RSV1: the frame is a compressed message (RFC 7692, section 6).
const RSV1: u8 = 0x40;
/// The longest frame header without a mask.
const MAX_HEADER: usize = 10;
/// Payloads shorter than this go out uncompressed to everyone: DEFLATE's block header and
/// Huffman tables eat what it could save.
const COMPRESS_FROM: usize = 64;
/// The zlib level of compressed messages: zlib's default, the usual balance for text.
const LEVEL: u8 = 6;

/// The window the hub compresses with; offers that ask for a smaller one get no compression.
const WINDOW: WindowBits = WindowBits::MAX;

/// How the hub answers a permessage-deflate offer: always `server_no_context_takeover`, at its
/// one window, so one compressed frame serves every connection; and always
/// `client_no_context_takeover` (RFC 7692 lets a server ask it even when not offered), so a
/// connection's inflater holds nothing between messages and goes while the connection is idle:
/// one compressed message cannot make a connection keep zlib state for its lifetime.
pub(crate) fn deflate_config() -> ServerDeflateConfig {
    let mut cfg = ServerDeflateConfig::default();
    cfg.server_no_context_takeover = true;
    cfg.client_no_context_takeover = true;
    cfg.server_max_window_bits = None;
    cfg.fixed_server_window = true;
    cfg.level = LEVEL;
    cfg
}

/// A text frame encoded once.
#[derive(Debug, Clone)]
pub(crate) struct Frame(Arc<Encoded>);

#[derive(Debug)]
struct Encoded {
    /// Header and payload, as written to a connection without compression.
    plain: Bytes,
    /// Where the payload starts in `plain`.
    header: u8,
    /// The compressed frame (RSV1 set), or `plain` again when compressing does not pay.
    deflated: OnceLock<Bytes>,
}

impl Frame {
    /// Serializes `value` as the payload of a text frame, straight behind room for its header.
    pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Frame {
        let mut buf = vec![0u8; MAX_HEADER];
        // Strings, numbers and raw JSON values cannot fail to serialize.
        let _ = serde_json::to_writer(&mut buf, value);
        Frame::framed(buf)
    }

    /// A text frame around `text`.
    pub(crate) fn text(text: &str) -> Frame {
        let mut buf = Vec::with_capacity(MAX_HEADER + text.len());
        buf.resize(MAX_HEADER, 0);
        buf.extend_from_slice(text.as_bytes());
        Frame::framed(buf)
    }

    /// Writes the header right before the payload at `buf[MAX_HEADER..]`.
    fn framed(mut buf: Vec<u8>) -> Frame {
        let header = put_header(&mut buf, FIN_TEXT);
        // The vector grew by doubling, and history keeps these bytes for long: up to twice
        // what its bounds count. Shrinking is in place.
        if buf.capacity() - buf.len() > 64 {
            buf.shrink_to_fit();
        }
        let mut plain = Bytes::from(buf);
        plain.advance(MAX_HEADER - header);
        Frame(Arc::new(Encoded {
            plain,
            header: header as u8,
            deflated: OnceLock::new(),
        }))
    }

    /// The payload's length: what queue and history bounds count.
    pub(crate) fn len(&self) -> usize {
        self.0.plain.len() - usize::from(self.0.header)
    }

    /// The payload, as text.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.payload()).unwrap_or_default()
    }

    fn payload(&self) -> &[u8] {
        &self.0.plain[usize::from(self.0.header)..]
    }

    /// The frame for a connection without compression.
    pub(crate) fn plain(&self) -> &[u8] {
        &self.0.plain
    }

    /// The frame for a connection that negotiated permessage-deflate on the hub's terms:
    /// compressed by the first connection that needs it, then shared.
    pub(crate) fn deflated(&self) -> &[u8] {
        self.0.deflated.get_or_init(|| {
            let payload = self.payload();
            if payload.len() < COMPRESS_FROM {
                return self.0.plain.clone();
            }
            compress(payload)
                .filter(|c| c.len() < self.0.plain.len())
                .unwrap_or_else(|| self.0.plain.clone())
        })
    }

    /// Whether the compressed form was made (for tests).
    #[cfg(test)]
    fn is_deflated(&self) -> bool {
        self.0.deflated.get().is_some()
    }
}

/// Writes a server frame header for the payload at `buf[MAX_HEADER..]` right before it;
/// returns its length.
fn put_header(buf: &mut [u8], first: u8) -> usize {
    let len = buf.len() - MAX_HEADER;
    let mut header = [0u8; MAX_HEADER];
    header[0] = first;
    let n = if len < 126 {
        header[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    buf[MAX_HEADER - n..MAX_HEADER].copy_from_slice(&header[..n]);
    n
}

thread_local! {
    /// One compressor per worker thread, shared by every connection that thread serves: with
    /// no context takeover it starts each message afresh, so sharing it is sound, and no
    /// connection holds zlib state of its own (a few hundred KiB each).
    static DEFLATER: RefCell<Option<(Deflater, Vec<u8>)>> = const { RefCell::new(None) };
}

/// `payload` as a compressed text frame, RSV1 set; `None` if zlib fails, which no input causes.
fn compress(payload: &[u8]) -> Option<Bytes> {
    DEFLATER.with_borrow_mut(|slot| {
        let (deflater, scratch) = slot.get_or_insert_with(|| {
            let negotiated = Negotiated {
                server_no_context_takeover: true,
                server_max_window_bits: WINDOW,
                ..Negotiated::default()
            };
            (Deflater::new(Role::Server, &negotiated, LEVEL), Vec::new())
        });
        scratch.clear();
        scratch.resize(MAX_HEADER, 0);
        deflater.compress(payload, scratch).ok()?;
        let header = put_header(scratch, FIN_TEXT | RSV1);
        let frame = Bytes::copy_from_slice(&scratch[MAX_HEADER - header..]);
        // One huge message must not keep its scratch buffer for the thread's life.
        if scratch.capacity() > 256 << 10 {
            *scratch = Vec::new();
        }
        Some(frame)
    })
}

#[cfg(test)]
mod tests {
    use resocket_proto::deflate::Inflater;

    use super::*;

    #[test]
    fn headers_of_every_length_encoding_precede_the_payload() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let text = "x".repeat(len);
            let frame = Frame::text(&text);
            let plain = frame.plain();
            assert_eq!(plain[0], 0x81);
            let header = plain.len() - len;
            assert_eq!(
                header,
                [2, 4, 10][usize::from(len > 125) + usize::from(len > 65_535)]
            );
            assert_eq!(frame.as_str(), text);
            assert_eq!(frame.len(), len);
        }
    }

    #[test]
    fn the_compressed_frame_is_made_once_and_inflates_back() {
        let text = format!(r#"{{"data":"{}"}}"#, "abc".repeat(200));
        let frame = Frame::text(&text);
        let shared = frame.clone();
        assert!(!frame.is_deflated(), "made on first need only");
        let deflated = frame.deflated();
        assert!(shared.is_deflated());
        assert!(
            std::ptr::eq(deflated, shared.deflated()),
            "one copy for all"
        );
        assert_eq!(deflated[0], 0x80 | RSV1 | 0x1);
        assert!(deflated.len() < frame.plain().len());
        let payload = match deflated[1] {
            126 => &deflated[4..],
            n => &deflated[2 + usize::from(n == 127) * 8..],
        };
        let negotiated = Negotiated {
            server_no_context_takeover: true,
            ..Negotiated::default()
        };
        let mut inflater = Inflater::new(Role::Client, &negotiated, None);
        let mut out = bytes::BytesMut::new();
        inflater.inflate(payload, true, &mut out).unwrap();
        assert_eq!(&out[..], text.as_bytes());
    }

    #[test]
    fn small_payloads_go_out_plain_to_everyone() {
        let frame = Frame::text(r#"{"type":"ack"}"#);
        assert_eq!(frame.deflated(), frame.plain());
    }
}
