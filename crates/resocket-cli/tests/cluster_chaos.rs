//! Chaos on a cluster: three `resocket serve --redis` nodes on one shared Redis, a publisher
//! and three subscribers each starting on a different node, every connection behind a proxy
//! that cuts it after 200–600 ms; one node is SIGKILLed and restarted, and Redis itself is
//! restarted (empty) mid-run. The publisher spreads its publishes over three rooms and every
//! subscriber follows all three. In each room, every acknowledged publish reaches every
//! subscriber exactly once and in offset order, or falls inside a `Gap` the subscriber was told
//! about: nothing is lost silently. The one repeat allowed is a publish in flight when Redis
//! lost everything, dedupe records included: applied in the old epoch and again in the new
//! one, with the epoch-change gap between the two copies.
//!
//! The Redis part is a `SharedRedis` (`support/cluster.rs`): the same run works on one server
//! and on a three-master Redis Cluster, where the three rooms hash to three different shards
//! and the restart is every master in turn.

mod support;

use std::{collections::HashMap, time::Duration};

use resocket::hub::{Gap, PendingAck, RoomEvent, Subscription};
use resocket_testkit::{within, FaultProxy, RedisCluster, RedisServer};
use support::cluster::{fast_client, Node, SharedRedis};
use tokio::sync::watch;

/// Acknowledged publishes in one run, over all rooms: publish `n` goes to room `n % 3`.
const COUNT: u64 = 10_000;
/// Publishes per pacing tick, one tick every [`TICK`]: about 1,000 a second, so the run spans
/// dozens of connection lifetimes while staying short on a busy machine.
const PER_TICK: u64 = 10;
const TICK: Duration = Duration::from_millis(10);
/// When, in publishes acknowledged so far, each fault happens.
const KILL_NODE_AT: u64 = 2_500;
const RESTART_NODE_AT: u64 = 4_000;
const RESTART_REDIS_AT: u64 = 6_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_redis_lose_nothing_silently_under_cuts_and_restarts() {
    let redis = RedisServer::start().expect("redis-server (scripts/deps/redis.sh)");
    let rooms = ["chaos-a", "chaos-b", "chaos-c"].map(String::from);
    within(240, "cluster chaos", chaos(redis, rooms)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_a_redis_cluster_lose_nothing_silently_under_cuts_and_shard_restarts() {
    let cluster =
        RedisCluster::start().expect("redis-server and redis-cli (scripts/deps/redis.sh)");
    let rooms: [String; 3] = cluster
        .rooms_on_every_shard(|room| format!("resocket:{{r:{room}}}:m"))
        .expect("the cluster answers")
        .try_into()
        .expect("one room per shard of three");
    within(
        240,
        "cluster chaos on a redis cluster",
        chaos(cluster, rooms),
    )
    .await;
}

/// What a subscriber saw in one room, in order.
#[derive(Debug)]
enum Seen {
    Message { epoch: u64, offset: u64, n: u64 },
    Gap(Gap),
}

/// The run, on any shared Redis, publishing into `rooms`.
async fn chaos<R: SharedRedis + 'static>(redis: R, rooms: [String; 3]) {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        // History long enough for any reconnect: only the Redis restart may cost messages.
        nodes.push(Node::start(&redis.url(), 1_000_000).await);
    }
    let mut proxies = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let proxy = FaultProxy::start(node.addr()).await;
        proxy.set_random_cuts(
            Duration::from_millis(200),
            Duration::from_millis(600),
            i as u64 + 1,
        );
        proxies.push(proxy);
    }
    // Client `home` tries the proxy of node `home` first, then the others in turn.
    let endpoints = |home: usize| -> Vec<String> {
        (0..proxies.len())
            .map(|k| format!("ws://{}/ws", proxies[(home + k) % proxies.len()].addr()))
            .collect()
    };

    let mut subscribers = Vec::new();
    // `readers[home][r]`: what subscriber `home` saw in room `r`.
    let mut readers = Vec::new();
    for home in 0..3 {
        let subscriber = fast_client(&endpoints(home));
        let mut per_room = Vec::new();
        for room in &rooms {
            let sub = subscriber.subscribe(room).await.expect("subscribe");
            let label = format!("subscriber {home} in {room}");
            per_room.push(tokio::spawn(read_until_end(label, sub)));
        }
        subscribers.push(subscriber);
        readers.push(per_room);
    }

    let (acked_tx, acked_rx) = watch::channel(0u64);
    let faults = tokio::spawn(inject_faults(redis, nodes, acked_rx));

    let publisher = fast_client(&endpoints(0));
    let (pending_tx, mut pending_rx) =
        tokio::sync::mpsc::unbounded_channel::<(usize, u64, PendingAck)>();
    let collector = tokio::spawn(async move {
        // Per room, (publish number, acknowledged offset) in publish order.
        let mut acks: [Vec<(u64, u64)>; 3] = Default::default();
        let mut total = 0;
        while let Some((r, n, pending)) = pending_rx.recv().await {
            acks[r].push((n, pending.await.expect("every publish is acknowledged")));
            total += 1;
            acked_tx.send_replace(total);
        }
        acks
    });
    let mut pace = tokio::time::interval(TICK);
    for n in 0..COUNT {
        if n % PER_TICK == 0 {
            pace.tick().await;
        }
        let r = (n % 3) as usize;
        let pending = publisher
            .start_publish(&rooms[r], &serde_json::json!({ "n": n }))
            .await
            .expect("publish");
        pending_tx
            .send((r, n, pending))
            .expect("the collector runs");
    }
    drop(pending_tx);
    let acks = collector.await.expect("the collector");
    let (redis, mut nodes) = faults.await.expect("the faults");
    for room in &rooms {
        publisher
            .publish(room, &serde_json::json!({ "end": true }))
            .await
            .expect("the end marker");
    }

    // `streams[r][s]`: what subscriber `s` saw in room `r`.
    let mut streams: [Vec<Vec<Seen>>; 3] = Default::default();
    for per_room in readers {
        for (r, reader) in per_room.into_iter().enumerate() {
            streams[r].push(reader.await.expect("a subscriber"));
        }
    }
    drop(subscribers);
    let cuts: usize = proxies.iter().map(FaultProxy::cuts).sum();
    let gaps = streams
        .iter()
        .flatten()
        .flatten()
        .filter(|s| matches!(s, Seen::Gap(_)))
        .count();
    let stories = || {
        rooms
            .iter()
            .zip(&streams)
            .map(|(room, streams)| story(room, streams))
            .collect::<String>()
    };
    println!(
        "{cuts} connection cuts, {gaps} gaps reported\n{}",
        stories()
    );
    assert!(cuts > 30, "only {cuts} cuts: too few reconnects to tell");
    let failures: Vec<String> = rooms
        .iter()
        .zip(&acks)
        .zip(&streams)
        .flat_map(|((room, acks), streams)| check(room, acks, streams))
        .collect();
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        stories()
    );
    for node in &mut nodes {
        node.kill().await;
    }
    drop(redis);
}

