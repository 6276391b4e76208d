//! Fan-out bench: 1 publisher, N subscribers (default 1,000) in one room, 128-byte payloads,
//! against the hub and, in the same run, against the tutorial-style baseline.
//!
//! Run: `cargo bench -p resocket-hub --bench fanout`. Scale with `FANOUT_SUBS`, `FANOUT_MSGS`
//! (messages per server, default 2,000) and `FANOUT_BATCH` (messages per round, default 50).
//!
//! The publisher sends a round of messages back to back, then waits until every subscriber
//! has every message of the round; so both servers see the same closed-loop load and neither
//! can queue without bound. Each payload carries its send time; subscribers record the
//! publish-to-deliver latency of every message.

mod support;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Result {
    deliveries_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("resocket.v1"));
    tokio_tungstenite::connect_async(req).await.expect("connect").0
}

/// The send time in the payload: `"t":<micros since start>`.
fn sent_at(text: &str) -> Option<u64> {
    let i = text.find("\"t\":")? + 4;
    let digits = text[i..].bytes().take_while(u8::is_ascii_digit).count();
    text[i..i + digits].parse().ok()
}

async fn run(url: &str, hub_protocol: bool, subs: usize, msgs: usize, batch: usize) -> Result {
    let start = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let round_done = Arc::new(Notify::new());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(subs * msgs)));
    let target = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subs {
        let mut ws = connect(url).await;
        if hub_protocol {
            ws.send(Message::text(r#"{"type":"subscribe","room":"bench"}"#)).await.unwrap();
            loop {
                if let Some(Ok(Message::Text(t))) = ws.next().await {
                    if t.contains("subscribed") {
                        break;
                    }
                }
            }
        }
        let (delivered, round_done, latencies, target) =
            (delivered.clone(), round_done.clone(), latencies.clone(), target.clone());
        readers.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(msgs);
            let mut got = 0;
            while got < msgs {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let Some(t0) = sent_at(&t) else { continue };
                        mine.push(start.elapsed().as_micros() as u64 - t0);
                        got += 1;
                        if delivered.fetch_add(1, Relaxed) + 1 == target.load(Relaxed) {
                            round_done.notify_one();
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => panic!("subscriber lost its connection"),
                }
            }
            latencies.lock().unwrap().extend(mine);
            ws
        }));
    }
    // The baseline has no subscribe step: give its handlers a moment to register everyone.
    if !hub_protocol {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut tx, mut rx) = connect(url).await.split();
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
            let data = format!(r#"{{"t":{t},"p":"{}"}}"#, "x".repeat(128 - 12 - t.to_string().len()));
            let frame = format!(r#"{{"type":"publish","room":"bench","id":"{sent}","data":{data}}}"#);
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
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| Duration::from_micros(lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]);
    Result {
        deliveries_per_sec: (subs * msgs) as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

#[tokio::main]
async fn main() {
    let subs = env("FANOUT_SUBS", 1000);
    let msgs = env("FANOUT_MSGS", 2000);
    let batch = env("FANOUT_BATCH", 50);
    println!("fan-out: 1 publisher, {subs} subscribers, {msgs} messages of 128 B in rounds of {batch}");

    let hub = resocket_hub::Hub::builder()
        .allow_anonymous(true)
        .rate_limit(1_000_000, 1_000_000)
        .max_connections(subs + 100)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(hub.clone().serve_with_shutdown(listener, std::future::pending()));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(support::baseline::serve(listener));

    let h = run(&hub_url, true, subs, msgs, batch).await;
    println!(
        "hub:      {:>12.0} deliveries/s   p50 {:>8.2?}   p99 {:>8.2?}",
        h.deliveries_per_sec, h.p50, h.p99
    );
    let b = run(&base_url, false, subs, msgs, batch).await;
    println!(
        "baseline: {:>12.0} deliveries/s   p50 {:>8.2?}   p99 {:>8.2?}",
        b.deliveries_per_sec, b.p50, b.p99
    );
    println!(
        "ratio hub/baseline: throughput {:.2}x (target >= 2x), p99 {:.2}x (target < 1x)",
        h.deliveries_per_sec / b.deliveries_per_sec,
        h.p99.as_secs_f64() / b.p99.as_secs_f64()
    );
}
