//! Nodes seen from outside: the `$nodes` room lists every node on one Redis, `/metrics` names
//! the engine and times Redis round trips, and a Redis restart shows as a reconnect.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use resocket_hub::{Hub, NODES_ROOM, STATS_ROOM};
use resocket_testkit::RedisServer;
use serde_json::{json, Value};

fn redis() -> RedisServer {
    RedisServer::start().expect("redis-server (scripts/deps/redis.sh)")
}

/// An anonymous node named `id` on `server`, announcing itself every 100 ms.
async fn node(server: &RedisServer, id: &str) -> TestHub {
    TestHub::start(
        Hub::builder()
            .allow_anonymous(true)
            .node_id(id)
            .stats_interval(Duration::from_millis(100))
            .redis(server.url()),
    )
    .await
}

/// Reads `$nodes` messages until every id in `want` has made an announcement that `ready`
/// accepts; returns each one's latest such announcement.
async fn nodes_until(
    ws: &mut Ws,
    want: &[&str],
    ready: impl Fn(&Value) -> bool,
) -> BTreeMap<String, Value> {
    let mut seen = BTreeMap::new();
    while !want.iter().all(|id| seen.contains_key(*id)) {
        let f = recv(ws).await;
        assert_eq!(f["type"], "message", "{f}");
        assert_eq!(f["room"], NODES_ROOM, "{f}");
        let id = f["data"]["node"].as_str().expect("a node id").to_string();
        if ready(&f["data"]) {
            seen.insert(id, f["data"].clone());
        }
    }
    seen
}

#[tokio::test]
async fn every_node_on_one_redis_is_listed_in_the_nodes_room() {
    let server = redis();
    let (a, b) = (node(&server, "node-a").await, node(&server, "node-b").await);
    guard(30, async {
        // A subscriber on each node: both hear both nodes.
        let mut on_a = a.raw_anon().await;
        let mut on_b = b.raw_anon().await;
        subscribe(&mut on_a, NODES_ROOM, None).await;
        subscribe(&mut on_b, NODES_ROOM, None).await;
        for ws in [&mut on_a, &mut on_b] {
            // A node's first announcement may precede its first timed Redis call.
            let timed = |n: &Value| n["redis_rtt_us"].is_u64();
            let seen = nodes_until(ws, &["node-a", "node-b"], timed).await;
            for (id, n) in &seen {
                assert_eq!(n["engine"], "redis", "{id}: {n}");
                assert!(n["connections"].as_u64().is_some(), "{id}: {n}");
                assert_eq!(n["redis_reconnects"], 0, "{id}: {n}");
                assert!(n["at_ms"].as_u64().unwrap() > 0, "{id}: {n}");
                assert_eq!(n["interval_ms"], 100, "{id}: {n}");
            }
        }
        assert_eq!(a.hub.node_id(), "node-a");

        // Clients read the room; only nodes write it.
        send(
            &mut on_a,
            json!({"type": "publish", "room": NODES_ROOM, "id": "x", "data": {"node": "fake"}}),
        )
        .await;
        loop {
            let f = recv(&mut on_a).await;
            if f["type"] == "message" {
                continue;
            }
            assert_eq!(f["type"], "error", "{f}");
            assert_eq!(f["code"], "forbidden", "{f}");
            break;
        }
    })
    .await;
}

#[tokio::test]
async fn a_memory_node_lists_itself_with_its_default_id() {
    guard(30, async {
        let hub = TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .stats_interval(Duration::from_millis(100)),
        )
        .await;
        let mut ws = hub.raw_anon().await;
        // Without a configured id, a serving node is named after its host and port.
        let id = hub.hub.node_id();
        assert!(id.ends_with(&format!(":{}", hub.addr.port())), "{id}");
        subscribe(&mut ws, NODES_ROOM, None).await;
        let seen = nodes_until(&mut ws, &[&id], |_| true).await;
        assert_eq!(seen[&id]["engine"], "memory");
        assert_eq!(seen[&id]["connections"], 1);
        assert_eq!(seen[&id]["redis_rtt_us"], Value::Null);

        let (_, text) = http_get(hub.addr, "/metrics").await;
        let info = format!("resocket_hub_node_info{{node=\"{id}\",engine=\"memory\"}}");
        assert_eq!(metric(&text, &info), 1.0);
        assert!(!text.contains("resocket_hub_redis_"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn metrics_name_the_redis_engine_and_time_its_round_trips() {
    let server = redis();
    let hub = node(&server, "node-m").await;
    guard(30, async {
        let mut ws = hub.raw_anon().await;
        subscribe(&mut ws, "m", None).await;
        publish(&mut ws, "m", "1", json!(1)).await;

        let (_, text) = http_get(hub.addr, "/metrics").await;
        assert_eq!(
            metric(
                &text,
                "resocket_hub_node_info{node=\"node-m\",engine=\"redis\"}"
            ),
            1.0
        );
        assert!(text.contains("# TYPE resocket_hub_redis_round_trip_seconds histogram"));
        // At least the subscribe's read and the publish's append.
        let count = metric(&text, "resocket_hub_redis_round_trip_seconds_count");
        assert!(count >= 2.0, "{text}");
        assert_eq!(
            metric(
                &text,
                "resocket_hub_redis_round_trip_seconds_bucket{le=\"+Inf\"}"
            ),
            count
        );
        assert!(metric(&text, "resocket_hub_redis_round_trip_seconds_sum") > 0.0);
        assert!(metric(&text, "resocket_hub_redis_last_round_trip_seconds") > 0.0);
        assert_eq!(metric(&text, "resocket_hub_redis_errors_total"), 0.0);
        assert_eq!(metric(&text, "resocket_hub_redis_reconnects_total"), 0.0);
    })
    .await;
}

#[tokio::test]
async fn a_redis_restart_shows_as_a_reconnect_in_stats_and_metrics() {
    let mut server = redis();
    let hub = node(&server, "node-r").await;
    guard(60, async {
        let mut ws = hub.raw_anon().await;
        // Subscribed through Redis, so the node holds a pub/sub connection to lose.
        subscribe(&mut ws, "r", None).await;
        subscribe(&mut ws, STATS_ROOM, None).await;
        server.restart().expect("redis restarts");
        loop {
            let f = recv(&mut ws).await;
            if f["room"] == STATS_ROOM && f["data"]["redis_reconnects"].as_u64() >= Some(1) {
                assert_eq!(f["data"]["node"], "node-r", "{f}");
                assert_eq!(f["data"]["engine"], "redis", "{f}");
                break;
            }
        }
        let (_, text) = http_get(hub.addr, "/metrics").await;
        // One loss, one reconnect, however many attempts it took.
        assert_eq!(
            metric(&text, "resocket_hub_redis_reconnects_total"),
            1.0,
            "{text}"
        );
    })
    .await;
}

#[test]
fn a_node_id_must_be_1_to_128_bytes_without_control_characters() {
    for bad in [String::new(), "n".repeat(129), "web\n1".to_string()] {
        let refused = Hub::builder()
            .allow_anonymous(true)
            .node_id(bad.clone())
            .build();
        assert!(
            matches!(
                refused,
                Err(resocket_hub::Error::Config {
                    setting: "node_id",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    let hub = Hub::builder()
        .allow_anonymous(true)
        .node_id("n".repeat(128))
        .build()
        .unwrap();
    assert_eq!(hub.node_id(), "n".repeat(128));
}
