//! Compression round trips between the two roles, the worked examples of RFC 7692 (section
//! 7.2.3), and the decompression bomb.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, DecompressError, FlushCompress, FlushDecompress};

use super::{deflater::SYNC_TAIL, *};

fn bits(n: u8) -> WindowBits {
    WindowBits::new(n).unwrap()
}

/// Inflates one whole message, optionally cut into fragments of `fragment` bytes.
fn inflate_message(
    inflater: &mut Inflater,
    payload: &[u8],
    fragment: Option<usize>,
) -> Result<Vec<u8>, InflateError> {
    let mut out = BytesMut::new();
    match fragment {
        None => inflater.inflate(payload, true, &mut out)?,
        Some(size) => {
            let chunks: Vec<&[u8]> = payload.chunks(size).collect();
            if chunks.is_empty() {
                inflater.inflate(&[], true, &mut out)?;
            }
            for (i, chunk) in chunks.iter().enumerate() {
                inflater.inflate(chunk, i + 1 == chunks.len(), &mut out)?;
            }
        }
    }
    Ok(out.to_vec())
}

fn unhex(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect()
}

/// Text that compresses well within one message and refers back to earlier messages.
fn sample(i: usize) -> Vec<u8> {
    format!(
        "{{\"channel\":\"ticker\",\"seq\":{i},\"price\":\"{}.{:02}\",\"note\":\"{}\"}}",
        1000 + i % 37,
        i % 100,
        "the same words again and again ".repeat(i % 5)
    )
    .into_bytes()
}

/// A payload larger than every window, with repeats at distances of a few bytes up to 20 KiB:
/// a compressor whose window is larger than negotiated would refer past the receiver's.
fn long_sample() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    let block: Vec<u8> = (0..20_000).map(|_| rng.alphanumeric() as u8).collect();
    let mut out = Vec::new();
    for round in 0..4 {
        out.extend_from_slice(&block);
        out.extend_from_slice(format!("round {round}").as_bytes());
    }
    out
}

/// A receiver as section 7.2.2 describes it and other implementations work, with none of
/// [`Inflater`]'s special cases: append the tail to every payload, inflate, reset when asked.
struct PlainReceiver {
    decompress: Decompress,
    no_context_takeover: bool,
}

impl PlainReceiver {
    fn new(window: WindowBits, no_context_takeover: bool) -> PlainReceiver {
        PlainReceiver {
            decompress: Decompress::new_with_window_bits(false, window.get().max(9)),
            no_context_takeover,
        }
    }

    fn inflate(&mut self, payload: &[u8]) -> Result<Vec<u8>, DecompressError> {
        let input = [payload, &SYNC_TAIL].concat();
        let mut rest = &input[..];
        let mut out = Vec::new();
        let mut chunk = [0u8; 64];
        loop {
            let (before_in, before_out) = (self.decompress.total_in(), self.decompress.total_out());
            self.decompress
                .decompress(rest, &mut chunk, FlushDecompress::None)?;
            rest = &rest[(self.decompress.total_in() - before_in) as usize..];
            let written = (self.decompress.total_out() - before_out) as usize;
            out.extend_from_slice(&chunk[..written]);
            if written < chunk.len() && rest.is_empty() {
                break;
            }
        }
        if self.no_context_takeover {
            self.decompress.reset(false);
        }
        Ok(out)
    }
}

#[test]
fn round_trips_every_window_size_both_ways_with_and_without_context_takeover() {
    let messages: Vec<Vec<u8>> = (0..20)
        .map(sample)
        .chain([Vec::new(), long_sample(), Vec::new(), sample(3)])
        .collect();
    for n in 8..=15 {
        for no_context_takeover in [false, true] {
            let negotiated = Negotiated {
                server_no_context_takeover: no_context_takeover,
                client_no_context_takeover: no_context_takeover,
                server_max_window_bits: bits(n),
                client_max_window_bits: bits(n),
            };
            for sender in [Role::Client, Role::Server] {
                let mut deflater = Deflater::new(sender, &negotiated, 6);
                // A fresh inflater with exactly the negotiated window: the one the peer holds.
                let mut inflater = Inflater::new(sender.peer(), &negotiated, None);
                let mut plain = PlainReceiver::new(bits(n), no_context_takeover);
                let mut payload = Vec::new();
                for (i, message) in messages.iter().enumerate() {
                    payload.clear();
                    deflater.compress(message, &mut payload).unwrap();
                    let fragment = (i % 3 == 1).then_some(7);
                    let inflated = inflate_message(&mut inflater, &payload, fragment)
                        .unwrap_or_else(|e| panic!("{n} bits, {sender:?}, message {i}: {e}"));
                    assert_eq!(&inflated, message, "{n} bits, {sender:?}, message {i}");
                    let plainly = plain.inflate(&payload).unwrap();
                    assert_eq!(&plainly, message, "{n} bits, {sender:?}, message {i}");
                }
            }
        }
    }
}

