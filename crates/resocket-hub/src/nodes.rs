//! The `$nodes` system room and node ids: every node announces itself (id, engine,
//! connections, Redis round trip) into `$nodes` at the stats interval. On the Redis engine the
//! room is shared, so a subscriber on any node hears every node of the cluster.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use crate::engine::Engine as _;
use crate::hub::Hub;
use crate::latency::Totals;
use crate::metrics::{EngineKind, Metrics};

/// The system room where every node of a cluster announces itself; the dashboard lists them.
pub const NODES_ROOM: &str = "$nodes";

impl Hub {
    /// This node's id, as it appears in `/metrics`, `$stats` and `$nodes`: the one set with
    /// [`HubBuilder::node_id`](crate::HubBuilder::node_id); else `<host name>:<port>` once the
    /// hub [`serve`](Hub::serve)s plain `ws://` (so it may change when `serve` starts); else
    /// `<host name>-<6 hex digits>`, random per hub.
    pub fn node_id(&self) -> String {
        self.shared.node_id()
    }
}

/// What a node id is made of, fixed when the hub is built.
#[derive(Debug)]
pub(crate) struct NodeName {
    configured: Option<String>,
    host: String,
    /// Tells apart hubs on one host whose port is not known.
    suffix: u32,
}

impl NodeName {
    /// The parts of an id: `configured`, else the host name and a random suffix.
    pub(crate) fn new(configured: Option<String>) -> Self {
        NodeName {
            configured,
            host: host_name(),
            suffix: fastrand::u32(..1 << 24),
        }
    }

    /// The id: the configured one, else `<host>:<port>` with the listening address, else
    /// `<host>-<suffix>`.
    pub(crate) fn id(&self, addr: Option<std::net::SocketAddr>) -> String {
        match (&self.configured, addr) {
            (Some(id), _) => id.clone(),
            (None, Some(addr)) => format!("{}:{}", self.host, addr.port()),
            (None, None) => format!("{}-{:06x}", self.host, self.suffix),
        }
    }
}

/// The kernel's host name, else `$HOSTNAME`, else `hub`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hub".to_string())
}

/// What a node says of itself, in `$nodes` and inside `$stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct NodeFigures {
    /// The node's id.
    pub(crate) node: String,
    /// `memory` or `redis`.
    pub(crate) engine: &'static str,
    /// Open WebSocket connections.
    pub(crate) connections: u64,
    /// Active subscriptions.
    pub(crate) subscriptions: u64,
    /// The mean Redis round trip since the previous announcement (else the latest one), in
    /// microseconds; `null` on the memory engine or before the first call.
    pub(crate) redis_rtt_us: Option<u64>,
    /// Connections to Redis made again after a loss, since the node started.
    pub(crate) redis_reconnects: Option<u64>,
    /// Redis calls that failed or timed out, since the node started.
    pub(crate) redis_errors: Option<u64>,
    /// When the figures were taken: milliseconds since the Unix epoch, on the node's clock.
    pub(crate) at_ms: u64,
    /// How often the node announces itself, in milliseconds: a node silent for a few of these
    /// is gone.
    pub(crate) interval_ms: u64,
}

/// Takes [`NodeFigures`], keeping the Redis totals of the previous take for the mean.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    last: Totals,
}

impl Sampler {
    /// The node's figures now.
    pub(crate) fn take(&mut self, hub: &Hub) -> NodeFigures {
        let shared = &hub.shared;
        let m: &Metrics = &shared.metrics;
        let redis = m.engine() == EngineKind::Redis;
        let totals = m.redis.round_trips.totals();
        let rtt = totals
            .mean_since(self.last)
            .or((totals.count > 0).then_some(totals.last_us));
        self.last = totals;
        NodeFigures {
            node: shared.node_id(),
            engine: m.engine().label(),
            connections: m.connections.load(Relaxed),
            subscriptions: m.subscriptions.load(Relaxed),
            redis_rtt_us: rtt.filter(|_| redis),
            redis_reconnects: redis.then(|| m.redis.reconnects()),
            redis_errors: redis.then(|| m.redis.errors()),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            interval_ms: shared.config.stats_interval.as_millis() as u64,
        }
    }
}

/// Announces this node into `$nodes` every stats interval until shutdown. On the Redis engine
/// the announcement is appended through Redis (one round trip, which also keeps the node's
/// Redis round-trip figure fresh when it is otherwise idle); on the memory engine it goes to
/// the local room.
pub(crate) async fn run(hub: Hub) {
    let mut sampler = Sampler::default();
    // Like `$stats`, the first announcement waits one interval, so that a hub's figures right
    // after its start hold only what its clients did.
    let mut ticks = crate::stats::StatsTicks::start(&hub.shared).await;
    while ticks.next().await {
        let figures = sampler.take(&hub);
        let Ok(Ok(raw)) = serde_json::to_string(&figures).map(RawValue::from_string) else {
            continue;
        };
        let shared = &hub.shared;
        match shared.redis() {
            Some(engine) => {
                if let Err(error) = engine.append(NODES_ROOM, None, &raw).await {
                    tracing::debug!(%error, "node announcement not shared");
                }
            }
            None => {
                if let Ok(room) = shared.room(NODES_ROOM, None) {
                    room.publish(None, &raw, &shared.limits, &shared.metrics);
                    shared.enforce_history_budget();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_is_the_configured_one_else_host_and_port_else_host_and_random() {
        let addr: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(NodeName::new(Some("eu-1".into())).id(Some(addr)), "eu-1");
        let name = NodeName::new(None);
        let host = host_name();
        assert_eq!(name.id(Some(addr)), format!("{host}:8080"));
        let random = name.id(None);
        let suffix = random.strip_prefix(&format!("{host}-")).unwrap();
        assert_eq!(suffix.len(), 6, "{random}");
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{random}");
        assert_eq!(name.id(None), random, "the same hub keeps its id");
    }
}
