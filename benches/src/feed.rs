//! The compressed receive case's data and server: a JSON market-data feed of 1 KiB Text
//! messages, and a server that answers permessage-deflate and bursts the feed pre-compressed.
//!
//! The feed is trade batches as exchanges publish them (seven trades, each with its id,
//! product, side, price, size and time, and a checksum that fills the message to exactly
//! [`FEED_SIZE`] bytes). Prices, sizes, sides and the checksum vary from message to message, so
//! it compresses as such data does, not as a repeated string would (about 3.7× per message at
//! zlib level 6 with an empty window).
//!
//! The server compresses each distinct message once, at start, with
//! `server_no_context_takeover` (every message starts from an empty window): a pre-compressed
//! frame is then valid on every connection and at any point of it, as with a hub that shares
//! one compressed frame among its subscribers. With context takeover the bytes of a message
//! would depend on everything the connection carried before it, so the server would have to
//! compress during the measurement. It forces `server_no_context_takeover` on every client,
//! which RFC 7692 allows a server to do.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use bytes::BytesMut;
use resocket_proto::deflate::{self, Deflater, Inflater, Negotiated, Role, ServerDeflateConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};
use tokio_tungstenite::tungstenite::{
    handshake::server::{Request, Response},
    http::header::SEC_WEBSOCKET_EXTENSIONS,
};

use crate::server::{serve_loopback, BURST_BATCH};

/// Every feed message has exactly this many bytes.
pub const FEED_SIZE: usize = 1024;

/// Distinct messages in the feed; the server sends them round and round.
pub const FEED_MESSAGES: usize = 256;

/// The zlib level the server compresses with (the usual default, and the hub's).
pub const FEED_LEVEL: u8 = 6;

/// A small deterministic generator (xorshift64*), so that every run sends the same feed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The feed: [`FEED_MESSAGES`] JSON texts of [`FEED_SIZE`] bytes each.
pub fn market_data() -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..FEED_MESSAGES as u64)
        .map(|i| message(&mut rng, i))
        .collect()
}

fn message(rng: &mut Rng, i: u64) -> String {
    use std::fmt::Write as _;
    // Lot sizes as traders use them: a round base times a small factor.
    const LOTS: [u64; 13] = [1, 2, 5, 10, 15, 20, 25, 50, 100, 150, 250, 500, 1000];
    let mid_cents = 9_700_000 + rng.below(300_000);
    let ms = 1_764_680_000_000 + i * 13;
    let mut s = String::with_capacity(FEED_SIZE);
    let _ = write!(
        s,
        r#"{{"channel":"matches","sequence":{},"events":["#,
        90_000_000_000 + i * 11
    );
    for k in 0..7u64 {
        if k > 0 {
            s.push(',');
        }
        let side = if rng.below(2) == 0 { "buy" } else { "sell" };
        let price = mid_cents + rng.below(41) - 20;
        // Size in units of 1e-8, printed with eight decimals.
        let size = LOTS[rng.below(LOTS.len() as u64) as usize] * (1 + rng.below(9)) * 10_000;
        let at = ms + k * 1_003;
        let _ = write!(
            s,
            r#"{{"trade_id":{},"product_id":"BTC-USD","side":"{side}","price":"{}.{:02}","size":"{}.{:08}","time":"2026-12-02T14:58:{:02}.{:03}Z"}}"#,
            812_000_000 + i * 9 + k,
            price / 100,
            price % 100,
            size / 100_000_000,
            size % 100_000_000,
            (at / 1000) % 60,
            at % 1000,
        );
    }
    s.push_str(r#"],"checksum":"#);
    let digits = FEED_SIZE - s.len() - 1;
    assert!(
        (8..64).contains(&digits),
        "the trades leave room for a checksum"
    );
    s.push(char::from(b'1' + rng.below(9) as u8));
    for _ in 1..digits {
        s.push(char::from(b'0' + rng.below(10) as u8));
    }
    s.push('}');
    assert_eq!(s.len(), FEED_SIZE);
    s
}

/// The feed as frames back to back, with where each frame starts, so that any run of
/// consecutive messages is one slice.
struct Frames {
    wire: Vec<u8>,
    /// `FEED_MESSAGES + 1` offsets: frame `i` is `wire[at[i]..at[i + 1]]`.
    at: Vec<usize>,
}

impl Frames {
    fn encode(feed: &[String], compress: Option<&mut Deflater>) -> Frames {
        let mut wire = Vec::new();
        let mut at = vec![0];
        let mut payload = Vec::new();
        let mut deflater = compress;
        for text in feed {
            payload.clear();
            let rsv1 = match deflater.as_mut() {
                Some(deflater) => {
                    deflater
                        .compress(text.as_bytes(), &mut payload)
                        .expect("deflate");
                    true
                }
                None => {
                    payload.extend_from_slice(text.as_bytes());
                    false
                }
            };
            let mut frame = resocket_testkit::raw_frame(true, 0x1, &payload);
            if rsv1 {
                frame[0] |= 0x40;
            }
            wire.extend_from_slice(&frame);
            at.push(wire.len());
        }
        Frames { wire, at }
    }

    /// Wire bytes of the whole feed, frame headers included.
    fn bytes(&self) -> usize {
        self.wire.len()
    }
}

/// What a feed server has written, over all its connections.
#[derive(Debug, Default)]
pub struct Wire {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Wire {
    /// `(messages, bytes)` written so far, frame headers included.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.messages.load(Ordering::Acquire),
            self.bytes.load(Ordering::Acquire),
        )
    }
}

