//! The Redis engine: each room's history in a Redis Stream with its offset counter and epoch
//! beside it, append + offset + dedupe in one Lua script, fan-out between hub nodes through
//! pub/sub (one channel per room), and a shared deny-list (a set plus a channel).
//!
//! On one server fan-out uses plain pub/sub (`PUBLISH`/`SUBSCRIBE`), which any Redis has; on a
//! Redis Cluster it uses sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7), so a message
//! travels only within the shard that holds its room, and each node subscribes, on that shard,
//! only to the rooms it has subscribers in ([`redis_cluster`](super::redis_cluster)). See
//! [`redis_conn`](super::redis_conn) for how a cluster is told from one server.
//!
//! Keys. Every key and channel of a room carries the hash tag `{r:<room>}`, so they all hash to
//! one cluster slot and each script touches one slot only (its keys come as `KEYS`; the channel
//! shares the tag). The `r:` keeps the tag from being empty for a room that starts with `}`,
//! which would make Redis hash each whole key on its own:
//! - `resocket:{r:<room>}:m`: hash, `epoch` and `last` (the newest offset);
//! - `resocket:{r:<room>}:s`: stream, fields `o` (offset) and `f` (the `message` frame);
//! - `resocket:{r:<room>}:d:<client>\0<id>`: a publish's offset, for dedupe, with a TTL;
//! - `resocket:{r:<room>}:p`: the room's channel, payload `<epoch> <offset> <frame>`;
//! - `resocket:revoked`: the shared deny-list (a set) and its channel, on one slot of its own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::wire::Frame;
use futures_util::StreamExt;
use redis::AsyncCommands as _;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::redis_conn::{Conn, Servers, MAX_PAUSE, MIN_PAUSE};
use super::{frame_prefix, new_epoch, Appended, Engine, History, Listener, Unavailable};
use crate::metrics::Metrics;

pub(crate) use super::redis_conn::client;

/// The shared deny-list's set and its notification channel.
pub(super) const REVOKED: &str = "resocket:revoked";

/// The Redis engine's settings.
#[derive(Debug, Clone)]
pub(crate) struct RedisSettings {
    /// Entries kept per room stream (trimmed with `MAXLEN ~`).
    pub(crate) history_len: usize,
    /// Age past which entries are trimmed (`MINID`).
    pub(crate) history_age: Duration,
    /// How long a room's keys outlive its last append or subscribe.
    pub(crate) room_ttl: Duration,
    /// How long a `(client, id)` is remembered.
    pub(crate) dedupe_ttl: Duration,
    /// The most one Redis operation may take before it counts as unavailable.
    pub(crate) timeout: Duration,
}

