//! `HubClient`: a typed client for the resocket hub, with recovery and exactly-once publishes.
//!
//! It is a [`Client`] plus a session task that reads the client's messages and keeps, per
//! room, the epoch and the last offset delivered. After every reconnect a handshake (which runs
//! before any queued message is written) re-subscribes each room with `since`, then re-sends
//! every publish not yet acknowledged, in publish order and with the same ids, so the hub's
//! dedupe makes the publish exactly-once in effect and the room's order stays the publisher's
//! order. When the hub cannot replay what was missed (`recovered: false`, or a new epoch), the
//! room's stream yields a [`RoomEvent::Gap`]: a hole is always announced, never silent.
//!
//! The handshake asks the session task for its state over a channel instead of sharing it
//! behind a lock, so the per-message path (offset bookkeeping) takes no lock at all.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::protocol::{ClientFrame, ErrorCode, ServerFrame, SUBPROTOCOL};
use crate::{
    handshake::{HandshakeError, HandshakeIo, Handshaker},
    Client, ClientBuilder, Error, Message, Messages,
};

/// What a room subscription yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RoomEvent {
    /// A message, in offset order, each offset at most once.
    Message(RoomMessage),
    /// Messages were lost: the hub no longer had them when the client re-subscribed.
    Gap(Gap),
}

/// One message of a room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomMessage {
    /// The room.
    pub room: String,
    /// The room's epoch.
    pub epoch: u64,
    /// The message's offset in the room.
    pub offset: u64,
    /// The published JSON value.
    pub data: Value,
}

/// A hole in a room's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The room.
    pub room: String,
    /// The first offset missed (the one after the last delivered).
    pub from: u64,
    /// The first offset available again, when the hub said (`None` after an epoch change:
    /// offsets restart and nothing of the old epoch can be recovered).
    pub resumes_at: Option<u64>,
    /// Whether the room's epoch changed (its history was lost).
    pub epoch_changed: bool,
}

/// Why a hub operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The hub refused the operation with an `error` frame.
    #[error("hub refused: {code:?}: {message}")]
    Refused {
        /// The error code.
        code: ErrorCode,
        /// The hub's explanation.
        message: String,
    },
    /// The data could not be encoded as JSON.
    #[error("data is not serializable as json: {0}")]
    Encode(String),
    /// The client is closed; nothing more will be acknowledged.
    #[error("hub client is closed")]
    Closed,
    /// The underlying client failed.
    #[error("client error")]
    Client(#[source] Error),
}

/// A publish waiting for its acknowledgement; resolves to the message's offset.
#[derive(Debug)]
#[must_use = "an ack does nothing unless awaited"]
pub struct PendingAck {
    rx: oneshot::Receiver<Result<u64, HubError>>,
}

impl Future for PendingAck {
    type Output = Result<u64, HubError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(HubError::Closed)))
    }
}

/// The stream of one room's events.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<RoomEvent>,
}

impl Subscription {
    /// The next event; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<RoomEvent> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for Subscription {
    type Item = RoomEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RoomEvent>> {
        self.rx.poll_recv(cx)
    }
}

enum SessionCommand {
    Subscribe {
        room: String,
        tx: mpsc::Sender<RoomEvent>,
        confirmed: oneshot::Sender<Result<(), HubError>>,
    },
    Publish {
        id: String,
        frame: Message,
        ack: oneshot::Sender<Result<u64, HubError>>,
        /// A place in the in-flight window, given back when the ack (or a refusal) arrives.
        permit: OwnedSemaphorePermit,
    },
    Snapshot(oneshot::Sender<Vec<Message>>),
}

/// Builds a [`HubClient`].
pub struct HubClientBuilder {
    builder: ClientBuilder,
    token: Option<String>,
    client_id: String,
    room_capacity: usize,
    max_in_flight: usize,
}

