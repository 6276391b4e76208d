//! The fan-out pass shared by the hub's benches: bare-socket subscribers with a minimal frame
//! parser, one publisher sending closed-loop rounds, and publish-to-deliver latency of every
//! delivery.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
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
    pub elapsed: Duration,
    /// Publish-to-deliver latency of every delivery, in microseconds.
    pub latencies: Vec<u64>,
}

/// Passes against one server, combined.
#[derive(Default)]
pub struct Totals {
    deliveries: u64,
    elapsed: Duration,
    latencies: Vec<u64>,
}

impl Totals {
    pub fn add(&mut self, pass: Pass) {
        self.deliveries += pass.deliveries;
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

/// One pass: `subs` subscribers spread evenly over `sub_urls` (subscriber `i` on
/// `sub_urls[i % len]`), one publisher on `pub_url` sending `msgs` messages in rounds of
/// `batch`. `hub_protocol`: subscribe to the room `bench` first (the hub); otherwise every
/// connection gets every message (the baseline).
pub async fn run(
    sub_urls: &[String],
    pub_url: &str,
    hub_protocol: bool,
    subs: usize,
    msgs: usize,
    batch: usize,
) -> Pass {
    Subscribers::connect(sub_urls, hub_protocol, subs, msgs)
        .await
        .publish(pub_url, batch)
        .await
}

/// Subscribers connected (and subscribed) for one pass, reading in tasks of their own.
pub struct Subscribers {
    hub_protocol: bool,
    subs: usize,
    msgs: usize,
    start: Instant,
    delivered: Arc<AtomicU64>,
    round_done: Arc<Notify>,
    latencies: Arc<Mutex<Vec<u64>>>,
    target: Arc<AtomicU64>,
    readers: Vec<tokio::task::JoinHandle<RawSub>>,
}

impl Subscribers {
    /// Connects `subs` subscribers spread evenly over `sub_urls`, each expecting `msgs`
    /// messages; on the hub, each has its `subscribed` before this returns.
    pub async fn connect(
        sub_urls: &[String],
        hub_protocol: bool,
        subs: usize,
        msgs: usize,
    ) -> Subscribers {
        let start = Instant::now();
        let delivered = Arc::new(AtomicU64::new(0));
        let round_done = Arc::new(Notify::new());
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(subs * msgs)));
        let target = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for i in 0..subs {
            let mut sub = RawSub::connect(&sub_urls[i % sub_urls.len()], hub_protocol).await;
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
                sub
            }));
        }
        Subscribers {
            hub_protocol,
            subs,
            msgs,
            start,
            delivered,
            round_done,
            latencies,
            target,
            readers,
        }
    }

    /// Publishes the pass's messages from one publisher on `pub_url`, in rounds of `batch`,
    /// each round waiting until every subscriber has it.
    pub async fn publish(self, pub_url: &str, batch: usize) -> Pass {
        let Subscribers {
            hub_protocol,
            subs,
            msgs,
            start,
            delivered,
            round_done,
            latencies,
            target,
            readers,
        } = self;
        // The baseline has no subscribe step: give its handlers a moment to register everyone.
        if !hub_protocol {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (mut tx, mut rx) = connect(pub_url, hub_protocol).await.split();
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