#[test]
fn the_compressor_keeps_to_the_negotiated_window() {
    // zlib-rs inflates with a 32 KiB window whatever it is told, so a receiver cannot catch a
    // reference past a smaller one; the size shows it instead. Each 20 000-byte random block
    // repeats at a distance only a 15-bit window reaches.
    for n in 8..=15 {
        let negotiated = Negotiated {
            client_max_window_bits: bits(n),
            ..Negotiated::default()
        };
        let mut deflater = Deflater::new(Role::Client, &negotiated, 9);
        let mut payload = Vec::new();
        deflater.compress(&long_sample(), &mut payload).unwrap();
        if n == 15 {
            assert!(payload.len() < 25_000, "{n} bits: {}", payload.len());
        } else {
            assert!(payload.len() > 55_000, "{n} bits: {}", payload.len());
        }
    }
}

#[test]
fn each_direction_uses_its_own_parameters() {
    // The client keeps context in a small window, the server resets with a large one.
    let negotiated = Negotiated {
        server_no_context_takeover: true,
        client_no_context_takeover: false,
        server_max_window_bits: bits(15),
        client_max_window_bits: bits(9),
    };
    let mut client_out = Deflater::new(Role::Client, &negotiated, 9);
    let mut server_in = Inflater::new(Role::Server, &negotiated, None);
    let mut server_out = Deflater::new(Role::Server, &negotiated, 9);
    let mut client_in = Inflater::new(Role::Client, &negotiated, None);
    let message = sample(4);
    let (mut first, mut second) = (Vec::new(), Vec::new());

    client_out.compress(&message, &mut first).unwrap();
    client_out.compress(&message, &mut second).unwrap();
    assert!(
        second.len() < first.len() / 2,
        "context takeover refers back"
    );
    assert_eq!(
        inflate_message(&mut server_in, &first, None).unwrap(),
        message
    );
    assert_eq!(
        inflate_message(&mut server_in, &second, None).unwrap(),
        message
    );

    let (mut first, mut second) = (Vec::new(), Vec::new());
    server_out.compress(&message, &mut first).unwrap();
    server_out.compress(&message, &mut second).unwrap();
    assert_eq!(first, second, "no context takeover: each message alone");
    // Without context, one compressed message inflates on any receiver, in any order.
    for payload in [&second, &first] {
        let mut fresh = Inflater::new(Role::Client, &negotiated, None);
        assert_eq!(inflate_message(&mut fresh, payload, None).unwrap(), message);
        assert_eq!(
            inflate_message(&mut client_in, payload, None).unwrap(),
            message
        );
    }
}

#[test]
fn compresses_the_rfc_examples() {
    let negotiated = Negotiated::default();
    let mut deflater = Deflater::new(Role::Server, &negotiated, 6);
    let mut out = Vec::new();
    // Section 7.2.3.1, then 7.2.3.2: the second "Hello" refers to the first.
    deflater.compress(b"Hello", &mut out).unwrap();
    assert_eq!(out, unhex("f2 48 cd c9 c9 07 00"));
    out.clear();
    deflater.compress(b"Hello", &mut out).unwrap();
    assert_eq!(out, unhex("f2 00 11 00 00"));

    let reset = Negotiated {
        server_no_context_takeover: true,
        ..negotiated
    };
    let mut deflater = Deflater::new(Role::Server, &reset, 6);
    for _ in 0..2 {
        out.clear();
        deflater.compress(b"Hello", &mut out).unwrap();
        assert_eq!(out, unhex("f2 48 cd c9 c9 07 00"));
    }
}

