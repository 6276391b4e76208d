//! The Redis engine's pub/sub task on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`, Redis 7)
//! through one RESP3 cluster connection, which keeps a connection to each master and sends
//! every room's subscription to the shard that holds the room's slot, so a node subscribes only
//! to the rooms it has subscribers in, each on its own shard.
//!
//! When a node's connection drops (a `disconnection` push), this task subscribes every channel
//! again, until that succeeds; when a slot moves (an `sunsubscribe` push from the server), it
//! subscribes that channel again, on the slot's new shard. Each confirmation (an `ssubscribe`
//! push) is where it reads back, from the room's stream, whatever was published while the
//! subscription was gone: the same fill as after a reconnect on one server.

use std::time::Duration;

use futures_util::StreamExt as _;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::redis::{channel, channel_room, unavailable, Command, Watched, REVOKED};
use super::redis_conn::{cluster_pubsub, MAX_PAUSE, MIN_PAUSE};
use super::Unavailable;

/// How many channels are subscribed again at once after a lost connection.
const RESUBSCRIBE_AT_ONCE: usize = 64;

/// The pub/sub task on a cluster.
pub(super) struct ShardedPubSub {
    conn: ClusterConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    watched: Watched,
    /// When every channel is to be subscribed again: at the start, and after a lost
    /// connection until it succeeds.
    resubscribe_at: Option<Instant>,
    /// The wait before the next attempt after a failed one; it doubles up to [`MAX_PAUSE`].
    pause: Duration,
}

impl ShardedPubSub {
    /// A lazy RESP3 connection to the cluster at `nodes`; nothing is sent before
    /// [`run`](Self::run).
    pub(super) fn new(
        nodes: &[redis::ConnectionInfo],
        timeout: Duration,
        watched: Watched,
    ) -> Result<ShardedPubSub, String> {
        let (tx, pushes) = mpsc::unbounded_channel();
        Ok(ShardedPubSub {
            conn: cluster_pubsub(nodes, timeout, tx)?,
            pushes,
            watched,
            resubscribe_at: Some(Instant::now()),
            pause: MIN_PAUSE,
        })
    }

    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let resubscribe = async {
                match self.resubscribe_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Watch(room, reply)) => {
                        let res = self.watch(room).await;
                        let _ = reply.send(res);
                    }
                    Some(Command::Unwatch(room)) => {
                        if self.watched.remove(&room) {
                            let timeout = self.watched.timeout();
                            let leave = self.conn.sunsubscribe(channel(&room));
                            let _ = tokio::time::timeout(timeout, leave).await;
                        }
                    }
                },
                Some(push) = self.pushes.recv() => self.on_push(push).await,
                () = resubscribe => self.resubscribe().await,
            }
        }
    }

    /// Subscribes the deny-list's and every watched room's channel, each on its shard. The
    /// server ignores a subscription a connection already has, so it is safe to repeat for
    /// shards that stayed up; each confirmation reads back what its channel missed.
    //
    // The cluster connection also subscribes again on its own after a reconnect, but not on
    // every path that replaces a node's connection, so this does not rely on it.
    async fn resubscribe(&mut self) {
        let mut channels = self.watched.channels();
        channels.push(REVOKED.to_string());
        let timeout = self.watched.timeout();
        let failed = futures_util::stream::iter(channels)
            .map(|name| {
                let mut conn = self.conn.clone();
                async move {
                    match tokio::time::timeout(timeout, conn.ssubscribe(&name)).await {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some("redis pub/sub timed out".to_string()),
                    }
                }
            })
            .buffer_unordered(RESUBSCRIBE_AT_ONCE)
            .filter_map(std::future::ready)
            .next()
            .await;
        match failed {
            None => {
                self.resubscribe_at = None;
                self.pause = MIN_PAUSE;
            }
            Some(error) => {
                tracing::warn!(%error, "redis cluster pub/sub unavailable");
                self.resubscribe_at = Some(Instant::now() + self.pause);
                self.pause = (self.pause * 2).min(MAX_PAUSE);
            }
        }
    }

    async fn ssubscribe(&mut self, channel: &str) -> Result<(), Unavailable> {
        match tokio::time::timeout(self.watched.timeout(), self.conn.ssubscribe(channel)).await {
            Ok(res) => res.map_err(unavailable),
            Err(_) => Err(Unavailable("redis pub/sub timed out".into())),
        }
    }

    async fn watch(&mut self, room: String) -> Result<(), Unavailable> {
        if self.watched.contains(&room) {
            return Ok(());
        }
        self.ssubscribe(&channel(&room)).await?;
        self.watched.add(room).await;
        Ok(())
    }

    async fn on_push(&mut self, push: PushInfo) {
        match push.kind {
            PushKind::SMessage => {
                if let [channel, payload] = &push.data[..] {
                    if let (Some(channel), Some(payload)) = (text(channel), bytes(payload)) {
                        self.watched.on_message(channel, payload).await;
                    }
                }
            }
            // A (re)subscription is confirmed: from here on the channel carries every append,
            // so what came before is read back.
            PushKind::SSubscribe => {
                let Some(channel) = push.data.first().and_then(text) else {
                    return;
                };
                if channel == REVOKED {
                    self.watched.connected();
                    self.watched.read_revoked().await;
                } else if let Some(room) = channel_room(channel).map(str::to_string) {
                    self.watched.fill(&room, None).await;
                }
            }
            // The server drops a shard channel's subscribers when its slot moves; a room still
            // watched is subscribed again, on the slot's new shard.
            PushKind::SUnsubscribe => {
                let Some(channel) = push.data.first().and_then(text) else {
                    return;
                };
                let watched = channel == REVOKED
                    || channel_room(channel).is_some_and(|room| self.watched.contains(room));
                if watched {
                    let channel = channel.to_string();
                    if let Err(Unavailable(error)) = self.ssubscribe(&channel).await {
                        tracing::warn!(%error, %channel, "redis cluster resubscribe failed");
                    }
                }
            }
            // Channels of that node may be unsubscribed now, and stay so until subscribed again.
            PushKind::Disconnection => {
                tracing::warn!("a redis cluster pub/sub connection was lost");
                self.watched.lost();
                if self.resubscribe_at.is_none() {
                    self.resubscribe_at = Some(Instant::now() + MIN_PAUSE);
                }
            }
            _ => {}
        }
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text(value: &Value) -> Option<&str> {
    std::str::from_utf8(bytes(value)?).ok()
}
