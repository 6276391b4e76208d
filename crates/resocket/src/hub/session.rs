//! The session task behind a [`HubClient`](super::HubClient), and its reconnect handshake.
//!
//! The task reads the client's messages and keeps, per room, the epoch and the last offset
//! delivered. It never waits on a room's reader: each room has its own bounded channel, and a
//! room whose reader falls behind is unsubscribed on the wire ("stalled") while the other rooms,
//! the acks and the handshake's requests keep flowing. Once that reader has drained half its
//! buffer, the room is subscribed again with `since`, and the hub replays what it missed or the
//! room reports a [`Gap`].
//!
//! Frames the task writes itself (unsubscribe, resume, refresh, a publish the hub could not
//! store yet) go through the client's outbound queue with `try_send`; when the queue is full
//! they wait, in order, in a small local queue that a `select!` branch drains.
//!
//! A publish the hub answers with `unavailable` (its storage, Redis, is down) stays pending and
//! is sent again, with the same id, after a growing delay: the hub's dedupe applies it once.
//! So is the re-subscribe of a live room (after a reconnect, or a resume): the room stays
//! subscribed in the session, and its stream goes on from its last offset once the hub can
//! read the room again.

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    time::Duration,
};

use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use tokio::{
    sync::{
        mpsc::{self, error::TrySendError},
        oneshot, OwnedSemaphorePermit,
    },
    task::JoinSet,
};

use super::{
    client::{Gap, HubError, RoomEvent, RoomMessage},
    envelope::{self, Envelope},
    protocol::{ClientFrame, ErrorCode},
    token::{Refresher, Tokens},
};
use crate::{
    handshake::{HandshakeError, HandshakeIo, Handshaker},
    Client, Message, Messages, SendError,
};

/// How many inbound messages the task takes from the client per wake-up.
const BATCH: usize = 256;

/// The first delay before a publish refused as `unavailable` is sent again; it doubles with
/// every refusal of the same publish, up to [`RESEND_MAX`].
const RESEND_BASE: Duration = Duration::from_millis(100);
const RESEND_MAX: Duration = Duration::from_secs(5);

pub(super) enum SessionCommand {
    Subscribe {
        room: String,
        /// Tells this subscription from a later one to the same room.
        id: u64,
        tx: mpsc::Sender<RoomEvent>,
        confirmed: oneshot::Sender<Result<(), HubError>>,
    },
    /// Ends a room's subscription: any (`None`, [`HubClient::unsubscribe`]), or only the one
    /// with this id (a dropped [`Subscription`](super::Subscription)).
    ///
    /// [`HubClient::unsubscribe`]: super::HubClient::unsubscribe
    Unsubscribe {
        room: String,
        id: Option<u64>,
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

impl std::fmt::Debug for SessionCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionCommand::Subscribe { .. } => "Subscribe",
            SessionCommand::Unsubscribe { .. } => "Unsubscribe",
            SessionCommand::Publish { .. } => "Publish",
            SessionCommand::Snapshot(_) => "Snapshot",
        })
    }
}

/// Where a room's live stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Subscribed; messages go to the reader.
    Live,
    /// The reader fell behind: unsubscribed on the wire until it drains its buffer.
    Stalled,
    /// Subscribed again with `since`; whatever arrives before `subscribed` is from the old
    /// subscription and already covered by the replay.
    Resuming,
}

/// Per-room bookkeeping.
struct Room {
    id: u64,
    tx: mpsc::Sender<RoomEvent>,
    /// Told when the first `subscribed` (or a refusal) arrives.
    confirmed: Option<oneshot::Sender<Result<(), HubError>>>,
    /// Epoch and last offset delivered to the reader; `None` until the first `subscribed`.
    position: Option<(u64, u64)>,
    flow: Flow,
    /// How often in a row the hub answered this room's subscribe with `unavailable`.
    refusals: u32,
    /// Subscribes sent for the room by the session (reconnects, resumes, retries): a retry
    /// timer set before the latest of them is stale, so one position is never asked twice.
    subscribes: u64,
}

