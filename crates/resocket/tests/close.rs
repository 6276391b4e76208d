//! Closing: the client's Close frame, the server's, and dropping the last handle.

mod support;

use std::time::Duration;

use resocket::{Client, CloseCode, ConnectionEvent, ConnectionState, Error, Message, Messages};
use resocket_testkit::{within, Behavior, TestServer};

#[tokio::test]
async fn close_with_sends_exactly_that_frame() {
    within(20, "close_with", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(server.url()).spawn().unwrap();
        client.ready().await.unwrap();
        client
            .close_with(CloseCode::private(4000).unwrap(), "bye")
            .await
            .unwrap();
        let (_, frame) = server.wait_closed().await;
        let frame = frame.expect("a Close frame");
        assert_eq!(u16::from(frame.code), 4000);
        assert_eq!(frame.reason.as_str(), "bye");
        assert!(matches!(client.state(), ConnectionState::Closed));
        assert!(client
            .send(Message::text("late"))
            .await
            .unwrap_err()
            .is_closed());
    })
    .await;
}

#[tokio::test]
async fn close_drains_the_queue_before_the_close_frame() {
    within(20, "drain on close", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(server.url()).spawn().unwrap();
        for i in 0..50 {
            client.send(Message::text(i.to_string())).await.unwrap();
        }
        client.close().await.unwrap();
        for i in 0..50 {
            assert_eq!(server.next_message().await.1, Message::text(i.to_string()));
        }
        let (_, frame) = server.wait_closed().await;
        assert_eq!(u16::from(frame.unwrap().code), 1000);
    })
    .await;
}

#[tokio::test]
async fn server_close_shows_in_the_event_and_the_snapshot() {
    within(20, "server close", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(server.url())
            .configure(|c| {
                c.backoff = resocket::retry::ExponentialBackoff::new(
                    Duration::from_secs(30),
                    Duration::from_secs(30),
                )
            })
            .spawn()
            .unwrap();
        let mut events = client.events();
        client.ready().await.unwrap();
        server.wait_connected().await;
        server.close_all(4321, "maintenance");
        let reason = support::disconnect_reason(&mut events).await;
        let frame = reason.close_frame().expect("close frame in the reason");
        assert_eq!(
            (u16::from(frame.code), frame.reason.as_str()),
            (4321, "maintenance")
        );
        assert!(matches!(reason, Error::ServerClosed { .. }));
        let snapshot = client.snapshot();
        let last = snapshot.last_close.expect("last close in the snapshot");
        assert_eq!(
            (u16::from(last.code), last.reason.as_str()),
            (4321, "maintenance")
        );
        assert!(snapshot.last_error.is_some());
    })
    .await;
}

#[tokio::test]
async fn policy_violation_close_is_permanent() {
    within(20, "1008", async {
        let server = TestServer::start(Behavior::CloseAfterUpgrade {
            code: 1008,
            reason: "banned".into(),
        })
        .await;
        let (client, _messages) = Client::builder(server.url()).spawn().unwrap();
        let error = client.closed().await.unwrap_err();
        assert_eq!(u16::from(error.close_frame().unwrap().code), 1008);
        assert_eq!(server.connections(), 1, "no retry after 1008");
    })
    .await;
}

#[tokio::test]
async fn dropping_the_last_handle_closes_cleanly() {
    within(20, "drop handle", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let (client, mut messages) = Client::builder(server.url()).spawn().unwrap();
        client.ready().await.unwrap();
        let second = client.clone();
        drop(client);
        second.send(Message::text("still here")).await.unwrap();
        assert_eq!(server.next_message().await.1, Message::text("still here"));
        drop(second);
        let (_, frame) = server.wait_closed().await;
        assert_eq!(
            u16::from(frame.expect("a Close frame, not a dropped socket").code),
            1000
        );
        assert!(
            messages.recv().await.is_none(),
            "the message stream ends with the client"
        );
    })
    .await;
}

#[tokio::test]
async fn close_while_backing_off_ends_at_once() {
    within(20, "close while backing off", async {
        let server = TestServer::start(Behavior::DropAfterUpgrade).await;
        let (client, _messages) = Client::builder(server.url())
            .configure(|c| {
                c.backoff = resocket::retry::ExponentialBackoff::new(
                    Duration::from_secs(3600),
                    Duration::from_secs(3600),
                )
            })
            .spawn()
            .unwrap();
        let mut status = client.status();
        status
            .wait_for(|s| matches!(s.state, ConnectionState::BackingOff { .. }))
            .await
            .unwrap();
        client.close().await.unwrap();
        assert!(matches!(client.state(), ConnectionState::Closed));
    })
    .await;
}

