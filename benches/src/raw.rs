//! The baseline: a bare tokio-tungstenite `WebSocketStream`, used the way an application would.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{tungstenite::Message, WebSocketStream};

use crate::{server::Tally, BoxFut, Payload, RoundTrip, Throughput};

/// A plain TCP (nodelay, as resocket sets by default) WebSocket connection with default config.
pub async fn connect(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .expect("upgrade");
    ws
}

/// Receive: asks the burst server for `n` messages and reads them with `next()`.
pub struct Receiver {
    ws: WebSocketStream<TcpStream>,
    expect: Payload,
}

impl Receiver {
    /// Connects to a [`Mode::Burst`](crate::server::Mode::Burst) server.
    pub async fn connect(addr: SocketAddr, expect: Payload) -> Receiver {
        Receiver {
            ws: connect(addr).await,
            expect,
        }
    }
}

impl Throughput for Receiver {
    fn round(&mut self, n: u64) -> BoxFut<'_, Duration> {
        Box::pin(async move {
            let start = Instant::now();
            self.ws.send(Message::text(n.to_string())).await.unwrap();
            let mut got = 0u64;
            while got < n {
                match self.ws.next().await {
                    Some(Ok(Message::Binary(data))) => {
                        self.expect.take(&data);
                        got += 1;
                    }
                    other => panic!("raw receive: unexpected {other:?}"),
                }
            }
            start.elapsed()
        })
    }
}

/// How the raw sender writes.
#[derive(Debug, Clone, Copy)]
pub enum SendStyle {
    /// `send().await` per message: a flush (a `write` syscall) each time.
    PerMessage,
    /// `feed()` each message and `flush()` once per this many: the best raw can do.
    Batched(usize),
}

/// Send: writes `n` messages to the sink server and stops the clock when it has them all.
pub struct Sender {
    ws: WebSocketStream<TcpStream>,
    payload: Bytes,
    tally: Arc<Tally>,
    style: SendStyle,
}

impl Sender {
    /// Connects to the [`Mode::Sink`](crate::server::Mode::Sink) server that owns `tally`.
    pub async fn connect(
        addr: SocketAddr,
        payload: Bytes,
        tally: Arc<Tally>,
        style: SendStyle,
    ) -> Sender {
        Sender {
            ws: connect(addr).await,
            payload,
            tally,
            style,
        }
    }
}

impl Throughput for Sender {
    fn round(&mut self, n: u64) -> BoxFut<'_, Duration> {
        Box::pin(async move {
            let target = self.tally.expect_more(n);
            let start = Instant::now();
            match self.style {
                SendStyle::PerMessage => {
                    for _ in 0..n {
                        let msg = Message::Binary(self.payload.clone());
                        self.ws.send(msg).await.unwrap();
                    }
                }
                SendStyle::Batched(batch) => {
                    let mut left = n;
                    while left > 0 {
                        let take = left.min(batch as u64);
                        for _ in 0..take {
                            let msg = Message::Binary(self.payload.clone());
                            self.ws.feed(msg).await.unwrap();
                        }
                        self.ws.flush().await.unwrap();
                        left -= take;
                    }
                }
            }
            self.tally
                .finish_round(start, target, self.payload.len())
                .await
        })
    }
}

/// Echo: one message in flight, `send().await` then `next().await`.
pub struct Echo {
    ws: WebSocketStream<TcpStream>,
    payload: Bytes,
}

impl Echo {
    /// Connects to a [`Mode::Echo`](crate::server::Mode::Echo) server.
    pub async fn connect(addr: SocketAddr, payload: Bytes) -> Echo {
        Echo {
            ws: connect(addr).await,
            payload,
        }
    }
}

impl RoundTrip for Echo {
    fn round(&mut self, n: u64) -> BoxFut<'_, Vec<Duration>> {
        Box::pin(async move {
            let mut samples = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let start = Instant::now();
                self.ws
                    .send(Message::Binary(self.payload.clone()))
                    .await
                    .unwrap();
                match self.ws.next().await {
                    Some(Ok(Message::Binary(data))) => assert_eq!(data, self.payload),
                    other => panic!("raw echo: unexpected {other:?}"),
                }
                samples.push(start.elapsed());
            }
            samples
        })
    }
}
