//! A token stops working when it expires, on a live connection too, unless a `refresh` frame
//! replaced it in time.
//!
//! The hub checks `exp` against the wall clock (seconds since the Unix epoch), so these tests
//! use tokens that expire a few seconds after they are signed and wait for the wall clock to
//! pass `exp` before acting; nothing depends on how fast the hub answers.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{closed, expect_error, guard, publish, recv, send, subscribe, TestHub, Ws, SECRET};
use futures_util::{SinkExt, StreamExt};
use resocket_hub::Token;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// How far ahead the short-lived tokens expire: enough for the set-up on a loaded machine.
const SHORT_TTL: u64 = 3;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `sub` that may use every room, expiring at `exp`.
fn token(sub: &str, exp: u64) -> String {
    Token::new(sub)
        .subscribe("*")
        .publish("*")
        .expires_at(exp)
        .sign(SECRET.as_bytes())
}

/// Waits until the wall clock is past `exp` (plus a margin for the two clocks' readings).
async fn past(exp: u64) {
    let end = UNIX_EPOCH + Duration::from_secs(exp) + Duration::from_millis(200);
    if let Ok(left) = end.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

/// Reads frames up to the hub's Close, or up to an `ack`; returns the JSON frames and the close
/// code.
async fn until_close(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let frame: Value = serde_json::from_str(&t).unwrap();
                let ack = frame["type"] == "ack";
                frames.push(frame);
                if ack {
                    return (frames, None);
                }
            }
            Some(Ok(Message::Close(frame))) => return (frames, frame.map(|f| f.code.into())),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return (frames, None),
        }
    }
}

#[tokio::test]
async fn an_expired_token_closes_the_live_connection_and_a_later_publish_is_not_acked() {
    guard(20, async {
        let hub = TestHub::with_tokens().await;
        for by_frame in [false, true] {
            let exp = now_secs() + SHORT_TTL;
            let mut ws = if by_frame {
                let mut ws = hub.raw(&[]).await.unwrap();
                send(
                    &mut ws,
                    json!({"type": "auth", "token": token("alice", exp)}),
                )
                .await;
                ws
            } else {
                hub.raw_with_token(&token("alice", exp)).await
            };
            subscribe(&mut ws, "r", None).await;
            past(exp).await;
            // The hub may already have closed; what matters is that this is never acked.
            let _ = ws
                .send(Message::text(
                    json!({"type": "publish", "room": "r", "id": "late", "data": 1}).to_string(),
                ))
                .await;
            let (frames, code) = until_close(&mut ws).await;
            assert!(
                frames.iter().all(|f| f["type"] != "ack"),
                "a publish after exp was acked: {frames:?}"
            );
            assert!(
                frames
                    .iter()
                    .any(|f| f["type"] == "error" && f["code"] == "token_expired"),
                "{frames:?}"
            );
            assert_eq!(code, Some(1008));
        }
    })
    .await;
}

#[tokio::test]
async fn refresh_keeps_the_connection_alive_past_the_first_exp() {
    guard(20, async {
        let hub = TestHub::with_tokens().await;
        let exp = now_secs() + SHORT_TTL;
        let mut ws = hub.raw_with_token(&token("alice", exp)).await;
        subscribe(&mut ws, "r", None).await;
        let mut publisher = hub.raw_with_token(&token("bob", now_secs() + 3600)).await;
        let later = now_secs() + 3600;
        send(
            &mut ws,
            json!({"type": "refresh", "token": token("alice", later)}),
        )
        .await;
        assert_eq!(
            recv(&mut ws).await,
            json!({"type": "refreshed", "exp": later})
        );
        past(exp).await;
        // Both directions still work on the refreshed connection.
        send(
            &mut ws,
            json!({"type": "publish", "room": "mine", "id": "after", "data": 1}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["type"], "ack");
        assert_eq!(publish(&mut publisher, "r", "p", json!(1)).await, 1);
        let msg = recv(&mut ws).await;
        assert_eq!(
            (msg["type"].as_str(), msg["offset"].as_u64()),
            (Some("message"), Some(1))
        );
    })
    .await;
}

#[tokio::test]
async fn refresh_for_another_sub_is_forbidden_and_the_connection_stays() {
    guard(20, async {
        let hub = TestHub::with_tokens().await;
        let mut ws = hub.raw_with_token(&token("alice", now_secs() + 3600)).await;
        send(
            &mut ws,
            json!({"type": "refresh", "token": token("mallory", now_secs() + 7200)}),
        )
        .await;
        let err = recv(&mut ws).await;
        assert_eq!(
            (err["type"].as_str(), err["code"].as_str()),
            (Some("error"), Some("forbidden"))
        );
        publish(&mut ws, "r", "still-here", json!(1)).await;
    })
    .await;
}

#[tokio::test]
async fn refresh_with_an_invalid_token_is_unauthorized_and_closes_1008() {
    guard(20, async {
        let hub = TestHub::with_tokens().await;
        let expired = token("alice", 1_000);
        let forged = Token::new("alice").sign(b"not the hub's secret at all");
        for bad in [expired, forged] {
            let mut ws = hub.raw_with_token(&token("alice", now_secs() + 3600)).await;
            send(&mut ws, json!({"type": "refresh", "token": bad})).await;
            let err = recv(&mut ws).await;
            assert_eq!(err["code"], "unauthorized", "{err}");
            assert_eq!(closed(&mut ws).await.unwrap().code, 1008.into());
        }
    })
    .await;
}

#[tokio::test]
async fn refresh_replaces_permissions_and_ends_subscriptions_they_no_longer_allow() {
    guard(20, async {
        let hub = TestHub::with_tokens().await;
        let mut ws = hub.raw_with_token(&token("alice", now_secs() + 3600)).await;
        subscribe(&mut ws, "news", None).await;
        subscribe(&mut ws, "chat", None).await;
        let narrower = Token::new("alice")
            .subscribe("chat")
            .expires_at(now_secs() + 7200)
            .sign(SECRET.as_bytes());
        send(&mut ws, json!({"type": "refresh", "token": narrower})).await;
        expect_error(&mut ws, "forbidden", "news").await;
        assert_eq!(recv(&mut ws).await["type"], "refreshed");
        // Publishing is no longer allowed anywhere, and `news` is no longer subscribed.
        send(
            &mut ws,
            json!({"type": "publish", "room": "chat", "id": "p", "data": 1}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], "forbidden");
        send(&mut ws, json!({"type": "unsubscribe", "room": "news"})).await;
        assert_eq!(recv(&mut ws).await["code"], "not_subscribed");
    })
    .await;
}

#[tokio::test]
async fn refresh_on_an_anonymous_connection_is_forbidden_and_the_connection_stays() {
    guard(20, async {
        let hub = TestHub::start(
            resocket_hub::Hub::builder()
                .jwt_secret(SECRET)
                .allow_anonymous(true),
        )
        .await;
        let mut ws = hub.raw_anon().await;
        send(
            &mut ws,
            json!({"type": "refresh", "token": token("alice", now_secs() + 3600)}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], "forbidden");
        subscribe(&mut ws, "r", None).await;
    })
    .await;
}
