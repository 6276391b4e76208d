//! Delivery: inbound bursts under backpressure, the outbound queue's bounds and policies.

mod support;

use std::time::Duration;

use resocket::{Client, ConnectionEvent, DropReason, Message, QueuePolicy};
use resocket_testkit::{closed_port, within, Behavior, TestServer};

#[tokio::test]
async fn burst_of_200k_reaches_a_slow_consumer_complete_and_in_order() {
    within(120, "burst", async {
        const COUNT: usize = 200_000;
        let server = TestServer::start(Behavior::Burst { count: COUNT }).await;
        let (client, mut messages) = Client::builder(server.url())
            .configure(|c| c.inbound_capacity = 1024)
            .spawn()
            .unwrap();
        let mut batch = Vec::new();
        let mut next = 0usize;
        while next < COUNT {
            batch.clear();
            assert!(
                messages.recv_many(&mut batch, 4096).await > 0,
                "stream ended at {next}"
            );
            for msg in &batch {
                assert_eq!(
                    msg.to_text().unwrap(),
                    next.to_string(),
                    "lost or reordered at {next}"
                );
                next += 1;
            }
            if next % 20_000 < batch.len() {
                // A consumer that stalls now and then: the server must be slowed, not dropped.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_eq!(client.snapshot().counters.messages_in, COUNT as u64);
        assert_eq!(
            client.snapshot().reconnects,
            0,
            "backpressure must not look like a dead peer"
        );
    })
    .await;
}

#[tokio::test]
async fn fan_out_receivers_see_every_message_or_are_told_they_lagged() {
    within(30, "fan-out", async {
        let server = TestServer::start(Behavior::Burst { count: 1000 }).await;
        let (client, mut messages) = Client::builder(server.url())
            .configure(|c| c.fan_out_capacity = Some(16))
            .build()
            .map(|(client, messages, supervisor)| {
                let fast = client.fan_out().unwrap();
                let slow = client.fan_out().unwrap();
                tokio::spawn(supervisor.run());
                ((client, fast, slow), messages)
            })
            .unwrap();
        let (_client, mut fast, mut slow) = client;
        // The fast receiver may still lag on a busy machine; whatever it gets must be exact,
        // and every gap must be announced with its size.
        let fast_task = tokio::spawn(async move {
            let (mut next, mut seen) = (0u64, 0u64);
            while next < 1000 {
                match fast.recv().await {
                    Ok(msg) => {
                        assert_eq!(msg.to_text().unwrap(), next.to_string());
                        next += 1;
                        seen += 1;
                    }
                    Err(resocket::RecvError::Lagged(n)) => next += n,
                    Err(closed) => panic!("fan-out ended early: {closed}"),
                }
            }
            assert_eq!(next, 1000, "gaps and messages add up to the burst");
            seen
        });
        for i in 0..1000 {
            assert_eq!(
                messages.recv().await.unwrap().to_text().unwrap(),
                i.to_string()
            );
        }
        let seen = fast_task.await.expect("the fast receiver's checks hold");
        assert!(seen > 0, "the fast receiver got messages");
        // The slow receiver never read: it must learn that it lagged, not see a silent gap.
        assert!(matches!(slow.recv().await, Err(resocket::RecvError::Lagged(n)) if n > 0));
    })
    .await;
}

fn unreachable_client(
    policy: QueuePolicy,
    capacity: usize,
    addr: std::net::SocketAddr,
) -> (Client, resocket::Messages) {
    Client::builder(format!("ws://{addr}/"))
        .configure(|c| {
            c.queue_policy = policy;
            c.queue_capacity = capacity;
            c.backoff = resocket::retry::ExponentialBackoff::new(
                Duration::from_secs(60),
                Duration::from_secs(60),
            );
        })
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn try_send_on_a_full_queue_returns_the_message() {
    within(20, "full queue", async {
        let (client, _messages) = unreachable_client(QueuePolicy::Queue, 2, closed_port().await);
        client.try_send(Message::text("a")).unwrap();
        client.try_send(Message::text("b")).unwrap();
        let error = client.try_send(Message::text("c")).unwrap_err();
        assert!(error.is_full());
        assert_eq!(error.into_inner(), Message::text("c"));
    })
    .await;
}

#[tokio::test]
async fn send_timeout_times_out_on_a_full_queue() {
    within(20, "send_timeout", async {
        let (client, _messages) = unreachable_client(QueuePolicy::Queue, 1, closed_port().await);
        client.try_send(Message::text("a")).unwrap();
        let error = client
            .send_timeout(Message::text("b"), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(error.is_timeout());
        assert_eq!(error.into_inner(), Message::text("b"));
    })
    .await;
}

#[tokio::test]
async fn reject_policy_fails_fast_while_disconnected() {
    within(20, "reject", async {
        let (client, _messages) = unreachable_client(QueuePolicy::Reject, 8, closed_port().await);
        let error = client.send(Message::text("a")).await.unwrap_err();
        assert!(error.is_not_connected());
        assert_eq!(error.into_inner(), Message::text("a"));
    })
    .await;
}

#[tokio::test]
async fn reject_policy_sends_once_ready() {
    within(20, "reject when ready", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(server.url())
            .configure(|c| c.queue_policy = QueuePolicy::Reject)
            .spawn()
            .unwrap();
        client.ready().await.unwrap();
        client.send(Message::text("ok")).await.unwrap();
        assert_eq!(server.next_message().await.1, Message::text("ok"));
    })
    .await;
}

#[tokio::test]
async fn drop_oldest_policy_reports_every_drop_and_keeps_the_newest() {
    within(20, "drop oldest", async {
        let addr = closed_port().await;
        let (client, _messages) = unreachable_client(QueuePolicy::DropOldest, 3, addr);
        let mut events = client.events();
        for i in 0..10 {
            client.send(Message::text(i.to_string())).await.unwrap();
        }
        let mut dropped = 0;
        while dropped < 7 {
            if let ConnectionEvent::Dropped { count, reason } = events.recv().await.unwrap() {
                assert_eq!(reason, DropReason::DropOldest);
                dropped += count;
            }
        }
        assert_eq!(dropped, 7);
        assert_eq!(client.snapshot().counters.dropped, 7);
        // The three newest survive and go out once a server appears.
        drop(client);
    })
    .await;
}

#[tokio::test]
async fn drop_oldest_survivors_are_written_in_order_after_connecting() {
    within(20, "drop oldest survivors", async {
        let addr = closed_port().await;
        let (client, _messages) = Client::builder(format!("ws://{addr}/"))
            .configure(|c| {
                c.queue_policy = QueuePolicy::DropOldest;
                c.queue_capacity = 3;
                c.backoff = resocket::retry::ExponentialBackoff::new(
                    Duration::from_millis(50),
                    Duration::from_millis(100),
                );
            })
            .spawn()
            .unwrap();
        let mut events = client.events();
        for i in 0..10 {
            client.send(Message::text(i.to_string())).await.unwrap();
        }
        let mut dropped = 0;
        while dropped < 7 {
            if let ConnectionEvent::Dropped { count, .. } = events.recv().await.unwrap() {
                dropped += count;
            }
        }
        let mut server = TestServer::start_at(addr, Behavior::Silent).await.unwrap();
        for i in 7..10 {
            assert_eq!(server.next_message().await.1, Message::text(i.to_string()));
        }
    })
    .await;
}

#[tokio::test]
async fn echo_round_trip() {
    within(20, "echo", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url()).spawn().unwrap();
        client.send(Message::text("hello")).await.unwrap();
        client.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        assert_eq!(messages.recv().await.unwrap(), Message::text("hello"));
        assert_eq!(
            messages.recv().await.unwrap(),
            Message::binary(vec![1u8, 2, 3])
        );
        let counters = client.snapshot().counters;
        assert_eq!((counters.messages_in, counters.messages_out), (2, 2));
        assert_eq!(counters.bytes_in, 8);
    })
    .await;
}

#[tokio::test]
async fn oversized_frame_is_a_typed_retryable_error() {
    within(20, "oversized", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url())
            .configure(|c| {
                c.max_message_size = Some(1024);
                c.max_frame_size = Some(1024);
            })
            .spawn()
            .unwrap();
        let mut events = client.events();
        client.send(Message::binary(vec![0u8; 4096])).await.unwrap();
        let reason = support::disconnect_reason(&mut events).await;
        assert!(matches!(reason, resocket::Error::Protocol(_)), "{reason:?}");
        assert!(reason.is_retryable());
        client.send(Message::text("small")).await.unwrap();
        assert_eq!(messages.recv().await.unwrap(), Message::text("small"));
    })
    .await;
}