impl std::fmt::Debug for HubClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClientBuilder")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl HubClientBuilder {
    /// Authenticates with this token (sent as `Authorization: Bearer`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The client id for anonymous publish dedupe (default: random). With a token the hub
    /// uses the token's `sub` instead.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// How many events each room's stream buffers before the session waits (default 1024).
    pub fn room_capacity(mut self, capacity: usize) -> Self {
        self.room_capacity = capacity.max(1);
        self
    }

    /// How many publishes may await their ack at once (default 256); further publishes wait.
    ///
    /// Exactly-once rests on this bound: every unacknowledged publish is re-sent after a
    /// reconnect, and the hub recognises a repeat only within its dedupe window (1000 per room
    /// by default). Keep the sum of the windows of a room's publishers below the hub's.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// Adjusts the underlying [`ClientBuilder`] (backoff, heartbeat, TLS, ...).
    pub fn configure(mut self, edit: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Self {
        self.builder = edit(self.builder);
        self
    }

    /// Starts the client and its session task.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub fn connect(self) -> Result<HubClient, Error> {
        let (session_tx, session_rx) = mpsc::channel(1024);
        let mut builder = self.builder.subprotocol(SUBPROTOCOL);
        let anonymous_id = match &self.token {
            Some(token) => {
                builder = builder.header("authorization", format!("Bearer {token}"));
                None
            }
            None => Some(self.client_id.clone()),
        };
        // A weak sender: the handshake must not keep the session alive once every
        // `HubClient` is gone.
        let resync = Resync {
            session: session_tx.downgrade(),
            anonymous_id,
        };
        let (client, messages) = builder.handshake(resync).connect()?;
        tokio::spawn(Session::new(messages).run(session_rx));
        Ok(HubClient {
            client,
            session: session_tx,
            ids: Arc::new(AtomicU64::new(0)),
            prefix: self.client_id,
            room_capacity: self.room_capacity,
            in_flight: Arc::new(Semaphore::new(self.max_in_flight)),
        })
    }
}

/// A typed client for the resocket hub.
#[derive(Debug, Clone)]
pub struct HubClient {
    client: Client,
    session: mpsc::Sender<SessionCommand>,
    ids: Arc<AtomicU64>,
    prefix: String,
    room_capacity: usize,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for SessionCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionCommand::Subscribe { .. } => "Subscribe",
            SessionCommand::Publish { .. } => "Publish",
            SessionCommand::Snapshot(_) => "Snapshot",
        })
    }
}

impl HubClient {
    /// Starts building a hub client for `url` (for example `ws://127.0.0.1:8080/ws`).
    pub fn builder(url: &str) -> HubClientBuilder {
        HubClientBuilder {
            builder: Client::builder(url),
            token: None,
            client_id: format!("c{:016x}", fastrand::u64(..)),
            room_capacity: 1024,
            max_in_flight: 256,
        }
    }

    /// The underlying client: state, events, snapshot, close.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Subscribes to `room`: from now on, and across reconnects, without gaps going unnoticed.
    /// Returns once the hub confirmed the subscription (after connecting, if the client is
    /// not connected yet).
    ///
    /// # Errors
    /// [`HubError::Refused`] when the hub refuses (no permission), [`HubError::Closed`] once
    /// the client is closed.
    pub async fn subscribe(&self, room: impl Into<String>) -> Result<Subscription, HubError> {
        let (tx, rx) = mpsc::channel(self.room_capacity);
        let room: String = room.into();
        // Registered first, so the `subscribed` reply finds the room. While disconnected the
        // frame waits in the queue and the reconnect handshake subscribes too; a repeated
        // subscribe just restarts the subscription, and offsets already delivered are skipped.
        let (confirmed, confirmation) = oneshot::channel();
        let command = SessionCommand::Subscribe {
            room: room.clone(),
            tx,
            confirmed,
        };
        self.session
            .send(command)
            .await
            .map_err(|_| HubError::Closed)?;
        let frame: ClientFrame = ClientFrame::Subscribe {
            room,
            since: None,
            epoch: None,
        };
        self.client
            .send(encode(&frame))
            .await
            .map_err(|_| HubError::Closed)?;
        confirmation.await.unwrap_or(Err(HubError::Closed))?;
        Ok(Subscription { rx })
    }

    /// Publishes `data` to `room` and waits for the acknowledgement: the message's offset.
    ///
    /// # Errors
    /// [`HubError::Refused`] when the hub refuses (no permission, too big), [`HubError::Closed`]
    /// when the client closes first.
    pub async fn publish(&self, room: &str, data: &impl Serialize) -> Result<u64, HubError> {
        self.start_publish(room, data).await?.await
    }