#[test]
fn inflates_the_rfc_examples() {
    let negotiated = Negotiated::default();
    let fresh = || Inflater::new(Role::Client, &negotiated, None);
    let cases: &[(&str, &[&str])] = &[
        // 7.2.3.1: one message, then the same as two fragments.
        ("one block", &["f2 48 cd c9 c9 07 00"]),
        ("fragmented", &["f2 48 cd", "c9 c9 07 00"]),
        // 7.2.3.3: a stored block.
        ("stored", &["00 05 00 fa ff 48 65 6c 6c 6f 00"]),
        // 7.2.3.4: a final block, and the padding byte after it.
        ("bfinal", &["f3 48 cd c9 c9 07 00 00"]),
        // 7.2.3.5: two blocks in one message.
        ("two blocks", &["f2 48 05 00 00 00 ff ff ca c9 c9 07 00"]),
    ];
    for (name, fragments) in cases {
        let mut inflater = fresh();
        let mut out = BytesMut::new();
        for (i, fragment) in fragments.iter().enumerate() {
            let last = i + 1 == fragments.len();
            inflater.inflate(&unhex(fragment), last, &mut out).unwrap();
        }
        assert_eq!(&out[..], b"Hello", "{name}");
    }

    // 7.2.3.2: the second message refers to the first.
    let mut inflater = fresh();
    for payload in ["f2 48 cd c9 c9 07 00", "f2 00 11 00 00"] {
        let inflated = inflate_message(&mut inflater, &unhex(payload), None).unwrap();
        assert_eq!(inflated, b"Hello");
    }

    // Three messages captured from pywebsocket, each shorter than the last.
    let mut inflater = fresh();
    for payload in ["2a c9 2f 4a 04 00", "2a 01 62 00 00", "02 61 00 00"] {
        let inflated = inflate_message(&mut inflater, &unhex(payload), None).unwrap();
        assert_eq!(inflated, b"tora");
    }
}

#[test]
fn a_final_block_starts_a_new_stream_for_the_next_message() {
    let mut inflater = Inflater::new(Role::Client, &Negotiated::default(), None);
    for _ in 0..3 {
        let inflated = inflate_message(&mut inflater, &unhex("f3 48 cd c9 c9 07 00 00"), None);
        assert_eq!(inflated.unwrap(), b"Hello");
    }
    let inflated = inflate_message(&mut inflater, &unhex("f2 48 cd c9 c9 07 00"), None);
    assert_eq!(inflated.unwrap(), b"Hello");
}

#[test]
fn empty_messages_round_trip_and_an_empty_payload_is_an_empty_message() {
    let negotiated = Negotiated::default();
    let mut deflater = Deflater::new(Role::Client, &negotiated, 6);
    let mut inflater = Inflater::new(Role::Server, &negotiated, Some(5));
    let mut plain = PlainReceiver::new(WindowBits::MAX, false);
    let mut payload = Vec::new();
    // Right after a flush zlib has nothing to write for an empty message; the payload is then
    // an empty stored block's header (section 7.2.3.6), which a receiver that appends the tail
    // reads as an empty block, and the streams stay in step.
    for message in [&b""[..], b"", b"Hello", b"", b"Hello"] {
        payload.clear();
        deflater.compress(message, &mut payload).unwrap();
        assert!(!payload.is_empty());
        assert_eq!(
            inflate_message(&mut inflater, &payload, None).unwrap(),
            message
        );
        assert_eq!(plain.inflate(&payload).unwrap(), message);
    }
    payload.clear();
    deflater.compress(b"", &mut payload).unwrap();
    assert_eq!(payload, [0x00]);
    // A payload of nothing at all, in one frame or several, is an empty message that leaves
    // the stream as it was.
    assert_eq!(inflate_message(&mut inflater, &[], None).unwrap(), b"");
    let mut out = BytesMut::new();
    inflater.inflate(&[], false, &mut out).unwrap();
    inflater.inflate(&[], true, &mut out).unwrap();
    assert!(out.is_empty());
    payload.clear();
    deflater.compress(b"Hello", &mut payload).unwrap();
    assert_eq!(
        inflate_message(&mut inflater, &payload, None).unwrap(),
        b"Hello"
    );
}

#[test]
fn compress_appends_to_the_buffer_and_reuses_it() {
    let negotiated = Negotiated::default();
    let mut deflater = Deflater::new(Role::Client, &negotiated, 6);
    let mut out = b"header".to_vec();
    deflater.compress(b"Hello", &mut out).unwrap();
    assert_eq!(
        out,
        [b"header".as_slice(), &unhex("f2 48 cd c9 c9 07 00")].concat()
    );

    out.clear();
    deflater.compress(&long_sample(), &mut out).unwrap();
    let capacity = out.capacity();
    for i in 0..50 {
        out.clear();
        deflater.compress(&sample(i), &mut out).unwrap();
    }
    assert_eq!(out.capacity(), capacity, "no growth for smaller messages");
}

#[test]
fn payload_never_ends_with_the_sync_tail() {
    let mut deflater = Deflater::new(Role::Client, &Negotiated::default(), 6);
    let mut out = Vec::new();
    for message in [&b""[..], b"a", &sample(2), &long_sample()] {
        out.clear();
        deflater.compress(message, &mut out).unwrap();
        assert!(!out.ends_with(&SYNC_TAIL));
    }
}

