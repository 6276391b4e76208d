//! The hub's guards as a resocket client meets them: every refusal arrives as a typed error or
//! a Close frame in the client's events, with the retry decision the client's policy gives it.

mod common;

use std::time::Duration;

use common::{guard, rooms_token, TestHub, SECRET};
use resocket::{
    hub::{protocol::ErrorCode, HubClient, HubError},
    retry::FixedDelay,
    Client, ConnectionEvent, Error, Message,
};
use resocket_hub::{Hub, Token};

/// A plain resocket client of `hub`, retrying every `retry`.
fn hub_client(hub: &TestHub, retry: Duration) -> (Client, resocket::Messages) {
    Client::builder(hub.url())
        .subprotocol("resocket.v1")
        .backoff(FixedDelay::new(retry))
        .spawn()
        .unwrap()
}

/// Waits for the next disconnect and returns the Close code the hub sent.
async fn close_code(client: &Client, events: &mut resocket::Events) -> u16 {
    loop {
        if let ConnectionEvent::Disconnected { reason, .. } = events.recv().await.expect("events") {
            let frame = reason
                .close_frame()
                .unwrap_or_else(|| panic!("no close frame in {reason:?}"));
            assert!(client.snapshot().last_close.is_some());
            return u16::from(frame.code);
        }
    }
}

/// Waits for `client` to give up, asserts the HTTP status that refused its upgrade, and returns
/// its error.
async fn refused_with(client: &Client, status: u16) -> Error {
    let error = client.closed().await.unwrap_err();
    assert_eq!(
        error.http_status().map(|s| s.as_u16()),
        Some(status),
        "{error:?}"
    );
    error
}

/// Asserts that `err` is the hub's refusal with `code`.
fn assert_refused(err: HubError, code: ErrorCode) {
    assert!(
        matches!(&err, HubError::Refused { code: c, .. } if *c == code),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_expired_token_is_a_permanent_401() {
    guard(20, async {
        let hub = TestHub::with_tokens().await;
        let expired = Token::new("old")
            .subscribe("*")
            .expires_at(1_000)
            .sign(SECRET.as_bytes());
        let (client, _messages) = Client::builder(hub.url())
            .subprotocol("resocket.v1")
            .header("authorization", format!("Bearer {expired}"))
            .backoff(FixedDelay::new(Duration::from_millis(1)))
            .spawn()
            .unwrap();
        let error = refused_with(&client, 401).await;
        assert!(!error.is_retryable());
    })
    .await;
}

#[tokio::test]
async fn a_foreign_origin_is_a_permanent_403() {
    guard(20, async {
        let hub = TestHub::allowing_origin("https://app.example").await;
        let (client, _messages) = Client::builder(hub.url())
            .header("origin", "https://evil.example")
            .spawn()
            .unwrap();
        refused_with(&client, 403).await;
    })
    .await;
}

#[tokio::test]
async fn room_permissions_refuse_subscribe_and_publish_separately() {
    guard(20, async {
        let hub = TestHub::with_tokens().await;
        let token = rooms_token("reader", "news.*", "chat.*");
        let client = HubClient::builder(&hub.url()).token(token).spawn().unwrap();
        let refused = client.subscribe("chat.lobby").await.unwrap_err();
        assert_refused(refused, ErrorCode::Forbidden);
        let refused = client.publish("news.sport", &"hi").await.unwrap_err();
        assert_refused(refused, ErrorCode::Forbidden);
        // What the token allows still works on the same connection.
        client.subscribe("news.sport").await.unwrap();
        client.publish("chat.lobby", &"hi").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009_and_the_client_reconnects() {
    guard(20, async {
        let hub = TestHub::start(Hub::builder().allow_anonymous(true).max_message_size(1024)).await;
        let (client, _messages) = hub_client(&hub, Duration::from_millis(10));
        let mut events = client.events();
        client.ready().await.unwrap();
        let big = serde_json::json!({"type": "publish", "room": "r", "id": "1", "data": "x".repeat(2000)});
        client.send(Message::text(big.to_string())).await.unwrap();
        assert_eq!(close_code(&client, &mut events).await, 1009);
        client.ready().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_flood_closes_with_4008() {
    guard(20, async {
        let hub = TestHub::start(Hub::builder().allow_anonymous(true).rate_limit(5, 10)).await;
        let (client, _messages) = hub_client(&hub, Duration::from_secs(60));
        let mut events = client.events();
        client.ready().await.unwrap();
        for i in 0..50 {
            let frame =
                serde_json::json!({"type": "publish", "room": "r", "id": i.to_string(), "data": i});
            client.send(Message::text(frame.to_string())).await.unwrap();
        }
        assert_eq!(close_code(&client, &mut events).await, 4008);
        assert!(
            Error::ServerClosed {
                frame: client.snapshot().last_close
            }
            .is_retryable(),
            "4008 is retried"
        );
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (client, messages) = hub_client(&hub, Duration::from_secs(60));
            let events = client.events();
            client.ready().await.unwrap();
            clients.push((client, messages, events));
        }
        hub.hub.shutdown();
        for (client, _messages, events) in &mut clients {
            assert_eq!(close_code(client, events).await, 1001);
        }
    })
    .await;
}
