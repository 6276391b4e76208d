//! Minimal loopback servers, one per contender: burst (for receive), sink (for send), echo.
//!
//! They are written here rather than taken from `resocket-testkit` because the test kit reports
//! every frame as an event through a channel, which would make the server the bottleneck and
//! measure the test kit instead of the client.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::Notify,
    task::JoinHandle,
};
use tokio_tungstenite::tungstenite::Message;

/// How many frames the burst server writes at once: large enough that the server writes in big
/// chunks and keeps ahead of any client.
pub const BURST_BATCH: usize = 256;

/// What a server does with each connection.
#[derive(Clone)]
pub enum Mode {
    /// On each Text request `"<n>"`, sends `n` Binary messages of this payload. The frames are
    /// encoded once up front and written straight to the TCP socket, [`BURST_BATCH`] frames
    /// per `write_all`, so the server does no per-message work: a server that fed each message
    /// through tungstenite (`feed`, one `flush` per batch) capped raw tokio-tungstenite at
    /// 3–4 M msgs/s of 64 B on the 2-core machine, measuring the server instead of the client.
    Burst(Bytes),
    /// Counts the Binary frames it receives into the [`Tally`]. It parses frame headers
    /// straight off the TCP stream and skips the payloads without unmasking or copying them:
    /// a tungstenite reader on this side capped raw `feed` + `flush` at about 3 M msgs/s of
    /// 64 B, which would have hidden any difference between fast clients.
    Sink(Arc<Tally>),
    /// Sends every data message straight back (one flush each).
    Echo,
    /// Sends this Binary message once on every new connection, then only reads (answering
    /// pings) until the client leaves: what a client sees first after a server restart.
    Greet(Bytes),
}

/// What a sink server has received, and a signal when it reached the expected count.
///
/// The server compares its local count against `expect` per message (one relaxed load) and
/// publishes its totals only when it matches, so counting costs the server almost nothing.
#[derive(Debug, Default)]
pub struct Tally {
    expect: AtomicU64,
    received: AtomicU64,
    bytes: AtomicU64,
    done: Notify,
}

impl Tally {
    /// Raises the expected total by `n` messages; call before sending them.
    pub fn expect_more(&self, n: u64) -> u64 {
        self.expect.fetch_add(n, Ordering::AcqRel) + n
    }

    /// Waits until the server has received the expected total, then returns
    /// `(messages, payload bytes)` received since the connection opened.
    ///
    /// # Panics
    /// After 60 s: a lost message would otherwise hang the run instead of failing it.
    pub async fn reached(&self) -> (u64, u64) {
        tokio::time::timeout(Duration::from_secs(60), self.done.notified())
            .await
            .expect("the sink server received every message within 60 s");
        (
            self.received.load(Ordering::Acquire),
            self.bytes.load(Ordering::Acquire),
        )
    }
}

impl Tally {
    /// Ends a send round begun at `start`: waits until the server holds `target` messages of
    /// `payload_len` bytes each, checks both counts (so no contender can cheat), and returns the
    /// elapsed time.
    ///
    /// # Panics
    /// When the counts differ, or after 60 s (see [`Tally::reached`]).
    pub async fn finish_round(
        &self,
        start: std::time::Instant,
        target: u64,
        payload_len: usize,
    ) -> Duration {
        let (received, bytes) = self.reached().await;
        let elapsed = start.elapsed();
        assert_eq!(received, target);
        assert_eq!(bytes, target * payload_len as u64);
        elapsed
    }
}

/// A running server; it stops when dropped.
pub struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `127.0.0.1:0` and serves every connection with `mode`.
    ///
    /// # Panics
    /// If loopback cannot be bound.
    pub async fn start(mode: Mode) -> Server {
        let (addr, task) = serve_loopback(move |tcp| serve(tcp, mode.clone())).await;
        Server { addr, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `127.0.0.1:0` and spawns `serve` on every connection accepted, until the returned
/// task is aborted.
///
/// # Panics
/// If loopback cannot be bound.
pub(crate) async fn serve_loopback<F, Fut>(serve: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp));
        }
    });
    (addr, task)
}

async fn serve(tcp: TcpStream, mode: Mode) {
    // Same socket option as every client here: batching is the writers' job, not Nagle's.
    let _ = tcp.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    // An error below means the client went away between cases; nothing to report.
    match mode {
        Mode::Burst(payload) => {
            // FIN + Binary, unmasked, back to back.
            let batch = resocket_testkit::raw_frame(true, 0x2, &payload).repeat(BURST_BATCH);
            let frame_len = batch.len() / BURST_BATCH;
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(request) = msg else {
                    continue;
                };
                let n: u64 = request.parse().expect("burst request is a count");
                let mut left = n as usize;
                // Whole frames only, and tungstenite has nothing half-written between
                // requests, so writing beside it keeps the stream well formed.
                while left > 0 {
                    let take = left.min(BURST_BATCH);
                    let tcp = ws.get_mut();
                    if tcp.write_all(&batch[..take * frame_len]).await.is_err() {
                        return;
                    }
                    left -= take;
                }
            }
        }
        Mode::Sink(tally) => {
            // The client sends only after the upgrade response, so tungstenite has buffered
            // nothing past the request and the TCP stream starts at the first frame.
            count_frames(ws.into_inner(), &tally).await;
        }
        Mode::Echo => {
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
                    return;
                }
            }
        }
        Mode::Greet(payload) => {
            if ws.send(Message::Binary(payload)).await.is_err() {
                return;
            }
            while let Some(Ok(_)) = ws.next().await {}
        }
    }
}

