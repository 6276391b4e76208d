//! Two hub nodes on a three-master Redis Cluster, with rooms on every shard: fan-out between
//! the nodes through sharded pub/sub, recovery with `since` on either node, and a publish
//! resent on the other node applied once.

mod common;

use std::collections::HashMap;

use common::*;
use resocket_hub::Hub;
use resocket_testkit::RedisCluster;
use serde_json::{json, Value};

fn cluster() -> RedisCluster {
    RedisCluster::start().expect("redis-server and redis-cli (scripts/deps/redis.sh)")
}

/// A node on `cluster` (all its seed URLs) taking tokens signed with [`SECRET`].
async fn node(cluster: &RedisCluster) -> TestHub {
    redis_node(cluster.url()).await
}

/// Rooms held by shards 0, 1 and 2, in that order. A room's keys share the hash tag
/// `{r:<room>}` (the engine's documented key layout), so its meta key names its shard.
fn rooms_on_every_shard(cluster: &RedisCluster) -> Vec<String> {
    cluster
        .rooms_on_every_shard(|room| format!("resocket:{{r:{room}}}:m"))
        .unwrap()
}

async fn next_message(ws: &mut Ws) -> Value {
    let f = recv(ws).await;
    assert_eq!(f["type"], "message", "{f}");
    f
}