/// Reads one room until the end marker; `label` names the subscriber and room in a panic.
async fn read_until_end(label: String, mut room: Subscription) -> Vec<Seen> {
    let mut seen = Vec::with_capacity((COUNT / 3 + 1) as usize);
    loop {
        let event = room
            .recv()
            .await
            .unwrap_or_else(|| panic!("{label}: the stream ended"));
        match event {
            RoomEvent::Message(msg) => {
                let value: serde_json::Value = msg.decode().expect("json");
                let Some(n) = value["n"].as_u64() else {
                    // The end marker, published once every count was acknowledged.
                    return seen;
                };
                seen.push(Seen::Message {
                    epoch: msg.epoch,
                    offset: msg.offset,
                    n,
                });
            }
            RoomEvent::Gap(gap) => seen.push(Seen::Gap(gap)),
            other => panic!("{label}: unexpected {other:?}"),
        }
    }
}

/// Kills and restarts node 1 and restarts Redis as the acknowledged count passes each mark;
/// hands Redis and the nodes back for the end of the run.
async fn inject_faults<R: SharedRedis + 'static>(
    redis: R,
    mut nodes: Vec<Node>,
    mut acked: watch::Receiver<u64>,
) -> (R, Vec<Node>) {
    acked.wait_for(|n| *n >= KILL_NODE_AT).await.unwrap();
    nodes[1].kill().await;
    acked.wait_for(|n| *n >= RESTART_NODE_AT).await.unwrap();
    nodes[1].restart().await;
    acked.wait_for(|n| *n >= RESTART_REDIS_AT).await.unwrap();
    // The restart waits for Redis to answer; the publisher keeps going meanwhile.
    let redis = tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        redis.restart().expect("redis comes back");
        redis
    })
    .await
    .unwrap();
    (redis, nodes)
}

/// Where a message of one room was seen, by any subscriber: its (epoch, offset) for each
/// publish number.
fn locations(streams: &[Vec<Seen>]) -> HashMap<u64, Vec<(u64, u64)>> {
    let mut at: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for seen in streams.iter().flatten() {
        if let Seen::Message { epoch, offset, n } = seen {
            at.entry(*n).or_default().push((*epoch, *offset));
        }
    }
    at
}

