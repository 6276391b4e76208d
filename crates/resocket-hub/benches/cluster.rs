//! Scaling bench: the same fan-out on (a) one node on the memory engine, (b) one node on Redis,
//! (c) three nodes on one Redis with the subscribers spread evenly, in one run; plus Redis
//! commands per publish.
//!
//! Run: `cargo bench -p resocket-hub --bench cluster` (needs `redis-server`, started through the
//! test kit). Scale with `CLUSTER_SUBS` (default 300), `CLUSTER_MSGS` (messages per pass,
//! default 600), `CLUSTER_BATCH` (messages per round, default 50) and `CLUSTER_PASSES` (passes
//! per setup, default 2).
//!
//! The pass is the fan-out bench's (`support::fanout::run`): bare-socket subscribers, one
//! publisher sending closed-loop rounds, publish-to-deliver latency of every delivery. Every
//! node runs in this process, so on a small machine the nodes share its cores: the three-node
//! figures show what the Redis hop costs and that fan-out spreads, not a speed-up.
//!
//! Redis per publish, read with `INFO` around each pass's publishing (after its subscribers
//! are in, so subscribes are not counted): round trips (`INFO commandstats` calls of `evalsha`
//! and `eval`, the hub's one call per publish), commands executed (`INFO stats`
//! `total_commands_processed`, which counts the script's own commands too), and Redis CPU
//! (`INFO cpu`, `used_cpu_sys` + `used_cpu_user`); the bench's own `INFO`s are left out.
//! Nodes announce themselves in `$nodes` only once an hour here, so that no background call is
//! counted.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use resocket_hub::Hub;
use resocket_testkit::RedisServer;
use support::fanout::{env, hub_metrics, metric, run, Kind, Subscribers, Totals};
use tokio::net::TcpListener;

/// Starts a node (memory engine unless `redis` is given) and returns its `/ws` URL.
async fn node(redis: Option<&str>, subs: usize, id: &str) -> String {
    let mut builder = Hub::builder()
        .allow_anonymous(true)
        .rate_limit(1_000_000, 1_000_000)
        .max_connections(subs + 100)
        .node_id(id)
        .stats_interval(Duration::from_secs(3600));
    if let Some(url) = redis {
        builder = builder.redis(url);
    }
    let hub = builder.build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(hub.serve_with_shutdown(listener, std::future::pending()));
    url
}

/// `INFO` sections as `field -> value`.
async fn info(conn: &mut MultiplexedConnection, section: &str) -> BTreeMap<String, String> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// What Redis counted: every command processed, calls per command, CPU seconds.
#[derive(Debug, Default, Clone)]
struct Counted {
    total: u64,
    calls: BTreeMap<String, u64>,
    cpu: f64,
}

/// The bench's own commands in one [`counted`]: three `INFO`s.
const OWN_COMMANDS: u64 = 3;

async fn counted(conn: &mut MultiplexedConnection) -> Counted {
    let total = info(conn, "stats").await["total_commands_processed"]
        .parse()
        .unwrap();
    let cpu_info = info(conn, "cpu").await;
    let cpu = ["used_cpu_sys", "used_cpu_user"]
        .iter()
        .map(|k| cpu_info[*k].parse::<f64>().unwrap())
        .sum();
    let calls = info(conn, "commandstats")
        .await
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("cmdstat_")?.to_string();
            let calls = v.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
            Some((name, calls))
        })
        .collect();
    Counted { total, calls, cpu }
}