/// What became of an event offered to a room's reader.
enum Offer {
    Taken,
    /// The reader's buffer is full.
    Full,
    /// The reader is gone.
    Gone,
}

impl Room {
    /// Hands `event` to the reader without waiting; once taken, the reader is at `position`.
    fn deliver(&mut self, event: RoomEvent, position: (u64, u64)) -> Offer {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.position = Some(position);
                Offer::Taken
            }
            Err(TrySendError::Full(_)) => Offer::Full,
            Err(TrySendError::Closed(_)) => Offer::Gone,
        }
    }

    fn subscribe_frame(name: &str, position: Option<(u64, u64)>) -> Message {
        let frame: ClientFrame = ClientFrame::Subscribe {
            room: name.to_owned(),
            since: position.map(|(_, offset)| offset),
            epoch: position.map(|(epoch, _)| epoch),
        };
        encode(&frame)
    }
}

pub(super) struct Session {
    client: Client,
    messages: Messages,
    rooms: HashMap<String, Room>,
    pending: VecDeque<(String, Message)>,
    acks: HashMap<String, (oneshot::Sender<Result<u64, HubError>>, OwnedSemaphorePermit)>,
    /// Frames of the task's own that the outbound queue had no room for yet, in order.
    control: VecDeque<Message>,
    /// One task per stalled room, resolving once its reader has room again.
    waiters: JoinSet<(String, u64)>,
    /// Publishes refused as `unavailable`, by id: how often so far. Each has a timer in
    /// `resends`.
    unavailable: HashMap<String, u32>,
    /// One timer per such publish, resolving to its id when it is due again.
    resends: JoinSet<String>,
    /// One timer per room whose re-subscribe met `unavailable`: (room, subscription id,
    /// its subscribe count when it was set).
    resubscribes: JoinSet<(String, u64, u64)>,
    /// How many free places in a reader's buffer count as "caught up".
    resume_at: usize,
    refresher: Option<Refresher>,
}

