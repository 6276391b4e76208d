//! The Redis engine: each room's history in a Redis Stream with its offset counter and epoch
//! beside it, append + offset + dedupe in one Lua script, fan-out between hub nodes through
//! pub/sub (one channel per room), and a shared deny-list (a set plus a channel).
//!
//! Keys (`{room}` is a hash tag, so one room's keys stay on one cluster shard):
//! `resocket:{room}:m` (hash: `epoch`, `last`), `resocket:{room}:s` (stream; fields `o` offset,
//! `f` frame), `resocket:{room}:d:<client>\0<id>` (dedupe, with a TTL), channel
//! `resocket:{room}:p`; `resocket:revoked` (set and channel).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::wire::Frame;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands as _;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::{frame_prefix, new_epoch, Appended, Engine, History, Listener, Unavailable};

/// The shared deny-list's set and its notification channel.
const REVOKED: &str = "resocket:revoked";
/// The first pause before the pub/sub connection is made again; it doubles up to [`MAX_PAUSE`].
const MIN_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);

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

fn meta_key(room: &str) -> String {
    format!("resocket:{{{room}}}:m")
}
fn stream_key(room: &str) -> String {
    format!("resocket:{{{room}}}:s")
}
fn channel(room: &str) -> String {
    format!("resocket:{{{room}}}:p")
}
/// The room a channel name belongs to.
fn channel_room(channel: &str) -> Option<&str> {
    channel.strip_prefix("resocket:{")?.strip_suffix("}:p")
}

fn unavailable(e: impl std::fmt::Display) -> Unavailable {
    Unavailable(e.to_string())
}

