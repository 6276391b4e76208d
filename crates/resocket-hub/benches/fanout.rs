//! Fan-out bench: 1 publisher, N subscribers (default 1,000) in one room, 128-byte payloads,
//! against the hub and, in the same run, against the tutorial-style baseline.
//!
//! Run: `cargo bench -p resocket-hub --bench fanout`. Scale with `FANOUT_SUBS`, `FANOUT_MSGS`
//! (messages per pass, default 1,500), `FANOUT_BATCH` (messages per round, default 50) and
//! `FANOUT_PASSES` (alternating passes per server, default 2).
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

use futures_util::{SinkExt, StreamExt};
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
    elapsed: Duration,
    /// Publish-to-deliver latency of every delivery, in microseconds.
    latencies: Vec<u64>,
}

/// Passes against one server, combined.
#[derive(Default)]
struct Totals {
    deliveries: u64,
    elapsed: Duration,
    latencies: Vec<u64>,
}

impl Totals {
    fn add(&mut self, pass: Pass) {
        self.deliveries += pass.deliveries;
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
            "{:>12.0} deliveries/s   p50 {:>8.2?}   p99 {:>8.2?}   max {:>8.2?}",
            self.per_sec(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.max()
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
/// small and the same for both servers, and the bench measures the servers.
struct RawSub {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawSub {
    async fn connect(url: &str, hub_protocol: bool) -> RawSub {
        let addr = url.trim_start_matches("ws://").trim_end_matches("/ws");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Subscribers only read after subscribing, and keep the kernel's default delayed
        // ACKs (no TCP_QUICKACK): a server that leaves Nagle on stalls on them, as real
        // read-only clients would make it.
        stream.set_nodelay(true).unwrap();
        let proto = if hub_protocol {
            "Sec-WebSocket-Protocol: resocket.v1\r\n"
        } else {
            ""
        };
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut sub = RawSub {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        };
        let end = loop {
            if let Some(i) = sub.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            sub.fill().await;
        };
        assert!(sub.buf.starts_with(b"HTTP/1.1 101"));
        sub.buf.drain(..end);
        sub
    }

    async fn fill(&mut self) {
        let n = self.stream.read_buf(&mut self.buf).await.unwrap();
        assert!(n > 0, "server closed the connection");
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
            if b[0] & 0x0f == 1 {
                f(std::str::from_utf8(&b[head..head + len]).unwrap());
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

/// The send time in the payload: `"t":<micros since start>`.
fn sent_at(text: &str) -> Option<u64> {
    let i = text.find("\"t\":")? + 4;
    let digits = text[i..].bytes().take_while(u8::is_ascii_digit).count();
    text[i..i + digits].parse().ok()
}

async fn run(url: &str, hub_protocol: bool, subs: usize, msgs: usize, batch: usize) -> Pass {
    let start = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let round_done = Arc::new(Notify::new());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(subs * msgs)));
    let target = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subs {
        let mut sub = RawSub::connect(url, hub_protocol).await;
        if hub_protocol {
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
            sub
        }));
    }
    // The baseline has no subscribe step: give its handlers a moment to register everyone.
    if !hub_protocol {
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
            // 128 bytes of data: the timestamp padded out.
            let data = format!(
                r#"{{"t":{t},"p":"{}"}}"#,
                "x".repeat(128 - 12 - t.to_string().len())
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
    for r in readers {
        drop(r.await.unwrap());
    }
    drop(tx);
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    Pass {
        deliveries: (subs * msgs) as u64,
        elapsed,
        latencies,
    }
}

#[tokio::main]
async fn main() {
    let subs = env("FANOUT_SUBS", 1000);
    let msgs = env("FANOUT_MSGS", 1500);
    let batch = env("FANOUT_BATCH", 50);
    let passes = env("FANOUT_PASSES", 2);
    println!(
        "fan-out: 1 publisher, {subs} subscribers, {msgs} messages of 128 B in rounds of {batch}, {passes} passes per server"
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

    // Passes alternate between the servers, so that a burst of load from elsewhere on the
    // machine does not land on one server only.
    let (mut hub_totals, mut base_totals) = (Totals::default(), Totals::default());
    // A short warm-up against each, not counted: first-use costs (allocator arenas, buffers
    // growing to size) belong to neither server's steady state.
    run(&hub_url, true, subs, batch * 4, batch).await;
    run(&base_url, false, subs, batch * 4, batch).await;
    for pass in 1..=passes {
        let h = run(&hub_url, true, subs, msgs, batch).await;
        println!(
            "pass {pass} hub:      {:>12.0} deliveries/s",
            h.deliveries as f64 / h.elapsed.as_secs_f64()
        );
        hub_totals.add(h);
        let b = run(&base_url, false, subs, msgs, batch).await;
        println!(
            "pass {pass} baseline: {:>12.0} deliveries/s",
            b.deliveries as f64 / b.elapsed.as_secs_f64()
        );
        base_totals.add(b);
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
    println!("hub:      {}", hub_totals.line());
    println!("baseline: {}", base_totals.line());
    println!(
        "ratio hub/baseline: throughput {:.2}x (target >= 2x), p99 {:.2}x (target < 1x)",
        hub_totals.per_sec() / base_totals.per_sec(),
        hub_totals.percentile(0.99).as_secs_f64() / base_totals.percentile(0.99).as_secs_f64()
    );
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
