//! `HubClient`: a typed client for the resocket hub, with recovery and exactly-once publishes.
//!
//! It is a [`Client`] plus a session task (`session.rs`) that reads the client's messages and
//! keeps, per room, the epoch and the last offset delivered. After every reconnect a handshake
//! (which runs before any queued message is written) re-subscribes each room with `since`, then
//! re-sends every publish not yet acknowledged, in publish order and with the same ids, so the
//! hub's dedupe makes the publish exactly-once in effect and the room's order stays the
//! publisher's order. When the hub cannot replay what was missed (`recovered: false`, or a new
//! epoch), or offsets skip forward, the room's stream yields a [`RoomEvent::Gap`]: a hole is
//! always announced, never silent.
//!
//! Each room has its own bounded buffer, so a slow reader holds up only its own room: the
//! session pauses that room's live stream and resumes it with `since` once the reader catches
//! up. The handshake asks the session task for its state over a channel instead of sharing it
//! behind a lock, so the per-message path takes no lock at all.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{
    protocol::{close_code, ClientFrame, ErrorCode, SUBPROTOCOL},
    session::{encode, Resync, Session, SessionCommand},
    token::Tokens,
};
use crate::{Client, ClientBuilder, Error, Message};

/// The refresh margin when none is set: how long before `exp` a token source is asked again.
const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(30);

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
#[derive(Debug, Clone)]
pub struct RoomMessage {
    /// The room.
    pub room: String,
    /// The room's epoch.
    pub epoch: u64,
    /// The message's offset in the room.
    pub offset: u64,
    /// The published JSON value, as raw JSON text: exactly the bytes the hub delivered, whatever
    /// they hold (a [`serde_json::Value`] cannot hold every JSON text, for example nesting
    /// deeper than 128 levels or `1e999999`). Read it with [`RoomMessage::decode`].
    pub data: Box<RawValue>,
}

impl RoomMessage {
    /// The published JSON text.
    pub fn raw(&self) -> &str {
        self.data.get()
    }

    /// Decodes the published value into `T` (for example a `serde_json::Value` or your own
    /// type).
    ///
    /// # Errors
    /// When the JSON does not fit `T`, or is beyond what `T`'s parser takes (serde_json's
    /// recursion limit of 128, numbers out of `f64` range for a `Value`).
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.get())
    }
}

impl PartialEq for RoomMessage {
    fn eq(&self, other: &Self) -> bool {
        self.room == other.room
            && self.epoch == other.epoch
            && self.offset == other.offset
            && self.data.get() == other.data.get()
    }
}

/// A hole in a room's stream: messages the hub accepted that this stream will not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The room.
    pub room: String,
    /// The first offset missed (the one after the last delivered).
    pub from: u64,
    /// The first offset available again, when known (`None` after an epoch change: offsets
    /// restart and nothing of the old epoch can be recovered).
    pub resumes_at: Option<u64>,
    /// Whether the room's epoch changed (its history was lost).
    pub epoch_changed: bool,
}

