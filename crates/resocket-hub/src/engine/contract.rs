//! One contract, run against every engine: offsets, dedupe, history, epochs and revocations
//! behave the same in memory, on one Redis server and on a three-master Redis Cluster.
//! Redis-only tests (fan-out between nodes, a missed pub/sub stretch) follow, on both.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::wire::Frame;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::memory::MemoryEngine;
use super::redis::{RedisEngine, RedisSettings};
use super::{Engine, Listener, Unavailable};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::room::Limits;

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_string()).unwrap()
}

fn limits() -> Limits {
    Limits {
        history_len: 100,
        history_age: Duration::from_secs(60),
        history_bytes: 1 << 20,
        dedupe_window: 100,
    }
}

async fn guarded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test hung")
}

// ---- the contract ----

async fn appends_get_consecutive_offsets_in_one_epoch<E: Engine>(e: &E) {
    let a = e.append("c1", None, &raw("1")).await.unwrap();
    let b = e.append("c1", None, &raw("2")).await.unwrap();
    assert_eq!((a.offset, b.offset), (1, 2));
    assert_eq!(a.epoch, b.epoch);
    assert!(!a.duplicate && !b.duplicate);
    assert_eq!(e.epoch("c1").await.unwrap(), a.epoch);
    let other = e.append("c2", None, &raw("1")).await.unwrap();
    assert_eq!(other.offset, 1, "offsets are per room");
}

async fn a_repeated_id_is_applied_once<E: Engine>(e: &E) {
    let first = e
        .append("d", Some(("alice", "m1")), &raw("1"))
        .await
        .unwrap();
    let again = e
        .append("d", Some(("alice", "m1")), &raw("1"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.offset, first.offset);
    let bob = e.append("d", Some(("bob", "m1")), &raw("1")).await.unwrap();
    assert_eq!(bob.offset, first.offset + 1, "ids are per client");
    let h = e.since("d", Some(0)).await.unwrap();
    assert_eq!(h.last, 2);
    assert_eq!(h.entries.len(), 2);
}

async fn since_returns_exactly_what_follows<E: Engine>(e: &E) {
    for i in 1..=5 {
        e.append("h", None, &raw(&i.to_string())).await.unwrap();
    }
    let h = e.since("h", Some(3)).await.unwrap();
    assert_eq!(h.last, 5);
    let offsets: Vec<u64> = h.entries.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [4, 5]);
    assert!(h.is_complete_after(3));
    let frame: serde_json::Value = serde_json::from_str(h.entries[0].1.as_str()).unwrap();
    assert_eq!(frame["type"], "message");
    assert_eq!(frame["room"], "h");
    assert_eq!(frame["offset"], 4);
    assert_eq!(frame["data"], 4);
    assert_eq!(frame["epoch"].as_u64(), Some(h.epoch));
    assert!(e.since("h", Some(5)).await.unwrap().entries.is_empty());
    assert!(e.since("h", None).await.unwrap().entries.is_empty());
    let none = e.since("never", Some(0)).await.unwrap();
    assert_eq!((none.last, none.entries.len()), (0, 0));
    assert_eq!(
        e.epoch("never").await.unwrap(),
        none.epoch,
        "a read fixes the epoch"
    );
}

async fn history_is_bounded_by_count<E: Engine>(e: &E, len: u64) {
    for i in 0..len * 3 {
        e.append("b", None, &raw(&i.to_string())).await.unwrap();
    }
    let h = e.since("b", Some(0)).await.unwrap();
    assert!(!h.is_complete_after(0), "the oldest are gone");
    assert!((h.entries.len() as u64) < len * 3);
    assert_eq!(h.entries.last().map(|(o, _)| *o), Some(len * 3));
}

async fn revocations_are_listed<E: Engine>(e: &E) {
    e.revoke(&["jti:t1".into(), "sub:bob".into()])
        .await
        .unwrap();
    let list = e.revoked().await.unwrap();
    assert!(list.contains("jti:t1") && list.contains("sub:bob"));
    // More entries than a Lua `unpack` takes at once.
    let many: Vec<String> = (0..20_000).map(|i| format!("jti:many-{i}")).collect();
    e.revoke(&many).await.unwrap();
    let list = e.revoked().await.unwrap();
    assert!(many.iter().all(|id| list.contains(id)));
}

/// A room whose name would end a hash tag early (or leave it empty) still keeps all its keys
/// on one cluster slot.
async fn rooms_named_with_braces_work<E: Engine>(e: &E) {
    for room in ["}x", "{y}", "a}b{c", "}"] {
        let first = e
            .append(room, Some(("alice", "m1")), &raw("1"))
            .await
            .unwrap();
        let again = e
            .append(room, Some(("alice", "m1")), &raw("1"))
            .await
            .unwrap();
        assert!(again.duplicate && again.offset == first.offset, "{room}");
        e.append(room, None, &raw("2")).await.unwrap();
        let h = e.since(room, Some(0)).await.unwrap();
        assert_eq!((h.last, h.entries.len()), (2, 2), "{room}");
        let frame: serde_json::Value = serde_json::from_str(h.entries[0].1.as_str()).unwrap();
        assert_eq!(frame["room"], room);
    }
}

