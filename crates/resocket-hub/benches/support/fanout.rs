//! The fan-out pass shared by the hub's benches: bare-socket subscribers with a minimal frame
//! parser (inflating permessage-deflate when it was agreed), one publisher sending closed-loop
//! rounds, publish-to-deliver latency of every delivery and the bytes the subscribers read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use resocket_proto::deflate::{Inflater, Negotiated, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// A `usize` setting from the environment, else `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One pass against one server.
pub struct Pass {
    pub deliveries: u64,
    /// Bytes the subscribers read after their upgrade (frames, compressed or not).
    pub wire_bytes: u64,
    pub elapsed: Duration,
    /// Publish-to-deliver latency of every delivery, in microseconds.
    pub latencies: Vec<u64>,
}

/// Passes against one server, combined.
#[derive(Default)]
pub struct Totals {
    deliveries: u64,
    wire_bytes: u64,
    elapsed: Duration,
    latencies: Vec<u64>,
}

impl Totals {
    pub fn add(&mut self, pass: Pass) {
        self.deliveries += pass.deliveries;
        self.wire_bytes += pass.wire_bytes;
        self.elapsed += pass.elapsed;
        self.latencies.extend(pass.latencies);
    }

    pub fn per_sec(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
        Duration::from_micros(self.latencies[i])
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(self.latencies.iter().copied().max().unwrap_or(0))
    }

    pub fn line(&mut self) -> String {
        format!(
            "{:>12.0} deliveries/s   p50 {:>8.2?}   p99 {:>8.2?}   max {:>8.2?}   {:>6.1} B/delivery",
            self.per_sec(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.max(),
            self.wire_bytes as f64 / self.deliveries as f64
        )
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, hub_protocol: bool) -> Ws {
    let mut req = url.into_client_request().unwrap();
    if hub_protocol {
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("resocket.v1"),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .expect("connect")
        .0
}

/// A subscriber on a bare socket with a minimal frame parser, so that the clients' cost is
/// small and the same for every server, and the bench measures the servers. With compression
/// negotiated it inflates compressed frames, which costs the same for every server too.
struct RawSub {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    inflater: Option<Inflater>,
    inflated: BytesMut,
    wire_bytes: u64,
}

impl RawSub {
    /// Upgrades, offering permessage-deflate when `deflate`; returns the subscriber and what
    /// was agreed.
    async fn connect(url: &str, hub_protocol: bool, deflate: bool) -> (RawSub, Option<Negotiated>) {
        let addr = url.trim_start_matches("ws://").trim_end_matches("/ws");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Subscribers only read after subscribing, and keep the kernel's default delayed
        // ACKs (no TCP_QUICKACK): a server that leaves Nagle on stalls on them, as real
        // read-only clients would make it.
        stream.set_nodelay(true).unwrap();
        let mut buf = Vec::with_capacity(64 * 1024);
        let negotiated =
            super::upgrade::upgrade(&mut stream, addr, hub_protocol, deflate, &mut buf).await;
        let sub = RawSub {
            stream,
            buf,
            inflater: negotiated.map(|n| Inflater::new(Role::Client, &n, Some(1 << 20))),
            inflated: BytesMut::with_capacity(4096),
            wire_bytes: 0,
        };
        (sub, negotiated)
    }

    async fn fill(&mut self) {
        let n = self.stream.read_buf(&mut self.buf).await.unwrap();
        assert!(n > 0, "server closed the connection");
        self.wire_bytes += n as u64;
    }

    async fn send_text(&mut self, text: &str) {
        let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(text.as_bytes());
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Reads once, then hands every complete text frame to `f`.
    async fn frames(&mut self, mut f: impl FnMut(&str)) {
        self.fill().await;
        let mut at = 0;
        loop {
            let b = &self.buf[at..];
            if b.len() < 2 {
                break;
            }
            let (len, head) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if b.len() < head + len {
                break;
            }
            assert!(
                b[0] & 0x80 != 0,
                "the servers send no fragments at this size"
            );
            if b[0] & 0x0f == 1 {
                let payload = &b[head..head + len];
                if b[0] & 0x40 != 0 {
                    // RSV1: a compressed message.
                    self.inflated.clear();
                    self.inflater
                        .as_mut()
                        .expect("RSV1 only after permessage-deflate was agreed")
                        .inflate(payload, true, &mut self.inflated)
                        .expect("valid compressed data");
                    f(std::str::from_utf8(&self.inflated).unwrap());
                } else {
                    f(std::str::from_utf8(payload).unwrap());
                }
            }
            at += head + len;
        }
        self.buf.drain(..at);
    }

    async fn until(&mut self, mut pred: impl FnMut(&str) -> bool) {
        let mut done = false;
        while !done {
            self.frames(|t| done |= pred(t)).await;
        }
    }
}

/// `len` hex digits, a different run for each `seed`.
fn padding(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).expect("a hex digit")
        })
        .collect()
}

/// The send time in the payload: `"t":<micros since start>`.
fn sent_at(text: &str) -> Option<u64> {
    let i = text.find("\"t\":")? + 4;
    let digits = text[i..].bytes().take_while(u8::is_ascii_digit).count();
    text[i..i + digits].parse().ok()
}

/// The servers of the bench, as the load generator treats them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `resocket.v1` subprotocol, `subscribe`, `publish`.
    Hub,
    /// No subscribe step: every connection gets every other's messages.
    Tutorial,
    /// A broadcast server that answers `subscribe` with `subscribed` (not broadcast).
    Node,
}

