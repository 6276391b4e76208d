//! The handle's API as a tokio user meets it: `connect().await` waits for `Ready`, `Client` is a
//! `Sink<Message>`, `Messages` says why it ended, and `is_closing`/`is_closed` follow a close.

mod support;

use std::{future::Future, pin::pin, sync::Arc, task::Poll, time::Duration};

use futures_util::{stream, SinkExt, StreamExt};
use resocket::{retry::FixedDelay, Client, Ended, Message, SendError};
use resocket_testkit::{within, Behavior, TestServer};
use tokio::sync::{mpsc, Notify};

fn numbered(n: usize) -> Vec<Message> {
    (0..n).map(|i| Message::text(i.to_string())).collect()
}

#[tokio::test]
async fn connect_waits_until_ready() {
    within(20, "connect().await", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, _messages) = Client::builder(server.url()).connect().await.unwrap();
        assert!(client.is_connected());
        assert_eq!(server.connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn connect_returns_the_permanent_failure_instead_of_waiting() {
    within(20, "connect().await against 403", async {
        let server = TestServer::start(support::reject(403, &[])).await;
        let error = Client::builder(server.url())
            .backoff(FixedDelay::new(Duration::from_millis(1)))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(error.http_status().map(|s| s.as_u16()), Some(403));
    })
    .await;
}

#[tokio::test]
async fn sink_send_and_send_all_reach_the_server_in_order() {
    within(30, "Sink send and send_all", async {
        let server = TestServer::start(Behavior::Echo).await;
        // A queue far smaller than the batch: `send_all` must wait for room, not fail or
        // reorder.
        let (client, mut messages) = Client::builder(server.url())
            .configure(|c| c.queue_capacity = 4)
            .connect()
            .await
            .unwrap();
        let mut sink = client.clone();
        // `Client::send` (inherent) would shadow it: call the Sink's explicitly.
        SinkExt::send(&mut sink, Message::text("first"))
            .await
            .unwrap();
        let batch = numbered(2000);
        let mut items = stream::iter(batch.clone().into_iter().map(Ok));
        sink.send_all(&mut items).await.unwrap();
        sink.feed(Message::text("last")).await.unwrap();
        sink.flush().await.unwrap();

        assert_eq!(messages.recv().await.unwrap(), Message::text("first"));
        for expected in batch {
            assert_eq!(messages.recv().await.unwrap(), expected);
        }
        assert_eq!(messages.recv().await.unwrap(), Message::text("last"));
    })
    .await;
}

#[tokio::test]
async fn sink_errors_are_send_errors_with_the_message_inside() {
    within(20, "Sink errors", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, _messages) = Client::builder(server.url()).connect().await.unwrap();
        let mut sink = client.clone();
        let ping = Message::Ping(b"p".to_vec().into());
        match SinkExt::send(&mut sink, ping.clone()).await {
            Err(SendError::Unsupported(back)) => assert_eq!(back, ping),
            other => panic!("expected Unsupported, got {other:?}"),
        }
        client.close().await.unwrap();
        let err = SinkExt::send(&mut sink, Message::text("late"))
            .await
            .unwrap_err();
        assert!(err.is_closed());
        assert_eq!(err.into_inner(), Message::text("late"));
    })
    .await;
}

#[tokio::test]
async fn sink_close_writes_the_queue_then_closes_with_1000() {
    within(20, "Sink close", async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let (client, mut messages) = Client::builder(server.url()).connect().await.unwrap();
        let mut sink = client.clone();
        sink.feed(Message::text("a")).await.unwrap();
        sink.feed(Message::text("b")).await.unwrap();
        SinkExt::close(&mut sink).await.unwrap();
        assert!(client.is_closed());
        SinkExt::close(&mut sink).await.unwrap();
        assert_eq!(server.next_message().await.1, Message::text("a"));
        assert_eq!(server.next_message().await.1, Message::text("b"));
        let (_, frame) = server.wait_closed().await;
        assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
        assert!(messages.recv().await.is_none());
        assert!(matches!(messages.end_reason(), Some(Ended::Closed)));
    })
    .await;
}

#[tokio::test]
async fn messages_end_reason_after_a_user_close_is_closed() {
    within(20, "end reason after close", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url()).connect().await.unwrap();
        client.send(Message::text("echoed")).await.unwrap();
        assert_eq!(messages.recv().await.unwrap(), Message::text("echoed"));
        assert!(messages.end_reason().is_none(), "not ended yet");
        client.close().await.unwrap();
        assert!(messages.recv().await.is_none());
        let reason = messages.end_reason().expect("ended");
        assert!(matches!(reason, Ended::Closed), "{reason:?}");
        assert!(reason.error().is_none());
    })
    .await;
}

