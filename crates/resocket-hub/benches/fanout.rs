//! Fan-out bench: 1 publisher, N subscribers (default 1,000) in one room, 128-byte payloads,
//! against the hub and, in the same run, against the tutorial-style baseline and a Node `ws`
//! broadcast server (`support/node_broadcast.js`), each without compression and then with
//! permessage-deflate (the tutorial server cannot compress: n/a).
//!
//! Run: `cargo bench -p resocket-hub --bench fanout`. Scale with `FANOUT_SUBS`, `FANOUT_MSGS`
//! (messages per pass, default 1,500), `FANOUT_BATCH` (messages per round, default 50) and
//! `FANOUT_PASSES` (alternating passes per server, default 2); `FANOUT_MODES` picks the modes
//! (`plain,deflate` by default). Node needs `scripts/deps/node-ws.sh`; without it the Node
//! rows are n/a.
//!
//! With compression, the subscribers offer `permessage-deflate; client_max_window_bits` (as
//! resocket and browsers do) and inflate every compressed frame with resocket-proto's
//! client-role `Inflater`; without it they offer nothing. The same subscriber code runs in both
//! modes and against every server. A server that does not take the offer gets n/a in the
//! compressed mode rather than an uncompressed figure under the wrong name.
//!
//! The publisher sends a round of messages back to back, then waits until every subscriber
//! has every message of the round; so both servers see the same closed-loop load and neither
//! can queue without bound. Each payload carries its send time; subscribers record the
//! publish-to-deliver latency of every message (p50, p99 and the maximum are printed; a
//! maximum near 40 ms is a delayed-ACK stall).

mod support;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use resocket_proto::deflate::{Inflater, Negotiated, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One pass against one server.
struct Pass {
    deliveries: u64,
    /// Bytes the subscribers read after their upgrade (frames, compressed or not).
    wire_bytes: u64,
    elapsed: Duration,
    /// Publish-to-deliver latency of every delivery, in microseconds.
    latencies: Vec<u64>,
}

/// Passes against one server, combined.
#[derive(Default)]
struct Totals {
    deliveries: u64,
    wire_bytes: u64,
    elapsed: Duration,
    latencies: Vec<u64>,
}

impl Totals {
    fn add(&mut self, pass: Pass) {
        self.deliveries += pass.deliveries;
        self.wire_bytes += pass.wire_bytes;
        self.elapsed += pass.elapsed;
        self.latencies.extend(pass.latencies);
    }

    fn per_sec(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
        Duration::from_micros(self.latencies[i])
    }

    fn max(&self) -> Duration {
        Duration::from_micros(self.latencies.iter().copied().max().unwrap_or(0))
    }

