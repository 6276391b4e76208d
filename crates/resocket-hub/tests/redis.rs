//! Several hub nodes on one Redis: fan-out between nodes, recovery and exactly-once publishing
//! across nodes, shared revocations, and what a publish gets while Redis is down.

mod common;

use common::*;
use resocket_hub::{Hub, Token};
use resocket_testkit::RedisServer;
use serde_json::{json, Value};

fn redis() -> RedisServer {
    RedisServer::start().expect("redis-server (scripts/deps/redis.sh)")
}

/// A node on `server` taking tokens signed with [`SECRET`].
async fn node(server: &RedisServer) -> TestHub {
    redis_node(server.url()).await
}

/// A node on `server` that gives up on Redis after half a second, for the outage tests.
async fn outage_node(server: &RedisServer) -> TestHub {
    TestHub::start(
        Hub::builder()
            .jwt_secret(SECRET)
            .redis(server.url())
            .redis_timeout(std::time::Duration::from_millis(500)),
    )
    .await
}

/// Reads frames until the `ack` for `id`, keeping the `message`s read meanwhile.
async fn ack(ws: &mut Ws, id: &str, messages: &mut Vec<Value>) -> Value {
    loop {
        let f = recv(ws).await;
        match f["type"].as_str() {
            Some("ack") if f["id"] == id => return f,
            Some("message") => messages.push(f),
            _ => panic!("unexpected frame {f}"),
        }
    }
}

async fn next_message(ws: &mut Ws) -> Value {
    let f = recv(ws).await;
    assert_eq!(f["type"], "message", "{f}");
    f
}

#[tokio::test]
async fn a_subscriber_on_one_node_receives_what_another_node_publishes_in_order() {
    let server = redis();
    let (a, b) = (node(&server).await, node(&server).await);
    guard(30, async {
        let mut sub = a.raw_with_token(&token("s")).await;
        subscribe(&mut sub, "news", None).await;
        let mut pub_b = b.raw_with_token(&token("p")).await;
        let mut pub_a = a.raw_with_token(&token("q")).await;
        for i in 0..10 {
            let ws = if i % 2 == 0 { &mut pub_b } else { &mut pub_a };
            send(
                ws,
                json!({"type": "publish", "room": "news", "id": format!("m{i}"), "data": i}),
            )
            .await;
            ack(ws, &format!("m{i}"), &mut Vec::new()).await;
        }
        for i in 0..10u64 {
            let m = next_message(&mut sub).await;
            assert_eq!(m["offset"], i + 1);
            assert_eq!(m["data"], i);
        }
    })
    .await;
}

#[tokio::test]
async fn a_client_that_subscribed_on_one_node_recovers_with_since_on_another() {
    let server = redis();
    let (a, b) = (node(&server).await, node(&server).await);
    guard(30, async {
        let mut sub = a.raw_with_token(&token("s")).await;
        let first = subscribe(&mut sub, "r", None).await;
        let mut publisher = b.raw_with_token(&token("p")).await;
        for i in 0..3 {
            publish(&mut publisher, "r", &format!("m{i}"), json!(i)).await;
        }
        let seen = next_message(&mut sub).await;
        assert_eq!(seen["offset"], 1);
        drop(sub);
        // Node a's client went away after offset 1; two more were published meanwhile.
        let mut again = b.raw_with_token(&token("s")).await;
        send(
            &mut again,
            json!({"type": "subscribe", "room": "r", "since": 1, "epoch": first["epoch"]}),
        )
        .await;
        let reply = recv(&mut again).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        assert_eq!(reply["recovered"], true, "{reply}");
        assert_eq!(reply["epoch"], first["epoch"]);
        assert_eq!(next_message(&mut again).await["offset"], 2);
        assert_eq!(next_message(&mut again).await["offset"], 3);
    })
    .await;
}

#[tokio::test]
async fn a_publish_retried_on_another_node_is_acked_with_its_first_offset_and_delivered_once() {
    let server = redis();
    let (a, b) = (node(&server).await, node(&server).await);
    guard(30, async {
        let mut sub = a.raw_with_token(&token("s")).await;
        subscribe(&mut sub, "once", None).await;
        let mut on_a = a.raw_with_token(&token("writer")).await;
        let offset = publish(&mut on_a, "once", "m-1", json!("x")).await;
        // The same client (token `sub`) retries the same id on the other node.
        let mut on_b = b.raw_with_token(&token("writer")).await;
        assert_eq!(publish(&mut on_b, "once", "m-1", json!("x")).await, offset);
        publish(&mut on_b, "once", "m-2", json!("y")).await;
        let m = next_message(&mut sub).await;
        assert_eq!(
            (m["offset"].as_u64(), m["data"].clone()),
            (Some(offset), json!("x"))
        );
        // The next message is the new one: the retry was not delivered again.
        let m = next_message(&mut sub).await;
        assert_eq!(
            (m["offset"].as_u64(), m["data"].clone()),
            (Some(offset + 1), json!("y"))
        );
    })
    .await;
}