/// A feed server on `127.0.0.1:0`; it stops when dropped.
///
/// On each data message `"<n>"` from the client (compressed or not) it sends the next `n`
/// feed messages as Text frames, compressed when the upgrade agreed on permessage-deflate,
/// [`BURST_BATCH`] frames per write, straight to the socket.
pub struct FeedServer {
    addr: SocketAddr,
    wire: Arc<Wire>,
    task: JoinHandle<()>,
    ratio: f64,
}

struct Shared {
    plain: Frames,
    compressed: Frames,
    negotiated: Negotiated,
    wire: Arc<Wire>,
}

impl FeedServer {
    /// Encodes the feed both ways and starts listening.
    ///
    /// # Panics
    /// If loopback cannot be bound.
    pub async fn start() -> FeedServer {
        let feed = market_data();
        // What `answer` agrees to with the default offers of the clients here, with
        // `server_no_context_takeover` forced; checked against each client's offer below.
        let negotiated = Negotiated {
            server_no_context_takeover: true,
            ..Negotiated::default()
        };
        let mut deflater = Deflater::new(Role::Server, &negotiated, FEED_LEVEL);
        let shared = Arc::new(Shared {
            plain: Frames::encode(&feed, None),
            compressed: Frames::encode(&feed, Some(&mut deflater)),
            negotiated,
            wire: Arc::new(Wire::default()),
        });
        let ratio = shared.plain.bytes() as f64 / shared.compressed.bytes() as f64;
        let wire = shared.wire.clone();
        let (addr, task) = serve_loopback(move |tcp| serve(tcp, shared.clone())).await;
        FeedServer {
            addr,
            wire,
            task,
            ratio,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has written.
    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    /// Wire bytes of the uncompressed feed over those of the compressed one (frame headers
    /// included).
    pub fn ratio(&self) -> f64 {
        self.ratio
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The server's answer to the client's offer: forced `server_no_context_takeover`, everything
/// else on the client's terms.
fn server_config() -> ServerDeflateConfig {
    let mut config = ServerDeflateConfig::default();
    config.server_no_context_takeover = true;
    config.level = FEED_LEVEL;
    config
}

async fn serve(tcp: TcpStream, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let mut agreed = None;
    // The signature is tungstenite's `Callback`, error type included.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        let offers = request.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
        if let Some((negotiated, value)) = deflate::answer(&server_config(), offers) {
            agreed = Some(negotiated);
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_EXTENSIONS, value);
        }
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let frames = match agreed {
        Some(negotiated) => {
            // The frames were compressed once for these terms: the server's own direction
            // must be what they were made with.
            assert_eq!(
                negotiated.sent_by(Role::Server),
                shared.negotiated.sent_by(Role::Server),
                "the feed was compressed for other terms"
            );
            &shared.compressed
        }
        None => &shared.plain,
    };
    // The client sends only after the upgrade response, so tungstenite holds nothing past the
    // request and the stream starts at the client's first frame.
    let mut requests = Requests::new(ws.into_inner(), agreed);
    let mut next = 0usize;
    while let Some(n) = requests.next().await {
        let mut left = n as usize;
        let mut bytes = 0u64;
        while left > 0 {
            // Consecutive frames, up to the end of the feed or a batch.
            let take = left.min(BURST_BATCH).min(FEED_MESSAGES - next);
            let chunk = &frames.wire[frames.at[next]..frames.at[next + take]];
            if requests.tcp.write_all(chunk).await.is_err() {
                return;
            }
            bytes += chunk.len() as u64;
            next = (next + take) % FEED_MESSAGES;
            left -= take;
        }
        shared.wire.messages.fetch_add(n, Ordering::AcqRel);
        shared.wire.bytes.fetch_add(bytes, Ordering::AcqRel);
    }
}

/// Reads the client's frames: data messages are requests (inflated when compressed), Pings
/// are answered, a Close ends it.
struct Requests {
    tcp: TcpStream,
    buf: Vec<u8>,
    inflater: Option<Inflater>,
}

impl Requests {
    fn new(tcp: TcpStream, negotiated: Option<Negotiated>) -> Requests {
        Requests {
            tcp,
            buf: Vec::with_capacity(4096),
            inflater: negotiated.map(|n| Inflater::new(Role::Server, &n, Some(1 << 20))),
        }
    }

    /// The next request's count, or `None` once the client leaves.
    ///
    /// # Panics
    /// On a fragmented message or a request that is not a count: the clients here send
    /// neither.
    async fn next(&mut self) -> Option<u64> {
        loop {
            while let Some((b0, payload, used)) = parse(&self.buf) {
                let opcode = b0 & 0x0F;
                self.buf.drain(..used);
                match opcode {
                    0x1 | 0x2 => {
                        assert!(b0 & 0x80 != 0, "feed: fragmented request");
                        let text = if b0 & 0x40 != 0 {
                            let mut out = BytesMut::new();
                            self.inflater
                                .as_mut()
                                .expect("RSV1 only once negotiated")
                                .inflate(&payload, true, &mut out)
                                .expect("a valid compressed request");
                            String::from_utf8(out.to_vec()).expect("a text request")
                        } else {
                            String::from_utf8(payload).expect("a text request")
                        };
                        return Some(text.parse().expect("the request is a count"));
                    }
                    0x8 => return None,
                    0x9 => {
                        let mut pong = vec![0x8A, payload.len() as u8];
                        pong.extend_from_slice(&payload);
                        self.tcp.write_all(&pong).await.ok()?;
                    }
                    _ => {}
                }
            }
            match self.tcp.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// `(first byte, unmasked payload, frame length)` of the masked client frame at the start of
/// `data`, or `None` while it is incomplete.
fn parse(data: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&b0, &b1) = (data.first()?, data.get(1)?);
    assert!(b1 & 0x80 != 0, "feed: unmasked client frame");
    let (len, at) = match b1 & 0x7F {
        126 => (
            usize::from(u16::from_be_bytes(data.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(data.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        len => (usize::from(len), 2),
    };
    let mask: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
    let payload = data.get(at + 4..at + 4 + len)?;
    let unmasked = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Some((b0, unmasked, at + 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feed_message_is_json_of_the_feed_size() {
        let feed = market_data();
        assert_eq!(feed.len(), FEED_MESSAGES);
        for text in &feed {
            assert_eq!(text.len(), FEED_SIZE);
            assert!(text.starts_with('{') && text.ends_with('}'));
        }
        assert_ne!(feed[0], feed[1], "the messages vary");
    }

    #[test]
    fn the_compressed_feed_inflates_to_the_feed() {
        let feed = market_data();
        let negotiated = Negotiated {
            server_no_context_takeover: true,
            ..Negotiated::default()
        };
        let mut deflater = Deflater::new(Role::Server, &negotiated, FEED_LEVEL);
        let frames = Frames::encode(&feed, Some(&mut deflater));
        let mut inflater = Inflater::new(Role::Client, &negotiated, None);
        // Out of order, as a connection that starts mid-feed sees it.
        for i in [7, 0, 255, 3] {
            let frame = &frames.wire[frames.at[i]..frames.at[i + 1]];
            assert_eq!(frame[0], 0xC1, "FIN, RSV1, Text");
            let header = if frame[1] == 126 { 4 } else { 2 };
            let mut out = BytesMut::new();
            inflater.inflate(&frame[header..], true, &mut out).unwrap();
            assert_eq!(&out[..], feed[i].as_bytes());
        }
    }
}