pub(super) fn meta_key(room: &str) -> String {
    format!("resocket:{{r:{room}}}:m")
}
pub(super) fn stream_key(room: &str) -> String {
    format!("resocket:{{r:{room}}}:s")
}
fn dedupe_key(room: &str, client: &str, id: &str) -> String {
    format!("resocket:{{r:{room}}}:d:{client}\0{id}")
}
pub(super) fn channel(room: &str) -> String {
    format!("resocket:{{r:{room}}}:p")
}
/// The room a channel name belongs to.
pub(super) fn channel_room(channel: &str) -> Option<&str> {
    channel.strip_prefix("resocket:{r:")?.strip_suffix("}:p")
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> Unavailable {
    Unavailable(e.to_string())
}

/// A failed Redis call as [`Unavailable`]. A redirect means one URL was given for a cluster: a
/// setting to fix, so it is also logged as a warning, which the hub's debug-level failure logs
/// would hide.
fn redis_unavailable(e: redis::RedisError) -> Unavailable {
    if e.redirect_node().is_some() {
        let reason =
            format!("{e} (redis is a cluster: give two or more of its nodes, comma-separated)");
        tracing::warn!(%reason, "redis redirected a command");
        return Unavailable(reason);
    }
    unavailable(e)
}

/// Runs one Redis call within `timeout`, timing it into `metrics`: a success records its round
/// trip, a failure counts as an error.
async fn timed<T>(
    metrics: &Metrics,
    timeout: Duration,
    op: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, Unavailable> {
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(timeout, op).await;
    let figures = &metrics.redis;
    match res {
        Ok(Ok(value)) => {
            figures.round_trips.record(started.elapsed());
            Ok(value)
        }
        Ok(Err(e)) => {
            figures.failed();
            Err(redis_unavailable(e))
        }
        Err(_) => {
            figures.failed();
            Err(Unavailable("redis timed out".into()))
        }
    }
}

/// Storage and broker in Redis.
pub(crate) struct RedisEngine {
    conn: Conn,
    append: redis::Script,
    since: redis::Script,
    revoke: redis::Script,
    /// `PUBLISH` on one server, `SPUBLISH` on a cluster: what the scripts publish with.
    publish: &'static str,
    settings: RedisSettings,
    /// To the pub/sub task; it ends when this sender is dropped with the engine.
    commands: mpsc::UnboundedSender<Command>,
    /// Where round trips, errors and reconnects are counted.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("settings", &self.settings)
            .field("publish", &self.publish)
            .finish_non_exhaustive()
    }
}

/// What the engine asks of its pub/sub task.
pub(super) enum Command {
    Watch(String, oneshot::Sender<Result<(), Unavailable>>),
    Unwatch(String),
}

impl RedisEngine {
    /// Makes the engine and starts its pub/sub task, which hands other nodes' appends and
    /// revocations to `listener`. Connections are made lazily and remade after a failure;
    /// round trips, errors and reconnects are counted in `metrics`.
    ///
    /// Must be called within a Tokio runtime.
    pub(crate) fn start(
        servers: Servers,
        settings: RedisSettings,
        listener: Arc<dyn Listener>,
        metrics: Arc<Metrics>,
    ) -> Result<RedisEngine, String> {
        let conn = Conn::new(&servers, settings.timeout)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let engine = RedisEngine {
            conn,
            append: redis::Script::new(include_str!("append.lua")),
            since: redis::Script::new(include_str!("since.lua")),
            revoke: redis::Script::new(include_str!("revoke.lua")),
            publish: match servers {
                Servers::Single(_) => "PUBLISH",
                Servers::Cluster(_) => "SPUBLISH",
            },
            settings,
            commands,
            metrics,
        };
        let watched = Watched::new(engine.reader(), listener);
        match servers {
            Servers::Single(client) => {
                tokio::spawn(PubSub { client, watched }.run(rx));
            }
            Servers::Cluster(nodes) => {
                let pubsub = super::redis_cluster::ShardedPubSub::new(
                    &nodes,
                    engine.settings.timeout,
                    watched,
                )?;
                tokio::spawn(pubsub.run(rx));
            }
        }
        Ok(engine)
    }

    /// A second handle on the same connection and scripts, for the pub/sub task's reads.
    fn reader(&self) -> Reader {
        Reader {
            conn: self.conn.clone(),
            since: self.since.clone(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// The append script's keys and arguments (see `append.lua`).
    fn append_parts(
        &self,
        room: &str,
        dedupe: Option<(&str, &str)>,
        data: &RawValue,
    ) -> (Vec<String>, [String; 9]) {
        let s = &self.settings;
        let mut keys = vec![meta_key(room), stream_key(room)];
        if let Some((client, id)) = dedupe {
            keys.push(dedupe_key(room, client, id));
        }
        let args = [
            new_epoch().to_string(),
            frame_prefix(room),
            data.get().to_string(),
            s.history_len.to_string(),
            s.history_age.as_millis().to_string(),
            s.room_ttl.as_millis().to_string(),
            s.dedupe_ttl.as_millis().to_string(),
            channel(room),
            self.publish.to_string(),
        ];
        (keys, args)
    }

    /// The append as a plain `EVAL`, to put in a transaction beside other commands.
    #[cfg(test)]
    pub(crate) fn append_eval(&self, room: &str, data: &RawValue) -> redis::Cmd {
        let (keys, args) = self.append_parts(room, None, data);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(include_str!("append.lua"))
            .arg(keys.len())
            .arg(keys)
            .arg(&args[..]);
        cmd
    }

    /// One `PING` round trip (to every master, on a cluster), within the engine's timeout:
    /// what `/healthz?deep=1` asks of Redis.
    pub(crate) async fn ping(&self) -> Result<(), Unavailable> {
        let mut conn = self.conn.clone();
        let _: redis::Value = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    /// Bounds an operation by the engine's timeout, and times it.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        timed(&self.metrics, self.settings.timeout, op).await
    }
}

/// What the pub/sub task needs to read history.
#[derive(Clone)]
pub(super) struct Reader {
    conn: Conn,
    since: redis::Script,
    pub(super) settings: RedisSettings,
    metrics: Arc<Metrics>,
}

impl Reader {
    async fn since(&self, room: &str, after: Option<u64>) -> Result<History, Unavailable> {
        let mut conn = self.conn.clone();
        let s = &self.settings;
        let mut inv = self.since.key(meta_key(room));
        inv.key(stream_key(room))
            .arg(new_epoch())
            .arg(after.map_or(-1, |a| a as i64))
            .arg(s.room_ttl.as_millis() as u64)
            .arg(s.history_age.as_millis() as u64);
        let read = inv.invoke_async::<(String, u64, Vec<(String, Vec<String>)>)>(&mut conn);
        let (epoch, last, raw) = timed(&self.metrics, s.timeout, read).await?;
        let epoch = epoch.parse().map_err(unavailable)?;
        let mut entries: Vec<(u64, Frame)> = raw
            .into_iter()
            .filter_map(|(_, fields)| entry(fields))
            .collect();
        entries.reverse();
        Ok(History {
            epoch,
            last,
            entries,
        })
    }
}

/// A stream entry's offset and frame from its fields (`o`, offset, `f`, frame).
fn entry(fields: Vec<String>) -> Option<(u64, Frame)> {
    let mut it = fields.into_iter();
    let (mut offset, mut frame) = (None, None);
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        match k.as_str() {
            "o" => offset = v.parse().ok(),
            "f" => frame = Some(v),
            _ => {}
        }
    }
    Some((offset?, Frame::text(&frame?)))
}

impl Engine for RedisEngine {
    async fn append(
        &self,
        room: &str,
        dedupe: Option<(&str, &str)>,
        data: &RawValue,
    ) -> Result<Appended, Unavailable> {
        let (keys, args) = self.append_parts(room, dedupe, data);
        let mut inv = self.append.prepare_invoke();
        for key in keys {
            inv.key(key);
        }
        for arg in args {
            inv.arg(arg);
        }
        let mut conn = self.conn.clone();
        let (dup, offset, epoch): (u8, u64, String) =
            self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(Appended {
            epoch: epoch.parse().map_err(unavailable)?,
            offset,
            duplicate: dup == 1,
        })
    }

    async fn since(&self, room: &str, after: Option<u64>) -> Result<History, Unavailable> {
        self.reader().since(room, after).await
    }

    async fn watch(&self, room: &str) -> Result<(), Unavailable> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Watch(room.to_string(), tx))
            .map_err(|_| Unavailable("the pub/sub task ended".into()))?;
        match tokio::time::timeout(self.settings.timeout * 2, rx).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(Unavailable("the pub/sub task ended".into())),
            Err(_) => Err(Unavailable("redis pub/sub timed out".into())),
        }
    }

    fn unwatch(&self, room: &str) {
        let _ = self.commands.send(Command::Unwatch(room.to_string()));
    }

    async fn revoke(&self, ids: &[String]) -> Result<(), Unavailable> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut inv = self.revoke.key(REVOKED);
        inv.arg(self.publish).arg(ids);
        self.bounded(inv.invoke_async::<()>(&mut conn)).await
    }

    async fn revoked(&self) -> Result<HashSet<String>, Unavailable> {
        let mut conn = self.conn.clone();
        self.bounded(redis::cmd("SMEMBERS").arg(REVOKED).query_async(&mut conn))
            .await
    }
}