    fn line(&mut self) -> String {
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
            support::upgrade::upgrade(&mut stream, addr, hub_protocol, deflate, &mut buf).await;
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
enum Kind {
    /// `resocket.v1` subprotocol, `subscribe`, `publish`.
    Hub,
    /// No subscribe step: every connection gets every other's messages.
    Tutorial,
    /// A broadcast server that answers `subscribe` with `subscribed` (not broadcast).
    Node,
}

/// One pass of `msgs` messages to `subs` subscribers; `None` when `deflate` was asked and the
/// server did not agree to it.
async fn run(
    url: &str,
    kind: Kind,
    deflate: bool,
    subs: usize,
    msgs: usize,
    batch: usize,
) -> Option<Pass> {
    let hub_protocol = kind == Kind::Hub;
    let start = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let round_done = Arc::new(Notify::new());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(subs * msgs)));
    let target = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subs {
        let (mut sub, negotiated) = RawSub::connect(url, hub_protocol, deflate).await;
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
                        let now = *now.get_or_insert_with(|| start.elapsed().as_micros() as u64);
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
    // The baseline has no subscribe step: give its handlers a moment to register everyone.
    if kind == Kind::Tutorial {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut tx, mut rx) = connect(url, hub_protocol).await.split();
    // Acks (hub) are read and dropped so they never back up.
    tokio::spawn(async move { while rx.next().await.is_some() {} });
    let began = Instant::now();
    let mut sent = 0;
    while sent < msgs {
        let n = batch.min(msgs - sent);
        target.store(((sent + n) * subs) as u64, Relaxed);
        for _ in 0..n {
            let t = start.elapsed().as_micros();
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
        while delivered.load(Relaxed) < target.load(Relaxed) {
            round_done.notified().await;
        }
    }
    let elapsed = began.elapsed();
    let mut wire_bytes = 0;
    for r in readers {
        wire_bytes += r.await.unwrap();
    }
    drop(tx);
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    Some(Pass {
        deliveries: (subs * msgs) as u64,
        wire_bytes,
        elapsed,
        latencies,
    })
}

/// A server under test, with its figures per mode.
struct Contender {
    name: &'static str,
    kind: Kind,
    /// Its URL per mode (`[plain, deflate]`); `Err` says why it is n/a in that mode.
    urls: [Result<String, String>; 2],
    totals: [Option<Totals>; 2],
}

#[tokio::main]
async fn main() {
    let subs = env("FANOUT_SUBS", 1000);
    let msgs = env("FANOUT_MSGS", 1500);
    let batch = env("FANOUT_BATCH", 50);
    let passes = env("FANOUT_PASSES", 2);
    let modes = std::env::var("FANOUT_MODES").unwrap_or_else(|_| "plain,deflate".into());
    let modes: Vec<bool> = [false, true]
        .into_iter()
        .filter(|&deflate| modes.contains(if deflate { "deflate" } else { "plain" }))
        .collect();
    println!(
        "fan-out: 1 publisher, {subs} subscribers, {msgs} messages of 128 B in rounds of {batch}, {passes} passes per server and mode"
    );

    let hub = resocket_hub::Hub::builder()
        .allow_anonymous(true)
        .rate_limit(1_000_000, 1_000_000)
        .max_connections(subs + 100)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(
        hub.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(support::baseline::serve(listener));

    // One Node process per mode: permessage-deflate is a server option in `ws`.
    let nodes = [
        support::node::NodeServer::start(false),
        support::node::NodeServer::start(true),
    ];
    let node_url = |i: usize| match &nodes[i] {
        Ok(node) => Ok(node.url.clone()),
        Err(e) => Err(e.clone()),
    };
    let mut contenders = [
        Contender {
            name: "hub",
            kind: Kind::Hub,
            urls: [Ok(hub_url.clone()), Ok(hub_url.clone())],
            totals: [None, None],
        },
        Contender {
            name: "tutorial",
            kind: Kind::Tutorial,
            urls: [Ok(base_url), Err("axum's WebSocket cannot compress".into())],
            totals: [None, None],
        },
        Contender {
            name: "node ws",
            kind: Kind::Node,
            urls: [node_url(0), node_url(1)],
            totals: [None, None],
        },
    ];

    for &deflate in &modes {
        let mode = usize::from(deflate);
        let label = if deflate { "deflate" } else { "plain" };
        // A short warm-up against each, not counted: first-use costs (allocator arenas,
        // buffers growing to size, Node's JIT) belong to no server's steady state. It also
        // finds out whether the server takes the offer.
        for c in &mut contenders {
            let Ok(url) = &c.urls[mode] else { continue };
            match run(url, c.kind, deflate, subs, batch * 4, batch).await {
                Some(_) => c.totals[mode] = Some(Totals::default()),
                None => {
                    c.urls[mode] = Err("did not negotiate permessage-deflate".into());
                }
            }
        }
        // Passes alternate between the servers, so that a burst of load from elsewhere on
        // the machine does not land on one server only.
        for pass in 1..=passes {
            for c in &mut contenders {
                let (Ok(url), Some(totals)) = (&c.urls[mode], &mut c.totals[mode]) else {
                    continue;
                };
                let p = run(url, c.kind, deflate, subs, msgs, batch)
                    .await
                    .expect("negotiated in the warm-up");
                println!(
                    "pass {pass} {label:<7} {:<9} {:>12.0} deliveries/s",
                    c.name,
                    p.deliveries as f64 / p.elapsed.as_secs_f64()
                );
                totals.add(p);
            }
        }
    }

    let metrics = hub_metrics(&hub_url).await;
    let series = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let batches = series("resocket_hub_write_batches_total");
    let out = series("resocket_hub_messages_total{direction=\"out\"}");
    println!(
        "hub wrote {out} messages in {batches} flushes ({:.1} per flush)",
        out / batches.max(1.0)
    );
    for &deflate in &modes {
        let mode = usize::from(deflate);
        let label = if deflate { "deflate" } else { "plain" };
        for c in &mut contenders {
            match (&c.urls[mode], &mut c.totals[mode]) {
                (Ok(_), Some(totals)) => println!("{label:<7} {:<9} {}", c.name, totals.line()),
                (why, _) => println!(
                    "{label:<7} {:<9} n/a ({})",
                    c.name,
                    why.as_ref().err().map_or("not run", String::as_str)
                ),
            }
        }
    }
    println!();
    println!("| mode | hub deliveries/s | tutorial deliveries/s | node ws deliveries/s | hub/tutorial | hub/node |");
    println!("|---|---|---|---|---|---|");
    for &deflate in &modes {
        let mode = usize::from(deflate);
        let rate = |i: usize| contenders[i].totals[mode].as_ref().map(Totals::per_sec);
        let cell = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.0}"));
        let ratio = |a: Option<f64>, b: Option<f64>, target: &str| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}× ({target})", a / b),
            _ => "n/a".to_string(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            if deflate {
                "permessage-deflate"
            } else {
                "no compression"
            },
            cell(rate(0)),
            cell(rate(1)),
            cell(rate(2)),
            ratio(rate(0), rate(1), "target ≥ 3×"),
            ratio(rate(0), rate(2), "target > 1×"),
        );
    }
    let mut p99 = |i: usize, mode: usize| {
        contenders[i].totals[mode]
            .as_mut()
            .map(|t| t.percentile(0.99).as_secs_f64())
    };
    if let (Some(h), Some(b)) = (p99(0, 0), p99(1, 0)) {
        println!(
            "p99 hub/tutorial, no compression: {:.2}× (target < 1×)",
            h / b
        );
    }
}

async fn hub_metrics(url: &str) -> String {
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
