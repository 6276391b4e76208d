//! The supervisor on tokio's paused clock, over an in-memory pipe: the same upgrade, codec,
//! handshake and connection code as on a socket, with every delay exact and no wall-clock wait.

use std::{
    future::Future,
    io,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use tokio::{io::DuplexStream, sync::mpsc, time::Instant};
use tokio_tungstenite::WebSocketStream;

use super::{Dial, Lifecycle};
use crate::{
    client::Link,
    config::ClientConfig,
    retry::{ExponentialBackoff, Jitter},
    transport::Target,
    Client, ConnectionEvent, Error, Events, Message, Messages,
};

/// A transport whose every attempt is a fresh `duplex` pipe; the test holds the other ends.
struct Memory {
    servers: mpsc::UnboundedSender<DuplexStream>,
    /// How many of the next attempts are refused, as by a port nothing listens on.
    refuse: Arc<AtomicUsize>,
}

impl Dial for Memory {
    type Io = DuplexStream;

    fn dial(
        &self,
        _link: &Link,
        _target: &Target,
    ) -> impl Future<Output = Result<DuplexStream, Error>> + Send {
        let refused = self
            .refuse
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        let result = if refused {
            Err(Error::io(io::ErrorKind::ConnectionRefused.into()))
        } else {
            let (client, server) = tokio::io::duplex(1 << 16);
            // A test that stopped listening gets a refused upgrade: the pipe's end is gone.
            let _ = self.servers.send(server);
            Ok(client)
        };
        std::future::ready(result)
    }
}

/// The server side of the pipes: a tiny WebSocket server (tungstenite's, on the far end).
struct Server {
    streams: mpsc::UnboundedReceiver<DuplexStream>,
    refuse: Arc<AtomicUsize>,
}

impl Server {
    /// Takes the next attempt's pipe and answers its upgrade.
    async fn accept(&mut self) -> WebSocketStream<DuplexStream> {
        let stream = self.streams.recv().await.expect("the client dials again");
        tokio_tungstenite::accept_async(stream)
            .await
            .expect("upgrade")
    }

    /// Refuses the next `n` attempts.
    fn refuse(&self, n: usize) {
        self.refuse.store(n, Ordering::Relaxed);
    }
}

/// A client whose supervisor runs on the in-memory transport, spawned.
fn client(configure: impl FnOnce(&mut ClientConfig)) -> (Client, Messages, Server) {
    let (client, messages, supervisor) = Client::builder("ws://memory.test/")
        .configure(configure)
        .build()
        .expect("valid settings");
    let (servers, streams) = mpsc::unbounded_channel();
    let refuse = Arc::new(AtomicUsize::new(0));
    let lifecycle: Lifecycle<Memory> = supervisor.0.with_dial(Memory {
        servers,
        refuse: refuse.clone(),
    });
    tokio::spawn(lifecycle.run());
    (client, messages, Server { streams, refuse })
}

/// The next event `pick` accepts, and the (paused) instant it arrived.
async fn next_event<T>(
    events: &mut Events,
    mut pick: impl FnMut(ConnectionEvent) -> Option<T>,
) -> (T, Instant) {
    loop {
        let event = events.recv().await.expect("the supervisor runs");
        if let Some(found) = pick(event) {
            return (found, Instant::now());
        }
    }
}

fn backing_off(event: ConnectionEvent) -> Option<Duration> {
    match event {
        ConnectionEvent::BackingOff { delay, .. } => Some(delay),
        _ => None,
    }
}

/// The next announced delay, and the time from its announcement to the next attempt.
async fn backing_off_once(events: &mut Events) -> (Duration, Duration) {
    let (delay, at) = next_event(events, backing_off).await;
    let (_, next) = next_event(events, connecting).await;
    (delay, next - at)
}

fn connecting(event: ConnectionEvent) -> Option<u32> {
    match event {
        ConnectionEvent::Connecting { attempt, .. } => Some(attempt),
        _ => None,
    }
}

fn disconnected(event: ConnectionEvent) -> Option<Error> {
    match event {
        ConnectionEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    }
}

/// The data frames a server reads until the client's Close, and that Close's code.
async fn read_until_close(ws: &mut WebSocketStream<DuplexStream>) -> (Vec<Message>, Option<u16>) {
    let mut data = Vec::new();
    while let Some(msg) = ws.next().await {
        match msg.expect("a well-formed stream") {
            Message::Close(frame) => return (data, frame.map(|f| u16::from(f.code))),
            msg @ (Message::Text(_) | Message::Binary(_)) => data.push(msg),
            _ => {}
        }
    }
    (data, None)
}

fn texts(range: std::ops::Range<usize>) -> Vec<Message> {
    range.map(|i| Message::text(i.to_string())).collect()
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_on_every_failure_and_resets_after_a_stable_connection() {
    resocket_testkit::within(3600, "backoff", async {
        let (client, _messages, mut server) = client(|c| {
            c.backoff = ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(60))
                .with_jitter(Jitter::None);
            c.stable_after = Duration::from_secs(10);
            c.ping_interval = None;
        });
        let mut events = client.events();
        // Three refusals, then a connection that drops at once, then one that proves stable.
        server.refuse(3);
        let mut delays = Vec::new();
        let mut gaps = Vec::new();
        for _ in 0..3 {
            let (delay, gap) = backing_off_once(&mut events).await;
            delays.push(delay);
            gaps.push(gap);
        }
        drop(server.accept().await);
        let (delay, gap) = backing_off_once(&mut events).await;
        delays.push(delay);
        gaps.push(gap);
        let ws = server.accept().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(ws);
        let (delay, gap) = backing_off_once(&mut events).await;
        delays.push(delay);
        gaps.push(gap);

        let expected = [1, 2, 4, 8, 1].map(Duration::from_secs);
        assert_eq!(delays, expected, "announced delays");
        assert_eq!(
            gaps, expected,
            "the clock between a failure and the next attempt"
        );
        drop(server.accept().await);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_declared_dead_one_pong_timeout_after_the_ping() {
    resocket_testkit::within(3600, "dead peer", async {
        let (interval, timeout) = (Duration::from_secs(5), Duration::from_secs(3));
        let (client, _messages, mut server) = client(|c| {
            c.ping_interval = Some(interval);
            c.pong_timeout = timeout;
        });
        let mut events = client.events();
        // Accepted, then never read again: no Pong ever goes back.
        let _frozen = server.accept().await;
        let (_, ready_at) = next_event(&mut events, |e| {
            matches!(e, ConnectionEvent::Ready { .. }).then_some(())
        })
        .await;
        let (reason, at) = next_event(&mut events, disconnected).await;
        assert!(
            matches!(reason, Error::HeartbeatTimeout(t) if t == timeout),
            "{reason:?}"
        );
        assert_eq!(at - ready_at, interval + timeout);
        assert_eq!(client.snapshot().counters.pings, 1);
        // And it reconnects.
        let _next = server.accept().await;
        client.ready().await.unwrap();
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_peer_that_answers_pings_stays_connected() {
    resocket_testkit::within(3600, "quiet peer", async {
        let (client, _messages, mut server) = client(|c| {
            c.ping_interval = Some(Duration::from_secs(1));
            c.pong_timeout = Duration::from_secs(1);
        });
        let mut events = client.events();
        let mut ws = server.accept().await;
        client.ready().await.unwrap();
        // Reading answers every Ping; twenty of them span twenty seconds of silence.
        let mut pings = 0;
        while pings < 20 {
            if let Message::Ping(_) = ws.next().await.unwrap().unwrap() {
                pings += 1;
            }
        }
        // The last Pong goes out with the next read; give it its round trip.
        let answered = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        assert!(answered.is_err(), "nothing but pings: {answered:?}");
        while let Ok(event) = events.try_recv() {
            assert!(
                !matches!(event, ConnectionEvent::Disconnected { .. }),
                "dropped a healthy connection: {event:?}"
            );
        }
        assert!(client.is_connected());
        let snapshot = client.snapshot();
        assert_eq!(snapshot.reconnects, 0);
        assert!(snapshot.counters.rtt.is_some(), "pongs feed the RTT");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn close_writes_everything_queued_before_the_close_frame() {
    resocket_testkit::within(3600, "drain", async {
        let (client, _messages, mut server) = client(|c| {
            c.drain_on_close = true;
            c.ping_interval = None;
        });
        let mut ws = server.accept().await;
        client.ready().await.unwrap();
        // Four times what the pipe holds: most of it is still queued when the close comes.
        let big = |i: usize| Message::text(format!("{i:04}").repeat(1024));
        let mut sent: Vec<Message> = (0..64).map(big).collect();
        for msg in &sent {
            client.try_send(msg.clone()).unwrap();
        }
        let closing = tokio::spawn({
            let client = client.clone();
            async move { client.close().await }
        });
        // The connection has taken the close once the queue refuses more; what it took
        // until then is part of the backlog too.
        for i in 64.. {
            match client.try_send(big(i)) {
                Ok(()) => sent.push(big(i)),
                Err(e) if e.is_closed() => break,
                Err(e) => assert!(e.is_full(), "{e:?}"),
            }
            tokio::task::yield_now().await;
        }
        let (data, code) = read_until_close(&mut ws).await;
        assert!(data == sent, "{} of {} arrived", data.len(), sent.len());
        assert_eq!(code, Some(1000));
        // The server's answering Close goes out with its next read.
        assert!(ws.next().await.is_none());
        closing.await.unwrap().unwrap();
        assert_eq!(client.snapshot().counters.messages_out, sent.len() as u64);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn messages_sent_across_a_reconnect_arrive_in_order() {
    resocket_testkit::within(3600, "order across reconnect", async {
        let (client, _messages, mut server) = client(|c| {
            c.backoff = ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(60))
                .with_jitter(Jitter::None);
            c.ping_interval = None;
        });
        let mut events = client.events();
        let mut ws = server.accept().await;
        client.ready().await.unwrap();
        for msg in texts(0..10) {
            client.send(msg).await.unwrap();
        }
        let mut first = Vec::new();
        while first.len() < 10 {
            first.push(ws.next().await.unwrap().unwrap());
        }
        assert_eq!(first, texts(0..10));

        // The server goes away and stays away for two attempts; the user keeps sending.
        server.refuse(2);
        drop(ws);
        next_event(&mut events, disconnected).await;
        for msg in texts(10..20) {
            client.send(msg).await.unwrap();
        }
        let mut ws = server.accept().await;
        for msg in texts(20..30) {
            client.send(msg).await.unwrap();
        }
        let mut after = Vec::new();
        while after.len() < 20 {
            after.push(ws.next().await.unwrap().unwrap());
        }
        assert_eq!(after, texts(10..30));
        assert_eq!(client.snapshot().reconnects, 1);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_app_level_heartbeat_goes_out_on_the_ping_schedule() {
    resocket_testkit::within(3600, "app heartbeat", async {
        let every = Duration::from_secs(2);
        let beat = Message::text(r#"{"op":"ping"}"#);
        let (client, mut messages, mut server) = client(|c| {
            c.ping_interval = Some(every);
            c.heartbeat_message = Some(beat.clone());
        });
        let mut ws = server.accept().await;
        client.ready().await.unwrap();
        let mut last = Instant::now();
        for _ in 0..3 {
            assert_eq!(ws.next().await.unwrap().unwrap(), beat);
            assert_eq!(last.elapsed(), every);
            last = Instant::now();
            // Answered as an echo server would: an ordinary data message for the user.
            ws.send(beat.clone()).await.unwrap();
            assert_eq!(messages.recv().await.unwrap(), beat);
        }
        assert!(client.is_connected());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_default_backoff_never_loops_tightly_against_a_server_that_closes_every_connection() {
    resocket_testkit::within(3600, "close after upgrade", async {
        // Default settings: the point is that the defaults never loop tightly.
        let (client, _messages, mut server) = client(|_| {});
        // `ExponentialBackoff::standard()`'s base, of which equal jitter waits at least half.
        let base = Duration::from_secs(1);
        let mut events = client.events();
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let mut ws = server.accept().await;
            ws.close(None).await.unwrap();
            let (delay, gap) = backing_off_once(&mut events).await;
            // tokio's timer rounds a deadline up to the next millisecond.
            assert!(
                gap >= delay && gap - delay < Duration::from_millis(1),
                "waited {gap:?} for {delay:?}"
            );
            gaps.push(gap);
        }
        assert!(
            gaps.windows(2).all(|g| g[1] >= g[0]),
            "gaps do not grow: {gaps:?}"
        );
        assert!(
            gaps.iter().all(|g| *g >= base / 2),
            "a gap shorter than half the base: {gaps:?}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_draining_close_while_backing_off_under_drop_oldest_still_connects_and_drains() {
    resocket_testkit::within(3600, "draining close under DropOldest", async {
        let (client, _messages, mut server) = client(|c| {
            c.queue_policy = crate::QueuePolicy::DropOldest;
            c.backoff = ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(60))
                .with_jitter(Jitter::None);
            c.ping_interval = None;
        });
        let mut events = client.events();
        server.refuse(1);
        next_event(&mut events, backing_off).await;
        for msg in texts(0..3) {
            client.try_send(msg).unwrap();
        }
        let closing = tokio::spawn({
            let client = client.clone();
            async move { client.close().await }
        });
        let mut ws = server.accept().await;
        let (data, code) = read_until_close(&mut ws).await;
        assert_eq!(data, texts(0..3));
        assert_eq!(code, Some(1000));
        assert!(ws.next().await.is_none());
        closing.await.unwrap().unwrap();
    })
    .await;
}
