//! The frame rules of permessage-deflate (RFC 7692, section 6), in both roles: what the writer
//! compresses and marks, what the reader inflates, and the RSV1 placements it refuses.

use std::task::{Context, Poll};

use resocket_testkit::raw_frame;
use tungstenite::{error::ProtocolError, Error as WsError, Message};

use super::{
    super::{
        deflate::{Deflater, InflateError, Inflater, Negotiated},
        write::FrameWriter,
        Role,
    },
    FrameReader, ReadLimits, Step, RESERVED, RESERVED_WITH_DEFLATE,
};

const ROLES: [Role; 2] = [Role::Client, Role::Server];
const RSV1: u8 = 0x40;

fn limits(role: Role, compression: bool, max_message: usize) -> ReadLimits {
    ReadLimits {
        role,
        max_frame: Some(16 << 20),
        max_message: Some(max_message),
        burst_buffer: 64 << 10,
        reserved: if compression {
            RESERVED_WITH_DEFLATE
        } else {
            RESERVED
        },
        release_idle: false,
    }
}

/// A reader in `role`, with permessage-deflate (default parameters) when `compression`.
fn reader(role: Role, compression: bool, max_message: usize) -> FrameReader {
    let inflater =
        compression.then(|| Inflater::new(role, &Negotiated::default(), Some(max_message)));
    FrameReader::new(limits(role, compression, max_message), &[], inflater)
}

/// One frame as the peer of `reader_role` sends it: masked (with a zero key, so the payload
/// reads as is) when that peer is the client; `rsv` ORed into the first byte.
fn frame(reader_role: Role, rsv: u8, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = raw_frame(fin, opcode, payload);
    f[0] |= rsv;
    if reader_role == Role::Server {
        let header = f.len() - payload.len();
        f[1] |= 0x80;
        f.splice(header..header, [0u8; 4]);
    }
    f
}

/// `message` compressed as the peer of `reader_role` compresses it.
fn compressed(reader_role: Role, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Deflater::new(reader_role.peer(), &Negotiated::default(), 6)
        .compress(message, &mut out)
        .unwrap();
    out
}

/// Reads all of `wire`: the data messages, and how it ended (`Ok` at the end of the input).
fn read(reader: &mut FrameReader, wire: &[u8]) -> (Vec<Message>, Result<(), WsError>) {
    let mut io = wire;
    read_all(reader, &mut io)
}

/// Reads `io` to its end: the data messages, and how it ended (`Ok` at the end of the input).
fn read_all(
    reader: &mut FrameReader,
    io: &mut (impl tokio::io::AsyncRead + Unpin),
) -> (Vec<Message>, Result<(), WsError>) {
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut messages = Vec::new();
    let end = loop {
        let mut batch = Vec::new();
        let step = reader.poll_step(io, &mut cx, &mut batch, 16);
        reader.seal(&mut batch);
        messages.append(&mut batch);
        match step {
            Poll::Ready(Ok(Step::Eof)) => break Ok(()),
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => break Err(e),
            Poll::Pending => unreachable!("the input never blocks"),
        }
    };
    (messages, end)
}

fn is_reserved_bits(result: &Result<(), WsError>) -> bool {
    matches!(
        result,
        Err(WsError::Protocol(ProtocolError::NonZeroReservedBits))
    )
}

fn text_of(size: usize) -> String {
    (0..size)
        .map(|i| ["é", "a", "€", "b", "😀"][i % 5])
        .collect()
}