/// Why a hub operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The hub refused the operation with an `error` frame.
    #[error("hub refused: {raw_code}: {message}")]
    Refused {
        /// The error code; [`ErrorCode::Unknown`] for a code this client does not know (or
        /// none), whose name is then in `raw_code`.
        code: ErrorCode,
        /// The code exactly as the hub sent it (empty when it sent none).
        raw_code: String,
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

/// The stream of one room's events. Dropping it unsubscribes the room.
///
/// Its buffer holds [`HubClientBuilder::room_capacity`] events. A reader that lets it fill
/// holds up only this room: the room's live stream pauses (unsubscribed on the wire), and once
/// the reader has drained half the buffer it resumes from the last offset delivered, with the
/// hub's history filling the hole or a [`RoomEvent::Gap`] saying what is lost.
#[derive(Debug)]
pub struct Subscription {
    room: String,
    id: u64,
    rx: mpsc::Receiver<RoomEvent>,
    session: mpsc::WeakSender<SessionCommand>,
}

impl Subscription {
    /// The next event; `None` once the client is closed, the room is unsubscribed, or the hub
    /// refused the room (for example after a token refresh that no longer allows it).
    ///
    /// # Cancel safety
    /// Cancel-safe: an event is removed only when this returns it.
    pub async fn recv(&mut self) -> Option<RoomEvent> {
        self.rx.recv().await
    }

    /// The room's name.
    pub fn room(&self) -> &str {
        &self.room
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Best effort: should the command channel be full, the session notices the closed
        // stream at the next event for the room, or at the next reconnect.
        if let Some(session) = self.session.upgrade() {
            let _ = session.try_send(SessionCommand::Unsubscribe {
                room: std::mem::take(&mut self.room),
                id: Some(self.id),
            });
        }
    }
}

impl futures_core::Stream for Subscription {
    type Item = RoomEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RoomEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// Builds a [`HubClient`].
pub struct HubClientBuilder {
    builder: ClientBuilder,
    token: Option<String>,
    tokens: Option<Tokens>,
    refresh_margin: Duration,
    client_id: String,
    room_capacity: usize,
    max_in_flight: usize,
}

impl fmt::Debug for HubClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClientBuilder")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl HubClientBuilder {
    /// Authenticates with this token (sent as `Authorization: Bearer`). It is never renewed:
    /// once it expires the hub closes the connection (`token_expired`, 1008) and the client
    /// stops. Use [`HubClientBuilder::token_source`] for connections that outlive a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with tokens from `source`, called for the first connection, some margin
    /// before each token's `exp` (see [`HubClientBuilder::refresh_margin`]) and when a
    /// reconnect finds the token in use about to expire. A fresh token reaches the live
    /// connection in a `refresh` frame, so the connection outlives every single token; each
    /// connection authenticates with an `auth` frame carrying the newest one. Replaces
    /// [`HubClientBuilder::token`].
    ///
    /// `exp` is read from the token's payload (a JWT, as the hub issues); a token without a
    /// readable `exp` is fetched again only on reconnect. A failing source is asked again a
    /// second later. With a token source the client also retries after the hub's
    /// `token_expired` close (1008), which is otherwise permanent: this installs a
    /// [`ClientBuilder::retry_if`] classifier, replacing one set through
    /// [`HubClientBuilder::configure`].
    pub fn token_source<F, Fut, E>(mut self, source: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display + 'static,
    {
        self.tokens = Some(Tokens::new(source, self.refresh_margin));
        self
    }

    /// How long before a token's `exp` the [token source](HubClientBuilder::token_source) is
    /// asked for the next one (default 30 s). A token that lives less than twice the margin is
    /// refreshed halfway to its `exp`.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        if let Some(tokens) = &mut self.tokens {
            tokens.set_margin(margin);
        }
        self
    }

    /// The client id for anonymous publish dedupe (default: random). With a token the hub
    /// uses the token's `sub` instead.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// How many events each room's stream buffers (default 1024). A room whose reader lets it
    /// fill pauses and later resumes from its last offset; other rooms are not held up.
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

    /// Starts the client and its session task, and waits until the client is `Ready` for the
    /// first time: [`HubClientBuilder::spawn`] followed by [`Client::ready`].
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub async fn connect(self) -> Result<HubClient, Error> {
        let hub = self.spawn()?;
        hub.client.ready().await?;
        Ok(hub)
    }

    /// Starts the client and its session task without waiting for it to connect; requests
    /// made before it is `Ready` wait for it.
    ///
    /// # Errors
    /// As [`ClientBuilder::spawn`].
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn(self) -> Result<HubClient, Error> {
        let (session_tx, session_rx) = mpsc::channel(1024);
        let mut builder = self.builder.subprotocol(SUBPROTOCOL);
        let anonymous_id = match (&self.tokens, &self.token) {
            (Some(_), _) => {
                builder = builder.retry_if(|e| e.is_retryable() || is_token_expired(e));
                None
            }
            (None, Some(token)) => {
                builder = builder.header("authorization", format!("Bearer {token}"));
                None
            }
            // The secret proves to the hub that a reconnect is this client, not another one that
            // names the same id; it lives as long as the client, so retries stay deduplicated.
            (None, None) => Some((self.client_id.clone(), anonymous_secret())),
        };
        // A weak sender: the handshake must not keep the session alive once every
        // `HubClient` is gone.
        let resync = Resync {
            session: session_tx.downgrade(),
            anonymous_id,
            tokens: self.tokens.clone(),
        };
        let (client, messages) = builder.handshake(resync).spawn()?;
        let session = Session::new(
            client.clone(),
            messages,
            self.room_capacity,
            self.tokens.as_ref(),
        );
        tokio::spawn(session.run(session_rx));
        Ok(HubClient {
            client,
            session: session_tx,
            ids: Arc::new(AtomicU64::new(0)),
            subscriptions: Arc::new(AtomicU64::new(0)),
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
    subscriptions: Arc<AtomicU64>,
    prefix: String,
    room_capacity: usize,
    in_flight: Arc<Semaphore>,
}

/// Whether the hub closed the connection because its token expired.
fn is_token_expired(error: &Error) -> bool {
    error.close_frame().is_some_and(|frame| {
        u16::from(frame.code) == close_code::POLICY && frame.reason.as_str() == "token expired"
    })
}

impl HubClient {
    /// Starts building a hub client for `url` (for example `ws://127.0.0.1:8080/ws`).
    pub fn builder(url: &str) -> HubClientBuilder {
        Self::with_builder(Client::builder(url))
    }

    /// Starts building a hub client for several hub nodes, tried in turn: after a failed
    /// attempt or a dropped connection the next node is used, and the client recovers its
    /// rooms there (see [`Client::builder_with_endpoints`]). [`HubClientBuilder::connect`]
    /// reports a bad URL, or an empty list.
    pub fn builder_with_endpoints<I>(urls: I) -> HubClientBuilder
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        Self::with_builder(Client::builder_with_endpoints(urls))
    }

    fn with_builder(builder: ClientBuilder) -> HubClientBuilder {
        HubClientBuilder {
            builder,
            token: None,
            tokens: None,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
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
    /// [`HubError::Refused`] when the hub refuses (no permission, or `unavailable`: its
    /// storage is down), [`HubError::Closed`] once the client is closed.
    ///
    /// Once confirmed, a subscription outlives storage outages: a re-subscribe the hub answers
    /// with `unavailable` is sent again, from the last offset, after a delay that doubles from
    /// 100 ms up to 5 s.
    ///
    /// Subscribing again to a room replaces its earlier [`Subscription`], which then ends.
    pub async fn subscribe(&self, room: impl Into<String>) -> Result<Subscription, HubError> {
        let (tx, rx) = mpsc::channel(self.room_capacity);
        let room: String = room.into();
        let id = self.subscriptions.fetch_add(1, Ordering::Relaxed);
        // Registered first, so the `subscribed` reply finds the room. While disconnected the
        // frame waits in the queue and the reconnect handshake subscribes too; a repeated
        // subscribe just restarts the subscription, and offsets already delivered are skipped.
        let (confirmed, confirmation) = oneshot::channel();
        let command = SessionCommand::Subscribe {
            room: room.clone(),
            id,
            tx,
            confirmed,
        };
        self.session
            .send(command)
            .await
            .map_err(|_| HubError::Closed)?;
        let frame: ClientFrame = ClientFrame::Subscribe {
            room: room.clone(),
            since: None,
            epoch: None,
        };
        // Made before the wait, so a refusal or a cancelled call still unsubscribes.
        let subscription = Subscription {
            room,
            id,
            rx,
            session: self.session.downgrade(),
        };
        self.client
            .send(encode(&frame))
            .await
            .map_err(|_| HubError::Closed)?;
        confirmation.await.unwrap_or(Err(HubError::Closed))?;
        Ok(subscription)
    }

    /// Stops the subscription to `room`: its [`Subscription`] ends after the events already
    /// buffered, and reconnects no longer subscribe it. Nothing happens for a room not
    /// subscribed.
    ///
    /// # Errors
    /// [`HubError::Closed`] once the client is closed.
    pub async fn unsubscribe(&self, room: &str) -> Result<(), HubError> {
        self.session
            .send(SessionCommand::Unsubscribe {
                room: room.to_owned(),
                id: None,
            })
            .await
            .map_err(|_| HubError::Closed)
    }

    /// Publishes `data` to `room` and waits for the acknowledgement: the message's offset.
    ///
    /// A publish the hub answers with `unavailable` (its storage is down) is not an error: it is
    /// sent again, with the same id, after a delay that doubles from 100 ms up to 5 s, until
    /// the hub stores it; the hub's dedupe applies it once.
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
        let id = format!(
            "{}-{}",
            self.prefix,
            self.ids.fetch_add(1, Ordering::Relaxed)
        );
        // Serialized straight into the frame: no detour through a `Value`, which could not
        // hold every JSON text (a `RawValue` passes through byte for byte).
        let frame: ClientFrame<&_> = ClientFrame::Publish {
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

/// 128 random bits from the OS, hex-encoded: the secret behind an anonymous client id.
fn anonymous_secret() -> String {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::from_os_rng();
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}
