//! Hub nodes as `resocket serve --redis` processes on one Redis: a node killed with SIGKILL, or
//! shut down gracefully with SIGTERM, costs its clients nothing, since another node has the
//! rooms. And nodes on a Redis Cluster, given by its seed URLs.

mod support;

use resocket::hub::{Gap, RoomEvent};
use resocket_testkit::{within, FaultProxy, RedisCluster, RedisServer};
use support::cluster::{fast_client, Node};
use support::{serve_on_free_port, TempDir};

/// The nodes' stderr is closed once their banner is read: the warnings a Redis outage logs
/// must not take down the task that writes them, here the one that hears the other nodes.
#[tokio::test]
async fn a_node_whose_stderr_is_gone_keeps_fanning_out_after_a_redis_restart() {
    within(60, "closed stderr", async {
        let mut redis = RedisServer::start().expect("redis-server (scripts/deps/redis.sh)");
        let mut listening = Node::start(&redis.url(), 1000).await;
        let mut publishing = Node::start(&redis.url(), 1000).await;
        let subscriber = fast_client(&[listening.url()]);
        let publisher = fast_client(&[publishing.url()]);
        let mut room = subscriber.subscribe("feed").await.unwrap();
        publisher.publish("feed", &1).await.unwrap();
        let Some(RoomEvent::Message(first)) = room.recv().await else {
            panic!("expected the first message")
        };
        assert_eq!(first.decode::<u64>().unwrap(), 1);

        let redis = tokio::task::spawn_blocking(move || redis.restart().map(|()| redis))
            .await
            .unwrap()
            .expect("redis comes back");
        publisher.publish("feed", &2).await.unwrap();
        loop {
            match room.recv().await.expect("the subscription lives on") {
                RoomEvent::Message(msg) => {
                    assert_eq!(msg.decode::<u64>().unwrap(), 2);
                    break;
                }
                RoomEvent::Gap(gap) => assert!(gap.epoch_changed, "{gap:?}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        listening.kill().await;
        publishing.kill().await;
        drop(redis);
    })
    .await;
}

/// Redis restarts empty, so the room starts a new epoch; a subscriber that was away meanwhile
/// comes back naming the old epoch. Its old epoch's tail is gone (a gap), but the new epoch is
/// all still held and all new to it: it is replayed from its start, not skipped.
#[tokio::test]
async fn after_a_redis_restart_a_returning_subscriber_gets_the_new_epoch_from_its_start() {
    within(60, "new epoch replayed", async {
        let mut redis = RedisServer::start().expect("redis-server (scripts/deps/redis.sh)");
        let mut node = Node::start(&redis.url(), 1000).await;
        let proxy = FaultProxy::start(node.addr()).await;
        let subscriber = fast_client(&[format!("ws://{}/ws", proxy.addr())]);
        let publisher = fast_client(&[node.url()]);
        let mut room = subscriber.subscribe("feed").await.unwrap();
        for n in 1..=3u64 {
            publisher.publish("feed", &n).await.unwrap();
        }
        let mut old_epoch = 0;
        for n in 1..=3u64 {
            let Some(RoomEvent::Message(msg)) = room.recv().await else {
                panic!("expected message {n}")
            };
            assert_eq!(msg.decode::<u64>().unwrap(), n);
            old_epoch = msg.epoch;
        }

        proxy.set_refuse(true);
        proxy.cut_all();
        let mut status = subscriber.client().status();
        status.wait_for(|s| !s.state.is_ready()).await.unwrap();
        let redis = tokio::task::spawn_blocking(move || redis.restart().map(|()| redis))
            .await
            .unwrap()
            .expect("redis comes back");
        for n in 4..=6u64 {
            assert_eq!(
                publisher.publish("feed", &n).await.unwrap(),
                n - 3,
                "a new epoch"
            );
        }
        proxy.set_refuse(false);
        status.wait_for(|s| s.state.is_ready()).await.unwrap();
        // Published after the return, so a subscriber that skipped 4..=6 still gets something.
        publisher.publish("feed", &7u64).await.unwrap();

        let Some(RoomEvent::Gap(gap)) = room.recv().await else {
            panic!("expected the gap of the lost epoch first")
        };
        assert_eq!(
            gap,
            Gap {
                room: "feed".into(),
                from: 4,
                resumes_at: None,
                epoch_changed: true
            }
        );
        for n in 4..=7u64 {
            let Some(RoomEvent::Message(msg)) = room.recv().await else {
                panic!("expected message {n}")
            };
            assert_ne!(msg.epoch, old_epoch);
            assert_eq!(
                (msg.offset, msg.decode::<u64>().unwrap()),
                (n - 3, n),
                "the new epoch from its start"
            );
        }
        node.kill().await;
        drop(redis);
    })
    .await;
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
        let mut doomed = Node::start(&redis.url(), 1000).await;
        let mut survivor = Node::start(&redis.url(), 1000).await;
        let (url_a, url_b) = (doomed.url(), survivor.url());
        // The subscriber starts on the node that dies and knows the other one.
        let subscriber = fast_client(&[url_a.clone(), url_b.clone()]);
        let publisher = fast_client(std::slice::from_ref(&url_b));
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
                    Stop::Kill => doomed.kill().await,
                    Stop::Terminate => {
                        let pid = doomed.child().id().expect("running").to_string();
                        let sent = tokio::process::Command::new("kill")
                            .args(["-TERM", &pid])
                            .status()
                            .await
                            .unwrap();
                        assert!(sent.success());
                        let status = doomed.child().wait().await.unwrap();
                        assert!(status.success(), "a graceful shutdown exits 0: {status}");
                    }
                }
            }
        }
        reader.await.unwrap();
        assert_eq!(
            subscriber.client().snapshot().endpoint.as_deref(),
            Some(url_b.as_str()),
            "the subscriber moved to the surviving node"
        );
        survivor.kill().await;
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