    /// Queues a publish and returns at once with its pending acknowledgement, so many
    /// publishes can be in flight; their order is the order of these calls.
    ///
    /// # Errors
    /// [`HubError::Encode`] for data that is not JSON, [`HubError::Closed`] once closed.
    pub async fn start_publish(
        &self,
        room: &str,
        data: &impl Serialize,
    ) -> Result<PendingAck, HubError> {
        let data = serde_json::to_value(data).map_err(|e| HubError::Encode(e.to_string()))?;
        let id = format!(
            "{}-{}",
            self.prefix,
            self.ids.fetch_add(1, Ordering::Relaxed)
        );
        let frame: ClientFrame = ClientFrame::Publish {
            room: room.to_owned(),
            id: id.clone(),
            data,
        };
        let frame = Message::text(
            serde_json::to_string(&frame).map_err(|e| HubError::Encode(e.to_string()))?,
        );
        let (ack, rx) = oneshot::channel();
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HubError::Closed)?;
        // Registered before it is queued, so a reconnect's re-send list is in publish order.
        self.session
            .send(SessionCommand::Publish {
                id,
                frame: frame.clone(),
                ack,
                permit,
            })
            .await
            .map_err(|_| HubError::Closed)?;
        self.client
            .send(frame)
            .await
            .map_err(|_| HubError::Closed)?;
        Ok(PendingAck { rx })
    }

    /// Closes the connection (see [`Client::close`]).
    ///
    /// # Errors
    /// As [`Client::close`].
    pub async fn close(&self) -> Result<(), Error> {
        self.client.close().await
    }
}

/// Per-room bookkeeping.
struct Room {
    tx: mpsc::Sender<RoomEvent>,
    /// Told when the first `subscribed` (or a refusal) arrives.
    confirmed: Option<oneshot::Sender<Result<(), HubError>>>,
    /// Epoch and last offset delivered; `None` until the first `subscribed`.
    position: Option<(u64, u64)>,
}

struct Session {
    messages: Messages,
    rooms: HashMap<String, Room>,
    pending: VecDeque<(String, Message)>,
    acks: HashMap<String, (oneshot::Sender<Result<u64, HubError>>, OwnedSemaphorePermit)>,
}

