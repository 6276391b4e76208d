//! resocket, used through its public API only, with the default `ClientConfig`.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use resocket::{Client, ClientConfig, Message, Messages};

use crate::{server::Tally, BoxFut, Payload, Recover, RoundTrip, Throughput};

/// Builds a client with default settings and waits until it is `Ready`, so that connecting is
/// never part of a measurement.
pub async fn connect(addr: SocketAddr) -> (Client, Messages) {
    connect_with(addr, ClientConfig::default()).await
}

/// Like [`connect`], with `config`.
pub async fn connect_with(addr: SocketAddr, config: ClientConfig) -> (Client, Messages) {
    let (client, messages) = Client::builder(format!("ws://{addr}/"))
        .config(config)
        .spawn()
        .expect("valid client settings");
    client.ready().await.expect("resocket connects");
    (client, messages)
}

/// How the user code reads.
#[derive(Debug, Clone, Copy)]
pub enum RecvStyle {
    /// `messages.recv().await` per message.
    One,
    /// `messages.recv_many(&mut buf, limit).await`.
    Many(usize),
}

/// Receive: asks the burst server for `n` messages and takes them from [`Messages`].
pub struct Receiver {
    client: Client,
    messages: Messages,
    expect: Payload,
    style: RecvStyle,
    buf: Vec<Message>,
}

impl Receiver {
    /// Connects to a [`Mode::Burst`](crate::server::Mode::Burst) server with the default
    /// config.
    pub async fn connect(addr: SocketAddr, expect: Payload, style: RecvStyle) -> Receiver {
        Receiver::connect_with(addr, expect, style, ClientConfig::default()).await
    }

    /// Connects to a [`Mode::Burst`](crate::server::Mode::Burst) or
    /// [`FeedServer`](crate::feed::FeedServer) with `config`.
    pub async fn connect_with(
        addr: SocketAddr,
        expect: Payload,
        style: RecvStyle,
        config: ClientConfig,
    ) -> Receiver {
        let (client, messages) = connect_with(addr, config).await;
        Receiver {
            client,
            messages,
            expect,
            style,
            buf: Vec::new(),
        }
    }
}

impl Receiver {
    /// What the upgrade agreed on for permessage-deflate.
    pub fn compression(&self) -> Option<resocket::Negotiated> {
        self.client.snapshot().compression
    }
}

fn check(msg: &Message, expect: &Payload) {
    match msg {
        Message::Binary(data) => expect.take(data),
        Message::Text(text) => expect.take(text.as_bytes()),
        other => panic!("resocket receive: unexpected {other:?}"),
    }
}

impl Throughput for Receiver {
    fn round(&mut self, n: u64) -> BoxFut<'_, Duration> {
        Box::pin(async move {
            let start = Instant::now();
            self.client
                .send(Message::text(n.to_string()))
                .await
                .unwrap();
            let mut got = 0u64;
            match self.style {
                RecvStyle::One => {
                    while got < n {
                        let msg = self.messages.recv().await.expect("stream open");
                        check(&msg, &self.expect);
                        got += 1;
                    }
                }
                RecvStyle::Many(limit) => {
                    while got < n {
                        // Never ask for more than this round's remainder, so the count is exact.
                        let limit = limit.min((n - got) as usize);
                        let added = self.messages.recv_many(&mut self.buf, limit).await;
                        assert!(added > 0, "stream ended");
                        for msg in self.buf.drain(..) {
                            check(&msg, &self.expect);
                        }
                        got += added as u64;
                    }
                }
            }
            let elapsed = start.elapsed();
            assert_eq!(got, n);
            elapsed
        })
    }
}

/// Send: `client.send(msg).await` per message; the library batches the writes.
pub struct Sender {
    client: Client,
    _messages: Messages,
    payload: Bytes,
    tally: Arc<Tally>,
}

impl Sender {
    /// Connects to the [`Mode::Sink`](crate::server::Mode::Sink) server that owns `tally`.
    pub async fn connect(addr: SocketAddr, payload: Bytes, tally: Arc<Tally>) -> Sender {
        Sender::connect_with(addr, payload, tally, ClientConfig::default()).await
    }

    /// Like [`Sender::connect`], with `config`.
    pub async fn connect_with(
        addr: SocketAddr,
        payload: Bytes,
        tally: Arc<Tally>,
        config: ClientConfig,
    ) -> Sender {
        let (client, messages) = connect_with(addr, config).await;
        Sender {
            client,
            _messages: messages,
            payload,
            tally,
        }
    }
}

impl Throughput for Sender {
    fn round(&mut self, n: u64) -> BoxFut<'_, Duration> {
        Box::pin(async move {
            let target = self.tally.expect_more(n);
            let start = Instant::now();
            for _ in 0..n {
                let msg = Message::Binary(self.payload.clone());
                self.client.send(msg).await.unwrap();
            }
            // `send` only queues; the clock stops when the server has every message.
            self.tally
                .finish_round(start, target, self.payload.len())
                .await
        })
    }
}

/// Echo: one message in flight, `client.send(msg).await` then `messages.recv().await`.
pub struct Echo {
    client: Client,
    messages: Messages,
    payload: Bytes,
}

impl Echo {
    /// Connects to a [`Mode::Echo`](crate::server::Mode::Echo) server.
    pub async fn connect(addr: SocketAddr, payload: Bytes) -> Echo {
        let (client, messages) = connect(addr).await;
        Echo {
            client,
            messages,
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
                self.client
                    .send(Message::Binary(self.payload.clone()))
                    .await
                    .unwrap();
                match self.messages.recv().await {
                    Some(Message::Binary(data)) => assert_eq!(data, self.payload),
                    other => panic!("resocket echo: unexpected {other:?}"),
                }
                samples.push(start.elapsed());
            }
            samples
        })
    }
}

/// Recover: `ClientConfig::fast_reconnect()` (backoff 100 ms to 5 s, factor 1.5, equal jitter;
/// 5 s connect timeout; heartbeat every 5 s; stable after 5 s).
pub struct Recovering {
    _client: Client,
    messages: Messages,
}

impl Recovering {
    /// Connects to a [`Mode::Greet`](crate::server::Mode::Greet) server and takes its greeting.
    pub async fn connect(addr: SocketAddr) -> Recovering {
        let (client, mut messages) = Client::builder(format!("ws://{addr}/"))
            .config(ClientConfig::fast_reconnect())
            .spawn()
            .expect("valid client settings");
        client.ready().await.expect("resocket connects");
        let greeting = messages.recv().await.expect("stream open");
        assert!(greeting.is_binary(), "resocket recover: {greeting:?}");
        Recovering {
            _client: client,
            messages,
        }
    }
}

impl Recover for Recovering {
    fn greeting(&mut self) -> BoxFut<'_, Instant> {
        Box::pin(async move {
            let msg = self.messages.recv().await.expect("stream open");
            let at = Instant::now();
            assert!(msg.is_binary(), "resocket recover: {msg:?}");
            at
        })
    }
}