#[test]
fn written_data_messages_are_compressed_with_rsv1_and_read_back_in_both_roles() {
    for role in ROLES {
        let deflater = Deflater::new(role, &Negotiated::default(), 6);
        let mut writer = FrameWriter::new(role, 1 << 20, Some(deflater), false);
        let messages: Vec<Message> = [0usize, 1, 100, 5_000, 70_000]
            .into_iter()
            .flat_map(|size| {
                [
                    Message::text(text_of(size)),
                    Message::binary(vec![7u8; size]),
                ]
            })
            .collect();
        for msg in &messages {
            writer.encode(msg);
        }
        let wire = writer.written_for_test().to_vec();
        assert_eq!(wire[0], 0x80 | RSV1 | 0x1, "{role:?}: FIN, RSV1, Text");
        let raw_size: usize = messages.iter().map(Message::len).sum();
        assert!(wire.len() < raw_size / 4, "{role:?}: compressed");
        let mut peer = reader(role.peer(), true, 1 << 20);
        let (read_back, end) = read(&mut peer, &wire);
        end.unwrap();
        assert_eq!(read_back, messages, "{role:?}");
    }
}

#[test]
fn control_frames_are_never_compressed() {
    for role in ROLES {
        let deflater = Deflater::new(role, &Negotiated::default(), 6);
        let mut writer = FrameWriter::new(role, 1 << 20, Some(deflater), false);
        writer.encode(&Message::Ping(vec![b'p'; 50].into()));
        assert_eq!(writer.written_for_test()[0], 0x89, "{role:?}: a plain Ping");
        writer.discard();
        writer.encode(&Message::Pong(vec![b'p'; 50].into()));
        assert_eq!(writer.written_for_test()[0], 0x8A, "{role:?}: a plain Pong");
        writer.discard();
        writer.close(None);
        assert_eq!(
            writer.written_for_test()[0],
            0x88,
            "{role:?}: a plain Close"
        );
    }
}

#[test]
fn a_fragmented_compressed_message_is_inflated_fragment_by_fragment() {
    for role in ROLES {
        let message = text_of(3_000);
        let payload = compressed(role, message.as_bytes());
        let third = payload.len() / 3;
        let mut wire = frame(role, RSV1, false, 0x1, &payload[..third]);
        // A control frame between fragments stays uncompressed and does not disturb it.
        wire.extend(frame(role, 0, true, 0x9, b"ping"));
        wire.extend(frame(role, 0, false, 0x0, &payload[third..2 * third]));
        wire.extend(frame(role, 0, true, 0x0, &payload[2 * third..]));
        // An uncompressed message after it, on the same connection.
        wire.extend(frame(role, 0, true, 0x2, b"plain"));
        let (messages, end) = read(&mut reader(role, true, 1 << 20), &wire);
        end.unwrap();
        assert_eq!(
            messages,
            vec![Message::text(message), Message::binary(&b"plain"[..])],
            "{role:?}"
        );
    }
}

#[test]
fn rsv1_on_a_continuation_frame_is_a_protocol_error() {
    for role in ROLES {
        for first_rsv in [0, RSV1] {
            let payload = compressed(role, b"hello hello hello");
            let mut wire = frame(role, first_rsv, false, 0x2, &payload[..4]);
            wire.extend(frame(role, RSV1, true, 0x0, &payload[4..]));
            let (messages, end) = read(&mut reader(role, true, 1 << 20), &wire);
            assert!(messages.is_empty());
            assert!(is_reserved_bits(&end), "{role:?} {first_rsv:#x}: {end:?}");
        }
    }
}

#[test]
fn rsv1_on_a_control_frame_is_a_protocol_error() {
    for role in ROLES {
        for opcode in [0x8, 0x9, 0xA] {
            let wire = frame(role, RSV1, true, opcode, &[0x03, 0xE8]);
            let (_, end) = read(&mut reader(role, true, 1 << 20), &wire);
            assert!(is_reserved_bits(&end), "{role:?} {opcode:#x}: {end:?}");
        }
    }
}

#[test]
fn rsv1_without_permessage_deflate_is_a_protocol_error() {
    for role in ROLES {
        let wire = frame(role, RSV1, true, 0x1, &compressed(role, b"hello"));
        let (messages, end) = read(&mut reader(role, false, 1 << 20), &wire);
        assert!(messages.is_empty());
        assert!(is_reserved_bits(&end), "{role:?}: {end:?}");
    }
}

