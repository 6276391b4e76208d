//! Reconnection over real sockets: server restarts, refused ports, retry limits. The backoff
//! schedule itself is pinned on the paused clock in the supervisor's unit tests.

mod support;

use std::time::Duration;

use resocket::{Client, ConnectionEvent, Message};
use resocket_testkit::{closed_port, within, Behavior, ServerEvent, TestServer};

#[tokio::test]
async fn reconnects_after_server_restart_and_delivers_the_outage_backlog_in_order() {
    within(30, "restart test", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let addr = server.addr();
        let (client, _messages) = Client::builder(server.url())
            .configure(support::quick_backoff(Duration::from_millis(200)))
            .spawn()
            .unwrap();
        let mut events = client.events();
        client.ready().await.unwrap();
        client.send(Message::text("before")).await.unwrap();
        assert_eq!(server.next_message().await.1, Message::text("before"));

        server.stop().await;
        support::wait_event(&mut events, |e| {
            matches!(e, ConnectionEvent::Disconnected { .. })
        })
        .await;
        assert!(!client.is_connected());

        for i in 0..100 {
            client.send(Message::text(format!("m{i}"))).await.unwrap();
        }
        let mut server = TestServer::start_at(addr, Behavior::Silent).await.unwrap();
        for i in 0..100 {
            let (_, msg) = server.next_message().await;
            assert_eq!(
                msg,
                Message::text(format!("m{i}")),
                "message {i} out of order or lost"
            );
        }
        // Nothing after the backlog but the marker: no duplicates.
        client.send(Message::text("end")).await.unwrap();
        assert_eq!(server.next_message().await.1, Message::text("end"));
        let snapshot = client.snapshot();
        assert_eq!(snapshot.reconnects, 1);
        assert_eq!(snapshot.counters.messages_out, 102);
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn refused_port_is_retried_and_exit_on_first_failure_stops() {
    within(20, "refused port", async {
        let addr = closed_port().await;
        let (client, _messages) = Client::builder(format!("ws://{addr}/"))
            .configure(|c| c.exit_on_first_failure = true)
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert_eq!(
            error.io_kind(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "{error:?}"
        );
        assert!(error.is_retryable(), "refused is retryable in general");
    })
    .await;
}

#[tokio::test]
async fn unreachable_then_reachable_server_is_joined_without_losing_queued_messages() {
    within(20, "late server", async {
        let addr = closed_port().await;
        let (client, _messages) = Client::builder(format!("ws://{addr}/"))
            .configure(support::quick_backoff(Duration::from_millis(100)))
            .spawn()
            .unwrap();
        let mut events = client.events();
        client.send(Message::text("queued early")).await.unwrap();
        support::wait_event(&mut events, |e| {
            matches!(e, ConnectionEvent::BackingOff { .. })
        })
        .await;
        let mut server = TestServer::start_at(addr, Behavior::Silent).await.unwrap();
        assert_eq!(server.next_message().await.1, Message::text("queued early"));
        client.ready().await.unwrap();
        assert_eq!(
            client.snapshot().reconnects,
            0,
            "the first Ready is not a reconnect"
        );
    })
    .await;
}

#[tokio::test]
async fn max_attempts_ends_the_client_with_retries_exhausted() {
    within(20, "max attempts", async {
        let server = TestServer::start(Behavior::DropAfterUpgrade).await;
        let (client, _messages) = Client::builder(server.url())
            .backoff(
                resocket::retry::FixedDelay::new(Duration::from_millis(10)).with_max_attempts(3),
            )
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert!(
            matches!(error, resocket::Error::RetriesExhausted { attempts: 4, .. }),
            "{error:?}"
        );
        assert_eq!(
            server.connections(),
            4,
            "one attempt plus exactly three retries"
        );
    })
    .await;
}

#[tokio::test]
async fn request_factory_runs_per_attempt() {
    within(20, "request factory", async {
        let mut server = TestServer::start(Behavior::DropAfterUpgrade).await;
        let url = server.url();
        let (client, _messages) = Client::builder(url.clone())
            .backoff(resocket::retry::FixedDelay::new(Duration::from_millis(10)))
            .request_factory(move |ctx| {
                Ok(http::Request::builder()
                    .uri(&url)
                    .header("x-attempt", ctx.attempt.to_string())
                    .body(())
                    .unwrap())
            })
            .header("x-static", "yes")
            .spawn()
            .unwrap();
        for expected in 1..=3 {
            let request = loop {
                if let ServerEvent::Connected { request, .. } = server.next_event().await {
                    break request;
                }
            };
            assert_eq!(
                request.headers()["x-attempt"],
                expected.to_string().as_str()
            );
            assert_eq!(request.headers()["x-static"], "yes");
        }
        drop(client);
    })
    .await;
}