impl Session {
    pub(super) fn new(
        client: Client,
        messages: Messages,
        room_capacity: usize,
        tokens: Option<&Tokens>,
    ) -> Self {
        Session {
            client,
            messages,
            rooms: HashMap::new(),
            pending: VecDeque::new(),
            acks: HashMap::new(),
            control: VecDeque::new(),
            waiters: JoinSet::new(),
            unavailable: HashMap::new(),
            resends: JoinSet::new(),
            resubscribes: JoinSet::new(),
            resume_at: (room_capacity / 2).max(1),
            refresher: tokens.map(Tokens::refresher),
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<SessionCommand>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let refreshing = self.refresher.is_some();
            let controlling = !self.control.is_empty();
            let waiting = !self.waiters.is_empty();
            let resending = !self.resends.is_empty();
            let resubscribing = !self.resubscribes.is_empty();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    // The last HubClient is gone; the client closes as its handles drop.
                    None => break,
                },
                Some(Ok((room, id))) = self.waiters.join_next(), if waiting => {
                    self.caught_up(&room, id);
                }
                Some(Ok(id)) = self.resends.join_next(), if resending => self.resend(&id),
                Some(Ok((room, id, subscribes))) = self.resubscribes.join_next(), if resubscribing => {
                    self.resubscribe(&room, id, subscribes);
                }
                token = next_token(&mut self.refresher), if refreshing => {
                    // While disconnected the next handshake authenticates with this token
                    // anyway; a queued `refresh` could outlive its token in a long outage.
                    if self.client.is_connected() {
                        let frame: ClientFrame = ClientFrame::Refresh { token };
                        self.send_control(encode(&frame));
                    }
                }
                sent = send_front(&self.client, &self.control), if controlling => {
                    match sent {
                        Ok(()) => { self.control.pop_front(); }
                        // Closed, nothing is written again; or not connected under the `Reject`
                        // policy, and the reconnect handshake subscribes from the session's
                        // state: either way nothing is worth keeping.
                        Err(_) => self.control.clear(),
                    }
                }
                n = self.messages.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for msg in batch.drain(..) {
                        self.frame(&msg);
                    }
                }
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
                id,
                tx,
                confirmed,
            } => {
                // A new subscription is a new stream: it starts from the room's present, not
                // from where an earlier subscription to the room stopped.
                self.rooms.insert(
                    room,
                    Room {
                        id,
                        tx,
                        confirmed: Some(confirmed),
                        position: None,
                        flow: Flow::Live,
                        refusals: 0,
                        subscribes: 0,
                    },
                );
            }
            SessionCommand::Unsubscribe { room, id } => {
                let matches = self
                    .rooms
                    .get(&room)
                    .is_some_and(|r| id.is_none_or(|id| r.id == id));
                if matches {
                    self.end(&room);
                }
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

    /// Frames the reconnect handshake sends: every room with a reader from its last offset,
    /// then every unacknowledged publish in order. Stalled rooms stay unsubscribed until their
    /// readers catch up.
    fn snapshot(&mut self) -> Vec<Message> {
        self.rooms.retain(|_, room| !room.tx.is_closed());
        let mut frames = Vec::with_capacity(self.rooms.len() + self.pending.len());
        for (name, room) in &mut self.rooms {
            if room.flow != Flow::Stalled {
                room.subscribes += 1;
                frames.push(Room::subscribe_frame(name, room.position));
            }
        }
        frames.extend(self.pending.iter().map(|(_, frame)| frame.clone()));
        frames
    }

    /// Queues a frame of the session's own behind any still waiting.
    fn send_control(&mut self, frame: Message) {
        if !self.control.is_empty() {
            self.control.push_back(frame);
            return;
        }
        match self.client.try_send(frame) {
            Ok(()) => {}
            Err(SendError::Full(frame)) => self.control.push_back(frame),
            // Not connected under the `Reject` policy: the reconnect handshake subscribes from
            // the session's state, so a missed subscribe or unsubscribe changes nothing. Closed:
            // nothing is written any more.
            Err(_) => {}
        }
    }

    /// Forgets a room and ends its subscription on the wire.
    fn end(&mut self, name: &str) {
        if let Some(room) = self.rooms.remove(name) {
            if room.flow != Flow::Stalled {
                let frame: ClientFrame = ClientFrame::Unsubscribe {
                    room: name.to_owned(),
                };
                self.send_control(encode(&frame));
            }
        }
    }

    /// The reader of `name` has no room left: drop its live stream until it drains.
    fn stall(&mut self, name: &str) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        let was_subscribed = room.flow != Flow::Stalled;
        room.flow = Flow::Stalled;
        let (tx, id, resume_at) = (room.tx.clone(), room.id, self.resume_at);
        let key = name.to_owned();
        self.waiters.spawn(async move {
            // The permits are released at once: this only waits until the reader has freed
            // half its buffer (or is gone, which `caught_up` finds out).
            let _ = tx.reserve_many(resume_at).await;
            (key, id)
        });
        if was_subscribed {
            let frame: ClientFrame = ClientFrame::Unsubscribe {
                room: name.to_owned(),
            };
            self.send_control(encode(&frame));
        }
        tracing::debug!(room = %name, "room reader is behind; live stream paused");
    }

    fn caught_up(&mut self, name: &str, id: u64) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if room.id != id || room.flow != Flow::Stalled {
            return;
        }
        if room.tx.is_closed() {
            self.rooms.remove(name);
            return;
        }
        room.flow = Flow::Resuming;
        room.subscribes += 1;
        let frame = Room::subscribe_frame(name, room.position);
        self.send_control(frame);
    }

    /// Stalls or ends a room whose reader did not take an event.
    fn settle(&mut self, name: &str, outcome: Offer) {
        match outcome {
            Offer::Taken => {}
            Offer::Full => self.stall(name),
            Offer::Gone => self.end(name),
        }
    }

    fn frame(&mut self, msg: &Message) {
        let Ok(text) = msg.to_text() else {
            tracing::warn!("hub sent a binary frame");
            return;
        };
        match envelope::parse(text) {
            Ok(frame) => self.envelope(text, frame),
            Err(error) => self.unreadable(text, &error),
        }
    }

    fn envelope(&mut self, text: &str, frame: Envelope<'_>) {
        match (&*frame.kind, frame.room, frame.epoch, frame.offset) {
            ("message", Some(room), Some(epoch), Some(offset)) => match frame.data.0 {
                Some(data) => self.message(&room, epoch, offset, data),
                None => self.unreadable(text, &"message without data"),
            },
            ("subscribed", Some(room), Some(epoch), Some(offset)) => {
                let recovered = frame.recovered.unwrap_or(false);
                self.subscribed(&room, epoch, offset, recovered, frame.first);
            }
            ("ack", _, _, Some(offset)) => {
                if let Some(id) = frame.id {
                    self.ack(&id, offset);
                }
            }
            ("error", _, _, _) => {
                let raw_code = frame.code.map(Cow::into_owned).unwrap_or_default();
                let message = frame.message.map(Cow::into_owned).unwrap_or_default();
                self.error(raw_code, message, frame.reference.as_deref());
            }
            ("refreshed", ..) => tracing::debug!(exp = ?frame.exp, "token refreshed"),
            ("message" | "subscribed" | "ack", ..) => {
                self.unreadable(text, &"a required field is missing");
            }
            (kind, ..) => tracing::debug!(kind, "ignoring an unknown hub frame"),
        }
    }

    /// A frame that cannot be read: if it names its room and offset, that room reports a gap
    /// for it at once.
    fn unreadable(&mut self, text: &str, error: &dyn std::fmt::Display) {
        tracing::warn!(%error, "hub sent a frame that cannot be read");
        // Without a room and offset, the next message's offset reveals the hole instead.
        let Some((name, Some(offset))) = envelope::locate(text) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&name) else {
            return;
        };
        let Some((epoch, last)) = room.position else {
            return;
        };
        if room.flow != Flow::Live || offset <= last {
            return;
        }
        let gap = Gap {
            room: name.clone(),
            from: last + 1,
            resumes_at: Some(offset + 1),
            epoch_changed: false,
        };
        let outcome = room.deliver(RoomEvent::Gap(gap), (epoch, offset));
        self.settle(&name, outcome);
    }

    fn message(&mut self, name: &str, epoch: u64, offset: u64, data: &RawValue) {
        // One map lookup on the common path: checks and delivery share the borrow.
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if room.flow != Flow::Live {
            return;
        }
        let gap = match room.position {
            Some((known, last)) if known == epoch && offset <= last => {
                return; // already delivered: a replay overlapped the live stream
            }
            Some((known, last)) if known != epoch => Some(Gap {
                room: name.to_owned(),
                from: last + 1,
                resumes_at: None,
                epoch_changed: true,
            }),
            Some((_, last)) if offset > last + 1 => Some(Gap {
                room: name.to_owned(),
                from: last + 1,
                resumes_at: Some(offset),
                epoch_changed: false,
            }),
            _ => None,
        };
        let mut outcome = match gap {
            Some(gap) => room.deliver(RoomEvent::Gap(gap), (epoch, offset.saturating_sub(1))),
            None => Offer::Taken,
        };
        if let Offer::Taken = outcome {
            let message = RoomMessage {
                room: name.to_owned(),
                epoch,
                offset,
                data: data.to_owned(),
            };
            outcome = room.deliver(RoomEvent::Message(message), (epoch, offset));
        }
        self.settle(name, outcome);
    }

    fn subscribed(
        &mut self,
        name: &str,
        epoch: u64,
        offset: u64,
        recovered: bool,
        first: Option<u64>,
    ) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if let Some(confirmed) = room.confirmed.take() {
            let _ = confirmed.send(Ok(()));
        }
        room.refusals = 0;
        // A subscription the session dropped meanwhile; the resume will subscribe again.
        if room.flow == Flow::Stalled {
            return;
        }
        // A subscribe without `since` that overtook a live one (the reconnect handshake and
        // `subscribe()` both send one when a subscribe starts while connecting) restarts the
        // stream after the room's newest offset: what was published in between would be
        // skipped. Ask for it instead, from the last offset delivered.
        if let Some((known, last)) = room.position {
            if known == epoch && first.is_none() && offset > last {
                room.flow = Flow::Resuming;
                room.subscribes += 1;
                let frame = Room::subscribe_frame(name, room.position);
                self.send_control(frame);
                return;
            }
        }
        room.flow = Flow::Live;
        let gap = match room.position {
            None => None,
            Some((old_epoch, last)) if old_epoch != epoch => Some(Gap {
                room: name.to_owned(),
                from: last + 1,
                resumes_at: None,
                epoch_changed: true,
            }),
            // A replay from at or before the next offset wanted misses nothing, whatever the hub
            // thought of the `since` it was given (a repeated subscribe may have named an older
            // position): what it repeats is dropped as already delivered.
            Some((_, last)) if !recovered && first.is_none_or(|f| f > last + 1) => Some(Gap {
                room: name.to_owned(),
                from: last + 1,
                resumes_at: first,
                epoch_changed: false,
            }),
            Some(_) => None,
        };
        // A fresh subscription starts after the room's newest offset; a lossy one resumes from
        // what the hub still has.
        let start = (epoch, first.map_or(offset, |f| f.saturating_sub(1)));
        match gap {
            None if room.position.is_none() => room.position = Some(start),
            None => {}
            // Not taken: the room stalls (its resume reports the gap again) or ends.
            Some(gap) => {
                let outcome = room.deliver(RoomEvent::Gap(gap), start);
                self.settle(name, outcome);
            }
        }
    }

    fn ack(&mut self, id: &str, offset: u64) {
        self.unavailable.remove(id);
        if let Some((ack, _permit)) = self.acks.remove(id) {
            let _ = ack.send(Ok(offset));
        }
        if let Some(at) = self.pending.iter().position(|(pending, _)| pending == id) {
            self.pending.remove(at);
        }
    }

    /// Sends a publish refused as `unavailable` again, if it still waits for its ack (a
    /// reconnect may have sent it, and the hub acknowledged it, in the meantime).
    fn resend(&mut self, id: &str) {
        if let Some((_, frame)) = self.pending.iter().find(|(pending, _)| pending == id) {
            let frame = frame.clone();
            self.send_control(frame);
        }
    }

    /// Subscribes `name` again after its subscribe met `unavailable`, unless the room has
    /// moved on since (ended, stalled, or subscribed again by a reconnect or a resume).
    fn resubscribe(&mut self, name: &str, id: u64, subscribes: u64) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if room.id != id || room.subscribes != subscribes || room.flow == Flow::Stalled {
            return;
        }
        // Whatever arrives before the `subscribed` is covered by the replay from `position`.
        room.flow = Flow::Resuming;
        room.subscribes += 1;
        let frame = Room::subscribe_frame(name, room.position);
        self.send_control(frame);
    }

    /// An `error` frame, with its code as sent: one this client does not know still refuses
    /// what `reference` names.
    fn error(&mut self, raw_code: String, message: String, reference: Option<&str>) {
        let code = ErrorCode::from_wire(&raw_code);
        let Some(reference) = reference else {
            tracing::warn!(code = %raw_code, %message, "hub error");
            return;
        };
        if code == ErrorCode::Unavailable {
            // A live room the hub could not read (its storage is down) is not refused: it is
            // subscribed again later. A first subscribe still fails, so its caller hears.
            if let Some(room) = self
                .rooms
                .get_mut(reference)
                .filter(|r| r.confirmed.is_none() && r.flow != Flow::Stalled)
            {
                room.refusals += 1;
                let delay = resend_delay(room.refusals);
                let timer = (reference.to_owned(), room.id, room.subscribes);
                tracing::debug!(room = %reference, ?delay, "hub storage unavailable; subscribing again");
                self.resubscribes.spawn(async move {
                    tokio::time::sleep(delay).await;
                    timer
                });
                return;
            }
        }
        if code == ErrorCode::Unavailable && self.acks.contains_key(reference) {
            // Not stored: the same publish goes again later, and the ack waits for it.
            let refusals = self.unavailable.entry(reference.to_owned()).or_insert(0);
            *refusals += 1;
            let delay = resend_delay(*refusals);
            let id = reference.to_owned();
            tracing::debug!(%id, ?delay, "hub storage unavailable; publish goes again");
            self.resends.spawn(async move {
                tokio::time::sleep(delay).await;
                id
            });
            return;
        }
        self.unavailable.remove(reference);
        if let Some((ack, _permit)) = self.acks.remove(reference) {
            self.pending.retain(|(id, _)| id != reference);
            let _ = ack.send(Err(HubError::Refused {
                code,
                raw_code,
                message,
            }));
        } else if code == ErrorCode::NotSubscribed {
            // An unsubscribe that crossed the end of the subscription; nothing to undo.
        } else if let Some(mut room) = self.rooms.remove(reference) {
            tracing::warn!(room = %reference, code = %raw_code, %message, "subscription refused");
            if let Some(confirmed) = room.confirmed.take() {
                let _ = confirmed.send(Err(HubError::Refused {
                    code,
                    raw_code,
                    message,
                }));
            }
        }
    }
}

