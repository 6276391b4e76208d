//! `resocket::hub::HubClient` against a real hub (and, where the hub cannot be made to
//! misbehave, a scripted one): what the hub accepted arrives byte for byte, a hole is always a
//! `Gap`, a slow room holds up nothing else, and a token source outlives every token.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{guard, http_get, metric, recv, TestHub, SECRET};
use futures_util::{SinkExt, StreamExt};
use resocket::hub::{
    protocol::ErrorCode, Gap, HubClient, HubError, RoomEvent, RoomMessage, Subscription,
};
use resocket::{retry::FixedDelay, ConnectionEvent};
use resocket_hub::{Hub, Token};
use resocket_testkit::{closed_port, FaultProxy};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// A hub client with a fixed small room buffer.
fn client(url: &str, room_capacity: usize) -> HubClient {
    HubClient::builder(url)
        .room_capacity(room_capacity)
        .spawn()
        .unwrap()
}

async fn next_message(sub: &mut Subscription) -> RoomMessage {
    match sub.recv().await.expect("stream open") {
        RoomEvent::Message(msg) => msg,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn subscriptions_gauge(hub: &TestHub) -> f64 {
    let (_, text) = http_get(hub.addr, "/metrics").await;
    metric(&text, "resocket_hub_subscriptions")
}

/// Polls the hub's subscription gauge until it reads `want` (the hub gives no event for it).
async fn wait_subscriptions(hub: &TestHub, want: f64) {
    while subscriptions_gauge(hub).await != want {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn data_the_hub_accepted_reaches_the_subscriber_byte_for_byte() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let subscriber = client(&hub.url(), 16);
        let mut room = subscriber.subscribe("r").await.unwrap();
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let huge = "9".repeat(400);
        let payloads = [deep.as_str(), "1e999999", huge.as_str(), r#""end""#];
        let mut publisher = hub.raw_anon().await;
        for (i, data) in payloads.iter().enumerate() {
            let frame = format!(r#"{{"type":"publish","room":"r","id":"{i}","data":{data}}}"#);
            publisher.send(Message::text(frame)).await.unwrap();
            assert_eq!(recv(&mut publisher).await["type"], "ack");
        }
        for (i, data) in payloads.iter().enumerate() {
            let msg = next_message(&mut room).await;
            assert_eq!((msg.offset, msg.raw()), (i as u64 + 1, *data));
        }
    })
    .await;
}

#[tokio::test]
async fn a_hub_client_with_two_endpoints_passes_over_a_dead_one() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let dead = format!("ws://{}/ws", closed_port().await);
        let c = HubClient::builder_with_endpoints([dead.as_str(), hub.url().as_str()])
            .configure(|b| b.backoff(FixedDelay::new(Duration::from_millis(10))))
            .spawn()
            .unwrap();
        let mut room = c.subscribe("r").await.unwrap();
        assert_eq!(c.publish("r", &"hi").await.unwrap(), 1);
        assert_eq!(next_message(&mut room).await.raw(), r#""hi""#);
        assert_eq!(
            c.client().snapshot().endpoint.as_deref(),
            Some(hub.url().as_str())
        );
    })
    .await;
}

/// A scripted hub on `127.0.0.1:0`: answers the first `subscribe` with `subscribed` and then
/// sends `frames`, then reads until the client goes.
async fn scripted_hub(frames: Vec<String>) -> String {
    scripted_hub_replying(move |frame| {
        if frame["type"] != "subscribe" {
            return Vec::new();
        }
        let subscribed = json!({"type": "subscribed", "room": frame["room"],
            "epoch": 1, "offset": 0, "recovered": true});
        std::iter::once(subscribed.to_string())
            .chain(frames.iter().cloned())
            .collect()
    })
    .await
}

/// A scripted hub on `127.0.0.1:0` for one connection: every frame the client sends is
/// answered with what `reply` returns for it, until the client goes.
async fn scripted_hub_replying(
    reply: impl Fn(&serde_json::Value) -> Vec<String> + Send + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, select_subprotocol)
            .await
            .unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
            for f in reply(&frame) {
                ws.send(Message::text(f)).await.unwrap();
            }
        }
    });
    url
}

