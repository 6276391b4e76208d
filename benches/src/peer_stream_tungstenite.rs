//! Peer: stream-tungstenite 0.6.1, a reconnecting client on tokio-tungstenite 0.28, used through
//! its documented API: `WebSocketClient::run()` in a task, `subscribe()` for incoming messages
//! (a `tokio::sync::broadcast` of `Arc<Message>`), `send_async()` for outgoing ones (waits for
//! queue capacity; `send()` is a `try_send` that fails when the queue is full).
//!
//! Its receive path is lossy by design: the reader broadcasts into a `broadcast` channel, a
//! forwarder re-broadcasts into the client's, and a subscriber that falls more than
//! `channel_buffer_size` messages behind gets `Lagged` and loses them. So that a burst arrives
//! whole, the receive case sizes that buffer to the whole round (see [`Receiver::connect`]).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use stream_tungstenite::{
    connection::ExponentialBackoff, tokio_tungstenite::tungstenite::Message, ClientConfig,
    SharedMessage, WebSocketClient,
};
use tokio::{
    sync::broadcast::{self, error::RecvError},
    task::JoinHandle,
};

use crate::{server::Tally, BoxFut, Payload, Recover, RoundTrip, Throughput};

/// A running client: the `run()` task, the client and one subscription.
pub struct Peer {
    client: Arc<WebSocketClient>,
    messages: broadcast::Receiver<SharedMessage>,
    task: JoinHandle<()>,
}

/// The throughput settings: defaults, plus nodelay (as every contender here) and a receive
/// timeout long enough that an idle connection is not dropped between rounds (the default 20 s
/// would fire on a send-only connection, whose server never writes).
pub fn config() -> ClientConfig {
    ClientConfig::new()
        .with_nodelay(true)
        .with_receive_timeout(Duration::from_secs(3600))
}

impl Peer {
    /// Builds a client for `ws://addr/`, subscribes, runs it and waits until it is connected,
    /// so that connecting is never part of a measurement.
    pub async fn connect(addr: SocketAddr, config: ClientConfig, fast: bool) -> Peer {
        let mut builder = WebSocketClient::builder(format!("ws://{addr}/")).config(config);
        if fast {
            builder = builder.retry_strategy(ExponentialBackoff::fast());
        }
        let client = Arc::new(builder.build());
        let messages = client.subscribe();
        let task = tokio::spawn({
            let client = client.clone();
            async move {
                let _ = client.run().await;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(client.is_connected() && client.sender().await.is_some()) {
            assert!(
                Instant::now() < deadline,
                "stream-tungstenite connects within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Peer {
            client,
            messages,
            task,
        }
    }

    async fn send(&self, msg: Message) {
        self.client
            .send_async(msg)
            .await
            .expect("stream-tungstenite send_async");
    }

    /// The next message from the subscription; panics (naming `what`) if one was lost.
    pub async fn recv(&mut self, what: &str) -> SharedMessage {
        match self.messages.recv().await {
            Ok(msg) => msg,
            Err(RecvError::Lagged(lost)) => {
                panic!("stream-tungstenite {what}: {lost} messages lost (broadcast lag)")
            }
            Err(RecvError::Closed) => panic!("stream-tungstenite {what}: channel closed"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.client.shutdown();
        self.task.abort();
    }
}

/// Receive: asks the burst server for `n` messages and takes them from the subscription.
pub struct Receiver {
    peer: Peer,
    expect: Payload,
}

impl Receiver {
    /// Connects to a [`Mode::Burst`](crate::server::Mode::Burst) server, with both broadcast
    /// buffers sized for `max_n` messages (a round), so that no message can be dropped for lag.
    /// With the default buffer (256) a burst loses messages.
    pub async fn connect(addr: SocketAddr, expect: Payload, max_n: u64) -> Receiver {
        let config = config().with_channel_buffer(max_n as usize);
        Receiver {
            peer: Peer::connect(addr, config, false).await,
            expect,
        }
    }
}

impl Throughput for Receiver {
    fn round(&mut self, n: u64) -> BoxFut<'_, Duration> {
        Box::pin(async move {
            let start = Instant::now();
            self.peer.send(Message::text(n.to_string())).await;
            let mut got = 0u64;
            while got < n {
                let msg = self.peer.recv("receive").await;
                match &*msg {
                    Message::Binary(data) => self.expect.take(data),
                    other => panic!("stream-tungstenite receive: unexpected {other:?}"),
                }
                got += 1;
            }
            let elapsed = start.elapsed();
            assert_eq!(got, n);
            elapsed
        })
    }
}

/// Send: `client.send_async(msg).await` per message; a send task writes them with
/// `sink.send()` (a flush each).
pub struct Sender {
    peer: Peer,
    payload: Bytes,
    tally: Arc<Tally>,
}

impl Sender {
    /// Connects to the [`Mode::Sink`](crate::server::Mode::Sink) server that owns `tally`.
    pub async fn connect(addr: SocketAddr, payload: Bytes, tally: Arc<Tally>) -> Sender {
        Sender {
            peer: Peer::connect(addr, config(), false).await,
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
                self.peer.send(Message::Binary(self.payload.clone())).await;
            }
            self.tally
                .finish_round(start, target, self.payload.len())
                .await
        })
    }
}

/// Echo: one message in flight, `send_async().await` then `recv().await` on the subscription.
pub struct Echo {
    peer: Peer,
    payload: Bytes,
}

impl Echo {
    /// Connects to a [`Mode::Echo`](crate::server::Mode::Echo) server.
    pub async fn connect(addr: SocketAddr, payload: Bytes) -> Echo {
        Echo {
            peer: Peer::connect(addr, config(), false).await,
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
                self.peer.send(Message::Binary(self.payload.clone())).await;
                let msg = self.peer.recv("echo").await;
                match &*msg {
                    Message::Binary(data) => assert_eq!(data, &self.payload),
                    other => panic!("stream-tungstenite echo: unexpected {other:?}"),
                }
                samples.push(start.elapsed());
            }
            samples
        })
    }
}

/// Recover: its fastest documented settings, `ClientConfig::fast_reconnect()` (nodelay, 10 s
/// connect and receive timeouts) with `ExponentialBackoff::fast()` (100 ms to 5 s, factor 1.5,
/// 10 % jitter); the default strategy is `standard()` (1 s to 60 s).
pub struct Recovering {
    peer: Peer,
}

impl Recovering {
    /// Connects to a [`Mode::Greet`](crate::server::Mode::Greet) server and takes its greeting.
    pub async fn connect(addr: SocketAddr) -> Recovering {
        let mut peer = Peer::connect(addr, ClientConfig::fast_reconnect(), true).await;
        peer.recv("recover").await;
        Recovering { peer }
    }
}

impl Recover for Recovering {
    fn greeting(&mut self) -> BoxFut<'_, Instant> {
        Box::pin(async move {
            let msg = self.peer.recv("recover").await;
            let at = Instant::now();
            assert!(msg.is_binary(), "stream-tungstenite recover: {msg:?}");
            at
        })
    }
}