impl Session {
    fn new(messages: Messages) -> Self {
        Session {
            messages,
            rooms: HashMap::new(),
            pending: VecDeque::new(),
            acks: HashMap::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<SessionCommand>) {
        loop {
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    // The last HubClient is gone; the client closes as its handles drop.
                    None => break,
                },
                msg = self.messages.recv() => match msg {
                    Some(msg) => self.frame(msg).await,
                    None => break,
                },
            }
        }
        for (_, (ack, _permit)) in self.acks.drain() {
            let _ = ack.send(Err(HubError::Closed));
        }
    }

    fn command(&mut self, command: SessionCommand) {
        match command {
            SessionCommand::Subscribe {
                room,
                tx,
                confirmed,
            } => {
                let position = self.rooms.get(&room).and_then(|r| r.position);
                self.rooms.insert(
                    room,
                    Room {
                        tx,
                        confirmed: Some(confirmed),
                        position,
                    },
                );
            }
            SessionCommand::Publish {
                id,
                frame,
                ack,
                permit,
            } => {
                self.pending.push_back((id.clone(), frame));
                self.acks.insert(id, (ack, permit));
            }
            SessionCommand::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
        }
    }

    /// Frames the reconnect handshake sends: every room from its last offset, then every
    /// unacknowledged publish in order.
    fn snapshot(&self) -> Vec<Message> {
        let mut frames = Vec::with_capacity(self.rooms.len() + self.pending.len());
        for (room, state) in &self.rooms {
            let (epoch, since) = match state.position {
                Some((epoch, offset)) => (Some(epoch), Some(offset)),
                None => (None, None),
            };
            let frame: ClientFrame = ClientFrame::Subscribe {
                room: room.clone(),
                since,
                epoch,
            };
            frames.push(encode(&frame));
        }
        frames.extend(self.pending.iter().map(|(_, frame)| frame.clone()));
        frames
    }

    async fn frame(&mut self, msg: Message) {
        let Ok(text) = msg.to_text() else { return };
        let Ok(frame) = serde_json::from_str::<ServerFrame>(text) else {
            tracing::warn!("hub sent a frame that does not parse");
            return;
        };
        match frame {
            ServerFrame::Subscribed {
                room,
                epoch,
                offset,
                recovered,
                first,
            } => {
                let Some(state) = self.rooms.get_mut(&room) else {
                    return;
                };
                if let Some(confirmed) = state.confirmed.take() {
                    let _ = confirmed.send(Ok(()));
                }
                let gap = match state.position {
                    None => None,
                    Some((old_epoch, _)) if old_epoch != epoch => Some(Gap {
                        room: room.clone(),
                        from: state.position.map(|(_, o)| o + 1).unwrap_or(0),
                        resumes_at: None,
                        epoch_changed: true,
                    }),
                    Some((_, last)) if !recovered => Some(Gap {
                        room: room.clone(),
                        from: last + 1,
                        resumes_at: first,
                        epoch_changed: false,
                    }),
                    Some(_) => None,
                };
                match (&gap, state.position) {
                    // A fresh subscription starts after the room's newest offset; a lossy
                    // one resumes from what the hub still has.
                    (None, None) | (Some(_), _) => {
                        state.position =
                            Some((epoch, first.map(|f| f.saturating_sub(1)).unwrap_or(offset)));
                    }
                    (None, Some(_)) => {}
                }
                if let Some(gap) = gap {
                    let _ = state.tx.send(RoomEvent::Gap(gap)).await;
                }
            }
            ServerFrame::Message {
                room,
                epoch,
                offset,
                data,
            } => {
                let Some(state) = self.rooms.get_mut(&room) else {
                    return;
                };
                if let Some((known_epoch, last)) = state.position {
                    if known_epoch == epoch && offset <= last {
                        return; // already delivered: a replay overlapped the live stream
                    }
                }
                state.position = Some((epoch, offset));
                let _ = state
                    .tx
                    .send(RoomEvent::Message(RoomMessage {
                        room,
                        epoch,
                        offset,
                        data,
                    }))
                    .await;
            }
            ServerFrame::Refreshed { .. } => {}
            ServerFrame::Ack { id, offset } => {
                if let Some((ack, _permit)) = self.acks.remove(&id) {
                    let _ = ack.send(Ok(offset));
                }
                if let Some(at) = self.pending.iter().position(|(pending, _)| *pending == id) {
                    self.pending.remove(at);
                }
            }
            ServerFrame::Error {
                code,
                message,
                reference,
            } => {
                let Some(reference) = reference else {
                    tracing::warn!(?code, %message, "hub error");
                    return;
                };
                if let Some((ack, _permit)) = self.acks.remove(&reference) {
                    self.pending.retain(|(id, _)| *id != reference);
                    let _ = ack.send(Err(HubError::Refused { code, message }));
                } else if let Some(mut state) = self.rooms.remove(&reference) {
                    tracing::warn!(room = %reference, ?code, %message, "subscription refused");
                    if let Some(confirmed) = state.confirmed.take() {
                        let _ = confirmed.send(Err(HubError::Refused { code, message }));
                    }
                }
            }
        }
    }
}

fn encode(frame: &ClientFrame) -> Message {
    Message::text(serde_json::to_string(frame).expect("protocol frames always serialize"))
}

/// The reconnect handshake: identify, re-subscribe from the last offsets, re-send unacked
/// publishes.
struct Resync {
    session: mpsc::WeakSender<SessionCommand>,
    anonymous_id: Option<String>,
}

impl Handshaker for Resync {
    fn handshake<'a>(
        &'a self,
        io: &'a mut HandshakeIo<'_>,
    ) -> BoxFuture<'a, Result<(), HandshakeError>> {
        Box::pin(async move {
            if let Some(client) = &self.anonymous_id {
                let auth: ClientFrame = ClientFrame::Auth {
                    token: None,
                    client: Some(client.clone()),
                };
                io.send(encode(&auth)).await?;
            }
            let (tx, rx) = oneshot::channel();
            let session = self
                .session
                .upgrade()
                .ok_or_else(|| HandshakeError::permanent("hub session ended"))?;
            if session.send(SessionCommand::Snapshot(tx)).await.is_err() {
                return Err(HandshakeError::permanent("hub session ended"));
            }
            drop(session);
            let frames = rx
                .await
                .map_err(|_| HandshakeError::permanent("hub session ended"))?;
            io.send_all(frames).await
        })
    }

    fn name(&self) -> &str {
        "hub resync"
    }
}