/// The delay before the `refusals`-th resend of a publish: doubling from [`RESEND_BASE`] up to
/// [`RESEND_MAX`], with equal jitter (at least half of it), so publishers that met the same
/// outage do not come back in step.
fn resend_delay(refusals: u32) -> Duration {
    let full = RESEND_BASE
        .saturating_mul(1 << refusals.saturating_sub(1).min(16))
        .min(RESEND_MAX);
    full / 2 + full.mul_f64(fastrand::f64() / 2.0)
}

/// Queues the oldest waiting control frame, waiting for room; the frame stays in `control`
/// until this resolves, so a cancelled send loses nothing.
async fn send_front(
    client: &Client,
    control: &VecDeque<Message>,
) -> Result<(), SendError<Message>> {
    match control.front() {
        Some(frame) => client.send(frame.clone()).await,
        None => std::future::pending().await,
    }
}

/// The refresher's next token; never resolves without a refresher (the branch is disabled then).
async fn next_token(refresher: &mut Option<Refresher>) -> String {
    match refresher {
        Some(refresher) => refresher.next().await,
        None => std::future::pending().await,
    }
}

pub(super) fn encode<D: serde::Serialize>(frame: &ClientFrame<D>) -> Message {
    Message::text(serde_json::to_string(frame).expect("protocol frames always serialize"))
}

