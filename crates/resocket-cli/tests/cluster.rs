//! Hub nodes as `resocket serve --redis` processes on one Redis: a node killed with SIGKILL, or
//! shut down gracefully with SIGTERM, costs its clients nothing, since another node has the
//! rooms. And nodes on a Redis Cluster, given by its seed URLs.

mod support;

use std::time::Duration;

use resocket::{
    hub::{HubClient, RoomEvent},
    retry::ExponentialBackoff,
};
use resocket_testkit::{within, RedisCluster, RedisServer};
use support::{serve_on_free_port, TempDir};

fn fast_client(urls: &[String]) -> HubClient {
    HubClient::builder_with_endpoints(urls.iter().map(String::as_str))
        .configure(|b| {
            b.configure(|c| {
                c.backoff =
                    ExponentialBackoff::new(Duration::from_millis(10), Duration::from_millis(200))
            })
        })
        .spawn()
        .unwrap()
}

/// How the subscriber's node goes away halfway through.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGKILL: no Close frame, no drain; the subscriber finds out from the socket.
    Kill,
    /// SIGTERM: the graceful shutdown, Close 1001 to everyone after their queues drain.
    Terminate,
}

#[tokio::test]
async fn a_node_killed_mid_stream_costs_its_subscriber_nothing() {
    within(90, "sigkill a node", survive_losing_a_node(Stop::Kill)).await;
}

#[tokio::test]
async fn a_node_shut_down_mid_stream_costs_its_subscriber_nothing() {
    within(90, "sigterm a node", survive_losing_a_node(Stop::Terminate)).await;
}

async fn survive_losing_a_node(stop: Stop) {
    const TOTAL: u64 = 400;
    {
        let redis = RedisServer::start().expect("redis-server (scripts/deps/redis.sh)");
        let args = |url: String| {
            [
                "--allow-anonymous".to_owned(),
                "--rate-limit".to_owned(),
                "100000".to_owned(),
                "--redis".to_owned(),
                url,
            ]
        };
        let (mut doomed, a) = serve_on_free_port(args(redis.url()), &[]).await;
        let (mut survivor, b) = serve_on_free_port(args(redis.url()), &[]).await;
        let (url_a, url_b) = (
            format!("ws://127.0.0.1:{a}/ws"),
            format!("ws://127.0.0.1:{b}/ws"),
        );
        // The subscriber starts on the node that dies and knows the other one.
        let subscriber = fast_client(&[url_a.clone(), url_b.clone()]);
        let publisher = fast_client(&[url_b]);
        let mut room = subscriber.subscribe("feed").await.unwrap();
        let reader = tokio::spawn(async move {
            let mut next = 1;
            while next <= TOTAL {
                match room.recv().await.expect("the subscription lives on") {
                    RoomEvent::Message(msg) => {
                        assert_eq!(msg.offset, next, "in order, each once");
                        assert_eq!(msg.decode::<u64>().unwrap(), next);
                        next += 1;
                    }
                    RoomEvent::Gap(gap) => panic!("history covers the outage: {gap:?}"),
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        for n in 1..=TOTAL {
            assert_eq!(publisher.publish("feed", &n).await.unwrap(), n);
            if n == TOTAL / 2 {
                match stop {
                    Stop::Kill => doomed.kill().await.unwrap(),
                    Stop::Terminate => {
                        let pid = doomed.id().expect("running").to_string();
                        let sent = tokio::process::Command::new("kill")
                            .args(["-TERM", &pid])
                            .status()
                            .await
                            .unwrap();
                        assert!(sent.success());
                        let status = doomed.wait().await.unwrap();
                        assert!(status.success(), "a graceful shutdown exits 0: {status}");
                    }
                }
            }
        }
        reader.await.unwrap();
        assert_eq!(
            subscriber.client().snapshot().endpoint.as_deref(),
            Some(format!("ws://127.0.0.1:{b}/ws").as_str()),
            "the subscriber moved to the surviving node"
        );
        survivor.kill().await.unwrap();
    }
}

#[tokio::test]
async fn serve_takes_a_redis_cluster_as_seed_urls_from_the_flag_or_the_config_file() {
    within(90, "two serve nodes on a redis cluster", async {
        let cluster =
            RedisCluster::start().expect("redis-server and redis-cli (scripts/deps/redis.sh)");
        let rooms = cluster
            .rooms_on_every_shard(|room| format!("resocket:{{r:{room}}}:m"))
            .unwrap();
        let dir = TempDir::new("redis-cluster");
        let config = dir.write(
            "hub.toml",
            &format!("[engine]\nredis = \"{}\"\n", cluster.url()),
        );
        let common = ["--allow-anonymous", "--rate-limit", "100000"];
        let (mut on_flag, a) =
            serve_on_free_port(common.into_iter().chain(["--redis", &cluster.url()]), &[]).await;
        let (mut on_file, b) = serve_on_free_port(
            common
                .into_iter()
                .chain(["--config", config.to_str().unwrap()]),
            &[],
        )
        .await;
        let subscriber = fast_client(&[format!("ws://127.0.0.1:{a}/ws")]);
        let publisher = fast_client(&[format!("ws://127.0.0.1:{b}/ws")]);
        for room in &rooms {
            let mut sub = subscriber.subscribe(room).await.unwrap();
            for n in 1..=5u64 {
                assert_eq!(publisher.publish(room, &n).await.unwrap(), n);
            }
            for n in 1..=5u64 {
                match sub.recv().await.expect("the subscription lives on") {
                    RoomEvent::Message(msg) => {
                        assert_eq!((msg.offset, msg.decode::<u64>().unwrap()), (n, n));
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        on_flag.kill().await.unwrap();
        on_file.kill().await.unwrap();
    })
    .await;
}
