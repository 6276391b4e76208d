//! Size and rate limits, the connection cap, server pings and slow consumers.

mod common;

use std::time::Duration;

use common::{
    closed, expect_error, guard, recv, send, subscribe, token, PublishWindow, RawTcp, TestHub,
};
use futures_util::{SinkExt, StreamExt};
use resocket_hub::Hub;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn an_oversized_frame_gets_too_big_and_close_1009() {
    guard(10, async {
        let hub = TestHub::start(Hub::builder().allow_anonymous(true).max_message_size(1024)).await;
        let mut ws = hub.raw_anon().await;
        let big = json!({"type": "publish", "room": "r", "id": "1", "data": "x".repeat(2000)});
        send(&mut ws, big).await;
        assert_eq!(recv(&mut ws).await["code"], "too_big");
        assert_eq!(closed(&mut ws).await.unwrap().code, 1009.into());
        // A frame just under the limit is fine.
        let mut ws = hub.raw_anon().await;
        common::publish(&mut ws, "r", "2", json!("x".repeat(900))).await;
    })
    .await;
}

#[tokio::test]
async fn past_the_subscription_cap_a_connection_gets_too_many_subscriptions() {
    guard(10, async {
        let hub = TestHub::start(Hub::builder().allow_anonymous(true).max_subscriptions(3)).await;
        let mut ws = hub.raw_anon().await;
        for room in ["a", "b", "c"] {
            subscribe(&mut ws, room, None).await;
        }
        send(&mut ws, json!({"type": "subscribe", "room": "d"})).await;
        expect_error(&mut ws, "too_many_subscriptions", "d").await;
        // Subscribing again to a room it holds is a restart, not one more; after an
        // unsubscribe there is room for another.
        subscribe(&mut ws, "a", None).await;
        send(&mut ws, json!({"type": "unsubscribe", "room": "b"})).await;
        subscribe(&mut ws, "d", None).await;
        // Another connection has caps of its own.
        let mut other = hub.raw_anon().await;
        subscribe(&mut other, "d", None).await;
    })
    .await;
}

#[tokio::test]
async fn past_the_room_cap_new_rooms_are_refused() {
    guard(10, async {
        let hub = TestHub::start(Hub::builder().allow_anonymous(true).max_rooms(2)).await;
        let mut ws = hub.raw_anon().await;
        subscribe(&mut ws, "one", None).await;
        common::publish(&mut ws, "two", "1", json!(1)).await;
        send(&mut ws, json!({"type": "subscribe", "room": "three"})).await;
        expect_error(&mut ws, "too_many_rooms", "three").await;
        send(
            &mut ws,
            json!({"type": "publish", "room": "four", "id": "p", "data": 1}),
        )
        .await;
        expect_error(&mut ws, "too_many_rooms", "p").await;
        // System rooms count against the cap like any other.
        send(&mut ws, json!({"type": "subscribe", "room": "$five"})).await;
        assert_eq!(recv(&mut ws).await["code"], "too_many_rooms");
        // Existing rooms still work.
        subscribe(&mut ws, "two", None).await;
    })
    .await;
}

#[tokio::test]
async fn one_client_at_its_room_quota_leaves_rooms_for_the_others() {
    guard(10, async {
        let hub = TestHub::start(
            Hub::builder()
                .jwt_secret(common::SECRET)
                .max_rooms(10)
                .max_rooms_per_client(3),
        )
        .await;
        let mut greedy = hub.raw_with_token(&token("greedy")).await;
        // `$` rooms count too: they used to escape the cap altogether.
        subscribe(&mut greedy, "$a", None).await;
        common::publish(&mut greedy, "b", "1", json!(1)).await;
        subscribe(&mut greedy, "c", None).await;
        for (frame, reference) in [
            (json!({"type": "subscribe", "room": "$d"}), "$d"),
            (
                json!({"type": "publish", "room": "e", "id": "2", "data": 2}),
                "2",
            ),
        ] {
            send(&mut greedy, frame).await;
            expect_error(&mut greedy, "room_quota", reference).await;
        }
        // A second connection of the same client shares its quota...
        let mut again = hub.raw_with_token(&token("greedy")).await;
        send(&mut again, json!({"type": "subscribe", "room": "f"})).await;
        assert_eq!(recv(&mut again).await["code"], "room_quota");
        // ...while another client still creates rooms, and the greedy one keeps its own.
        let mut other = hub.raw_with_token(&token("other")).await;
        subscribe(&mut other, "g", None).await;
        subscribe(&mut other, "$h", None).await;
        common::publish(&mut greedy, "b", "3", json!(3)).await;
    })
    .await;
}