#[tokio::test]
async fn messages_end_reason_after_retries_are_exhausted_names_the_last_error() {
    within(20, "end reason after retries", async {
        let server = TestServer::start(Behavior::DropAfterUpgrade).await;
        let (_client, mut messages) = Client::builder(server.url())
            .backoff(FixedDelay::new(Duration::from_millis(1)).with_max_attempts(2))
            .spawn()
            .unwrap();
        assert!(messages.recv().await.is_none());
        match messages.end_reason() {
            Some(Ended::RetriesExhausted { attempts, last }) => {
                assert_eq!(*attempts, 3, "the first attempt and two retries");
                assert!(last.is_retryable(), "{last}");
            }
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
        assert_eq!(server.connections(), 3);
    })
    .await;
}

#[tokio::test]
async fn messages_end_reason_after_a_permanent_failure_is_failed() {
    within(20, "end reason after 403", async {
        let server = TestServer::start(support::reject(403, &[])).await;
        let (_client, mut messages) = Client::builder(server.url()).spawn().unwrap();
        assert!(messages.recv().await.is_none());
        match messages.end_reason() {
            Some(Ended::Failed(error)) => {
                assert_eq!(error.http_status().map(|s| s.as_u16()), Some(403))
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn messages_end_reason_is_aborted_when_the_task_never_ran() {
    within(20, "end reason of a dropped supervisor", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (_client, mut messages, supervisor) = Client::builder(server.url()).build().unwrap();
        drop(supervisor);
        assert!(messages.recv().await.is_none());
        assert!(matches!(messages.end_reason(), Some(Ended::Aborted)));
    })
    .await;
}

#[tokio::test]
async fn is_closing_holds_while_the_close_runs_then_is_closed() {
    within(20, "is_closing then is_closed", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, _messages) = Client::builder(server.url()).connect().await.unwrap();
        assert!(!client.is_closing());
        assert!(!client.is_closed());

        let mut close = pin!(client.close());
        // One poll asks for the close; the task has not had a turn to finish it yet.
        std::future::poll_fn(|cx| {
            assert!(close.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        assert!(client.is_closing());
        assert!(!client.is_closed());
        assert!(
            client
                .try_send(Message::text("late"))
                .unwrap_err()
                .is_closed(),
            "nothing is taken once the close was asked for"
        );

        close.await.unwrap();
        assert!(!client.is_closing());
        assert!(client.is_closed());
        assert!(client
            .try_send(Message::text("late"))
            .unwrap_err()
            .is_closed());
    })
    .await;
}

#[tokio::test]
async fn is_closed_stays_false_while_the_server_has_not_answered_the_close() {
    within(20, "is_closed during the close handshake", async {
        // The server takes the client's Close, tells the test, and answers only when released.
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let server_release = release.clone();
        let server = TestServer::start(Behavior::custom(move |mut conn| {
            let seen_tx = seen_tx.clone();
            let release = server_release.clone();
            async move {
                while let Some(Ok(msg)) = conn.ws.next().await {
                    if msg.is_close() {
                        let _ = seen_tx.send(());
                        release.notified().await;
                        // Reading on flushes tungstenite's Close reply.
                        while conn.ws.next().await.is_some() {}
                        return;
                    }
                }
            }
        }))
        .await;
        let (client, _messages) = Client::builder(server.url())
            .configure(|c| c.close_timeout = Duration::from_secs(60))
            .connect()
            .await
            .unwrap();
        let closer = tokio::spawn({
            let client = client.clone();
            async move { client.close().await }
        });
        seen_rx.recv().await.unwrap();
        // The queue is closed and our Close is out: closing, not closed.
        assert!(client.is_closing());
        assert!(!client.is_closed(), "the server has not answered yet");
        release.notify_one();
        closer.await.unwrap().unwrap();
        assert!(!client.is_closing());
        assert!(client.is_closed());
    })
    .await;
}

#[tokio::test]
async fn a_permanent_failure_is_closed_without_ever_closing() {
    within(20, "is_closed after 403", async {
        let server = TestServer::start(support::reject(403, &[])).await;
        let (client, _messages) = Client::builder(server.url()).spawn().unwrap();
        assert!(client.closed().await.is_err());
        assert!(client.is_closed());
        assert!(!client.is_closing());
    })
    .await;
}

#[tokio::test]
async fn status_watch_and_events_see_ready_then_closed() {
    within(20, "status and events", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, _messages, supervisor) = Client::builder(server.url()).build().unwrap();
        let mut events = client.events();
        let mut status = client.status();
        tokio::spawn(supervisor.run());
        let ready = status.wait_for(|s| s.state.is_ready()).await.unwrap();
        assert_eq!(ready.attempt, 1);
        loop {
            if let resocket::ConnectionEvent::Ready { reconnect } = events.recv().await.unwrap() {
                assert!(!reconnect);
                break;
            }
        }
        client.close().await.unwrap();
        assert!(status.current().state.is_closed());
        loop {
            match events.recv().await {
                Ok(resocket::ConnectionEvent::Closed { error }) => {
                    assert!(error.is_none());
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
}