/// Storage and broker in Redis.
pub(crate) struct RedisEngine {
    conn: ConnectionManager,
    append: redis::Script,
    since: redis::Script,
    settings: RedisSettings,
    /// To the pub/sub task; it ends when this sender is dropped with the engine.
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

enum Command {
    Watch(String, oneshot::Sender<Result<(), Unavailable>>),
    Unwatch(String),
}

/// Checks a Redis URL (`redis://`, `rediss://`, `redis+unix://`, `unix://`).
///
/// # Errors
///
/// The URL cannot be parsed.
pub(crate) fn client(url: &str) -> Result<redis::Client, String> {
    redis::Client::open(url).map_err(|e| e.to_string())
}

impl RedisEngine {
    /// Makes the engine and starts its pub/sub task, which hands other nodes' appends and
    /// revocations to `listener`. Connections are made lazily and remade after a failure.
    ///
    /// Must be called within a Tokio runtime.
    pub(crate) fn start(
        client: redis::Client,
        settings: RedisSettings,
        listener: Arc<dyn Listener>,
    ) -> Result<RedisEngine, String> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(MAX_PAUSE);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| e.to_string())?;
        let (commands, rx) = mpsc::unbounded_channel();
        let engine = RedisEngine {
            conn,
            append: redis::Script::new(include_str!("append.lua")),
            since: redis::Script::new(include_str!("since.lua")),
            settings,
            commands,
        };
        let pubsub = PubSub {
            client,
            reader: engine.reader(),
            listener,
            rooms: HashMap::new(),
        };
        tokio::spawn(pubsub.run(rx));
        Ok(engine)
    }

    /// A second handle on the same connection and scripts, for the pub/sub task's reads.
    fn reader(&self) -> Reader {
        Reader {
            conn: self.conn.clone(),
            since: self.since.clone(),
            settings: self.settings.clone(),
        }
    }

    /// The append script's keys and arguments (see `append.lua`).
    fn append_parts(
        &self,
        room: &str,
        dedupe: Option<(&str, &str)>,
        data: &RawValue,
    ) -> (Vec<String>, [String; 8]) {
        let s = &self.settings;
        let mut keys = vec![meta_key(room), stream_key(room)];
        if let Some((client, id)) = dedupe {
            keys.push(format!("resocket:{{{room}}}:d:{client}\0{id}"));
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

    /// Bounds an operation by the engine's timeout.
    /// One `PING` round trip, within the engine's timeout: what `/healthz?deep=1` asks of
    /// Redis.
    pub(crate) async fn ping(&self) -> Result<(), Unavailable> {
        let mut conn = self.conn.clone();
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        match tokio::time::timeout(self.settings.timeout, op).await {
            Ok(res) => res.map_err(unavailable),
            Err(_) => Err(Unavailable("redis timed out".into())),
        }
    }
}

/// What the pub/sub task needs to read history.
#[derive(Clone)]
struct Reader {
    conn: ConnectionManager,
    since: redis::Script,
    settings: RedisSettings,
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
        let (epoch, last, raw) = match tokio::time::timeout(s.timeout, read).await {
            Ok(res) => res.map_err(unavailable)?,
            Err(_) => return Err(Unavailable("redis timed out".into())),
        };
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
        let mut pipe = redis::pipe();
        pipe.atomic()
            .sadd(REVOKED, ids)
            .ignore()
            .publish(REVOKED, ids.join("\n"))
            .ignore();
        self.bounded(pipe.query_async::<()>(&mut conn)).await
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

/// The pub/sub task: one connection subscribed to the deny-list channel and every watched
/// room's channel, made again whenever it fails.
struct PubSub {
    client: redis::Client,
    reader: Reader,
    listener: Arc<dyn Listener>,
    rooms: HashMap<String, Option<Seen>>,
}

impl PubSub {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut pause = MIN_PAUSE;
        loop {
            let connected =
                tokio::time::timeout(self.reader.settings.timeout, self.client.get_async_pubsub())
                    .await;
            let pubsub = match connected {
                Ok(Ok(p)) => p,
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "connect timed out".to_string(),
                    };
                    tracing::warn!(%error, "redis pub/sub unavailable");
                    // Watch requests are answered while down, so a subscribe is told at once.
                    let sleep = tokio::time::sleep(pause);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            () = &mut sleep => break,
                            cmd = commands.recv() => match cmd {
                                None => return,
                                Some(Command::Watch(_, reply)) => {
                                    let _ = reply.send(Err(Unavailable(error.clone())));
                                }
                                Some(Command::Unwatch(room)) => {
                                    self.rooms.remove(&room);
                                }
                            },
                        }
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                    continue;
                }
            };
            let (mut sink, mut stream) = pubsub.split();
            let mut channels: Vec<String> = self.rooms.keys().map(|r| channel(r)).collect();
            channels.push(REVOKED.to_string());
            if let Err(error) = sink.subscribe(&channels).await {
                tracing::warn!(%error, "redis pub/sub subscribe failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
            pause = MIN_PAUSE;
            // Whatever happened while the connection was down is read back from storage.
            self.resync().await;
            loop {
                tokio::select! {
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some(Command::Watch(room, reply)) => {
                            let res = self.watch(&mut sink, room).await;
                            let _ = reply.send(res);
                        }
                        Some(Command::Unwatch(room)) => {
                            if self.rooms.remove(&room).is_some() {
                                let _ = sink.unsubscribe(channel(&room)).await;
                            }
                        }
                    },
                    msg = stream.next() => match msg {
                        Some(msg) => self.on_message(msg).await,
                        None => {
                            tracing::warn!("redis pub/sub connection lost");
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
        if self.rooms.contains_key(&room) {
            return Ok(());
        }
        sink.subscribe(channel(&room)).await.map_err(unavailable)?;
        // Subscribed first, read second: every append after the read arrives on the channel.
        let seen = self.reader.since(&room, None).await.ok().map(|h| Seen {
            epoch: h.epoch,
            last: h.last,
        });
        self.rooms.insert(room, seen);
        Ok(())
    }

    async fn resync(&mut self) {
        let mut conn = self.reader.conn.clone();
        match conn.smembers::<_, HashSet<String>>(REVOKED).await {
            Ok(list) if !list.is_empty() => self.listener.revoked(list),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot read the shared deny-list"),
        }
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.fill(&room, None).await;
        }
    }

    /// Delivers what the room's stream holds after what this node has seen, in order.
    async fn fill(&mut self, room: &str, upto: Option<(u64, u64)>) {
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

    async fn on_message(&mut self, msg: redis::Msg) {
        let name = msg.get_channel_name();
        if name == REVOKED {
            let ids = String::from_utf8_lossy(msg.get_payload_bytes());
            self.listener
                .revoked(ids.lines().map(str::to_string).collect());
            return;
        }
        let Some(room) = channel_room(name).map(str::to_string) else {
            return;
        };
        let Some((epoch, offset, frame)) = parse_payload(msg.get_payload_bytes()) else {
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
