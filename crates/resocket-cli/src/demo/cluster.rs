//! `resocket demo --cluster`: the same traffic as the single-node demo, over three hub nodes
//! that share one Redis, each behind a chaos proxy. A node is killed (SIGKILL) and started
//! again every few seconds, and Redis itself is killed and restarted once; nothing may be lost
//! or duplicated.
//!
//! The nodes are child processes (`resocket serve --redis`, this same program), not hubs in
//! this process: a kill is then a real crash, with no graceful path, its sockets and Redis
//! connections gone at once, and a restarted node is a fresh process that knows only what
//! Redis holds. Redis keeps an append-only file synced on every write, as a production Redis
//! that must survive a restart does.

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use resocket_testkit::FaultProxy;
use tokio::sync::watch;

use super::{
    chaos_proxy,
    node::{Node, NodeState},
    redis::LocalRedis,
    Traffic,
};
use crate::cli::DemoArgs;

const NODES: usize = 3;
/// A node is killed this often…
const KILL_EVERY: Duration = Duration::from_secs(3);
/// …and stays down this long.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// The first kill comes at this point of the run, or a third of the way in if that is sooner.
const FIRST_KILL: Duration = Duration::from_secs(2);

pub(super) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let redis = LocalRedis::start().await?;
    let mut nodes = Vec::with_capacity(NODES);
    for _ in 0..NODES {
        nodes.push(Node::start(&redis.url()).await?);
    }
    let mut proxies = Vec::with_capacity(NODES);
    for (i, node) in nodes.iter().enumerate() {
        proxies.push(Arc::new(
            chaos_proxy(node.addr(), seed.wrapping_add(i as u64)).await,
        ));
    }
    let urls: Vec<String> = proxies
        .iter()
        .map(|p| format!("ws://{}/ws", p.addr()))
        .collect();
    eprintln!(
        "[demo] redis on {} (append-only, synced on every write); hub nodes on {}, each behind a chaos proxy cutting every connection after 200-600 ms (seed {seed})",
        redis.url(),
        nodes
            .iter()
            .map(|n| n.addr().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );

    // Client `i` starts on node `i % NODES` and knows the others, in turn.
    let rotation = |home: usize| -> Vec<String> {
        (0..NODES)
            .map(|k| urls[(home + k) % NODES].clone())
            .collect()
    };
    let traffic = Traffic::start(&args, NODES, rotation, rotation).await?;
    let status = {
        let states: Vec<Arc<NodeState>> = nodes.iter().map(Node::state).collect();
        let proxies = proxies.clone();
        let clients = traffic.clients();
        let urls = urls.clone();
        traffic.show_status(move || node_status(&states, &proxies, &clients, &urls))
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let duration = Duration::from_secs_f64(args.duration);
    let faults = tokio::spawn(restart_nodes_and_redis(nodes, redis, duration, stop_rx));
    let published = traffic.publish(&args).await;
    // Every node is up again before the wait for the last deliveries.
    let _ = stop_tx.send(true);
    let (nodes, redis, faults) = faults.await??;
    let mut outcome = traffic.finish(published).await;
    status.abort();
    outcome.cuts = proxies.iter().map(|p| p.cuts()).sum();
    drop(proxies);
    drop(nodes);
    drop(redis);
    Ok(outcome.report(&format!(
        " nodes={NODES} node_restarts={} redis_restarts={}",
        faults.node_restarts, faults.redis_restarts
    )))
}

/// `nodes 1 up 2c | 2 down 0c | 3 up 4c  restarts 3  cuts 120`: whether each node is up and
/// how many clients are on it now.
fn node_status(
    states: &[Arc<NodeState>],
    proxies: &[Arc<FaultProxy>],
    clients: &[resocket::Client],
    urls: &[String],
) -> String {
    let mut on = vec![0usize; urls.len()];
    for client in clients {
        let snapshot = client.snapshot();
        if !snapshot.state.is_ready() {
            continue;
        }
        if let Some(i) = snapshot
            .endpoint
            .as_deref()
            .and_then(|e| urls.iter().position(|u| u == e))
        {
            on[i] += 1;
        }
    }
    let nodes: Vec<String> = states
        .iter()
        .zip(&on)
        .enumerate()
        .map(|(i, (state, on))| {
            let up = if state.is_up() { "up  " } else { "DOWN" };
            format!("{} {up} {on}c", i + 1)
        })
        .collect();
    let restarts: u64 = states.iter().map(|s| s.restarts()).sum();
    let cuts: usize = proxies.iter().map(|p| p.cuts()).sum();
    format!(
        "nodes {}  restarts {restarts:>2}  cuts {cuts:>4}",
        nodes.join(" | ")
    )
}

/// What [`restart_nodes_and_redis`] did.
struct Faults {
    node_restarts: u64,
    redis_restarts: u64,
}

/// Kills a node (each in turn) every [`KILL_EVERY`], starting it again [`DOWN_FOR`] later, and
/// restarts Redis once halfway through `duration`, until told to stop; returns with every node
/// up, handing the servers back.
async fn restart_nodes_and_redis(
    mut nodes: Vec<Node>,
    mut redis: LocalRedis,
    duration: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(Vec<Node>, LocalRedis, Faults)> {
    let started = Instant::now();
    let redis_at = started + duration / 2;
    let mut next_kill = started + FIRST_KILL.min(duration / 3);
    let mut faults = Faults {
        node_restarts: 0,
        redis_restarts: 0,
    };
    let mut victim = 0;
    loop {
        let redis_due = faults.redis_restarts == 0 && redis_at <= next_kill;
        let at = if redis_due { redis_at } else { next_kill };
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            () = tokio::time::sleep_until(at.into()) => {}
        }
        if redis_due {
            redis.restart().await?;
            faults.redis_restarts += 1;
            continue;
        }
        nodes[victim].kill().await;
        // Down for a while even when told to stop meanwhile: the restart comes either way.
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => {}
            () = tokio::time::sleep(DOWN_FOR) => {}
        }
        nodes[victim].restart().await?;
        faults.node_restarts += 1;
        victim = (victim + 1) % nodes.len();
        next_kill += KILL_EVERY;
    }
    Ok((nodes, redis, faults))
}
