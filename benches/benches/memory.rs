//! Memory bench: resident memory per idle client connection, resocket beside raw
//! tokio-tungstenite, tokio-websockets and stream-tungstenite.
//!
//! Run: `cargo bench -p resocket-benches --bench memory` (`MEMORY_CLIENTS`, default 1000).
//!
//! The server (a [`Mode::Greet`] server: one 64 B message to every new connection, then it only
//! reads) runs in this process. Each contender runs in a child process (this binary,
//! re-executed with `--child <name>`), so that neither the server nor another contender is
//! counted. A child first opens 20 warm-up connections (runtime threads, allocator arenas),
//! reads its resident set size (`VmRSS`), then opens `MEMORY_CLIENTS` connections, waits until
//! user code on each has taken the greeting (so every read path has run once, as on a live
//! subscription), and reads `VmRSS` again. The difference over the count is the figure.
//!
//! Each bare connection (raw tokio-tungstenite, tokio-websockets) then keeps a task reading
//! it, as an application must to see pings and closes; resocket and stream-tungstenite read in
//! their own tasks. A raw connection read only once would never touch most of its read buffer
//! (the greeting arrives with the upgrade response), which no live connection can count on.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Command, Stdio},
};

use bytes::Bytes;
use futures_util::StreamExt;
use resocket_benches::{
    peer_stream_tungstenite, peer_tokio_websockets, raw, resocket_client,
    server::{Mode, Server},
};

/// The contenders, as named on the child's command line and in the table.
const CONTENDERS: [&str; 4] = [
    "raw tokio-tungstenite",
    "resocket",
    "tokio-websockets",
    "stream-tungstenite",
];

/// Connections opened before the first reading.
const WARM_UP: usize = 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let name = args[i + 1].clone();
        let addr: SocketAddr = args[i + 2].parse().expect("server address");
        let clients: usize = args[i + 3].parse().expect("client count");
        runtime().block_on(child(&name, addr, clients));
        return;
    }
    let clients: usize = std::env::var("MEMORY_CLIENTS")
        .ok()
        .map(|s| s.parse().expect("MEMORY_CLIENTS is a number"))
        .unwrap_or(1000);
    runtime().block_on(parent(clients));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn parent(clients: usize) {
    let server = Server::start(Mode::Greet(Bytes::from(vec![0xA5; 64]))).await;
    let exe = std::env::current_exe().expect("own path");
    eprintln!("{clients} idle connections per contender");
    let mut figures = Vec::new();
    for name in CONTENDERS {
        // The child blocks on its own runtime; a blocking thread keeps this one serving.
        let exe = exe.clone();
        let addr = server.addr();
        let line = tokio::task::spawn_blocking(move || {
            let mut child = Command::new(exe)
                .args(["--child", name, &addr.to_string(), &clients.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("child starts");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("piped"))
                .read_line(&mut line)
                .expect("child reports");
            assert!(
                child.wait().expect("child exits").success(),
                "{name} failed"
            );
            line
        })
        .await
        .expect("child thread");
        let per_conn: f64 = line.trim().parse().expect("a figure");
        figures.push((name, per_conn));
    }
    println!("| contender | resident bytes per idle connection | / raw |");
    println!("|---|---|---|");
    let raw = figures[0].1;
    for (name, bytes) in &figures {
        println!(
            "| {name} | {:.1} KiB | {:.2}× |",
            bytes / 1024.0,
            bytes / raw
        );
    }
}

fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

/// Opens `count` connections of one contender, each having taken its greeting, and keeps them.
async fn open(name: &str, addr: SocketAddr, count: usize, keep: &mut Vec<Box<dyn Send>>) {
    for _ in 0..count {
        match name {
            "raw tokio-tungstenite" => {
                let mut ws = raw::connect(addr).await;
                ws.next().await.expect("greeting").expect("greeting");
                keep.push(Box::new(keep_reading(ws)));
            }
            "resocket" => {
                let (client, mut messages) = resocket_client::connect(addr).await;
                messages.recv().await.expect("greeting");
                keep.push(Box::new((client, messages)));
            }
            "tokio-websockets" => {
                let mut ws = peer_tokio_websockets::connect(addr).await;
                ws.next().await.expect("greeting").expect("greeting");
                keep.push(Box::new(keep_reading(ws)));
            }
            "stream-tungstenite" => {
                let config = peer_stream_tungstenite::config();
                let mut peer = peer_stream_tungstenite::Peer::connect(addr, config, false).await;
                peer.recv("greeting").await;
                keep.push(Box::new(peer));
            }
            other => panic!("unknown contender {other}"),
        }
    }
}

/// Keeps a task reading a bare connection until it ends, as an application must.
fn keep_reading<S, T, E>(mut ws: S) -> tokio::task::JoinHandle<()>
where
    S: futures_util::Stream<Item = Result<T, E>> + Unpin + Send + 'static,
{
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

async fn child(name: &str, addr: SocketAddr, clients: usize) {
    let mut keep: Vec<Box<dyn Send>> = Vec::with_capacity(WARM_UP + clients);
    open(name, addr, WARM_UP, &mut keep).await;
    let before = vm_rss();
    open(name, addr, clients, &mut keep).await;
    let after = vm_rss();
    println!("{}", after.saturating_sub(before) as f64 / clients as f64);
}
