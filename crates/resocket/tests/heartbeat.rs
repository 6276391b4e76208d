//! Heartbeats over a real socket: a silent peer is declared dead. The schedule itself is
//! pinned on the paused clock in the supervisor's unit tests.

mod support;

use std::time::Duration;

use futures_util::SinkExt;

use resocket::{Client, Error, Message};
use resocket_testkit::{within, Behavior, TestServer};

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
            .spawn()
            .unwrap();
        let mut events = client.events();
        client.ready().await.unwrap();
        server.wait_connected().await;
        server.freeze_all();
        let reason = support::disconnect_reason(&mut events).await;
        assert!(
            matches!(reason, Error::HeartbeatTimeout(t) if t == timeout),
            "{reason:?}"
        );
        server.wait_connected().await;
        client.ready().await.unwrap();
        assert_eq!(client.snapshot().reconnects, 1);
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
            .spawn()
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
            .spawn()
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