/// One pass: `subs` subscribers spread evenly over `sub_urls` (subscriber `i` on
/// `sub_urls[i % len]`), one publisher on `pub_url` sending `msgs` messages in rounds of
/// `batch`; `None` when `deflate` was asked and a server did not agree to it.
pub async fn run(
    sub_urls: &[String],
    pub_url: &str,
    kind: Kind,
    deflate: bool,
    subs: usize,
    msgs: usize,
    batch: usize,
) -> Option<Pass> {
    let subscribers = Subscribers::connect(sub_urls, kind, deflate, subs, msgs).await?;
    Some(subscribers.publish(pub_url, batch).await)
}

/// Subscribers connected (and subscribed) for one pass, reading in tasks of their own.
pub struct Subscribers {
    kind: Kind,
    subs: usize,
    msgs: usize,
    start: Instant,
    delivered: Arc<AtomicU64>,
    round_done: Arc<Notify>,
    latencies: Arc<Mutex<Vec<u64>>>,
    target: Arc<AtomicU64>,
    /// Each subscriber's reader; it returns the bytes it read.
    readers: Vec<tokio::task::JoinHandle<u64>>,
}

impl Subscribers {
    /// Connects `subs` subscribers spread evenly over `sub_urls`, each expecting `msgs`
    /// messages and offering permessage-deflate when `deflate`; where `kind` subscribes, each
    /// has its `subscribed` before this returns. `None` when `deflate` was asked and a server
    /// did not agree to it.
    pub async fn connect(
        sub_urls: &[String],
        kind: Kind,
        deflate: bool,
        subs: usize,
        msgs: usize,
    ) -> Option<Subscribers> {
        let start = Instant::now();
        let delivered = Arc::new(AtomicU64::new(0));
        let round_done = Arc::new(Notify::new());
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(subs * msgs)));
        let target = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for i in 0..subs {
            let url = &sub_urls[i % sub_urls.len()];
            let (mut sub, negotiated) = RawSub::connect(url, kind == Kind::Hub, deflate).await;
            if deflate && negotiated.is_none() {
                return None;
            }
            if kind != Kind::Tutorial {
                sub.send_text(r#"{"type":"subscribe","room":"bench"}"#)
                    .await;
                sub.until(|t| t.contains("subscribed")).await;
            }
            let (delivered, round_done, latencies, target) = (
                delivered.clone(),
                round_done.clone(),
                latencies.clone(),
                target.clone(),
            );
            readers.push(tokio::spawn(async move {
                let mut mine = Vec::with_capacity(msgs);
                let mut got = 0;
                while got < msgs {
                    let mut n = 0;
                    // Every frame of one read arrived at the same moment: one clock read per read.
                    let mut now = None;
                    sub.frames(|t| {
                        if let Some(t0) = sent_at(t) {
                            let now =
                                *now.get_or_insert_with(|| start.elapsed().as_micros() as u64);
                            mine.push(now.saturating_sub(t0));
                            n += 1;
                        }
                    })
                    .await;
                    got += n;
                    let n = n as u64;
                    if n > 0 {
                        let before = delivered.fetch_add(n, Relaxed);
                        let t = target.load(Relaxed);
                        if before < t && before + n >= t {
                            round_done.notify_one();
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
                sub.wire_bytes
            }));
        }
        Some(Subscribers {
            kind,
            subs,
            msgs,
            start,
            delivered,
            round_done,
            latencies,
            target,
            readers,
        })
    }

    /// Publishes the pass's messages from one publisher on `pub_url`, in rounds of `batch`,
    /// each round waiting until every subscriber has it.
    pub async fn publish(self, pub_url: &str, batch: usize) -> Pass {
        let (subs, msgs) = (self.subs, self.msgs);
        // The baseline has no subscribe step: give its handlers a moment to register everyone.
        if self.kind == Kind::Tutorial {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (mut tx, mut rx) = connect(pub_url, self.kind == Kind::Hub).await.split();
        // Acks (hub) are read and dropped so they never back up.
        tokio::spawn(async move { while rx.next().await.is_some() {} });
        let began = Instant::now();
        let mut sent = 0;
        while sent < msgs {
            let n = batch.min(msgs - sent);
            self.target.store(((sent + n) * subs) as u64, Relaxed);
            for _ in 0..n {
                let t = self.start.elapsed().as_micros();
                // 128 bytes of data: the timestamp padded out with hex digits that differ from
                // message to message, so that compression meets data with some entropy (about
                // 2:1 on its own) rather than a run of one letter.
                let data = format!(
                    r#"{{"t":{t},"p":"{}"}}"#,
                    padding(sent as u64, 128 - 12 - t.to_string().len())
                );
                let frame =
                    format!(r#"{{"type":"publish","room":"bench","id":"{sent}","data":{data}}}"#);
                tx.feed(Message::text(frame)).await.unwrap();
                sent += 1;
            }
            tx.flush().await.unwrap();
            while self.delivered.load(Relaxed) < self.target.load(Relaxed) {
                self.round_done.notified().await;
            }
        }
        let elapsed = began.elapsed();
        let mut wire_bytes = 0;
        for r in self.readers {
            wire_bytes += r.await.unwrap();
        }
        drop(tx);
        let latencies = std::mem::take(&mut *self.latencies.lock().unwrap());
        Pass {
            deliveries: (subs * msgs) as u64,
            wire_bytes,
            elapsed,
            latencies,
        }
    }
}

/// The hub's `/metrics` text.
pub async fn hub_metrics(url: &str) -> String {
    let addr = url.trim_start_matches("ws://").trim_end_matches("/ws");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// One sample of Prometheus text, `name` or `name{labels}` exactly; 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.rsplit_once(' ')
                .filter(|(k, _)| *k == series)
                .and_then(|(_, v)| v.parse().ok())
        })
        .unwrap_or(0.0)
}
