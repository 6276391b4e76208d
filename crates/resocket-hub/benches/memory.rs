//! Memory bench: the hub's resident memory per idle, subscribed connection.
//!
//! Run: `cargo bench -p resocket-hub --bench memory` (`MEMORY_CONNS`, default 10,000;
//! `MEMORY_COMPRESSION=1` has every client offer permessage-deflate, which the hub accepts).
//!
//! The hub runs in a child process (this same binary, re-executed), so that the clients' own
//! memory is not counted. The clients are bare TCP sockets that do the upgrade by hand, send
//! one `subscribe` and then sit idle.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// The child: serve a hub and print its address.
async fn serve_hub() {
    let mut builder = resocket_hub::Hub::builder()
        .allow_anonymous(true)
        .max_connections(100_000);
    // For comparison: 128 KiB read and write buffers (tungstenite's defaults).
    if std::env::var_os("MEMORY_TUNGSTENITE_DEFAULTS").is_some() {
        builder = builder.socket_buffers(128 * 1024, 128 * 1024);
    }
    let hub = builder.build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    hub.serve(listener).await.unwrap();
}

async fn idle_subscriber(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let offer = if std::env::var_os("MEMORY_COMPRESSION").is_some() {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: resocket.v1\r\n{offer}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "hub closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    if !offer.is_empty() {
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        assert!(
            head.contains("permessage-deflate"),
            "compression refused: {head}"
        );
    }
    let sub = br#"{"type":"subscribe","room":"idle"}"#;
    let mut frame = vec![0x81, 0x80 | sub.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(sub);
    s.write_all(&frame).await.unwrap();
    // Wait for the `subscribed` reply: the first frame (compressed, when negotiated).
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    buf.drain(..head_end);
    let replied = |buf: &[u8]| buf.len() >= 2 && buf.len() >= 2 + usize::from(buf[1] & 0x7F);
    while !replied(&buf) {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "hub closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    s
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RESOCKET_MEMORY_BENCH_CHILD").is_some() {
        return serve_hub().await;
    }
    let conns: usize = std::env::var("MEMORY_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("RESOCKET_MEMORY_BENCH_CHILD", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line.trim().parse().unwrap();
    let pid = child.id();

    // Warm up: the first connections pay for runtime threads and allocator arenas.
    let mut clients = Vec::with_capacity(conns + 100);
    for _ in 0..100 {
        clients.push(idle_subscriber(addr).await);
    }
    let before = rss_of(pid);
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let parallel: usize = std::env::var("MEMORY_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut left = conns;
    while left > 0 {
        let n = left.min(parallel);
        for _ in 0..n {
            tasks.spawn(idle_subscriber(addr));
        }
        while let Some(s) = tasks.join_next().await {
            clients.push(s.unwrap());
        }
        left -= n;
    }
    let after = rss_of(pid);
    let per = (after.saturating_sub(before)) as f64 / conns as f64;
    println!(
        "memory: {conns} idle subscribed connections opened in {:.1?}",
        began.elapsed()
    );
    println!(
        "hub RSS: before {} KiB, after {} KiB",
        before / 1024,
        after / 1024
    );
    println!(
        "per connection: {:.1} KiB (compression {}; target <= 3 KiB)",
        per / 1024.0,
        if std::env::var_os("MEMORY_COMPRESSION").is_some() {
            "negotiated"
        } else {
            "not offered"
        }
    );
    drop(clients);
    let _ = child.kill();
    let _ = child.wait();
}