impl Counted {
    /// What happened between `before` and `self`, without the bench's own `INFO`s.
    fn since(&self, before: &Counted) -> Counted {
        let calls = self
            .calls
            .iter()
            .filter(|(cmd, _)| *cmd != "info")
            .map(|(cmd, n)| (cmd.clone(), n - before.calls.get(cmd).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        Counted {
            total: self.total - before.total - OWN_COMMANDS,
            calls,
            cpu: self.cpu - before.cpu,
        }
    }

    fn add(&mut self, other: &Counted) {
        self.total += other.total;
        for (cmd, n) in &other.calls {
            *self.calls.entry(cmd.clone()).or_default() += n;
        }
        self.cpu += other.cpu;
    }
}

/// One setup's result.
struct Row {
    name: &'static str,
    totals: Totals,
    /// What Redis did for the passes' publishes; `None` on the memory engine.
    redis: Option<Counted>,
    publishes: usize,
    /// Mean Redis round trip seen by the nodes, from their `/metrics`.
    redis_rtt: Option<Duration>,
}

struct Load {
    subs: usize,
    msgs: usize,
    batch: usize,
    passes: usize,
}

async fn measure(
    name: &'static str,
    urls: &[String],
    redis: Option<&mut MultiplexedConnection>,
    load: &Load,
) -> Row {
    let Load {
        subs,
        msgs,
        batch,
        passes,
    } = *load;
    // Uncounted warm-up: connections, rooms watched, scripts loaded into Redis.
    run(urls, &urls[0], Kind::Hub, false, subs, batch * 2, batch).await;
    let mut redis = redis;
    let mut counted_total: Option<Counted> = redis.as_ref().map(|_| Counted::default());
    let mut totals = Totals::default();
    for pass in 1..=passes {
        let subscribers = Subscribers::connect(urls, Kind::Hub, false, subs, msgs)
            .await
            .expect("no compression asked");
        let before = match redis.as_deref_mut() {
            Some(conn) => Some(counted(conn).await),
            None => None,
        };
        let p = subscribers.publish(&urls[0], batch).await;
        if let (Some(conn), Some(before), Some(sum)) =
            (redis.as_deref_mut(), before, counted_total.as_mut())
        {
            sum.add(&counted(conn).await.since(&before));
        }
        println!(
            "{name}, pass {pass}: {:>10.0} deliveries/s",
            p.deliveries as f64 / p.elapsed.as_secs_f64()
        );
        totals.add(p);
    }
    let mut sum = 0.0;
    let mut count = 0.0;
    for url in urls {
        let m = hub_metrics(url).await;
        sum += metric(&m, "resocket_hub_redis_round_trip_seconds_sum");
        count += metric(&m, "resocket_hub_redis_round_trip_seconds_count");
    }
    let redis_rtt = (count > 0.0).then(|| Duration::from_secs_f64(sum / count));
    Row {
        name,
        totals,
        redis: counted_total,
        publishes: msgs * passes,
        redis_rtt,
    }
}

#[tokio::main]
async fn main() {
    let load = Load {
        subs: env("CLUSTER_SUBS", 300),
        msgs: env("CLUSTER_MSGS", 600),
        batch: env("CLUSTER_BATCH", 50),
        passes: env("CLUSTER_PASSES", 2),
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "cluster: 1 publisher, {} subscribers, {} messages of 128 B in rounds of {}, {} passes per setup; load average {}",
        load.subs,
        load.msgs,
        load.batch,
        load.passes,
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let server = RedisServer::start().expect("redis-server (scripts/deps/redis.sh)");
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();

    let mut rows = Vec::new();
    let memory = node(None, load.subs, "memory-1").await;
    rows.push(measure("1 node, memory", &[memory], None, &load).await);
    let url = server.url();
    let one = node(Some(&url), load.subs, "redis-1").await;
    rows.push(measure("1 node, redis", &[one], Some(&mut conn), &load).await);
    let mut three = Vec::new();
    for i in 1..=3 {
        three.push(node(Some(&url), load.subs, &format!("cluster-{i}")).await);
    }
    rows.push(measure("3 nodes, redis", &three, Some(&mut conn), &load).await);

    println!();
    println!(
        "{:<16} {:>14} {:>10} {:>10} {:>10} {:>10}  per publish: redis round trips, commands, CPU",
        "setup", "deliveries/s", "p50", "p99", "max", "redis rtt"
    );
    for mut row in rows {
        let (per_sec, p50, p99, max) = (
            row.totals.per_sec(),
            row.totals.percentile(0.50),
            row.totals.percentile(0.99),
            row.totals.max(),
        );
        let rtt = row
            .redis_rtt
            .map_or_else(|| "-".to_string(), |d| format!("{d:.2?}"));
        let per_publish = row.redis.as_ref().map_or_else(
            || "-".to_string(),
            |c| {
                let n = row.publishes as f64;
                let trips = ["evalsha", "eval"]
                    .iter()
                    .filter_map(|cmd| c.calls.get(*cmd))
                    .sum::<u64>() as f64;
                let calls: Vec<String> = c
                    .calls
                    .iter()
                    .map(|(cmd, k)| format!("{cmd} {:.2}", *k as f64 / n))
                    .collect();
                format!(
                    "{:.2}, {:.2} ({}), {:.1} µs",
                    trips / n,
                    c.total as f64 / n,
                    calls.join(" "),
                    c.cpu * 1e6 / n
                )
            },
        );
        println!(
            "{:<16} {:>14.0} {:>10.2?} {:>10.2?} {:>10.2?} {:>10}  {per_publish}",
            row.name, per_sec, p50, p99, max, rtt
        );
    }
}