async fn contract<E: Engine>(e: &E, history_len: u64) {
    appends_get_consecutive_offsets_in_one_epoch(e).await;
    a_repeated_id_is_applied_once(e).await;
    since_returns_exactly_what_follows(e).await;
    history_is_bounded_by_count(e, history_len).await;
    revocations_are_listed(e).await;
    rooms_named_with_braces_work(e).await;
}

// ---- engines ----

fn memory() -> MemoryEngine {
    MemoryEngine::new(
        Arc::new(Registry::new(1000, 1000, 1 << 30)),
        limits(),
        Arc::new(Metrics::default()),
    )
}

/// What a Redis engine's listener heard.
#[derive(Debug)]
enum Heard {
    Message(String, u64, u64, Frame),
    Revoked(HashSet<String>),
}

struct Channel(mpsc::UnboundedSender<Heard>);

impl Listener for Channel {
    fn message(&self, room: &str, epoch: u64, offset: u64, frame: Frame) {
        let _ = self
            .0
            .send(Heard::Message(room.into(), epoch, offset, frame));
    }
    fn revoked(&self, ids: HashSet<String>) {
        let _ = self.0.send(Heard::Revoked(ids));
    }
}

fn redis_node(
    server: &resocket_testkit::RedisServer,
) -> (RedisEngine, mpsc::UnboundedReceiver<Heard>) {
    redis_node_at(&server.url())
}