/// A server that can be stopped, dropping every connection, and restarted on the same port.
pub struct RestartableServer {
    addr: SocketAddr,
    mode: Mode,
    task: Option<JoinHandle<()>>,
}

impl RestartableServer {
    /// Binds `127.0.0.1:0` (with `SO_REUSEADDR`) and serves every connection with `mode`.
    ///
    /// # Panics
    /// If loopback cannot be bound.
    pub async fn start(mode: Mode) -> RestartableServer {
        let listener = listen((Ipv4Addr::LOCALHOST, 0).into());
        let addr = listener.local_addr().expect("bound address");
        let mut server = RestartableServer {
            addr,
            mode,
            task: None,
        };
        server.serve(listener);
        server
    }

    /// The address it listens on, the same across restarts.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and drops every connection (no Close frame: the TCP streams are simply
    /// dropped, as when a server process dies); returns once the listener is closed.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The accept task owns the listener and, in a `JoinSet`, every connection task;
            // dropping it aborts them all.
            let _ = task.await;
        }
    }

    /// Binds the same port again (`SO_REUSEADDR`) and serves as before.
    ///
    /// # Panics
    /// If the port cannot be bound again.
    pub fn restart(&mut self) {
        assert!(self.task.is_none(), "restart a stopped server");
        let listener = listen(self.addr);
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let mode = self.mode.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => {
                            connections.spawn(serve(tcp, mode.clone()));
                        }
                        Err(_) => return,
                    },
                    // Reap finished connections so the set does not grow.
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        }));
    }
}

impl Drop for RestartableServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("tcp socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind loopback");
    socket.listen(1024).expect("listen")
}

/// Reads client frames off `tcp` until it closes, counting complete Binary frames and their
/// payload bytes, and signals `tally` whenever the count reaches the expected total. It answers
/// every Ping with a Pong, so that a client's heartbeat does not drop a connection that lives
/// longer than its pong timeout (a send case with slow peers lasts longer than 20 s).
///
/// # Panics
/// On a frame a benchmark client never sends (unmasked, fragmented, Text): better a failed run
/// than a count that means something else.
async fn count_frames(mut tcp: TcpStream, tally: &Tally) {
    let mut buf = vec![0u8; 256 << 10];
    // Bytes of an incomplete header carried over to the front of `buf`.
    let mut carried = 0usize;
    // Payload bytes of the current frame still to skip.
    let mut skip = 0u64;
    let (mut count, mut bytes) = (0u64, 0u64);
    // The Ping being read: its masking key and the payload so far.
    let mut ping: Option<([u8; 4], Vec<u8>)> = None;
    loop {
        let read = match tcp.read(&mut buf[carried..]).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let end = carried + read;
        let mut pos = 0usize;
        loop {
            if skip > 0 {
                let take = skip.min((end - pos) as u64);
                if let Some((_, payload)) = &mut ping {
                    payload.extend_from_slice(&buf[pos..pos + take as usize]);
                }
                pos += take as usize;
                skip -= take;
                if skip > 0 {
                    break;
                }
            }
            if let Some((mask, mut payload)) = ping.take() {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
                // Control frames carry at most 125 bytes: a one-byte length.
                let mut pong = vec![0x8A, payload.len() as u8];
                pong.extend_from_slice(&payload);
                if tcp.write_all(&pong).await.is_err() {
                    return;
                }
            }
            let Some((opcode, fin, len, header)) = parse_header(&buf[pos..end]) else {
                break;
            };
            let mask: [u8; 4] = buf[pos + header - 4..pos + header]
                .try_into()
                .expect("4 bytes");
            pos += header;
            skip = len;
            match opcode {
                0x2 => {
                    assert!(fin, "sink: fragmented message");
                    count += 1;
                    bytes += len;
                    if count == tally.expect.load(Ordering::Acquire) {
                        tally.received.store(count, Ordering::Release);
                        tally.bytes.store(bytes, Ordering::Release);
                        tally.done.notify_one();
                    }
                }
                // Close: the client is leaving.
                0x8 => return,
                // Ping from a heartbeat: answered once its payload is read (above).
                0x9 => {
                    assert!(len <= 125, "sink: oversized ping");
                    ping = Some((mask, Vec::with_capacity(len as usize)));
                }
                0xA => {}
                other => panic!("sink: unexpected opcode {other:#x}"),
            }
        }
        buf.copy_within(pos..end, 0);
        carried = end - pos;
    }
}

/// `(opcode, fin, payload length, header length)` of a masked client frame, or `None` if
/// `data` does not hold the whole header yet.
fn parse_header(data: &[u8]) -> Option<(u8, bool, u64, usize)> {
    let (&b0, &b1) = (data.first()?, data.get(1)?);
    assert!(b1 & 0x80 != 0, "sink: unmasked client frame");
    let (len, at) = match b1 & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes(data.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(data.get(2..10)?.try_into().ok()?), 10),
        len => (u64::from(len), 2),
    };
    let header = at + 4; // the masking key
    if data.len() < header {
        return None;
    }
    Some((b0 & 0x0F, b0 & 0x80 != 0, len, header))
}
