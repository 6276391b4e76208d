//! Hub nodes as `resocket serve --redis` processes on one shared Redis, and clients for them.

use std::{io, time::Duration};

use resocket::{
    hub::{HubClient, HubClientBuilder},
    retry::ExponentialBackoff,
};
use resocket_testkit::{RedisCluster, RedisServer};
use tokio::process::Child;

use super::binary::serve_on;

/// The Redis a cluster of hub nodes shares, as a test sees it: where the nodes find it, and an
/// outage on command. A single server and a Redis Cluster are both one of these, so a test
/// written against it runs on either.
pub trait SharedRedis: Send {
    /// The `--redis` URL every node is given.
    fn url(&self) -> String;

    /// Takes Redis down and brings it back, empty, before returning.
    ///
    /// # Errors
    /// Redis did not come back.
    fn restart(&mut self) -> io::Result<()>;
}

impl SharedRedis for RedisServer {
    fn url(&self) -> String {
        RedisServer::url(self)
    }

    fn restart(&mut self) -> io::Result<()> {
        RedisServer::restart(self)
    }
}

impl SharedRedis for RedisCluster {
    fn url(&self) -> String {
        RedisCluster::url(self)
    }

    /// Restarts every master in turn, each back empty on its `nodes.conf` (so with its slots)
    /// while the others serve: every room loses its history once, on its own shard, at its own
    /// moment.
    fn restart(&mut self) -> io::Result<()> {
        for shard in 0..self.urls().len() {
            self.restart_shard(shard)?;
        }
        Ok(())
    }
}

/// A client that reconnects within milliseconds, to `urls` in turn.
pub fn fast_client(urls: &[String]) -> HubClient {
    spawn_fast(HubClient::builder_with_endpoints(
        urls.iter().map(String::as_str),
    ))
}

/// Spawns the client `builder` sets up, reconnecting within milliseconds.
pub fn spawn_fast(builder: HubClientBuilder) -> HubClient {
    builder
        .configure(|b| {
            b.configure(|c| {
                c.backoff =
                    ExponentialBackoff::new(Duration::from_millis(10), Duration::from_millis(200))
            })
        })
        .spawn()
        .unwrap()
}

/// One `resocket serve --redis` process on a port of its own, which it keeps across restarts
/// so that whatever points at it (a proxy, a client's endpoint list) finds it again.
pub struct Node {
    child: Child,
    port: u16,
    args: Vec<String>,
}

impl Node {
    /// Starts a node on a free port: anonymous access, no rate limit to speak of, history
    /// `history` messages per room, rooms in `redis_url`.
    pub async fn start(redis_url: &str, history: usize) -> Node {
        let args = vec![
            "--allow-anonymous".to_owned(),
            "--rate-limit".to_owned(),
            "100000".to_owned(),
            "--history".to_owned(),
            history.to_string(),
            "--redis".to_owned(),
            redis_url.to_owned(),
        ];
        let (child, port) = serve_on(0, &args, &[]).await;
        Node { child, port, args }
    }

    /// The node's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `ws://127.0.0.1:PORT/ws`.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr())
    }

    /// The process, for signals and its exit status.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// SIGKILL: no Close frame, no drain, its Redis connections cut mid-command.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill the node");
    }

    /// Starts the node again on its port, after [`kill`](Self::kill).
    pub async fn restart(&mut self) {
        let (child, port) = serve_on(self.port, &self.args, &[]).await;
        assert_eq!(port, self.port, "the node came back on its port");
        self.child = child;
    }
}