/// Where a watched room stands on this node.
#[derive(Debug, Clone, Copy)]
struct Seen {
    epoch: u64,
    last: u64,
}

/// The watched rooms of a pub/sub task, whatever its connection: what this node has seen of
/// each, and the listener it hands appends and revocations to, in order and with holes filled
/// from the stream.
pub(super) struct Watched {
    reader: Reader,
    listener: Arc<dyn Listener>,
    rooms: HashMap<String, Option<Seen>>,
    /// Set once a subscribed connection is lost, so the next one counts as a reconnect.
    reconnecting: bool,
}

impl Watched {
    fn new(reader: Reader, listener: Arc<dyn Listener>) -> Self {
        Watched {
            reader,
            listener,
            rooms: HashMap::new(),
            reconnecting: false,
        }
    }

    /// The connection was lost: the next [`resync`](Self::resync) counts as a reconnect.
    pub(super) fn lost(&mut self) {
        self.reconnecting = true;
    }

    /// A connection is subscribed again: counted as a reconnect if one was lost.
    pub(super) fn connected(&mut self) {
        if std::mem::take(&mut self.reconnecting) {
            self.reader.metrics.redis.reconnected();
        }
    }

    /// The engine's timeout for one Redis operation.
    pub(super) fn timeout(&self) -> Duration {
        self.reader.settings.timeout
    }