#[tokio::test]
async fn revoking_on_one_node_closes_the_tokens_connection_on_another() {
    let server = redis();
    let (a, b) = (node(&server).await, node(&server).await);
    guard(30, async {
        let stolen = Token::new("mallory")
            .jti("t-1")
            .subscribe("*")
            .sign(SECRET.as_bytes());
        let mut on_b = b.raw_with_token(&stolen).await;
        subscribe(&mut on_b, "x", None).await;
        let mut innocent = b.raw_with_token(&token("alice")).await;
        subscribe(&mut innocent, "x", None).await;
        a.hub.revoke("jti:t-1");
        assert_eq!(recv(&mut on_b).await["code"], "revoked");
        assert_eq!(closed(&mut on_b).await.unwrap().code, 1008.into());
        subscribe(&mut innocent, "y", None).await;
    })
    .await;
}

#[tokio::test]
async fn a_publish_while_redis_is_down_gets_unavailable_not_an_ack() {
    let mut server = redis();
    let hub = outage_node(&server).await;
    guard(30, async {
        let mut ws = hub.raw_with_token(&token("p")).await;
        publish(&mut ws, "down", "m-1", json!(1)).await;
        server.kill();
        send(
            &mut ws,
            json!({"type": "publish", "room": "down", "id": "m-2", "data": 2}),
        )
        .await;
        let reply = recv(&mut ws).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], "unavailable");
        assert_eq!(reply["ref"], "m-2");
        // The connection stays open for a retry.
        send(&mut ws, json!({"type": "subscribe", "room": "down"})).await;
        assert_eq!(recv(&mut ws).await["code"], "unavailable");
    })
    .await;
}

#[tokio::test]
async fn a_hub_client_publish_during_an_outage_is_sent_again_and_acked_once_redis_is_back() {
    let mut server = redis();
    let hub = outage_node(&server).await;
    guard(60, async {
        let client = resocket::hub::HubClient::builder(&hub.url())
            .token(token("p"))
            .spawn()
            .unwrap();
        assert!(client.publish("outage", &1).await.is_ok());
        server.kill();
        // Refused as `unavailable` while Redis is down, then sent again until it is stored.
        let pending = client.start_publish("outage", &2).await.unwrap();
        let mut raw = hub.raw_with_token(&token("watcher")).await;
        send(
            &mut raw,
            json!({"type": "publish", "room": "probe", "id": "x", "data": 0}),
        )
        .await;
        assert_eq!(recv(&mut raw).await["code"], "unavailable", "Redis is down");
        server.restart().expect("redis-server starts again");
        let offset = pending.await.expect("acked once Redis is back");
        // Redis came back empty: a new epoch, and the resent publish is its first message, once.
        assert_eq!(offset, 1);
        subscribe(&mut raw, "outage", Some(0)).await;
        let replayed = recv(&mut raw).await;
        assert_eq!(
            (replayed["offset"].as_u64(), &replayed["data"]),
            (Some(1), &json!(2))
        );
        assert!(client.publish("outage", &3).await.unwrap() == 2);
    })
    .await;
}

#[tokio::test]
async fn deep_health_is_unhealthy_while_redis_is_down() {
    let mut server = redis();
    let hub = outage_node(&server).await;
    guard(60, async {
        assert_eq!(http_get(hub.addr, "/healthz?deep=1").await.0, 200);
        server.kill();
        let (status, body) = http_get(hub.addr, "/healthz?deep=1").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("redis"), "{body}");
        // Liveness is another question: the process still answers.
        assert_eq!(http_get(hub.addr, "/healthz").await.0, 200);
        server.restart().expect("redis-server starts again");
        // The connection manager reconnects on its own; the check passes once it has.
        let mut status = 0;
        for _ in 0..50 {
            status = http_get(hub.addr, "/healthz?deep=1").await.0;
            if status == 200 {
                break;
            }
        }
        assert_eq!(status, 200, "healthy again once Redis is back");
    })
    .await;
}
