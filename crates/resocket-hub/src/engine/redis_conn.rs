//! Where the Redis engine's Redis is (one server, or a Redis Cluster's seed nodes) and the
//! command connection to it, which routes each command by its first key on a cluster.
//!
//! One URL is one server; two or more comma-separated URLs are a cluster's seed nodes. The
//! choice is made from the URLs alone, so a hub starts (and answers `unavailable`) while Redis
//! is down, as it does with one server; asking the server would need it up at start.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo as _, ProtocolVersion, PushInfo};
use tokio::sync::mpsc;

/// The first pause before a connection is made again; it doubles up to [`MAX_PAUSE`].
pub(super) const MIN_PAUSE: Duration = Duration::from_millis(50);
pub(super) const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Where the engine's Redis is.
#[derive(Debug, Clone)]
pub(crate) enum Servers {
    /// One server: plain pub/sub, and `MULTI` around the test's transactions.
    Single(redis::Client),
    /// A Redis Cluster, by two or more of its nodes: sharded pub/sub (Redis 7).
    Cluster(Vec<redis::ConnectionInfo>),
}

/// Reads the engine's Redis from `urls`: one URL (`redis://`, `rediss://`, `redis+unix://`,
/// `unix://`) is one server; several, comma-separated (`redis://a:7000,redis://b:7001`), are
/// seed nodes of a Redis Cluster.
///
/// # Errors
///
/// No URL, or one that cannot be parsed.
pub(crate) fn client(urls: &str) -> Result<Servers, String> {
    let urls: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    match urls[..] {
        [] => Err("no redis url".into()),
        [url] => redis::Client::open(url)
            .map(Servers::Single)
            .map_err(|e| e.to_string()),
        _ => urls
            .iter()
            .map(|url| url.into_connection_info())
            .collect::<redis::RedisResult<Vec<_>>>()
            .map(Servers::Cluster)
            .map_err(|e| e.to_string()),
    }
}

/// The command connection: cheap to clone, made lazily and remade after a failure.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// A lazy connection to `servers`, each operation bounded by `timeout`.
    ///
    /// Must be called within a Tokio runtime.
    pub(super) fn new(servers: &Servers, timeout: Duration) -> Result<Conn, String> {
        match servers {
            Servers::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(MAX_PAUSE);
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map(Conn::Single)
                    .map_err(|e| e.to_string())
            }
            Servers::Cluster(nodes) => {
                let client = cluster_builder(nodes, timeout)
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(Conn::Cluster(
                    client.get_pending_async_connection_with_config(
                        redis::cluster::ClusterConfig::new(),
                    ),
                ))
            }
        }
    }
}

/// The cluster's settings shared by the command and the pub/sub connection.
fn cluster_builder(nodes: &[redis::ConnectionInfo], timeout: Duration) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(timeout)
        .response_timeout(timeout)
}

/// A cluster connection for sharded pub/sub: RESP3, every push (messages, subscription
/// confirmations, disconnections) sent to `pushes`. The connection subscribes again on its
/// own after a reconnect or a slot move, and says so with a fresh `ssubscribe` push.
pub(super) fn cluster_pubsub(
    nodes: &[redis::ConnectionInfo],
    timeout: Duration,
    pushes: mpsc::UnboundedSender<PushInfo>,
) -> Result<ClusterConnection, String> {
    let client: ClusterClient = cluster_builder(nodes, timeout)
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(client.get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new()))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{client, Conn, Servers};

    #[test]
    fn one_url_is_one_server_and_several_are_a_cluster() {
        assert!(matches!(
            client("redis+unix:///tmp/redis.sock"),
            Ok(Servers::Single(_))
        ));
        match client(" redis://127.0.0.1:7000 , redis://127.0.0.1:7001,") {
            Ok(Servers::Cluster(nodes)) => assert_eq!(nodes.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(client(" , ").is_err());
        assert!(client("redis://127.0.0.1:7000,nonsense://x").is_err());
    }

    #[test]
    fn a_cluster_of_unix_sockets_is_refused_at_start() {
        let servers = client("redis+unix:///tmp/a.sock,redis+unix:///tmp/b.sock").unwrap();
        let refused = Conn::new(&servers, std::time::Duration::from_secs(1)).err();
        assert!(refused.is_some_and(|e| e.contains("unix socket")));
    }
}