    pub(super) fn contains(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Forgets `room`; whether it was watched.
    pub(super) fn remove(&mut self, room: &str) -> bool {
        self.rooms.remove(room).is_some()
    }

    /// Every watched room's channel.
    pub(super) fn channels(&self) -> Vec<String> {
        self.rooms.keys().map(|r| channel(r)).collect()
    }

    /// Starts following `room`, once its channel is subscribed: subscribed first, read second,
    /// so every append after the read arrives on the channel.
    pub(super) async fn add(&mut self, room: String) {
        let seen = self.reader.since(&room, None).await.ok().map(|h| Seen {
            epoch: h.epoch,
            last: h.last,
        });
        self.rooms.insert(room, seen);
    }

    /// Reads back whatever happened while the connection was down: the whole deny-list and
    /// every watched room's missed appends.
    pub(super) async fn resync(&mut self) {
        self.connected();
        self.read_revoked().await;
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.fill(&room, None).await;
        }
    }

    /// Hands the whole shared deny-list to the listener.
    pub(super) async fn read_revoked(&self) {
        let mut conn = self.reader.conn.clone();
        match conn.smembers::<_, HashSet<String>>(REVOKED).await {
            Ok(list) if !list.is_empty() => self.listener.revoked(list),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot read the shared deny-list"),
        }
    }

    /// Delivers what the room's stream holds after what this node has seen, in order.
    pub(super) async fn fill(&mut self, room: &str, upto: Option<(u64, u64)>) {
        let Some(Some(seen)) = self.rooms.get(room).copied() else {
            return;
        };
        let Ok(mut h) = self.reader.since(room, Some(seen.last)).await else {
            return;
        };
        let mut last = seen.last;
        if h.epoch != seen.epoch {
            // A new epoch: its offsets start over.
            match self.reader.since(room, Some(0)).await {
                Ok(again) => h = again,
                Err(_) => return,
            }
            last = 0;
        }
        if upto.is_some_and(|(epoch, _)| epoch != h.epoch) {
            return;
        }
        for (offset, frame) in h.entries {
            if offset > last {
                last = offset;
                self.listener.message(room, h.epoch, offset, frame);
            }
        }
        self.rooms.insert(
            room.to_string(),
            Some(Seen {
                epoch: h.epoch,
                last,
            }),
        );
    }

    /// A message on `channel`: a room's append, or deny-list entries.
    pub(super) async fn on_message(&mut self, channel: &str, payload: &[u8]) {
        if channel == REVOKED {
            let ids = String::from_utf8_lossy(payload);
            self.listener
                .revoked(ids.lines().map(str::to_string).collect());
            return;
        }
        let Some(room) = channel_room(channel).map(str::to_string) else {
            return;
        };
        let Some((epoch, offset, frame)) = parse_payload(payload) else {
            return;
        };
        let seen = match self.rooms.get(&room) {
            None => return,
            Some(seen) => *seen,
        };
        match seen {
            Some(s) if s.epoch == epoch && offset <= s.last => return,
            // The next one: the common case.
            Some(s) if s.epoch == epoch && offset == s.last + 1 => {}
            // A hole (this connection missed traffic) or a new epoch: read it back first.
            Some(_) => {
                self.fill(&room, Some((epoch, offset))).await;
                if self
                    .rooms
                    .get(&room)
                    .copied()
                    .flatten()
                    .is_some_and(|s| s.epoch == epoch && offset <= s.last)
                {
                    return;
                }
            }
            None => {}
        }
        self.rooms.insert(
            room.clone(),
            Some(Seen {
                epoch,
                last: offset,
            }),
        );
        self.listener.message(&room, epoch, offset, frame);
    }
}

/// The pub/sub task on one server: one connection subscribed to the deny-list channel and
/// every watched room's channel, made again whenever it fails.
struct PubSub {
    client: redis::Client,
    watched: Watched,
}

