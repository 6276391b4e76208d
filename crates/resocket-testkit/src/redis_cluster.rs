//! A throwaway three-master Redis Cluster (`redis-server --cluster-enabled yes` on free ports,
//! joined by `redis-cli --cluster create`), for tests of the hub's Redis engine on a cluster.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::{not_installed, redis_server, scratch_dir};

/// How long the nodes get to answer `PING`, and the cluster to report `cluster_state:ok`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The masters of the cluster.
const MASTERS: usize = 3;

/// One node of a [`RedisCluster`].
#[derive(Debug)]
struct Node {
    child: Child,
    port: u16,
    bus: u16,
    dir: PathBuf,
}

/// A local Redis Cluster of three masters and no replicas, each a `redis-server` child process
/// on `127.0.0.1` with its own directory (and `nodes.conf`) under one temp dir, without
/// persistence. Every process is killed and the directory removed when dropped.
///
/// Ports are found free by binding `127.0.0.1:0`; the cluster bus port of each node is chosen
/// the same way (`--cluster-port`), not derived as port + 10000.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    /// Each master's slot ranges, inclusive, in the order of [`urls`](Self::urls).
    slots: Vec<Vec<(u16, u16)>>,
}

impl RedisCluster {
    /// Starts three nodes, joins them into one cluster with every slot assigned, and waits
    /// until each node reports `cluster_state:ok`.
    ///
    /// # Errors
    ///
    /// `redis-server` or `redis-cli` is not installed (the message names
    /// `scripts/deps/redis.sh`), `redis-cli --cluster create` failed, or the cluster was not
    /// ready within thirty seconds.
    pub fn start() -> io::Result<RedisCluster> {
        let dir = scratch_dir("resocket-redis-cluster")?;
        let mut cluster = RedisCluster {
            nodes: Vec::with_capacity(MASTERS),
            dir,
            slots: Vec::new(),
        };
        // Dropping `cluster` on an early return kills what was started.
        for i in 0..MASTERS {
            let node_dir = cluster.dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir)?;
            let (port, bus) = (free_port()?, free_port()?);
            let child = spawn(&node_dir, port, bus)?;
            cluster.nodes.push(Node {
                child,
                port,
                bus,
                dir: node_dir,
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        for node in &cluster.nodes {
            wait_until(deadline, "answer PING", || {
                Ok(command(node.port, &["PING"]).is_ok_and(|r| r == "PONG"))
            })?;
        }
        cluster.create()?;
        cluster.wait_until_ok(deadline)?;
        cluster.slots = cluster.read_slots()?;
        Ok(cluster)
    }

    fn wait_until_ok(&self, deadline: Instant) -> io::Result<()> {
        for node in &self.nodes {
            wait_until(deadline, "report cluster_state:ok", || {
                Ok(command(node.port, &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok")))
            })?;
        }
        Ok(())
    }

    /// Kills the master of shard `shard` now (an outage of that shard); the others stay up.
    pub fn kill_shard(&mut self, shard: usize) {
        let node = &mut self.nodes[shard];
        let _ = node.child.kill();
        let _ = node.child.wait();
    }

    /// Starts the master of shard `shard` again after [`kill_shard`](Self::kill_shard), on
    /// the same ports and `nodes.conf` (so it takes its slots back) but empty, since nothing is
    /// persisted, and waits until every node reports `cluster_state:ok`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn restart_shard(&mut self, shard: usize) -> io::Result<()> {
        self.kill_shard(shard);
        let node = &mut self.nodes[shard];
        node.child = spawn(&node.dir, node.port, node.bus)?;
        self.wait_until_ok(Instant::now() + START_TIMEOUT)
    }

    /// `redis-cli --cluster create` over every node, one master each, no replicas.
    fn create(&self) -> io::Result<()> {
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| not_installed(e, "redis-cli"))?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        Ok(())
    }

    /// Each node's slot ranges, from its own line of `CLUSTER NODES` (flag `myself`).
    fn read_slots(&self) -> io::Result<Vec<Vec<(u16, u16)>>> {
        self.nodes
            .iter()
            .map(|node| {
                let nodes = command(node.port, &["CLUSTER", "NODES"])?;
                let mine = nodes
                    .lines()
                    .find(|line| line.split(' ').nth(2).is_some_and(|f| f.contains("myself")))
                    .ok_or_else(|| io::Error::other("CLUSTER NODES has no `myself` line"))?;
                Ok(mine
                    .split(' ')
                    .skip(8)
                    .filter_map(|range| match range.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => range.parse().ok().map(|s| (s, s)),
                    })
                    .collect())
            })
            .collect()
    }

    /// The seed URLs of every master, `redis://127.0.0.1:PORT`, in shard order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The seed URLs joined by commas, as `resocket serve --redis` and `HubBuilder::redis`
    /// take a cluster.
    pub fn url(&self) -> String {
        self.urls().join(",")
    }

    /// The shard (an index into [`urls`](Self::urls)) whose master holds `key`'s slot, as
    /// the cluster itself computes it (`CLUSTER KEYSLOT`, hash tags included).
    ///
    /// # Errors
    ///
    /// The first node did not answer.
    pub fn shard_of(&self, key: &str) -> io::Result<usize> {
        let slot: u16 = command(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])?
            .parse()
            .map_err(io::Error::other)?;
        self.slots
            .iter()
            .position(|ranges| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .ok_or_else(|| io::Error::other(format!("slot {slot} is not assigned")))
    }

    /// Moves the slot of `key`, with its keys, to shard `to` (`CLUSTER SETSLOT … IMPORTING` and
    /// `MIGRATING`, `MIGRATE`, then `SETSLOT … NODE` on every master), as a resharding would.
    /// Clients subscribed to the slot's shard channels on the old shard are unsubscribed by the
    /// server.
    ///
    /// # Errors
    ///
    /// A node did not answer or refused a step.
    pub fn move_slot_of(&mut self, key: &str, to: usize) -> io::Result<()> {
        let from = self.shard_of(key)?;
        if from == to {
            return Ok(());
        }
        let slot = command(self.nodes[from].port, &["CLUSTER", "KEYSLOT", key])?;
        let slot_n: u16 = slot.parse().map_err(io::Error::other)?;
        let id = |shard: usize| command(self.nodes[shard].port, &["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from)?, id(to)?);
        let (from_port, to_port) = (self.nodes[from].port, self.nodes[to].port);
        command(
            to_port,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id],
        )?;
        command(
            from_port,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id],
        )?;
        loop {
            let keys = command(from_port, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"])?;
            if keys.is_empty() {
                break;
            }
            let to_port = to_port.to_string();
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            migrate.extend(keys.lines());
            command(from_port, &migrate)?;
        }
        for node in &self.nodes {
            command(node.port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id])?;
        }
        for ranges in &mut self.slots {
            *ranges = split_out(ranges, slot_n);
        }
        self.slots[to].push((slot_n, slot_n));
        Ok(())
    }

    /// For each shard in order, a name (`room-0`, `room-1`, …) whose key `key_of(name)` that
    /// shard holds: rooms spread over every shard, for an application that derives its keys
    /// from a room's name.
    ///
    /// # Errors
    ///
    /// The first node did not answer.
    pub fn rooms_on_every_shard(&self, key_of: impl Fn(&str) -> String) -> io::Result<Vec<String>> {
        let mut rooms: Vec<Option<String>> = vec![None; self.nodes.len()];
        for i in 0.. {
            let room = format!("room-{i}");
            let shard = self.shard_of(&key_of(&room))?;
            rooms[shard].get_or_insert(room);
            if rooms.iter().all(Option::is_some) {
                break;
            }
        }
        Ok(rooms.into_iter().flatten().collect())
    }

    /// Sends one command to the master of shard `shard` and returns its reply as text (a
    /// simple, bulk or integer reply, or an array's elements one per line; an error reply is
    /// an error).
    ///
    /// # Errors
    ///
    /// The node did not answer, or answered with an error.
    pub fn command(&self, shard: usize, args: &[&str]) -> io::Result<String> {
        command(self.nodes[shard].port, args)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ranges` without `slot`.
fn split_out(ranges: &[(u16, u16)], slot: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for &(a, b) in ranges {
        if !(a..=b).contains(&slot) {
            out.push((a, b));
            continue;
        }
        if a < slot {
            out.push((a, slot - 1));
        }
        if slot < b {
            out.push((slot + 1, b));
        }
    }
    out
}

/// A port nobody listens on now: bound on `127.0.0.1:0`, then released.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_until(
    deadline: Instant,
    what: &str,
    mut ready: impl FnMut() -> io::Result<bool>,
) -> io::Result<()> {
    while !ready()? {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the redis cluster did not {what} within {START_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A cluster node on `port` (bus on `bus`), without persistence, its files in `dir`.
fn spawn(dir: &Path, port: u16, bus: u16) -> io::Result<Child> {
    redis_server(dir)
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-port", &bus.to_string()])
        .args(["--cluster-config-file", "nodes.conf"])
        .args(["--cluster-node-timeout", "2000"])
        .spawn()
        .map_err(|e| not_installed(e, "redis-server"))
}

/// One command in RESP on a fresh connection to `127.0.0.1:port`; the reply as text, an
/// array's elements one per line.
fn command(port: u16, args: &[&str]) -> io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    s.write_all(request.as_bytes())?;
    reply(&mut BufReader::new(s))
}

/// One RESP2 reply: simple, error, integer, bulk, or an array of those.
fn reply(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Err(io::Error::other(rest.to_string())),
        "$" => {
            let len: usize = rest.parse().map_err(io::Error::other)?;
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            String::from_utf8(body).map_err(io::Error::other)
        }
        "*" => {
            let len: usize = rest.parse().map_err(io::Error::other)?;
            let items = (0..len)
                .map(|_| reply(reader))
                .collect::<io::Result<Vec<_>>>()?;
            Ok(items.join("\n"))
        }
        _ => Err(io::Error::other(format!("unexpected reply {line:?}"))),
    }
}
