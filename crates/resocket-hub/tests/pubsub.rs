//! Publish/subscribe, replay with `since`, honest non-recovery and dedupe, with resocket clients.

mod common;

use std::time::Duration;

use common::{guard, HubClient, TestHub};
use resocket_hub::Hub;
use serde_json::json;

#[tokio::test]
async fn three_clients_see_every_publish_in_the_same_order() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            let mut c = HubClient::connect(&hub, &[]).await;
            let sub = c.subscribe("chat", None).await;
            assert_eq!(sub["recovered"], true);
            clients.push(c);
        }
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(json!({"type": "publish", "room": "chat", "id": format!("m{i}"), "data": {"from": i}})).await;
        }
        for c in &mut clients {
            let (mut offsets, mut froms) = (Vec::new(), Vec::new());
            while offsets.len() < 3 {
                let f = c.recv().await;
                if f["type"] == "message" {
                    assert_eq!(f["room"], "chat");
                    offsets.push(f["offset"].as_u64().unwrap());
                    froms.push(f["data"]["from"].as_u64().unwrap());
                } else {
                    assert_eq!(f["type"], "ack", "{f}");
                }
            }
            assert_eq!(offsets, [1, 2, 3]);
            froms.sort_unstable();
            assert_eq!(froms, [0, 1, 2]);
        }
    })
    .await;
}

#[tokio::test]
async fn resubscribing_with_since_replays_exactly_the_missed_messages() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let mut publisher = HubClient::connect(&hub, &[]).await;
        let mut reader = HubClient::connect(&hub, &[]).await;
        let epoch = reader.subscribe("feed", None).await["epoch"]
            .as_u64()
            .unwrap();
        for i in 1..=3 {
            publisher.publish("feed", &format!("a{i}"), json!(i)).await;
        }
        let mut last = 0;
        for i in 1..=3 {
            let m = reader.message().await;
            assert_eq!(m["data"], json!(i));
            last = m["offset"].as_u64().unwrap();
        }
        reader.client.close().await.unwrap();

        for i in 4..=6 {
            publisher.publish("feed", &format!("a{i}"), json!(i)).await;
        }
        let mut reader = HubClient::connect(&hub, &[]).await;
        let sub = reader.subscribe("feed", Some(last)).await;
        assert_eq!(sub["recovered"], true, "{sub}");
        assert_eq!(sub["first"], 4);
        assert_eq!(sub["offset"], 6);
        assert_eq!(sub["epoch"], epoch);
        for i in 4..=6 {
            let m = reader.message().await;
            assert_eq!((m["offset"].as_u64(), &m["data"]), (Some(i), &json!(i)));
        }
        // The replay joins the live stream without a gap or a repeat.
        publisher.publish("feed", "a7", json!(7)).await;
        assert_eq!(reader.message().await["offset"], 7);
    })
    .await;
}

#[tokio::test]
async fn a_gap_beyond_history_is_reported_as_not_recovered() {
    guard(20, async {
        let hub = TestHub::start(Hub::builder().allow_anonymous(true).history(
            3,
            Duration::from_secs(60),
            1 << 20,
        ))
        .await;
        let mut c = HubClient::connect(&hub, &[]).await;
        for i in 1..=10 {
            c.publish("r", &i.to_string(), json!(i)).await;
        }
        let sub = c.subscribe("r", Some(2)).await;
        assert_eq!(sub["recovered"], false, "{sub}");
        assert_eq!(sub["first"], 8, "the first offset still available");
        assert_eq!(sub["offset"], 10);
        for i in 8..=10 {
            assert_eq!(c.message().await["offset"], i);
        }
        assert_eq!(
            hub.metric("resocket_hub_recoveries_total{result=\"partial\"}")
                .await,
            1.0
        );
    })
    .await;
}