#[tokio::test]
async fn a_subscriber_on_one_node_receives_what_the_other_publishes_on_every_shard() {
    let cluster = cluster();
    let rooms = rooms_on_every_shard(&cluster);
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    guard(60, async {
        // The deep check needs every master to answer.
        assert_eq!(http_get(a.addr, "/healthz?deep=1").await.0, 200);
        let mut sub = a.raw_with_token(&token("s")).await;
        for room in &rooms {
            subscribe(&mut sub, room, None).await;
        }
        let mut publisher = b.raw_with_token(&token("p")).await;
        for i in 0..9 {
            publish(&mut publisher, &rooms[i % 3], &format!("m{i}"), json!(i)).await;
        }
        let mut heard: HashMap<String, Vec<(u64, Value)>> = HashMap::new();
        for _ in 0..9 {
            let m = next_message(&mut sub).await;
            let room = m["room"].as_str().unwrap().to_string();
            heard
                .entry(room)
                .or_default()
                .push((m["offset"].as_u64().unwrap(), m["data"].clone()));
        }
        for (shard, room) in rooms.iter().enumerate() {
            let expected: Vec<(u64, Value)> = (0..3)
                .map(|k| (k + 1, json!(shard as u64 + 3 * k)))
                .collect();
            assert_eq!(heard[room], expected, "{room}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_client_recovers_with_since_on_either_node_on_every_shard() {
    let cluster = cluster();
    let rooms = rooms_on_every_shard(&cluster);
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    guard(60, async {
        let mut on_a = a.raw_with_token(&token("p")).await;
        let mut on_b = b.raw_with_token(&token("p")).await;
        for room in &rooms {
            let mut sub = a.raw_with_token(&token("s")).await;
            let first = subscribe(&mut sub, room, None).await;
            publish(&mut on_a, room, "m1", json!(1)).await;
            assert_eq!(next_message(&mut sub).await["offset"], 1);
            drop(sub);
            publish(&mut on_b, room, "m2", json!(2)).await;
            publish(&mut on_b, room, "m3", json!(3)).await;
            // Back on the other node, from offset 1.
            let mut sub = b.raw_with_token(&token("s")).await;
            send(
                &mut sub,
                json!({"type": "subscribe", "room": room, "since": 1, "epoch": first["epoch"]}),
            )
            .await;
            let reply = recv(&mut sub).await;
            assert_eq!(
                (&reply["type"], &reply["recovered"], &reply["epoch"]),
                (&json!("subscribed"), &json!(true), &first["epoch"]),
                "{reply}"
            );
            assert_eq!(next_message(&mut sub).await["offset"], 2);
            assert_eq!(next_message(&mut sub).await["offset"], 3);
            drop(sub);
            publish(&mut on_b, room, "m4", json!(4)).await;
            // And on the first node again, from offset 3.
            let mut sub = a.raw_with_token(&token("s")).await;
            send(
                &mut sub,
                json!({"type": "subscribe", "room": room, "since": 3, "epoch": first["epoch"]}),
            )
            .await;
            let reply = recv(&mut sub).await;
            assert_eq!(reply["recovered"], true, "{reply}");
            let m = next_message(&mut sub).await;
            assert_eq!((&m["offset"], &m["data"]), (&json!(4), &json!(4)));
        }
    })
    .await;
}

#[tokio::test]
async fn a_publish_resent_on_the_other_node_is_acked_with_its_first_offset_and_delivered_once() {
    let cluster = cluster();
    let rooms = rooms_on_every_shard(&cluster);
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    guard(60, async {
        let mut sub = a.raw_with_token(&token("s")).await;
        let mut on_a = a.raw_with_token(&token("writer")).await;
        // The same client (token `sub`) on the other node.
        let mut on_b = b.raw_with_token(&token("writer")).await;
        for room in &rooms {
            subscribe(&mut sub, room, None).await;
            let offset = publish(&mut on_a, room, "m-1", json!("x")).await;
            assert_eq!(publish(&mut on_b, room, "m-1", json!("x")).await, offset);
            publish(&mut on_b, room, "m-2", json!("y")).await;
            let m = next_message(&mut sub).await;
            assert_eq!(
                (m["offset"].as_u64(), &m["data"]),
                (Some(offset), &json!("x"))
            );
            // The next message is the new one: the resent publish was not delivered again.
            let m = next_message(&mut sub).await;
            assert_eq!(
                (m["offset"].as_u64(), &m["data"]),
                (Some(offset + 1), &json!("y"))
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_node_starts_while_its_cluster_is_unreachable_and_answers_unavailable() {
    let (one, two) = (
        resocket_testkit::closed_port().await,
        resocket_testkit::closed_port().await,
    );
    let hub = TestHub::start(
        Hub::builder()
            .jwt_secret(SECRET)
            .redis(format!("redis://{one}, redis://{two}"))
            .redis_timeout(std::time::Duration::from_millis(500)),
    )
    .await;
    guard(30, async {
        let mut ws = hub.raw_with_token(&token("p")).await;
        send(
            &mut ws,
            json!({"type": "publish", "room": "r", "id": "m-1", "data": 1}),
        )
        .await;
        let reply = recv(&mut ws).await;
        assert_eq!(
            (&reply["code"], &reply["ref"]),
            (&json!("unavailable"), &json!("m-1"))
        );
        send(&mut ws, json!({"type": "subscribe", "room": "r"})).await;
        assert_eq!(recv(&mut ws).await["code"], "unavailable");
    })
    .await;
}

#[tokio::test]
async fn a_shard_that_restarts_empty_is_reported_as_not_recovered_on_both_nodes() {
    let mut cluster = cluster();
    let rooms = rooms_on_every_shard(&cluster);
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    guard(90, async {
        let (lost, kept) = (&rooms[1], &rooms[2]);
        let mut sub_a = a.raw_with_token(&token("s")).await;
        let mut sub_b = b.raw_with_token(&token("s")).await;
        for sub in [&mut sub_a, &mut sub_b] {
            subscribe(sub, lost, None).await;
            subscribe(sub, kept, None).await;
        }
        let mut publisher = b.raw_with_token(&token("p")).await;
        publish(&mut publisher, lost, "m1", json!(1)).await;
        for sub in [&mut sub_a, &mut sub_b] {
            assert_eq!(next_message(sub).await["offset"], 1);
        }
        cluster.restart_shard(1).expect("the shard starts again");
        // The shard came back empty: the room starts over in a new epoch. The publish is sent
        // again, with the same id (applied once), until the nodes' command connections find
        // the shard again; nothing observable says when they have.
        loop {
            send(
                &mut publisher,
                json!({"type": "publish", "room": lost, "id": "m2", "data": 2}),
            )
            .await;
            let reply = recv(&mut publisher).await;
            if reply["type"] == "ack" {
                break;
            }
            assert_eq!(reply["code"], "unavailable", "{reply}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for sub in [&mut sub_a, &mut sub_b] {
            let notice = recv(sub).await;
            assert_eq!(
                (&notice["type"], &notice["room"], &notice["recovered"]),
                (&json!("subscribed"), &json!(lost), &json!(false)),
                "{notice}"
            );
            let m = next_message(sub).await;
            assert_eq!(
                (&m["room"], &m["offset"], &m["data"]),
                (&json!(lost), &json!(1), &json!(2))
            );
        }
        // The other shards never went away.
        publish(&mut publisher, kept, "k1", json!(3)).await;
        for sub in [&mut sub_a, &mut sub_b] {
            assert_eq!(next_message(sub).await["room"], json!(kept));
        }
    })
    .await;
}

#[tokio::test]
async fn a_room_whose_slot_moves_to_another_shard_keeps_its_subscribers_and_history() {
    let mut cluster = cluster();
    let rooms = rooms_on_every_shard(&cluster);
    let (a, b) = (node(&cluster).await, node(&cluster).await);
    guard(60, async {
        let room = &rooms[0];
        let mut sub = a.raw_with_token(&token("s")).await;
        let first = subscribe(&mut sub, room, None).await;
        let mut publisher = b.raw_with_token(&token("p")).await;
        publish(&mut publisher, room, "m1", json!(1)).await;
        assert_eq!(next_message(&mut sub).await["offset"], 1);
        cluster
            .move_slot_of(&format!("resocket:{{r:{room}}}:m"), 1)
            .expect("the slot moves");
        for n in 2..=4u64 {
            publish(&mut publisher, room, &format!("m{n}"), json!(n)).await;
        }
        for n in 2..=4u64 {
            let m = next_message(&mut sub).await;
            assert_eq!((&m["offset"], &m["epoch"]), (&json!(n), &first["epoch"]));
        }
        // The history moved with the slot: a client recovers on the other node.
        let mut again = b.raw_with_token(&token("s")).await;
        send(
            &mut again,
            json!({"type": "subscribe", "room": room, "since": 2, "epoch": first["epoch"]}),
        )
        .await;
        let reply = recv(&mut again).await;
        assert_eq!(reply["recovered"], true, "{reply}");
        assert_eq!(next_message(&mut again).await["offset"], 3);
        assert_eq!(next_message(&mut again).await["offset"], 4);
    })
    .await;
}
