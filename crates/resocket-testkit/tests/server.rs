//! Each `TestServer` behavior and command, driven by a plain tokio-tungstenite client.

mod common;

use common::{connect, drain, next_data, try_connect, within, QUIET};
use futures_util::{SinkExt, StreamExt};
use resocket_testkit::{Behavior, CloseFrame, Message, ServerEvent, TestServer};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Error as WsError;

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }
}

#[tokio::test]
async fn echo_round_trip() {
    within(async {
        let mut server = TestServer::start(Behavior::Echo).await;
        assert!(server.url().starts_with("ws://127.0.0.1:"));
        let mut ws = connect(server.addr()).await;
        let (conn, _at) = server.wait_connected().await;
        assert_eq!(conn, 0);
        assert_eq!(server.connections(), 1);

        ws.send(Message::text("hello")).await.unwrap();
        ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("hello"));
        assert_eq!(next_data(&mut ws).await, Message::binary(vec![1, 2, 3]));
        assert_eq!(server.next_message().await, (0, Message::text("hello")));
        assert_eq!(
            server.next_message().await,
            (0, Message::binary(vec![1, 2, 3]))
        );
    })
    .await;
}

#[tokio::test]
async fn connected_event_carries_the_upgrade_request() {
    within(async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let url = format!("ws://{}/feed?token=abc", server.addr());
        let (_ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        match server.next_event().await {
            ServerEvent::Connected { conn, request, .. } => {
                assert_eq!(conn, 0);
                assert_eq!(request.uri().path(), "/feed");
                assert_eq!(request.uri().query(), Some("token=abc"));
                assert!(request.headers().contains_key("sec-websocket-key"));
            }
            other => panic!("expected Connected, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn silent_records_message_ping_and_close_frame() {
    within(async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let mut ws = connect(server.addr()).await;
        ws.send(Message::text("quiet")).await.unwrap();
        ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
        // The pong proves the ping was answered and the text was not echoed before it.
        match ws.next().await {
            Some(Ok(Message::Pong(payload))) => assert_eq!(&payload[..], b"p"),
            other => panic!("expected a pong, got {other:?}"),
        }
        ws.close(Some(close_frame(1000, "bye"))).await.unwrap();
        for item in drain(&mut ws).await {
            assert!(
                matches!(item, Ok(Message::Close(_))),
                "silent server sent {item:?}"
            );
        }

        assert!(matches!(
            server.next_event().await,
            ServerEvent::Connected { conn: 0, .. }
        ));
        assert_eq!(server.next_message().await, (0, Message::text("quiet")));
        match server.next_event().await {
            ServerEvent::Ping { conn: 0, payload } => assert_eq!(&payload[..], b"p"),
            other => panic!("expected Ping, got {other:?}"),
        }
        assert_eq!(
            server.wait_closed().await,
            (0, Some(close_frame(1000, "bye")))
        );
    })
    .await;
}

#[tokio::test]
async fn burst_delivers_count_messages_in_order_then_answers_pings() {
    within(async {
        const COUNT: usize = 10_000;
        let mut server = TestServer::start(Behavior::Burst { count: COUNT }).await;
        let mut ws = connect(server.addr()).await;
        for i in 0..COUNT {
            assert_eq!(next_data(&mut ws).await, Message::text(i.to_string()));
        }
        ws.send(Message::Ping(b"after".to_vec().into()))
            .await
            .unwrap();
        match ws.next().await {
            Some(Ok(Message::Pong(payload))) => assert_eq!(&payload[..], b"after"),
            other => panic!("expected a pong, got {other:?}"),
        }
        ws.close(None).await.unwrap();
        drain(&mut ws).await;
        assert_eq!(server.wait_closed().await.0, 0);
    })
    .await;
}

#[tokio::test]
async fn reject_403_fails_the_upgrade_with_that_status() {
    within(async {
        let mut server = TestServer::start(Behavior::Reject {
            status: 403,
            headers: vec![],
            body: "forbidden".into(),
        })
        .await;
        match try_connect(server.addr()).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 403);
                assert_eq!(response.body().as_deref(), Some(&b"forbidden"[..]));
            }
            other => panic!("expected an HTTP error, got {:?}", other.map(|_| ())),
        }
        assert_eq!(server.wait_connected().await.0, 0);
        assert_eq!(server.wait_closed().await, (0, None));
        assert_eq!(server.connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn reject_503_exposes_retry_after() {
    within(async {
        let server = TestServer::start(Behavior::Reject {
            status: 503,
            headers: vec![("Retry-After".into(), "7".into())],
            body: String::new(),
        })
        .await;
        match try_connect(server.addr()).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 503);
                assert_eq!(response.headers()["retry-after"], "7");
            }
            other => panic!("expected an HTTP error, got {:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn drop_after_upgrade_closes_tcp_without_close_frame() {
    within(async {
        let mut server = TestServer::start(Behavior::DropAfterUpgrade).await;
        let mut ws = connect(server.addr()).await;
        let seen = drain(&mut ws).await;
        assert!(
            seen.iter().all(|m| m.is_err()),
            "expected no frame at all, got {seen:?}"
        );
        assert_eq!(server.wait_closed().await, (0, None));
    })
    .await;
}

#[tokio::test]
async fn close_after_upgrade_sends_the_close_frame() {
    within(async {
        let mut server = TestServer::start(Behavior::CloseAfterUpgrade {
            code: 4001,
            reason: "go away".into(),
        })
        .await;
        let mut ws = connect(server.addr()).await;
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::from(4001));
                assert_eq!(frame.reason, "go away");
            }
            other => panic!("expected a Close frame, got {other:?}"),
        }
        // tungstenite replies to the Close; the server then ends the connection cleanly.
        assert!(ws.next().await.is_none());
        assert_eq!(server.wait_closed().await.0, 0);
    })
    .await;
}

#[tokio::test]
async fn unresponsive_never_answers_a_ping() {
    within(async {
        let mut server = TestServer::start(Behavior::Unresponsive).await;
        let mut ws = connect(server.addr()).await;
        server.wait_connected().await;
        ws.send(Message::Ping(b"anyone?".to_vec().into()))
            .await
            .unwrap();
        assert!(tokio::time::timeout(QUIET, ws.next()).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn start_at_after_stop_rebinds_the_same_port() {
    within(async {
        let server = TestServer::start(Behavior::Echo).await;
        let addr = server.addr();
        let mut ws = connect(addr).await;
        ws.send(Message::text("one")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("one"));

        server.stop().await;
        // Dropped without a Close frame.
        let seen = drain(&mut ws).await;
        assert!(seen.iter().all(|m| m.is_err()), "got {seen:?}");

        let mut server = TestServer::start_at(addr, Behavior::Echo).await.unwrap();
        assert_eq!(server.addr(), addr);
        let mut ws = connect(addr).await;
        ws.send(Message::text("two")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("two"));
        assert_eq!(server.next_message().await, (0, Message::text("two")));
    })
    .await;
}

#[tokio::test]
async fn set_behavior_applies_to_later_connections_only() {
    within(async {
        let mut server = TestServer::start(Behavior::Echo).await;
        let mut first = connect(server.addr()).await;
        server.wait_connected().await;
        server.set_behavior(Behavior::DropAfterUpgrade);

        let mut second = connect(server.addr()).await;
        assert_eq!(server.wait_closed().await, (1, None));
        assert!(drain(&mut second).await.iter().all(|m| m.is_err()));

        first.send(Message::text("still echoing")).await.unwrap();
        assert_eq!(next_data(&mut first).await, Message::text("still echoing"));
    })
    .await;
}

#[tokio::test]
async fn send_all_and_close_all_reach_every_live_connection() {
    within(async {
        let mut server = TestServer::start(Behavior::Silent).await;
        let mut a = connect(server.addr()).await;
        let mut b = connect(server.addr()).await;
        server.wait_connected().await;
        server.wait_connected().await;

        server.send_all(Message::text("news"));
        assert_eq!(next_data(&mut a).await, Message::text("news"));
        assert_eq!(next_data(&mut b).await, Message::text("news"));

        server.close_all(1012, "restart");
        for ws in [&mut a, &mut b] {
            match next_data(ws).await {
                Message::Close(Some(frame)) => {
                    assert_eq!(frame.code, CloseCode::Restart);
                    assert_eq!(frame.reason, "restart");
                }
                other => panic!("expected a Close frame, got {other:?}"),
            }
            assert!(ws.next().await.is_none());
        }
        let mut closed = [server.wait_closed().await.0, server.wait_closed().await.0];
        closed.sort_unstable();
        assert_eq!(closed, [0, 1]);
    })
    .await;
}

#[tokio::test]
async fn freeze_all_stops_answering_but_keeps_tcp_open() {
    within(async {
        let mut server = TestServer::start(Behavior::Echo).await;
        let mut ws = connect(server.addr()).await;
        server.wait_connected().await;
        server.freeze_all();
        ws.send(Message::Ping(b"hello?".to_vec().into()))
            .await
            .unwrap();
        ws.send(Message::text("echo?")).await.unwrap();
        // Neither an answer nor an end of stream: the peer looks alive but dead.
        assert!(tokio::time::timeout(QUIET, ws.next()).await.is_err());
        assert!(server.try_next_event().is_none());
    })
    .await;
}

#[tokio::test]
async fn custom_behavior_gets_the_connection_and_records_frames() {
    within(async {
        let mut server = TestServer::start(Behavior::custom(|mut conn| async move {
            assert_eq!(conn.request.uri().path(), "/");
            while let Some(Ok(msg)) = conn.ws.next().await {
                conn.record(&msg);
                if let Message::Text(text) = msg {
                    let reply = format!("{}:{}", conn.id, text.as_str().to_uppercase());
                    if conn.ws.send(Message::text(reply)).await.is_err() {
                        break;
                    }
                }
            }
        }))
        .await;
        let mut ws = connect(server.addr()).await;
        ws.send(Message::text("shout")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("0:SHOUT"));
        assert_eq!(server.next_message().await, (0, Message::text("shout")));
        ws.close(Some(close_frame(1000, "done"))).await.unwrap();
        drain(&mut ws).await;
        assert_eq!(
            server.wait_closed().await,
            (0, Some(close_frame(1000, "done")))
        );
    })
    .await;
}

#[tokio::test]
async fn dropping_the_server_ends_its_connections() {
    within(async {
        let server = TestServer::start(Behavior::Echo).await;
        let mut ws = connect(server.addr()).await;
        drop(server);
        let seen = drain(&mut ws).await;
        assert!(seen.iter().all(|m| m.is_err()), "got {seen:?}");
    })
    .await;
}
