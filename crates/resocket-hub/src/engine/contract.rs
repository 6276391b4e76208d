//! One contract, run against every engine: offsets, dedupe, history, epochs and revocations
//! behave the same in memory and in Redis. Redis-only tests (fan-out between nodes, a missed
//! pub/sub stretch) follow.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::wire::Frame;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::memory::MemoryEngine;
use super::redis::{RedisEngine, RedisSettings};
use super::{Engine, Listener};
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
}

async fn contract<E: Engine>(e: &E, history_len: u64) {
    appends_get_consecutive_offsets_in_one_epoch(e).await;
    a_repeated_id_is_applied_once(e).await;
    since_returns_exactly_what_follows(e).await;
    history_is_bounded_by_count(e, history_len).await;
    revocations_are_listed(e).await;
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
    let settings = RedisSettings {
        history_len: 100,
        history_age: Duration::from_secs(60),
        room_ttl: Duration::from_secs(600),
        dedupe_ttl: Duration::from_secs(600),
        timeout: Duration::from_secs(2),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let client = super::redis::client(&server.url()).unwrap();
    (
        RedisEngine::start(client, settings, Arc::new(Channel(tx))).unwrap(),
        rx,
    )
}

fn redis_server() -> resocket_testkit::RedisServer {
    resocket_testkit::RedisServer::start().expect("redis-server (scripts/deps/redis.sh)")
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

#[tokio::test]
async fn a_node_that_missed_pubsub_traffic_fills_the_hole_from_the_stream() {
    let server = redis_server();
    let (a, mut heard_a) = redis_node(&server);
    let (b, _) = redis_node(&server);
    guarded(async {
        a.watch("gap").await.unwrap();
        b.append("gap", None, &raw("1")).await.unwrap();
        assert_eq!(heard(&mut heard_a, "gap", 1).await, [1]);
        // The pub/sub connection is cut and three appends land in the same transaction, so
        // node a cannot be subscribed again before they are published.
        let client = super::redis::client(&server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .ignore();
        for _ in 0..3 {
            pipe.add_command(b.append_eval("gap", &raw("2"))).ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
        // Read back on the reconnect, with nothing published afterwards.
        assert_eq!(heard(&mut heard_a, "gap", 3).await, [2, 3, 4]);
        b.append("gap", None, &raw("3")).await.unwrap();
        assert_eq!(heard(&mut heard_a, "gap", 1).await, [5]);
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