#[test]
fn rsv2_and_rsv3_stay_protocol_errors_with_permessage_deflate() {
    for role in ROLES {
        for rsv in [0x20, 0x10, RSV1 | 0x20] {
            let wire = frame(role, rsv, true, 0x2, b"x");
            let (_, end) = read(&mut reader(role, true, 1 << 20), &wire);
            assert!(is_reserved_bits(&end), "{role:?} {rsv:#x}: {end:?}");
        }
    }
}

#[test]
fn a_decompression_bomb_stops_at_the_message_limit_with_bounded_memory() {
    const LIMIT: usize = 1 << 20;
    for role in ROLES {
        // 64 MiB of zeros compress to about 64 KiB.
        let payload = compressed(role, &vec![0u8; 64 << 20]);
        assert!(payload.len() < LIMIT / 8);
        for fragments in [1, 4] {
            let chunk = payload.len().div_ceil(fragments);
            let mut wire = Vec::new();
            for (i, part) in payload.chunks(chunk).enumerate() {
                let (rsv, opcode) = if i == 0 { (RSV1, 0x2) } else { (0, 0x0) };
                wire.extend(frame(role, rsv, i == fragments - 1, opcode, part));
            }
            let mut reader = reader(role, true, LIMIT);
            let (messages, end) = read(&mut reader, &wire);
            assert!(messages.is_empty());
            assert!(
                matches!(
                    end,
                    Err(WsError::Capacity(
                        tungstenite::error::CapacityError::MessageTooLong {
                            max_size: LIMIT,
                            ..
                        }
                    ))
                ),
                "{role:?}, {fragments} fragments: {end:?}"
            );
            // The buffer grows by doubling: up to twice the limit, never toward 64 MiB.
            let inflate = reader.inflate.as_ref().unwrap();
            assert!(
                inflate.out.capacity() <= 2 * LIMIT + (128 << 10),
                "{role:?}: the inflate buffer holds {} bytes",
                inflate.out.capacity()
            );
        }
    }
}

#[test]
fn invalid_deflate_data_fails_with_the_inflate_error() {
    for role in ROLES {
        // A block type of 3 is reserved in DEFLATE.
        let wire = frame(role, RSV1, true, 0x2, &[0xFF, 0xFF, 0xFF, 0xFF]);
        let (_, end) = read(&mut reader(role, true, 1 << 20), &wire);
        let Err(WsError::Io(io)) = end else {
            panic!("{role:?}: {end:?}");
        };
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
        let source = io.get_ref().and_then(|e| e.downcast_ref::<InflateError>());
        assert!(
            matches!(source, Some(InflateError::Invalid(_))),
            "{role:?}: {io:?}"
        );
    }
}

#[test]
fn compressed_text_is_checked_as_utf8_once_inflated() {
    for role in ROLES {
        let bad = compressed(role, b"valid, then \xC3\x28 not");
        let wire = frame(role, RSV1, true, 0x1, &bad);
        let (messages, end) = read(&mut reader(role, true, 1 << 20), &wire);
        assert!(messages.is_empty());
        assert!(matches!(end, Err(WsError::Utf8(_))), "{role:?}: {end:?}");
        // A message cut inside a character, across fragments: caught at the last one.
        let cut = compressed(role, b"ends inside \xE2\x82");
        let mut wire = frame(role, RSV1, false, 0x1, &cut[..3]);
        wire.extend(frame(role, 0, true, 0x0, &cut[3..]));
        let (_, end) = read(&mut reader(role, true, 1 << 20), &wire);
        assert!(matches!(end, Err(WsError::Utf8(_))), "{role:?}: {end:?}");
    }
}

#[test]
fn compressed_bytes_that_are_not_utf8_pass_when_their_text_is() {
    for role in ROLES {
        let message = text_of(200);
        let payload = compressed(role, message.as_bytes());
        assert!(std::str::from_utf8(&payload).is_err(), "the test needs it");
        // Sent slowly: the reader sees the frame incomplete first.
        let wire = frame(role, RSV1, true, 0x1, &payload);
        let mut reader = reader(role, true, 1 << 20);
        let (messages, end) = read_in_pieces(&mut reader, &wire, 3);
        end.unwrap();
        assert_eq!(messages, vec![Message::text(message)], "{role:?}");
    }
}