#[tokio::test]
async fn close_without_drain_reports_what_it_dropped() {
    within(20, "close without drain", async {
        let addr = resocket_testkit::closed_port().await;
        let (client, _messages) = Client::builder(format!("ws://{addr}/"))
            .configure(|c| {
                c.drain_on_close = false;
                c.backoff = resocket::retry::ExponentialBackoff::new(
                    Duration::from_secs(60),
                    Duration::from_secs(60),
                );
            })
            .spawn()
            .unwrap();
        let mut events = client.events();
        for i in 0..3 {
            client.send(Message::text(i.to_string())).await.unwrap();
        }
        client.close().await.unwrap();
        let dropped = support::wait_event(&mut events, |e| {
            matches!(e, resocket::ConnectionEvent::Dropped { .. })
        })
        .await;
        assert!(
            matches!(
                dropped,
                resocket::ConnectionEvent::Dropped {
                    count: 3,
                    reason: resocket::DropReason::Shutdown
                }
            ),
            "{dropped:?}"
        );
        assert_eq!(client.snapshot().counters.dropped, 3);
    })
    .await;
}

/// `count` numbered text messages: "0", "1", ...
fn numbered(count: usize) -> Vec<Message> {
    (0..count).map(|i| Message::text(i.to_string())).collect()
}

/// Asserts that `received` is exactly "0", "1", ... "count-1".
fn assert_numbered(received: &[Message], count: usize) {
    assert_eq!(received.len(), count, "how many came out");
    assert!(received == numbered(count), "out of order: {received:?}");
}

/// Everything the stream yields until it ends.
async fn drain(messages: &mut Messages) -> Vec<Message> {
    let mut received = Vec::new();
    while let Some(msg) = messages.recv().await {
        received.push(msg);
    }
    received
}

#[tokio::test]
async fn replies_that_arrive_while_closing_are_delivered() {
    within(30, "replies while closing", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url()).spawn().unwrap();
        for msg in numbered(1000) {
            client.send(msg).await.unwrap();
        }
        // The application reads only once the close is over: replies must not wait on it.
        client.close().await.unwrap();
        assert_numbered(&drain(&mut messages).await, 1000);
        assert_eq!(client.snapshot().counters.discarded, 0);
    })
    .await;
}

#[tokio::test]
async fn replies_that_arrive_while_closing_with_a_code_are_delivered() {
    within(30, "replies while closing with a code", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url()).spawn().unwrap();
        for msg in numbered(1000) {
            client.send(msg).await.unwrap();
        }
        client
            .close_with(CloseCode::private(4000).unwrap(), "done")
            .await
            .unwrap();
        assert_numbered(&drain(&mut messages).await, 1000);
    })
    .await;
}

#[tokio::test]
async fn replies_that_arrive_after_the_last_handle_is_dropped_are_delivered() {
    within(30, "replies after the last handle", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url()).spawn().unwrap();
        let mut status = client.status();
        for msg in numbered(1000) {
            client.send(msg).await.unwrap();
        }
        drop(client);
        status.wait_for(|s| s.state.is_closed()).await.unwrap();
        assert_numbered(&drain(&mut messages).await, 1000);
    })
    .await;
}

#[tokio::test]
async fn a_flood_while_closing_is_bounded_and_the_rest_counted() {
    within(60, "flood while closing", async {
        const SENT: usize = 20_000;
        const CAPACITY: usize = 64;
        let server = TestServer::start(Behavior::Burst { count: SENT }).await;
        let (client, mut messages) = Client::builder(server.url())
            .configure(|c| c.inbound_capacity = CAPACITY)
            .spawn()
            .unwrap();
        let mut events = client.events();
        client.ready().await.unwrap();
        // The application never reads while the server floods and the client closes.
        client.close().await.unwrap();
        let received = drain(&mut messages).await;
        let discarded = match support::wait_event(&mut events, |e| {
            matches!(e, ConnectionEvent::Discarded { .. })
        })
        .await
        {
            ConnectionEvent::Discarded { count } => count,
            _ => unreachable!("filtered above"),
        };
        // The bound: the channel's, and as much again held while closing.
        assert!(
            received.len() <= 2 * CAPACITY,
            "{} messages held",
            received.len()
        );
        assert_numbered(&received, received.len());
        assert_eq!(
            received.len() as u64 + discarded,
            SENT as u64,
            "every message is delivered or counted"
        );
        let counters = client.snapshot().counters;
        assert_eq!(counters.discarded, discarded);
        assert_eq!(counters.messages_in, SENT as u64);
    })
    .await;
}
