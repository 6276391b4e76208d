//! Memory bench: resident memory per idle, subscribed connection, of the hub, of the hub with
//! permessage-deflate negotiated, and of a Node `ws` 8 broadcast server, in one run.
//!
//! Run: `cargo bench -p resocket-hub --bench memory` (`MEMORY_CONNS`, default 10,000;
//! `MEMORY_SERVERS`, default `hub,hub-deflate,node`, and `node-deflate` on request;
//! `MEMORY_PARALLEL` concurrent handshakes, default 20). Node needs `scripts/deps/node-ws.sh`; without it its row is n/a.
//!
//! Every server runs in a child process (the hub in this same binary, re-executed), so that the
//! clients' own memory is not counted, and only that process's RSS is measured. The servers are
//! measured one after the other, each with a fresh process, by the same bare clients: TCP
//! sockets that do the upgrade by hand (offering permessage-deflate in the `hub-deflate` row),
//! send one `subscribe`, wait for `subscribed` and then sit idle. Node runs with `--expose-gc`
//! and collects garbage before each reading, so that its figure holds live memory only.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use bytes::BytesMut;
use resocket_proto::deflate::{Inflater, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections opened before the first reading: the first ones pay for runtime threads and
/// allocator arenas.
const WARM_UP: usize = 100;

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

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The child: serve a hub and print its address.
async fn serve_hub() {
    let mut builder = resocket_hub::Hub::builder()
        .allow_anonymous(true)
        .max_connections(1_000_000);
    // For comparison: tungstenite's own defaults (128 KiB read and write buffers).
    if std::env::var_os("MEMORY_TUNGSTENITE_DEFAULTS").is_some() {
        builder = builder.socket_buffers(128 * 1024, 128 * 1024);
    }
    let hub = builder.build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    hub.serve(listener).await.unwrap();
}

/// Opens one connection: upgrade (offering permessage-deflate when `deflate`), `subscribe`,
/// and the wait for `subscribed` (inflated when the server compressed it). Returns the socket
/// and whether compression was agreed; the client keeps no inflater, so that 10,000 of them
/// cost the bench little.
async fn idle_subscriber(addr: SocketAddr, deflate: bool) -> (TcpStream, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let host = addr.to_string();
    let negotiated = support::upgrade::upgrade(&mut s, &host, true, deflate, &mut buf).await;
    let sub = br#"{"type":"subscribe","room":"idle"}"#;
    let mut frame = vec![0x81, 0x80 | sub.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(sub);
    s.write_all(&frame).await.unwrap();
    let mut inflater = negotiated.map(|n| Inflater::new(Role::Client, &n, Some(1 << 20)));
    loop {
        // Whole frames at the front of `buf` (the replies are short: a one-byte or a two-byte
        // length).
        while let Some((b0, start, end)) = frame_at(&buf) {
            let mut text = BytesMut::new();
            if b0 & 0x40 != 0 {
                inflater
                    .as_mut()
                    .expect("RSV1 only once negotiated")
                    .inflate(&buf[start..end], true, &mut text)
                    .expect("valid compressed data");
            } else {
                text.extend_from_slice(&buf[start..end]);
            }
            buf.drain(..end);
            if text.windows(10).any(|w| w == b"subscribed") {
                return (s, negotiated.is_some());
            }
        }
        let n = s.read_buf(&mut buf).await.unwrap();
        assert!(n > 0, "server closed the connection");
    }
}

/// `(first byte, payload start, frame end)` of the unmasked server frame at the start of
/// `buf`, or `None` while it is incomplete.
fn frame_at(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, head) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => panic!("no reply here is that long"),
        n => (usize::from(n), 2),
    };
    (buf.len() >= head + len).then_some((b0, head, head + len))
}

/// A server process under measurement.
enum Server {
    Hub(Child),
    Node(support::node::NodeServer),
}

impl Server {
    fn pid(&self) -> u32 {
        match self {
            Server::Hub(child) => child.id(),
            Server::Node(node) => node.pid(),
        }
    }

    /// RSS now; Node collects garbage first.
    fn rss(&mut self) -> u64 {
        if let Server::Node(node) = self {
            node.gc();
        }
        rss_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Hub(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_hub() -> (Server, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("RESOCKET_MEMORY_BENCH_CHILD", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Server::Hub(child), line.trim().parse().unwrap())
}

/// One row: `conns` idle subscribers on a fresh server; prints its RSS per connection.
async fn measure(name: &str, mut server: Server, addr: SocketAddr, deflate: bool, conns: usize) {
    let parallel = env("MEMORY_PARALLEL", 20);
    let mut clients = Vec::with_capacity(conns + WARM_UP);
    for _ in 0..WARM_UP {
        clients.push(idle_subscriber(addr, deflate).await);
    }
    let before = server.rss();
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut left = conns;
    while left > 0 {
        let n = left.min(parallel);
        for _ in 0..n {
            tasks.spawn(idle_subscriber(addr, deflate));
        }
        while let Some(s) = tasks.join_next().await {
            clients.push(s.unwrap());
        }
        left -= n;
    }
    let opened = began.elapsed();
    let after = server.rss();
    let compressed = clients.iter().filter(|(_, agreed)| *agreed).count();
    let per = after.saturating_sub(before) as f64 / conns as f64;
    let note = match (deflate, compressed) {
        (false, _) => String::new(),
        (true, n) if n == clients.len() => ", permessage-deflate on every connection".into(),
        (true, n) => format!(
            ", permessage-deflate offered but agreed on {n} of {} connections",
            clients.len()
        ),
    };
    println!(
        "{name:<12} {conns} connections opened in {opened:.1?}{note}\n{name:<12} RSS before {} KiB, after {} KiB: {:.1} KiB per connection",
        before / 1024,
        after / 1024,
        per / 1024.0
    );
    drop(clients);
}

/// Raises the soft open-file limit to the hard one and checks that `conns` client sockets (and
/// the warm-up ones, and some for the runtime) fit under it; the servers inherit the limit.
fn raise_fd_limit(conns: usize) {
    let need = (conns + WARM_UP + 256) as u64;
    let have = resocket_testkit::raise_open_file_limit().unwrap_or(u64::MAX);
    assert!(
        need <= have,
        "MEMORY_CONNS={conns} needs about {need} open files, the hard limit is {have}: raise it (ulimit -Hn) or lower MEMORY_CONNS"
    );
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RESOCKET_MEMORY_BENCH_CHILD").is_some() {
        return serve_hub().await;
    }
    let conns = env("MEMORY_CONNS", 10_000);
    let servers = std::env::var("MEMORY_SERVERS").unwrap_or_else(|_| "hub,hub-deflate,node".into());
    raise_fd_limit(conns);
    println!(
        "memory: {conns} idle subscribed connections per server, RSS of the server process only"
    );
    for name in servers.split(',').map(str::trim) {
        match name {
            "hub" | "hub-deflate" => {
                let (server, addr) = start_hub();
                measure(name, server, addr, name == "hub-deflate", conns).await;
            }
            "node" | "node-deflate" => match support::node::NodeServer::start(name != "node") {
                Ok(node) => {
                    let addr = node
                        .url
                        .trim_start_matches("ws://")
                        .trim_end_matches("/ws")
                        .parse()
                        .unwrap();
                    let deflate = name != "node";
                    measure(name, Server::Node(node), addr, deflate, conns).await;
                }
                Err(why) => println!("{name:<12} n/a ({why})"),
            },
            other => panic!("unknown server {other:?} in MEMORY_SERVERS"),
        }
    }
    println!("target: hub ≤ 3 KiB per idle subscribed connection");
}