/// A Redis engine on `url` (one server, or a cluster's comma-separated seed nodes).
fn redis_node_at(url: &str) -> (RedisEngine, mpsc::UnboundedReceiver<Heard>) {
    let settings = RedisSettings {
        history_len: 100,
        history_age: Duration::from_secs(60),
        room_ttl: Duration::from_secs(600),
        dedupe_ttl: Duration::from_secs(600),
        timeout: Duration::from_secs(2),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let servers = super::redis::client(url).unwrap();
    (
        RedisEngine::start(
            servers,
            settings,
            Arc::new(Channel(tx)),
            Arc::new(Metrics::default()),
        )
        .unwrap(),
        rx,
    )
}

fn redis_server() -> resocket_testkit::RedisServer {
    resocket_testkit::RedisServer::start().expect("redis-server (scripts/deps/redis.sh)")
}

fn redis_cluster() -> resocket_testkit::RedisCluster {
    resocket_testkit::RedisCluster::start()
        .expect("redis-server and redis-cli (scripts/deps/redis.sh)")
}

/// Rooms whose keys live on shards 0, 1 and 2 of `cluster`, in that order.
fn rooms_on_every_shard(cluster: &resocket_testkit::RedisCluster) -> Vec<String> {
    cluster
        .rooms_on_every_shard(super::redis::meta_key)
        .unwrap()
}

#[tokio::test]
async fn memory_engine_keeps_the_contract() {
    // The memory engine's history holds `history_len` (100) messages exactly.
    guarded(contract(&memory(), 100)).await;
}

#[tokio::test]
async fn redis_engine_keeps_the_contract() {
    let server = redis_server();
    let (engine, _heard) = redis_node(&server);
    // `MAXLEN ~` trims whole stream nodes (100 entries each): at three times the length,
    // something has gone.
    guarded(contract(&engine, 100)).await;
}

#[tokio::test]
async fn redis_cluster_engine_keeps_the_contract() {
    let cluster = redis_cluster();
    let (engine, _heard) = redis_node_at(&cluster.url());
    guarded(contract(&engine, 100)).await;
}

/// The offsets one node heard for `room`, until it has heard `n`.
async fn heard(rx: &mut mpsc::UnboundedReceiver<Heard>, room: &str, n: usize) -> Vec<u64> {
    let mut offsets = Vec::new();
    while offsets.len() < n {
        match rx.recv().await.expect("listener gone") {
            Heard::Message(r, epoch, offset, frame) if r == room => {
                assert!(frame.as_str().contains(&format!(r#""epoch":{epoch},"#)));
                assert!(frame.as_str().contains(&format!(r#""offset":{offset},"#)));
                offsets.push(offset);
            }
            _ => {}
        }
    }
    offsets
}

#[tokio::test]
async fn redis_nodes_hear_each_others_appends_in_offset_order() {
    let server = redis_server();
    let (a, mut heard_a) = redis_node(&server);
    let (b, _) = redis_node(&server);
    guarded(async {
        a.watch("fan").await.unwrap();
        for i in 0..20 {
            let node = if i % 2 == 0 { &a } else { &b };
            node.append("fan", None, &raw("1")).await.unwrap();
        }
        assert_eq!(
            heard(&mut heard_a, "fan", 20).await,
            (1..=20).collect::<Vec<_>>()
        );
    })
    .await;
}

/// Node a watches `room`, its pub/sub connection to `shard_url` (the server that holds the
/// room) is cut and three appends land in the same transaction, so node a cannot be
/// subscribed again before they are published: it must read them back from the stream.
async fn a_missed_stretch_is_filled(url: &str, shard_url: &str, room: &str) {
    let (a, mut heard_a) = redis_node_at(url);
    let (b, _) = redis_node_at(url);
    guarded(async {
        a.watch(room).await.unwrap();
        b.append(room, None, &raw("1")).await.unwrap();
        assert_eq!(heard(&mut heard_a, room, 1).await, [1]);
        let client = redis::Client::open(shard_url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .ignore();
        for _ in 0..3 {
            pipe.add_command(b.append_eval(room, &raw("2"))).ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
        // Read back on the reconnect, with nothing published afterwards.
        assert_eq!(heard(&mut heard_a, room, 3).await, [2, 3, 4]);
        b.append(room, None, &raw("3")).await.unwrap();
        assert_eq!(heard(&mut heard_a, room, 1).await, [5]);
    })
    .await;
}

#[tokio::test]
async fn a_node_that_missed_pubsub_traffic_fills_the_hole_from_the_stream() {
    let server = redis_server();
    a_missed_stretch_is_filled(&server.url(), &server.url(), "gap").await;
}

#[tokio::test]
async fn a_cluster_node_that_missed_sharded_pubsub_traffic_fills_the_hole_from_the_stream() {
    let cluster = redis_cluster();
    for (shard, room) in rooms_on_every_shard(&cluster).iter().enumerate() {
        a_missed_stretch_is_filled(&cluster.url(), &cluster.urls()[shard], room).await;
    }
}

#[tokio::test]
async fn cluster_nodes_hear_each_others_appends_on_every_shard_in_offset_order() {
    let cluster = redis_cluster();
    let rooms = rooms_on_every_shard(&cluster);
    let (a, mut heard_a) = redis_node_at(&cluster.url());
    let (b, _) = redis_node_at(&cluster.url());
    guarded(async {
        for room in &rooms {
            a.watch(room).await.unwrap();
        }
        // Each room's subscription is sharded and lives on the shard that holds the room;
        // node b, with no subscribers, subscribes to none.
        for (shard, room) in rooms.iter().enumerate() {
            let channel = super::redis::channel(room);
            let count = cluster
                .command(shard, &["PUBSUB", "SHARDNUMSUB", &channel])
                .unwrap();
            assert_eq!(count, format!("{channel}\n1"));
        }
        for i in 0..30 {
            let node = if i % 2 == 0 { &a } else { &b };
            node.append(&rooms[i % 3], None, &raw("1")).await.unwrap();
        }
        let mut offsets: HashMap<String, Vec<u64>> = HashMap::new();
        while offsets.values().map(Vec::len).sum::<usize>() < 30 {
            if let Heard::Message(room, _, offset, _) = heard_a.recv().await.unwrap() {
                offsets.entry(room).or_default().push(offset);
            }
        }
        for room in &rooms {
            assert_eq!(offsets[room], (1..=10).collect::<Vec<_>>(), "{room}");
        }
        // An unwatched room is no longer heard; a watched one still is.
        a.unwatch(&rooms[0]);
        b.append(&rooms[0], None, &raw("1")).await.unwrap();
        b.append(&rooms[1], None, &raw("1")).await.unwrap();
        match heard_a.recv().await.unwrap() {
            Heard::Message(room, _, offset, _) => {
                assert_eq!((room, offset), (rooms[1].clone(), 11))
            }
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn a_revocation_reaches_every_cluster_node() {
    let cluster = redis_cluster();
    let (a, _) = redis_node_at(&cluster.url());
    let (b, mut heard_b) = redis_node_at(&cluster.url());
    guarded(async {
        b.watch("x").await.unwrap();
        a.revoke(&["jti:gone".into(), "sub:eve".into()])
            .await
            .unwrap();
        loop {
            if let Some(Heard::Revoked(ids)) = heard_b.recv().await {
                if ids.contains("jti:gone") && ids.contains("sub:eve") {
                    break;
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_revocation_reaches_every_node() {
    let server = redis_server();
    let (a, _) = redis_node(&server);
    let (_b, mut heard_b) = redis_node(&server);
    guarded(async {
        // Node b's pub/sub is up once it has read the (empty) list on connect; a watch
        // round trip proves it.
        _b.watch("x").await.unwrap();
        a.revoke(&["jti:gone".into()]).await.unwrap();
        loop {
            if let Some(Heard::Revoked(ids)) = heard_b.recv().await {
                if ids.contains("jti:gone") {
                    break;
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn one_url_of_a_cluster_is_one_server_and_a_redirect_says_to_list_more_nodes() {
    let cluster = redis_cluster();
    let rooms = rooms_on_every_shard(&cluster);
    let (engine, _heard) = redis_node_at(&cluster.urls()[0]);
    guarded(async {
        engine.append(&rooms[0], None, &raw("1")).await.unwrap();
        let Unavailable(reason) = engine.append(&rooms[1], None, &raw("1")).await.unwrap_err();
        assert!(reason.contains("give two or more of its nodes"), "{reason}");
    })
    .await;
}