/// Every way the subscribers' `streams` of `room` break the promise for its `acks` (publish
/// number, acknowledged offset), one line each: a publish missing from a stream with no gap
/// covering it, a publish delivered twice (except once in each epoch around Redis's
/// empty restart, which forgets dedupe records too), an offset out of order, a skip with no
/// gap, a new epoch not replayed from its start.
fn check(room: &str, acks: &[(u64, u64)], streams: &[Vec<Seen>]) -> Vec<String> {
    let at = locations(streams);
    let mut failures = Vec::new();
    for (s, stream) in streams.iter().enumerate() {
        // (epoch, first offset, end offset exclusive) ranges that a reported gap covers.
        let mut covered: Vec<(Option<u64>, u64, u64)> = Vec::new();
        let mut position: Option<(u64, u64)> = None;
        // Between an epoch-change gap and the new epoch's first message.
        let mut new_epoch_pending = false;
        // The epochs that began after an epoch-change gap.
        let mut epoch_changes: Vec<u64> = Vec::new();
        let mut applied_again = 0;
        // Per publish number, the epochs it was delivered in, in order.
        let mut delivered: HashMap<u64, Vec<u64>> = HashMap::new();
        for seen in stream {
            match seen {
                Seen::Gap(gap) => {
                    let (epoch, last) = position.map_or((None, 0), |(e, l)| (Some(e), l));
                    if gap.from != last + 1 {
                        failures.push(format!(
                            "subscriber {s} in {room}: {gap:?} after offset {last}"
                        ));
                    }
                    if gap.epoch_changed {
                        covered.push((epoch, gap.from, u64::MAX));
                        new_epoch_pending = true;
                    } else {
                        let end = gap.resumes_at.unwrap_or(u64::MAX);
                        covered.push((epoch, gap.from, end));
                        if let Some(e) = epoch {
                            position = Some((e, end - 1));
                        }
                    }
                }
                Seen::Message { epoch, offset, n } => {
                    delivered.entry(*n).or_default().push(*epoch);
                    match position {
                        Some((e, last)) if e == *epoch && *offset != last + 1 => {
                            failures.push(format!(
                                "subscriber {s} in {room}: offset {offset} after {last} in epoch {e} with no gap"
                            ));
                        }
                        Some((e, _)) if e == *epoch => {}
                        Some((e, _)) => {
                            if !new_epoch_pending {
                                failures.push(format!(
                                    "subscriber {s} in {room}: epoch {e} became {epoch} with no gap"
                                ));
                            }
                            // The gap covers the old epoch's tail only: the new epoch is all
                            // still held (the history is long), so it is replayed from its start.
                            if *offset != 1 {
                                failures.push(format!(
                                    "subscriber {s} in {room}: epoch {epoch} starts at offset {offset}, skipping what is still held"
                                ));
                            }
                        }
                        None => {}
                    }
                    if new_epoch_pending {
                        epoch_changes.push(*epoch);
                    }
                    new_epoch_pending = false;
                    position = Some((*epoch, *offset));
                }
            }
        }
        let is_covered = |epoch: Option<u64>, offset: u64| {
            covered.iter().any(|(e, lo, hi)| {
                epoch.is_none_or(|epoch| *e == Some(epoch)) && (*lo..*hi).contains(&offset)
            })
        };
        let mut lost = Vec::new();
        for &(n, acked_offset) in acks {
            match delivered.get(&n).map(Vec::as_slice) {
                Some([_]) => {}
                // Redis restarted empty forgets which publishes it applied, too: one in flight
                // then may be applied again in the new epoch. The epoch-change gap between the
                // two copies says that history was lost; within an epoch, a repeat is a bug.
                Some([first, second]) if first != second && epoch_changes.contains(second) => {
                    applied_again += 1;
                }
                Some(epochs) => failures.push(format!(
                    "subscriber {s} in {room}: {n} delivered {} times, in epochs {epochs:?}",
                    epochs.len()
                )),
                None => {
                    let inside_a_gap = match at.get(&n) {
                        Some(places) => places.iter().any(|&(e, o)| is_covered(Some(e), o)),
                        // Seen by no subscriber, so its epoch is unknown: the ack's offset in any
                        // epoch this subscriber has a gap in.
                        None => is_covered(None, acked_offset),
                    };
                    if !inside_a_gap {
                        lost.push(n);
                    }
                }
            }
        }
        if applied_again > 0 {
            println!(
                "subscriber {s} in {room}: {applied_again} publishes applied again after Redis restarted empty"
            );
        }
        if !lost.is_empty() {
            failures.push(format!(
                "subscriber {s} in {room}: {} publishes lost with no gap, first {:?}",
                lost.len(),
                &lost[..lost.len().min(20)]
            ));
        }
    }
    failures
}

/// Each subscriber's gaps and epoch changes in `room` with the messages around them, to read a
/// failure.
fn story(room: &str, streams: &[Vec<Seen>]) -> String {
    let mut out = String::new();
    for (s, stream) in streams.iter().enumerate() {
        let mut previous: Option<(u64, u64, u64)> = None;
        let mut after_gap = false;
        for seen in stream {
            match seen {
                Seen::Gap(gap) => {
                    out.push_str(&format!(
                        "subscriber {s} in {room}: after {previous:?}: {gap:?}\n"
                    ));
                    after_gap = true;
                }
                Seen::Message { epoch, offset, n } => {
                    let changed = previous.is_some_and(|(e, _, _)| e != *epoch);
                    if after_gap || changed {
                        out.push_str(&format!(
                            "subscriber {s} in {room}: {previous:?} then {:?}\n",
                            (epoch, offset, n)
                        ));
                    }
                    after_gap = false;
                    previous = Some((*epoch, *offset, *n));
                }
            }
        }
    }
    out
}