/// The reconnect handshake: authenticate, re-subscribe from the last offsets, re-send unacked
/// publishes.
pub(super) struct Resync {
    pub(super) session: mpsc::WeakSender<SessionCommand>,
    /// The client id and its secret, for `auth` when no token is used.
    pub(super) anonymous_id: Option<(String, String)>,
    pub(super) tokens: Option<Tokens>,
}

impl Handshaker for Resync {
    fn handshake<'a>(
        &'a self,
        io: &'a mut HandshakeIo<'_>,
    ) -> BoxFuture<'a, Result<(), HandshakeError>> {
        Box::pin(async move {
            if let Some(tokens) = &self.tokens {
                let token = tokens
                    .for_connect()
                    .await
                    .map_err(|e| HandshakeError::retryable(format!("token source failed: {e}")))?;
                let auth: ClientFrame = ClientFrame::Auth {
                    token: Some(token),
                    client: None,
                    secret: None,
                };
                io.send(encode(&auth)).await?;
            } else if let Some((client, secret)) = &self.anonymous_id {
                let auth: ClientFrame = ClientFrame::Auth {
                    token: None,
                    client: Some(client.clone()),
                    secret: Some(secret.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_delays_double_from_the_base_stay_jittered_and_stop_at_the_cap() {
        for refusals in 1..40 {
            let full = RESEND_BASE
                .saturating_mul(1 << (refusals - 1).min(16))
                .min(RESEND_MAX);
            for _ in 0..20 {
                let delay = resend_delay(refusals);
                assert!(delay >= full / 2 && delay <= full, "{refusals}: {delay:?}");
            }
        }
        assert!(resend_delay(1) <= RESEND_BASE);
        assert!(resend_delay(u32::MAX) >= RESEND_MAX / 2);
    }
}