#[test]
fn invalid_data_is_an_error() {
    let mut inflater = Inflater::new(Role::Client, &Negotiated::default(), None);
    // BTYPE 11 is reserved.
    let result = inflate_message(&mut inflater, &[0xff, 0xff, 0xff], None);
    assert!(
        matches!(result, Err(InflateError::Invalid(_))),
        "{result:?}"
    );
    // A back-reference with nothing before it.
    let mut inflater = Inflater::new(Role::Client, &Negotiated::default(), None);
    let result = inflate_message(&mut inflater, &unhex("f2 00 11 00 00"), None);
    assert!(
        matches!(result, Err(InflateError::Invalid(_))),
        "{result:?}"
    );
}

#[test]
fn the_limit_is_exact_and_spans_fragments() {
    let negotiated = Negotiated::default();
    let mut deflater = Deflater::new(Role::Server, &negotiated, 6);
    let message = long_sample();
    let mut payload = Vec::new();
    deflater.compress(&message, &mut payload).unwrap();

    let mut inflater = Inflater::new(Role::Client, &negotiated, Some(message.len()));
    let inflated = inflate_message(&mut inflater, &payload, Some(100)).unwrap();
    assert_eq!(inflated, message);

    let limit = message.len() - 1;
    for fragment in [None, Some(100)] {
        let mut deflater = Deflater::new(Role::Server, &negotiated, 6);
        let mut inflater = Inflater::new(Role::Client, &negotiated, Some(limit));
        payload.clear();
        deflater.compress(&message, &mut payload).unwrap();
        let mut out = BytesMut::new();
        let chunks: Vec<&[u8]> = payload.chunks(fragment.unwrap_or(payload.len())).collect();
        let mut result = Ok(());
        for (i, chunk) in chunks.iter().enumerate() {
            result = inflater.inflate(chunk, i + 1 == chunks.len(), &mut out);
            if result.is_err() {
                break;
            }
        }
        assert!(
            matches!(result, Err(InflateError::TooBig { limit: l }) if l == limit),
            "{result:?}"
        );
        assert!(
            out.len() <= limit + 1,
            "stopped at the limit: {}",
            out.len()
        );
    }
}

/// A compressed message of `mib` MiB of zeros, built without compressing all of it: once the
/// window is full of zeros, the sync-flushed output for the next MiB of zeros is the same run
/// of blocks whatever came before, so it can be repeated.
fn zero_bomb(mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut compress = Compress::new(Compression::best(), false);
    let mut segment = |out: &mut Vec<u8>| {
        let start = out.len();
        out.reserve(64 << 10);
        compress
            .compress_vec(&zeros, out, FlushCompress::Sync)
            .unwrap();
        assert_eq!(compress.total_in() % (1 << 20), 0, "one call took it all");
        out[start..].to_vec()
    };
    let mut payload = Vec::new();
    segment(&mut payload);
    let steady = segment(&mut payload);
    assert_eq!(steady, segment(&mut Vec::new()), "the steady state repeats");
    for _ in 2..mib {
        payload.extend_from_slice(&steady);
    }
    assert!(payload.ends_with(&SYNC_TAIL));
    payload.truncate(payload.len() - SYNC_TAIL.len());
    payload
}

#[test]
fn the_zero_bomb_inflates_to_what_it_claims() {
    let payload = zero_bomb(5);
    let mut inflater = Inflater::new(Role::Client, &Negotiated::default(), None);
    let inflated = inflate_message(&mut inflater, &payload, Some(1000)).unwrap();
    assert_eq!(inflated.len(), 5 << 20);
    assert!(inflated.iter().all(|&b| b == 0));
}

/// Peak and current resident memory of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[test]
#[cfg(target_os = "linux")]
fn decompression_bomb_stops_at_the_limit_with_bounded_memory() {
    const LIMIT: usize = 16 << 20;
    let payload = zero_bomb(1024);
    assert!(payload.len() < 2 << 20, "1 GiB in {} bytes", payload.len());

    // Start the peak from here (Linux resets VmHWM on "5"); other tests share the process,
    // so the peak is also compared with the resident size rather than zero.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (_, rss_before) = memory_kib();
    for fragment in [None, Some(64 << 10)] {
        let mut inflater = Inflater::new(Role::Server, &Negotiated::default(), Some(LIMIT));
        let result = inflate_message(&mut inflater, &payload, fragment);
        assert!(
            matches!(result, Err(InflateError::TooBig { limit: LIMIT })),
            "{result:?}"
        );
    }
    let (peak, _) = memory_kib();
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 64, "peak RSS grew by {growth_mib} MiB");
}