/// As [`read`], handing out at most `chunk` bytes per read.
fn read_in_pieces(
    reader: &mut FrameReader,
    wire: &[u8],
    chunk: usize,
) -> (Vec<Message>, Result<(), WsError>) {
    read_all(reader, &mut Pieces { wire, chunk })
}

struct Pieces<'a> {
    wire: &'a [u8],
    chunk: usize,
}

impl tokio::io::AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.wire.len());
        let (head, rest) = self.wire.split_at(n);
        buf.put_slice(head);
        self.wire = rest;
        Poll::Ready(Ok(()))
    }
}

/// Where a message's bytes start.
fn start_of(message: &Message) -> *const u8 {
    match message {
        Message::Text(text) => text.as_ptr(),
        Message::Binary(data) => data.as_ptr(),
        other => panic!("not a data message: {other:?}"),
    }
}

#[test]
fn inflated_messages_are_split_off_one_buffer_and_stay_intact_as_it_is_reused() {
    for role in ROLES {
        let deflater = Deflater::new(role.peer(), &Negotiated::default(), 6);
        let mut writer = FrameWriter::new(role.peer(), 1 << 20, Some(deflater), false);
        // Far more than one buffer's room: text held all along, then binary mostly dropped as
        // it arrives, so the buffer's room is both renewed and reused.
        let messages: Vec<Message> = (0..60)
            .map(|i| Message::text(text_of(1_000 + i)))
            .chain((0..60).map(|i| Message::binary(vec![i as u8; 900 + i])))
            .collect();
        for msg in &messages {
            writer.encode(msg);
        }
        let wire = writer.written_for_test().to_vec();
        let mut reader = reader(role, true, 1 << 20);
        let mut io = Pieces {
            wire: &wire,
            chunk: 4096,
        };
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut kept = Vec::new();
        let mut seen = 0;
        loop {
            let mut batch = Vec::new();
            let step = reader.poll_step(&mut io, &mut cx, &mut batch, 16);
            reader.seal(&mut batch);
            for msg in batch {
                assert_eq!(msg, messages[seen], "{role:?}: message {seen} as read");
                if seen < 60 || seen % 10 == 0 {
                    kept.push((seen, msg));
                }
                seen += 1;
            }
            match step {
                Poll::Ready(Ok(Step::Eof)) => break,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => panic!("{role:?}: {e}"),
                Poll::Pending => unreachable!("the input never blocks"),
            }
        }
        assert_eq!(seen, messages.len(), "{role:?}");
        for (at, msg) in &kept {
            assert_eq!(
                *msg, messages[*at],
                "{role:?}: message {at} once the rest was read"
            );
        }
        // Handed out where they were inflated: each one right behind the one before.
        let adjacent = kept[..60]
            .windows(2)
            .filter(|pair| {
                start_of(&pair[0].1).wrapping_add(pair[0].1.len()) == start_of(&pair[1].1)
            })
            .count();
        assert!(
            adjacent >= 30,
            "{role:?}: {adjacent} of 60 right behind the one before"
        );
    }
}

#[test]
fn invalid_utf8_in_the_last_compressed_frame_names_its_index_in_the_message() {
    for role in ROLES {
        let payload = compressed(role, b"0123456789 and then \xC3\x28");
        let mut wire = frame(role, RSV1, false, 0x1, &payload[..4]);
        wire.extend(frame(role, 0, true, 0x0, &payload[4..]));
        let (messages, end) = read(&mut reader(role, true, 1 << 20), &wire);
        assert!(messages.is_empty());
        match end {
            Err(WsError::Utf8(e)) => {
                assert_eq!(
                    e, "invalid utf-8 sequence of 1 bytes from index 20",
                    "{role:?}"
                );
            }
            other => panic!("{role:?}: {other:?}"),
        }
    }
}