#[tokio::test]
async fn a_repeated_publish_id_is_acknowledged_but_applied_once() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let mut publisher = HubClient::connect(&hub, &[]).await;
        let auth = json!({"type": "auth", "client": "p1", "secret": "p1's secret of 16+ bytes"});
        publisher.send(auth.clone()).await;
        let mut reader = HubClient::connect(&hub, &[]).await;
        reader.subscribe("d", None).await;

        let first = publisher.publish("d", "same", json!("x")).await;
        let again = publisher.publish("d", "same", json!("x")).await;
        assert_eq!(first, again);
        // The same client id and secret survive a reconnect: a retry from a new connection is a
        // repeat too.
        let mut retry = HubClient::connect(&hub, &[]).await;
        retry.send(auth).await;
        assert_eq!(retry.publish("d", "same", json!("x")).await, first);
        let next = publisher.publish("d", "other", json!("y")).await;
        assert_eq!(next, first + 1);

        assert_eq!(reader.message().await["data"], "x");
        assert_eq!(
            reader.message().await["data"],
            "y",
            "the repeat was not delivered"
        );
        assert_eq!(hub.metric("resocket_hub_dedupe_hits_total").await, 2.0);
    })
    .await;
}

#[tokio::test]
async fn an_anonymous_client_cannot_take_over_another_ones_id() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let mut reader = HubClient::connect(&hub, &[]).await;
        reader.subscribe("d", None).await;
        let mut owner = HubClient::connect(&hub, &[]).await;
        owner
            .send(json!({"type": "auth", "client": "p1", "secret": "the owner's own secret"}))
            .await;
        // Same name, another secret; then the same name with no secret at all.
        let mut thief = HubClient::connect(&hub, &[]).await;
        thief
            .send(json!({"type": "auth", "client": "p1", "secret": "a guess, not the secret"}))
            .await;
        let mut bare = HubClient::connect(&hub, &[]).await;
        bare.send(json!({"type": "auth", "client": "p1"})).await;

        let stolen = thief.publish("d", "m-1", json!("thief")).await;
        let bare_offset = bare.publish("d", "m-1", json!("bare")).await;
        let owned = owner.publish("d", "m-1", json!("owner")).await;
        assert_eq!(
            [stolen, bare_offset, owned],
            [1, 2, 3],
            "no publish was taken for another's"
        );
        for want in ["thief", "bare", "owner"] {
            assert_eq!(reader.message().await["data"], want);
        }
        assert_eq!(hub.metric("resocket_hub_dedupe_hits_total").await, 0.0);
    })
    .await;
}

#[tokio::test]
async fn a_replay_larger_than_the_outbound_queue_is_delivered_whole() {
    guard(20, async {
        // Defaults: a 1 MiB outbound queue, 4 MiB of history per room, 64 KiB messages.
        let hub = TestHub::anonymous().await;
        let mut publisher = HubClient::connect(&hub, &[]).await;
        let chunk = "x".repeat(60 * 1024);
        for i in 0..40 {
            publisher.publish("big", &i.to_string(), json!(chunk)).await;
        }
        let mut late = HubClient::connect(&hub, &[]).await;
        let sub = late.subscribe("big", Some(0)).await;
        assert_eq!(sub["recovered"], true, "2.4 MiB fits the history: {sub}");
        for i in 1..=40 {
            assert_eq!(late.message().await["offset"], i);
        }
        // Not a slow consumer: still subscribed and live.
        publisher.publish("big", "live", json!("y")).await;
        assert_eq!(late.message().await["data"], "y");
    })
    .await;
}

#[tokio::test]
async fn a_since_from_another_epoch_or_the_future_is_not_recovered() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let mut c = HubClient::connect(&hub, &[]).await;
        for i in 1..=3 {
            c.publish("e", &i.to_string(), json!(i)).await;
        }
        let epoch = c.subscribe("e", None).await["epoch"].as_u64().unwrap();
        c.send(json!({"type": "subscribe", "room": "e", "since": 1, "epoch": epoch + 1}))
            .await;
        let sub = c.recv().await;
        assert_eq!(
            (sub["recovered"].as_bool(), sub["first"].as_u64()),
            (Some(false), Some(1)),
            "{sub}"
        );
        for i in 1..=3 {
            assert_eq!(
                c.message().await["offset"],
                i,
                "everything held is replayed"
            );
        }
        let sub = c.subscribe("e", Some(99)).await;
        assert_eq!(
            sub["recovered"], false,
            "a since beyond the newest offset: {sub}"
        );
    })
    .await;
}