#[tokio::test]
async fn a_client_over_its_rate_limit_is_closed_with_4008() {
    guard(10, async {
        let hub = TestHub::start(Hub::builder().allow_anonymous(true).rate_limit(5, 10)).await;
        let mut ws = hub.raw_anon().await;
        // The burst is allowed...
        for i in 0..10 {
            common::publish(&mut ws, "r", &i.to_string(), json!(i)).await;
        }
        // ...and a flood past it is not.
        for i in 10..40 {
            let f = json!({"type": "publish", "room": "r", "id": i.to_string(), "data": i});
            if ws.send(Message::text(f.to_string())).await.is_err() {
                break;
            }
        }
        let mut saw_error = false;
        let close = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => saw_error |= t.contains(r#""code":"rate_limited""#),
                Some(Ok(Message::Close(f))) => break f,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert!(saw_error, "an error frame says why");
        assert_eq!(close.unwrap().code, 4008.into());
        assert_eq!(
            hub.metric("resocket_hub_disconnects_total{reason=\"rate_limited\"}")
                .await,
            1.0
        );
    })
    .await;
}

#[tokio::test]
async fn a_ping_flood_counts_against_the_rate_limit() {
    guard(10, async {
        let hub = TestHub::start(Hub::builder().allow_anonymous(true).rate_limit(5, 10)).await;
        let mut ws = hub.raw_anon().await;
        for _ in 0..50 {
            if ws.send(Message::Ping(Default::default())).await.is_err() {
                break;
            }
        }
        assert_eq!(closed(&mut ws).await.unwrap().code, 4008.into());
    })
    .await;
}

#[tokio::test]
async fn past_the_connection_cap_a_client_is_closed_with_1013() {
    guard(10, async {
        let hub = TestHub::start(Hub::builder().allow_anonymous(true).max_connections(2)).await;
        let _a = hub.raw_anon().await;
        let _b = hub.raw_anon().await;
        let mut c = hub.raw_anon().await;
        assert_eq!(closed(&mut c).await.unwrap().code, 1013.into());
        drop(_a);
        // The slot comes back once the first client is gone.
        let mut d = loop {
            let mut d = hub.raw_anon().await;
            send(&mut d, json!({"type": "subscribe", "room": "r"})).await;
            match d.next().await {
                Some(Ok(Message::Text(_))) => break d,
                _ => tokio::task::yield_now().await,
            }
        };
        subscribe(&mut d, "r2", None).await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_4000() {
    guard(10, async {
        let hub = TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .ping_interval(Duration::from_millis(100))
                .ping_timeout(Duration::from_millis(100)),
        )
        .await;
        // A bare TCP client reads but never answers pings.
        let raw = RawTcp::upgrade(hub.addr).await;
        assert_eq!(raw.close_code_at_eof().await, Some(4000));
    })
    .await;
}

/// A hub whose queue bound (256 KiB) a subscriber that stopped reading has just overflowed;
/// returns the hub and that subscriber.
async fn overflowed_slow_consumer() -> (TestHub, RawTcp) {
    let hub = TestHub::start(
        Hub::builder()
            .allow_anonymous(true)
            .rate_limit(100_000, 100_000)
            .outbound_queue_bytes(256 * 1024),
    )
    .await;
    let mut slow = RawTcp::upgrade(hub.addr).await;
    slow.send_text(r#"{"type":"subscribe","room":"r"}"#).await;
    slow.read_at_least(20).await;
    let mut publisher = hub.raw_anon().await;
    let data = json!("x".repeat(32 * 1024));
    let slow_disconnects = || async {
        let (_, m) = common::http_get(hub.addr, "/metrics").await;
        common::metric(
            &m,
            "resocket_hub_disconnects_total{reason=\"slow_consumer\"}",
        )
    };
    let mut i = 0;
    // Fill the socket buffers and the queue until the hub gives up on the reader.
    while slow_disconnects().await == 0.0 {
        for _ in 0..16 {
            common::publish(&mut publisher, "r", &i.to_string(), data.clone()).await;
            i += 1;
        }
    }
    (hub, slow)
}

#[tokio::test]
async fn a_slow_consumer_that_reads_again_sees_close_4009() {
    guard(30, async {
        let (_hub, slow) = overflowed_slow_consumer().await;
        // Reading again drains what was in flight, then the hub's close frame.
        assert_eq!(slow.close_code_at_eof().await, Some(4009));
    })
    .await;
}

#[tokio::test]
async fn a_slow_consumer_that_pauses_then_reads_sees_close_4009_not_eof() {
    guard(60, async {
        let (_hub, mut slow) = overflowed_slow_consumer().await;
        // Its heartbeat still goes out while it does not read.
        slow.send_ping().await;
        // The pause is the behaviour under test: a consumer busy for longer than a couple of
        // seconds, well within the hub's close timeout (10 s).
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(slow.close_code_at_eof().await, Some(4009));
    })
    .await;
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_and_memory_stays_flat() {
    guard(60, async {
        const MSG: usize = 64 * 1024;
        const TOTAL: usize = 50 * 1024 * 1024;
        let hub = TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .max_message_size(MSG + 1024)
                .rate_limit(100_000, 100_000)
                .outbound_queue_bytes(4 * 1024 * 1024),
        )
        .await;
        // The slow consumer subscribes, reads the reply, then never reads again.
        let mut slow = RawTcp::upgrade(hub.addr).await;
        slow.send_text(r#"{"type":"subscribe","room":"firehose"}"#)
            .await;
        slow.read_at_least(20).await;
        // A fast consumer in the same room keeps receiving throughout.
        let mut fast = hub.raw_anon().await;
        subscribe(&mut fast, "firehose", None).await;
        let fast_reader = tokio::spawn(async move {
            let mut n = 0;
            while n < TOTAL / MSG {
                match fast.next().await {
                    Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"message""#) => n += 1,
                    Some(Ok(_)) => {}
                    other => panic!("fast consumer lost its connection: {other:?}"),
                }
            }
            n
        });

        let before = resocket_hub::rss_bytes().expect("Linux /proc");
        let mut peak = before;
        let payload = "x".repeat(MSG - 100);
        let count = TOTAL / MSG;
        // Few publishes in flight, so the fast consumer is never far behind and only the
        // consumer that stopped reading overflows its queue.
        let mut publisher = PublishWindow::new(hub.raw_anon().await, count);
        for i in 0..count {
            let f =
                format!(r#"{{"type":"publish","room":"firehose","id":"{i}","data":"{payload}"}}"#);
            publisher.send(Message::text(f)).await;
            if i % 16 == 0 {
                peak = peak.max(resocket_hub::rss_bytes().unwrap());
            }
        }
        publisher.finish().await;
        assert_eq!(
            fast_reader.await.unwrap(),
            count,
            "the fast consumer got every message"
        );
        peak = peak.max(resocket_hub::rss_bytes().unwrap());

        let growth = peak.saturating_sub(before);
        eprintln!("rss before {} MiB, peak {} MiB", before >> 20, peak >> 20);
        assert!(
            growth < 20 * 1024 * 1024,
            "RSS grew by {} MiB",
            growth >> 20
        );
        assert_eq!(
            hub.metric("resocket_hub_disconnects_total{reason=\"slow_consumer\"}")
                .await,
            1.0
        );
        // The slow consumer's socket is closed: reading it to the end terminates.
        slow.close_code_at_eof().await;
    })
    .await;
}
