//! Peer: tokio-websockets, its `WebSocketStream` used directly (it does not reconnect).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

use crate::{raw::SendStyle, server::Tally, BoxFut, Payload, RoundTrip, Throughput};

/// A plain TCP (nodelay, as everywhere here) WebSocket connection with default config.
pub async fn connect(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (ws, _) = ClientBuilder::new()
        .uri(&format!("ws://{addr}/"))
        .expect("valid uri")
        .connect_on(tcp)
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
                    Some(Ok(msg)) if msg.is_binary() => {
                        self.expect.take(msg.as_payload());
                        got += 1;
                    }
                    other => panic!("tokio-websockets receive: unexpected {other:?}"),
                }
            }
            start.elapsed()
        })
    }
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
                        let msg = Message::binary(self.payload.clone());
                        self.ws.send(msg).await.unwrap();
                    }
                }
                SendStyle::Batched(batch) => {
                    let mut left = n;
                    while left > 0 {
                        let take = left.min(batch as u64);
                        for _ in 0..take {
                            let msg = Message::binary(self.payload.clone());
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
                    .send(Message::binary(self.payload.clone()))
                    .await
                    .unwrap();
                match self.ws.next().await {
                    Some(Ok(msg)) if msg.is_binary() => {
                        assert_eq!(&msg.as_payload()[..], &self.payload[..]);
                    }
                    other => panic!("tokio-websockets echo: unexpected {other:?}"),
                }
                samples.push(start.elapsed());
            }
            samples
        })
    }
}