#[tokio::test]
async fn an_error_code_the_client_does_not_know_still_refuses_the_publish() {
    guard(20, async {
        let url = scripted_hub_replying(|frame| {
            if frame["type"] != "publish" {
                return Vec::new();
            }
            let refused = json!({"type": "error", "code": "quota_exceeded_v9",
                "message": "over quota", "ref": frame["id"]});
            vec![refused.to_string()]
        })
        .await;
        let c = client(&url, 16);
        let refused = c.publish("r", &"hi").await.unwrap_err();
        match refused {
            HubError::Refused {
                code,
                raw_code,
                message,
                ..
            } => {
                assert_eq!(code, ErrorCode::Unknown);
                assert_eq!(raw_code, "quota_exceeded_v9");
                assert_eq!(message, "over quota");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // The refusal freed its place: the session goes on answering.
        assert!(c.publish("r", &"again").await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_live_room_the_hub_cannot_read_for_now_is_subscribed_again_not_ended() {
    guard(20, async {
        // The hub's storage goes down under a live room (as when a re-subscribe after a
        // reconnect meets a Redis outage): `unavailable` for the room, then, asked again from
        // the last offset, the rest.
        let url = scripted_hub_replying(|frame| {
            if frame["type"] != "subscribe" {
                return Vec::new();
            }
            match frame["since"].as_u64() {
                None => vec![
                    json!({"type": "subscribed", "room": "r", "epoch": 1, "offset": 0,
                        "recovered": true})
                    .to_string(),
                    message_frame(1, "1"),
                    json!({"type": "error", "code": "unavailable",
                        "message": "the hub's storage is unavailable; subscribe again", "ref": "r"})
                    .to_string(),
                ],
                Some(since) => {
                    assert_eq!(since, 1, "subscribed again from the last offset delivered");
                    vec![
                        json!({"type": "subscribed", "room": "r", "epoch": 1, "offset": 2,
                            "recovered": true, "first": 2})
                        .to_string(),
                        message_frame(2, "2"),
                    ]
                }
            }
        })
        .await;
        let c = client(&url, 16);
        let mut room = c.subscribe("r").await.unwrap();
        assert_eq!(next_message(&mut room).await.offset, 1);
        assert_eq!(next_message(&mut room).await.raw(), "2");
    })
    .await;
}

#[tokio::test]
async fn a_replay_that_starts_before_the_last_offset_delivered_repeats_nothing() {
    guard(20, async {
        // A second `subscribed` for the room (a repeated subscribe that named an older
        // position) replays from before what was delivered: nothing is missing, nothing comes
        // twice, and no gap is made up.
        let url = scripted_hub(vec![
            message_frame(1, "1"),
            message_frame(2, "2"),
            json!({"type": "subscribed", "room": "r", "epoch": 1, "offset": 2,
                "recovered": false, "first": 1})
            .to_string(),
            message_frame(1, "1"),
            message_frame(2, "2"),
            message_frame(3, "3"),
        ])
        .await;
        let c = client(&url, 16);
        let mut room = c.subscribe("r").await.unwrap();
        for n in 1..=3 {
            let msg = next_message(&mut room).await;
            assert_eq!((msg.offset, msg.raw()), (n, n.to_string().as_str()));
        }
    })
    .await;
}

/// Selects `resocket.v1` in the upgrade response, as the hub does.
// The error type is tungstenite's `Callback` signature, not ours to shrink.
#[allow(clippy::result_large_err)]
fn select_subprotocol(_: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    resp.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("resocket.v1"),
    );
    Ok(resp)
}

fn message_frame(offset: u64, data: &str) -> String {
    format!(r#"{{"type":"message","room":"r","epoch":1,"offset":{offset},"data":{data}}}"#)
}

#[tokio::test]
async fn offsets_that_skip_forward_and_unreadable_frames_are_gaps() {
    guard(20, async {
        let url = scripted_hub(vec![
            message_frame(1, "1"),
            message_frame(3, "3"),
            // Unreadable (a string epoch), but it names its room and offset.
            r#"{"type":"message","room":"r","epoch":"x","offset":4,"data":4}"#.to_owned(),
            message_frame(5, "5"),
        ])
        .await;
        let c = client(&url, 16);
        let mut room = c.subscribe("r").await.unwrap();
        let gap = |from, resumes_at| {
            RoomEvent::Gap(Gap {
                room: "r".into(),
                from,
                resumes_at: Some(resumes_at),
                epoch_changed: false,
            })
        };
        assert_eq!(next_message(&mut room).await.offset, 1);
        assert_eq!(room.recv().await.unwrap(), gap(2, 3));
        assert_eq!(next_message(&mut room).await.offset, 3);
        assert_eq!(room.recv().await.unwrap(), gap(4, 5));
        assert_eq!(next_message(&mut room).await.raw(), "5");
    })
    .await;
}

#[tokio::test]
async fn a_stalled_room_holds_up_neither_other_rooms_nor_acks() {
    guard(30, async {
        const COUNT: u64 = 200;
        let hub = TestHub::anonymous().await;
        let c = client(&hub.url(), 8);
        let mut slow = c.subscribe("slow").await.unwrap();
        let mut fast = c.subscribe("fast").await.unwrap();
        // Nobody reads `slow` while its buffer of 8 overflows many times over; the acks of
        // this very client, and the other room, must keep flowing.
        for n in 0..COUNT {
            c.publish("slow", &n).await.unwrap();
        }
        for n in 0..COUNT {
            c.publish("fast", &n).await.unwrap();
        }
        for n in 0..COUNT {
            let msg = next_message(&mut fast).await;
            assert_eq!((msg.offset, msg.decode::<u64>().unwrap()), (n + 1, n));
        }
        // The bound: the paused room no longer streams into the client at all.
        assert_eq!(subscriptions_gauge(&hub).await, 1.0);
        // The slow reader still gets everything, in order: history covers what it missed.
        for n in 0..COUNT {
            let msg = next_message(&mut slow).await;
            assert_eq!((msg.offset, msg.decode::<u64>().unwrap()), (n + 1, n));
        }
        assert_eq!(c.client().snapshot().reconnects, 0);
    })
    .await;
}

#[tokio::test]
async fn a_reader_behind_the_history_gets_a_gap_then_the_rest_in_order() {
    guard(30, async {
        const COUNT: u64 = 60;
        let hub = TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .rate_limit(10_000, 10_000)
                .history(10, Duration::from_secs(3600), 1 << 20),
        )
        .await;
        let subscriber = client(&hub.url(), 4);
        let publisher = client(&hub.url(), 4);
        let mut room = subscriber.subscribe("r").await.unwrap();
        for n in 0..COUNT {
            publisher.publish("r", &n).await.unwrap();
        }
        // Every offset is either delivered, in order, or inside an announced gap.
        let (mut next, mut gaps) = (1, 0);
        while next <= COUNT {
            match room.recv().await.expect("stream open") {
                RoomEvent::Message(msg) => {
                    assert_eq!(msg.offset, next, "a silent hole or a repeat");
                    assert_eq!(msg.decode::<u64>().unwrap(), next - 1);
                    next += 1;
                }
                RoomEvent::Gap(gap) => {
                    assert_eq!(gap.from, next, "{gap:?}");
                    next = gap.resumes_at.expect("same epoch");
                    gaps += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            gaps >= 1,
            "60 messages cannot fit a buffer of 4 and a history of 10"
        );
    })
    .await;
}

#[tokio::test]
async fn dropping_a_subscription_or_unsubscribing_ends_the_room_on_the_hub() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let c = client(&hub.url(), 16);
        let kept = c.subscribe("kept").await.unwrap();
        let dropped = c.subscribe("dropped").await.unwrap();
        let mut ended = c.subscribe("ended").await.unwrap();
        assert_eq!(subscriptions_gauge(&hub).await, 3.0);
        drop(dropped);
        c.unsubscribe("ended").await.unwrap();
        assert!(ended.recv().await.is_none(), "the stream ends");
        wait_subscriptions(&hub, 1.0).await;
        drop(kept);
        wait_subscriptions(&hub, 0.0).await;
    })
    .await;
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_token_source_keeps_the_client_connected_across_exp() {
    guard(30, async {
        let hub = TestHub::with_tokens().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let first_exp = now_secs() + 3;
        let source = {
            let calls = calls.clone();
            move || {
                calls.fetch_add(1, Relaxed);
                async move {
                    Ok::<_, std::convert::Infallible>(
                        Token::new("alice")
                            .subscribe("*")
                            .publish("*")
                            .expires_in(Duration::from_secs(3))
                            .sign(SECRET.as_bytes()),
                    )
                }
            }
        };
        let c = HubClient::builder(&hub.url())
            .token_source(source)
            .refresh_margin(Duration::from_secs(1))
            .spawn()
            .unwrap();
        let mut room = c.subscribe("r").await.unwrap();
        // Past the first token's expiry (and then some): the connection must still be the
        // first one, and still authorized.
        let end = UNIX_EPOCH + Duration::from_secs(first_exp) + Duration::from_millis(1500);
        if let Ok(left) = end.duration_since(SystemTime::now()) {
            tokio::time::sleep(left).await;
        }
        let offset = c.publish("r", &"alive").await.unwrap();
        assert_eq!(next_message(&mut room).await.offset, offset);
        assert_eq!(c.client().snapshot().reconnects, 0);
        assert!(calls.load(Relaxed) >= 2, "the source was asked again");
    })
    .await;
}

#[tokio::test]
async fn after_a_token_expired_close_the_client_reconnects_with_a_fresh_token() {
    guard(30, async {
        let hub = TestHub::with_tokens().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let source_down = Arc::new(AtomicBool::new(false));
        let source = {
            let (calls, source_down) = (calls.clone(), source_down.clone());
            move || {
                let call = calls.fetch_add(1, Relaxed);
                let down = source_down.load(Relaxed);
                async move {
                    if call > 0 && down {
                        return Err("token service unavailable");
                    }
                    // The first token is short-lived; later ones last.
                    let ttl = if call == 0 { 3 } else { 3600 };
                    Ok(Token::new("alice")
                        .subscribe("*")
                        .publish("*")
                        .expires_in(Duration::from_secs(ttl))
                        .sign(SECRET.as_bytes()))
                }
            }
        };
        source_down.store(true, Relaxed);
        let c = HubClient::builder(&hub.url())
            .token_source(source)
            .configure(|b| b.backoff(FixedDelay::new(Duration::from_millis(50))))
            .spawn()
            .unwrap();
        let mut events = c.client().events();
        let mut room = c.subscribe("r").await.unwrap();
        // The refresh fails, so the hub ends the connection when the first token expires.
        let reason = loop {
            if let ConnectionEvent::Disconnected { reason, .. } = events.recv().await.unwrap() {
                break reason;
            }
        };
        let frame = reason.close_frame().expect("the hub closed");
        assert_eq!(
            (u16::from(frame.code), frame.reason.as_str()),
            (1008, "token expired")
        );
        source_down.store(false, Relaxed);
        c.client().ready().await.unwrap();
        let offset = c.publish("r", &"back").await.unwrap();
        loop {
            match room.recv().await.unwrap() {
                RoomEvent::Message(msg) => {
                    assert_eq!(msg.offset, offset);
                    break;
                }
                // The room may have been dropped by the hub while nobody subscribed it.
                RoomEvent::Gap(_) => continue,
                other => panic!("{other:?}"),
            }
        }
        assert!(c.client().snapshot().reconnects >= 1);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_subscription_is_not_subscribed_again_after_a_reconnect() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let proxy = FaultProxy::start(hub.addr).await;
        let c = HubClient::builder(&format!("ws://{}/ws", proxy.addr()))
            .configure(|b| b.backoff(FixedDelay::new(Duration::from_millis(10))))
            .spawn()
            .unwrap();
        let mut kept = c.subscribe("kept").await.unwrap();
        drop(c.subscribe("dropped").await.unwrap());
        wait_subscriptions(&hub, 1.0).await;

        let mut events = c.client().events();
        proxy.cut_all();
        while !matches!(
            events.recv().await.unwrap(),
            ConnectionEvent::Disconnected { .. }
        ) {}
        // A publish through the new connection comes back on `kept`: the reconnect handshake,
        // which runs first, has re-subscribed what it is going to.
        let offset = c.publish("kept", &"after").await.unwrap();
        loop {
            match kept.recv().await.unwrap() {
                RoomEvent::Message(msg) if msg.offset == offset => break,
                _ => continue,
            }
        }
        assert_eq!(c.client().snapshot().reconnects, 1);
        // Once the hub has let go of the old connection, only `kept` is subscribed.
        loop {
            let (_, text) = http_get(hub.addr, "/metrics").await;
            if metric(&text, "resocket_hub_connections") == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(subscriptions_gauge(&hub).await, 1.0);
    })
    .await;
}

#[tokio::test]
async fn connect_returns_once_the_hub_client_is_ready() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let subscriber = HubClient::builder(&hub.url()).connect().await.unwrap();
        assert!(subscriber.client().is_connected());
        let mut room = subscriber.subscribe("r").await.unwrap();
        subscriber.publish("r", &json!("hello")).await.unwrap();
        assert_eq!(next_message(&mut room).await.raw(), r#""hello""#);
    })
    .await;
}

#[tokio::test]
async fn connect_returns_the_error_when_the_hub_refuses_for_good() {
    guard(20, async {
        let hub = TestHub::with_tokens().await;
        let expired = Token::new("old")
            .subscribe("*")
            .expires_at(1_000)
            .sign(SECRET.as_bytes());
        // The hub answers the upgrade with 401, which is not retried.
        let error = HubClient::builder(&hub.url())
            .token(expired)
            .connect()
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(error.http_status().map(|s| s.as_u16()), Some(401));
    })
    .await;
}