impl PubSub {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut pause = MIN_PAUSE;
        // Watch requests that cut a pause short; the next connection answers them.
        let mut waiting: Vec<(String, WatchReply)> = Vec::new();
        loop {
            let connected =
                tokio::time::timeout(self.watched.timeout(), self.client.get_async_pubsub()).await;
            let pubsub = match connected {
                Ok(Ok(p)) => p,
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "connect timed out".to_string(),
                    };
                    tracing::warn!(%error, "redis pub/sub unavailable");
                    answer_all(&mut waiting, &error);
                    if !pause_until_asked(&mut self.watched, &mut commands, pause, &mut waiting)
                        .await
                    {
                        return;
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                    continue;
                }
            };
            let (mut sink, mut stream) = pubsub.split();
            let mut channels = self.watched.channels();
            channels.push(REVOKED.to_string());
            if let Err(error) = sink.subscribe(&channels).await {
                tracing::warn!(%error, "redis pub/sub subscribe failed");
                answer_all(&mut waiting, &error.to_string());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
            pause = MIN_PAUSE;
            // Whatever happened while the connection was down is read back from storage.
            self.watched.resync().await;
            for (room, reply) in waiting.drain(..) {
                let _ = reply.send(self.watch(&mut sink, room).await);
            }
            loop {
                tokio::select! {
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some(Command::Watch(room, reply)) => {
                            let res = self.watch(&mut sink, room).await;
                            let _ = reply.send(res);
                        }
                        Some(Command::Unwatch(room)) => {
                            if self.watched.remove(&room) {
                                let _ = sink.unsubscribe(channel(&room)).await;
                            }
                        }
                    },
                    msg = stream.next() => match msg {
                        Some(msg) => {
                            self.watched
                                .on_message(msg.get_channel_name(), msg.get_payload_bytes())
                                .await;
                        }
                        None => {
                            tracing::warn!("redis pub/sub connection lost");
                            self.watched.lost();
                            break;
                        }
                    },
                }
            }
        }
    }

    async fn watch(
        &mut self,
        sink: &mut redis::aio::PubSubSink,
        room: String,
    ) -> Result<(), Unavailable> {
        if self.watched.contains(&room) {
            return Ok(());
        }
        sink.subscribe(channel(&room))
            .await
            .map_err(redis_unavailable)?;
        self.watched.add(room).await;
        Ok(())
    }
}

/// How a watch request is answered.
type WatchReply = oneshot::Sender<Result<(), Unavailable>>;

/// Tells every waiting watch request that the connection could not be made.
fn answer_all(waiting: &mut Vec<(String, WatchReply)>, error: &str) {
    for (_, reply) in waiting.drain(..) {
        let _ = reply.send(Err(Unavailable(error.to_string())));
    }
}

/// A request that came while the connection is down: a watch waits for the next attempt.
fn take(cmd: Command, watched: &mut Watched, waiting: &mut Vec<(String, WatchReply)>) {
    match cmd {
        Command::Watch(room, reply) => waiting.push((room, reply)),
        Command::Unwatch(room) => {
            watched.remove(&room);
        }
    }
}

/// Waits `pause` while the pub/sub connection is down. A watch request cuts the wait short:
/// Redis may be back, and a subscribe should hear what Redis says now, not the last failure.
/// Every request already queued joins `waiting`, so a burst of subscribes costs one attempt.
/// False once the engine is gone.
async fn pause_until_asked(
    watched: &mut Watched,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    pause: Duration,
    waiting: &mut Vec<(String, WatchReply)>,
) -> bool {
    let sleep = tokio::time::sleep(pause);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            cmd = commands.recv() => match cmd {
                None => return false,
                Some(cmd) => {
                    take(cmd, watched, waiting);
                    while let Ok(cmd) = commands.try_recv() {
                        take(cmd, watched, waiting);
                    }
                    if !waiting.is_empty() {
                        return true;
                    }
                }
            },
        }
    }
}

/// A channel message: `<epoch> <offset> <frame>`.
fn parse_payload(payload: &[u8]) -> Option<(u64, u64, Frame)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (epoch, rest) = text.split_once(' ')?;
    let (offset, frame) = rest.split_once(' ')?;
    Some((
        epoch.parse().ok()?,
        offset.parse().ok()?,
        Frame::text(frame),
    ))
}
