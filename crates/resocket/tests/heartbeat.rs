//! Heartbeats: a quiet healthy peer stays connected; a silent one is declared dead.

mod support;

use std::time::{Duration, Instant};

use futures_util::SinkExt;

use resocket::{Client, ConnectionEvent, Error, Message};
use resocket_testkit::{within, Behavior, ServerEvent, TestServer};

#[tokio::test]
async fn quiet_but_healthy_connection_stays_up() {
    within(30, "quiet connection", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(server.url())
            .configure(|c| {
                c.ping_interval = Some(Duration::from_millis(50));
                // Generous: the point is that a healthy peer is never declared dead, even on a
                // loaded machine.
                c.pong_timeout = Duration::from_secs(1);
            })
            .connect()
            .unwrap();
        let mut events = client.events();
        client.ready().await.unwrap();
        let mut pings = 0;
        while pings < 20 {
            if let ServerEvent::Ping { .. } = server.next_event().await {
                pings += 1;
            }
        }
        while let Ok(event) = events.try_recv() {
            assert!(
                !matches!(event, ConnectionEvent::Disconnected { .. }),
                "dropped a healthy connection: {event:?}"
            );
        }
        assert!(client.is_connected());
        let snapshot = client.snapshot();
        assert_eq!(snapshot.reconnects, 0);
        assert_eq!(server.connections(), 1);
        assert!(snapshot.counters.rtt.is_some(), "pongs feed the RTT");
        assert!(snapshot.uptime.is_some());
    })
    .await;
}

#[tokio::test]
async fn silent_peer_is_detected_and_the_client_reconnects() {
    within(30, "dead peer", async {
        let (interval, timeout) = (Duration::from_millis(200), Duration::from_millis(300));
        let mut server = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(server.url())
            .configure(|c| {
                c.ping_interval = Some(interval);
                c.pong_timeout = timeout;
                c.backoff = resocket::retry::ExponentialBackoff::new(
                    Duration::from_millis(10),
                    Duration::from_millis(50),
                );
            })
            .connect()
            .unwrap();
        let mut events = client.events();
        client.ready().await.unwrap();
        server.wait_connected().await;
        server.freeze_all();
        let frozen_at = Instant::now();
        let reason = support::disconnect_reason(&mut events).await;
        let detected_after = frozen_at.elapsed();
        assert!(
            matches!(reason, Error::HeartbeatTimeout(t) if t == timeout),
            "{reason:?}"
        );
        // Hang guard with slack for a loaded machine; the bound itself is ping_interval + pong_timeout.
        assert!(
            detected_after < interval + timeout + Duration::from_secs(2),
            "{detected_after:?}"
        );
        server.wait_connected().await;
        client.ready().await.unwrap();
        assert_eq!(client.snapshot().reconnects, 1);
    })
    .await;
}

#[tokio::test]
async fn app_level_heartbeat_is_sent_on_the_ping_schedule() {
    within(20, "app heartbeat", async {
        let mut server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url())
            .configure(|c| {
                c.ping_interval = Some(Duration::from_millis(50));
                c.heartbeat_message = Some(Message::text(r#"{"op":"ping"}"#));
            })
            .connect()
            .unwrap();
        for _ in 0..3 {
            assert_eq!(
                server.next_message().await.1,
                Message::text(r#"{"op":"ping"}"#)
            );
        }
        // The echo server answers it, and the answer is an ordinary data message.
        assert_eq!(
            messages.recv().await.unwrap(),
            Message::text(r#"{"op":"ping"}"#)
        );
        assert!(client.is_connected());
    })
    .await;
}

#[tokio::test]
async fn idle_timeout_reconnects_when_nothing_arrives() {
    within(20, "idle timeout", async {
        let server = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(server.url())
            .configure(|c| {
                c.ping_interval = None;
                c.idle_timeout = Some(Duration::from_millis(200));
            })
            .connect()
            .unwrap();
        let mut events = client.events();
        let reason = support::disconnect_reason(&mut events).await;
        assert!(matches!(reason, Error::IdleTimeout(_)), "{reason:?}");
        assert!(reason.is_timeout() && reason.is_retryable());
    })
    .await;
}

#[tokio::test]
async fn messages_received_before_a_heartbeat_timeout_are_delivered() {
    within(30, "burst, then a dead peer", async {
        const SENT: usize = 100;
        // A burst, then silence with TCP left open: no Pong ever comes.
        let server = TestServer::start(Behavior::custom(|mut conn| async move {
            for i in 0..SENT {
                if conn.ws.feed(Message::text(i.to_string())).await.is_err() {
                    return;
                }
            }
            let _ = conn.ws.flush().await;
            std::future::pending::<()>().await;
        }))
        .await;
        let (client, mut messages) = Client::builder(server.url())
            .configure(|c| {
                c.ping_interval = Some(Duration::from_millis(100));
                c.pong_timeout = Duration::from_millis(200);
            })
            .backoff(resocket::retry::NoRetry)
            .connect()
            .unwrap();
        // The application reads only once the client has given up on the peer.
        let error = client.closed().await.unwrap_err();
        assert!(
            matches!(&error, Error::RetriesExhausted { last, .. } if matches!(**last, Error::HeartbeatTimeout(_))),
            "{error:?}"
        );
        let mut received = Vec::new();
        while let Some(msg) = messages.recv().await {
            received.push(msg);
        }
        let expected: Vec<Message> = (0..SENT).map(|i| Message::text(i.to_string())).collect();
        assert!(received == expected, "{received:?}");
    })
    .await;
}
