//! One WebSocket connection: a reader that handles client frames and a writer that drains the
//! outbox in batches, polled together in one task.

use std::collections::{HashMap, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use resocket::hub::protocol::{close_code, ErrorCode, ServerFrame};
use tracing::Instrument;

use crate::engine::Engine as _;
use crate::frame::{self, FrameError, Inbound};
use crate::hub::Shared;
use crate::metrics::Disconnect;
use crate::outbox::{Closing, Outbox};
use crate::rate::TokenBucket;
use crate::registry::Refused;
use crate::room::{Published, Room};
use crate::token::{expiry_deadline, Claims};

/// A subscribe announced to a room with [`Room::begin_join`]; unless it reaches
/// [`Room::subscribe_from`] ([`finish`](Self::finish)), dropping it abandons the join.
struct Joining(Option<Arc<Room>>);

impl Joining {
    fn begin(room: &Arc<Room>) -> Self {
        room.begin_join();
        Joining(Some(room.clone()))
    }

    /// `subscribe_from` ends the join itself.
    fn finish(&mut self) {
        self.0 = None;
    }
}

impl Drop for Joining {
    fn drop(&mut self) {
        if let Some(room) = &self.0 {
            room.abandon_join();
        }
    }
}

/// How long the hub waits for the peer's Close once its own is written.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// RFC 6455's close code for a protocol violation.
const PROTOCOL_ERROR: u16 = 1002;

/// Who is on the other end.
#[derive(Debug)]
pub(crate) enum Identity {
    /// Authenticated by a token.
    Token(Claims),
    /// Anonymous, with the dedupe id derived from the `client` and `secret` it gave in
    /// `auth` (see [`anonymous_id`]), if any.
    Anonymous { client: Option<String> },
}

/// The connection's authentication state.
#[derive(Debug)]
pub(crate) enum Auth {
    /// No token yet and anonymous access is off: the first frame must be `auth`.
    Pending,
    /// Authenticated by the upgrade request (token or anonymous).
    FromRequest(Identity),
    /// Authenticated by an `auth` frame.
    FromFrame(Identity),
}

struct Session {
    id: u64,
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    auth: Auth,
    subscriptions: HashMap<String, Arc<Room>>,
    /// When the connection's token stops being valid; `None` without a token.
    expires: Option<tokio::time::Instant>,
}

/// Runs a connection to its end.
pub(crate) async fn run(
    shared: Arc<Shared>,
    socket: WebSocket,
    id: u64,
    outbox: Arc<Outbox>,
    auth: Auth,
) {
    let span = tracing::debug_span!("conn", id);
    async move {
        let (sink, mut stream) = socket.split();
        let start = Instant::now();
        // Milliseconds since `start` of the last frame from the client: the reader stamps it and
        // the writer's ping tick reads it, so liveness costs one relaxed store per frame.
        let last_seen = AtomicU64::new(0);
        if let Auth::FromRequest(Identity::Token(c)) = &auth {
            shared.hold(id, &c.sub, c.jti.as_deref());
            // A revocation that landed between the token check and `hold` is caught here.
            if shared.is_revoked(&c.sub, c.jti.as_deref()) {
                outbox.close(Closing {
                    code: close_code::POLICY,
                    reason: "token revoked",
                    drain: false,
                });
            }
        }
        let expires = match &auth {
            Auth::FromRequest(Identity::Token(c)) => {
                Some(expiry_deadline(c.exp, shared.config.token_leeway))
            }
            _ => None,
        };
        let mut session = Session {
            id,
            shared: shared.clone(),
            outbox: outbox.clone(),
            auth,
            subscriptions: HashMap::new(),
            expires,
        };
        let close_timeout = shared.config.close_timeout;
        let mut writer = pin!(write_loop(&shared, sink, &outbox, &last_seen, start));
        let close = tokio::select! {
            close = &mut writer => close,
            end = read_loop(&mut session, &mut stream, &last_seen, start) => {
                outbox.close(end.unwrap_or(Closing { code: 1000, reason: "", drain: false }));
                tokio::time::timeout(close_timeout, writer).await.ok().flatten()
            }
        };
        // Released before the close handshake, which may wait on a peer that does not read.
        for (_, room) in session.subscriptions.drain() {
            room.unsubscribe(id, &shared.metrics);
        }
        if let Some((sink, frame)) = close {
            close_handshake(sink, stream, frame, close_timeout).await;
        }
        shared.unregister(id);
        tracing::debug!("closed");
    }
    .instrument(span)
    .await;
}

/// Drains the outbox into the socket in batches and pings on schedule, until a close is
/// requested; then hands back the sink and the Close frame to send. `None` when the socket
/// failed.
async fn write_loop(
    shared: &Shared,
    mut sink: SplitSink<WebSocket, Message>,
    outbox: &Outbox,
    last_seen: &AtomicU64,
    start: Instant,
) -> Option<(SplitSink<WebSocket, Message>, CloseFrame)> {
    let cfg = &shared.config;
    let mut batch = VecDeque::new();
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + cfg.ping_interval,
        cfg.ping_interval,
    );
    // A writer stuck on a slow socket must not fire a burst of pings once it is free again.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let dead_after = (cfg.ping_interval + cfg.ping_timeout).as_millis() as u64;
    loop {
        let mut send_ping = false;
        tokio::select! {
            biased;
            () = outbox.ready() => {}
            _ = ping.tick() => {
                let silent = (start.elapsed().as_millis() as u64).saturating_sub(last_seen.load(Relaxed));
                if silent > dead_after {
                    shared.metrics.disconnect(Disconnect::PingTimeout);
                    outbox.close(Closing { code: close_code::PING_TIMEOUT, reason: "ping timeout", drain: false });
                } else {
                    send_ping = true;
                }
            }
        }
        // Let the publishers that woke us finish their round first: one yield turns a burst
        // of fan-outs into one batch and one flush instead of many.
        tokio::task::yield_now().await;
        let mut closing = outbox.take(&mut batch);
        let (frames, bytes) = (
            batch.len() as u64,
            batch.iter().map(|f| f.len() as u64).sum::<u64>(),
        );
        // Every queued frame is fed, then the socket is flushed once: one syscall per batch.
        let write = async {
            if send_ping {
                sink.feed(Message::Ping(bytes::Bytes::new())).await?;
            }
            for frame in batch.drain(..) {
                sink.feed(Message::Text(frame)).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            biased;
            // A peer that stopped reading leaves the write pending forever; an abort (slow
            // consumer, drain time over) must win over it.
            () = outbox.aborted() => {
                batch.clear();
                closing = outbox.take(&mut batch);
            }
            res = write => {
                if res.is_err() {
                    return None;
                }
                shared.metrics.messages_out.fetch_add(frames, Relaxed);
                shared.metrics.write_batches.fetch_add(1, Relaxed);
                shared.metrics.bytes_out.fetch_add(bytes, Relaxed);
            }
        }
        // `take` hands over the queue and the close request atomically, and the outbox refuses
        // frames once closing, so everything queued before the close has just been written.
        if let Some(c) = closing {
            let frame = CloseFrame {
                code: c.code,
                reason: Utf8Bytes::from_static(c.reason),
            };
            return Some((sink, frame));
        }
    }
}

/// Sends the Close frame, waiting at most `timeout` for the socket to take it, then drops the
/// connection.
///
/// A slow consumer's socket is full when it is closed: the Close frame can only go out behind
/// what the peer has not read yet, so the wait is bounded. Before the drop, the input that has
/// arrived meanwhile (a heartbeat, the peer's own Close) is read and discarded: Linux answers a
/// socket closed with unread input by a reset, which throws away the Close still queued for the
/// peer.
async fn close_handshake(
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
    frame: CloseFrame,
    timeout: Duration,
) {
    // A peer declared dead for not answering pings will not answer this either.
    let awaits_reply = frame.code != close_code::PING_TIMEOUT;
    let handshake = async {
        // Refused when the peer closed first; tungstenite has then queued its reply, which the
        // reads below flush.
        let _ = sink.send(Message::Close(Some(frame))).await;
        if !awaits_reply {
            return;
        }
        // Then the peer's Close (or its hang-up), as RFC 6455 7.1.1 has the server wait for:
        // a socket closed with the reply still unread is reset, and a reset can destroy what
        // the peer has not read yet, the messages before our Close and the Close itself.
        let reply = async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        };
        // A peer that reads answers within a round trip; one that does not is given up on
        // soon, so it holds neither its slot nor a graceful shutdown for long.
        let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, reply).await;
    };
    // One deadline for both halves: a peer that neither reads nor answers holds its socket
    // no longer than `close_timeout`.
    let _ = tokio::time::timeout(timeout, handshake).await;
    while let Some(Some(Ok(_))) = stream.next().now_or_never() {}
}

async fn read_loop(
    session: &mut Session,
    stream: &mut SplitStream<WebSocket>,
    last_seen: &AtomicU64,
    start: Instant,
) -> Option<Closing> {
    let shared = session.shared.clone();
    let cfg = &shared.config;
    let mut bucket = TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst);
    let mut auth_deadline = pin!(tokio::time::sleep(cfg.auth_timeout));
    // One timer for the token's expiry, reset (not re-created) when `auth` or `refresh` changes
    // it, so the per-frame path registers no timer.
    let mut armed = session.expires;
    let mut expiry = pin!(tokio::time::sleep_until(
        armed.unwrap_or_else(tokio::time::Instant::now)
    ));
    loop {
        if session.expires != armed {
            armed = session.expires;
            if let Some(at) = armed {
                expiry.as_mut().reset(at);
            }
        }
        let pending = matches!(session.auth, Auth::Pending);
        let msg = tokio::select! {
            biased;
            () = &mut auth_deadline, if pending => {
                shared.metrics.auth_failures.fetch_add(1, Relaxed);
                shared.metrics.disconnect(Disconnect::Auth);
                session.error(ErrorCode::Unauthorized, "no auth frame in time", None);
                return Some(Closing { code: close_code::POLICY, reason: "auth timeout", drain: true });
            }
            () = &mut expiry, if armed.is_some() => return Some(session.token_expired()),
            msg = stream.next() => msg,
        };
        // The timer fires on the driver's next tick; a frame read in between must not slip
        // through on an expired token.
        if armed.is_some_and(|at| tokio::time::Instant::now() >= at) {
            return Some(session.token_expired());
        }
        let msg = match msg {
            None => return None,
            Some(Ok(msg)) => msg,
            Some(Err(e)) => return session.read_error(e),
        };
        last_seen.store(start.elapsed().as_millis() as u64, Relaxed);
        let text = match msg {
            Message::Text(text) => text,
            Message::Binary(_) => {
                if let Some(c) = session.rate_check(&mut bucket) {
                    return Some(c);
                }
                session.error(ErrorCode::BinaryUnsupported, "frames are JSON text", None);
                continue;
            }
            Message::Close(_) => return None,
            // Pings count against the rate limit too: tungstenite answers each with a pong, so
            // a ping flood would otherwise make the hub write without limit.
            Message::Ping(_) | Message::Pong(_) => {
                if let Some(c) = session.rate_check(&mut bucket) {
                    return Some(c);
                }
                continue;
            }
        };
        if let Some(c) = session.rate_check(&mut bucket) {
            return Some(c);
        }
        shared.metrics.messages_in.fetch_add(1, Relaxed);
        shared
            .metrics
            .bytes_in
            .fetch_add(text.len() as u64, Relaxed);
        if let Some(c) = session.handle(text.as_str()).await {
            return Some(c);
        }
    }
}

impl Session {
    fn push(&self, frame: &ServerFrame<()>) {
        // Serializing strings and numbers cannot fail.
        let text = serde_json::to_string(frame).unwrap_or_default();
        if self.outbox.push(text.into()) == crate::outbox::Push::Overflowed {
            self.shared.metrics.disconnect(Disconnect::SlowConsumer);
        }
    }

    fn error(&self, code: ErrorCode, message: impl Into<String>, reference: Option<String>) {
        self.shared.metrics.error_frames.fetch_add(1, Relaxed);
        self.push(&ServerFrame::Error {
            code,
            message: message.into(),
            reference,
        });
    }

    fn rate_check(&self, bucket: &mut TokenBucket) -> Option<Closing> {
        if bucket.try_take(Instant::now()) {
            return None;
        }
        self.shared.metrics.disconnect(Disconnect::RateLimited);
        self.error(ErrorCode::RateLimited, "rate limit exceeded", None);
        Some(Closing {
            code: close_code::RATE_LIMITED,
            reason: "rate limited",
            drain: true,
        })
    }

    fn read_error(&self, e: axum::Error) -> Option<Closing> {
        let inner = e.into_inner();
        match inner.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Capacity(_)) => {
                self.shared.metrics.disconnect(Disconnect::TooBig);
                let max = self.shared.config.max_message_size;
                self.error(
                    ErrorCode::TooBig,
                    format!("frames are limited to {max} bytes"),
                    None,
                );
                Some(Closing {
                    code: close_code::TOO_BIG,
                    reason: "message too big",
                    drain: true,
                })
            }
            Some(tungstenite::Error::Utf8(_)) => {
                // RFC 6455 §8.1: invalid UTF-8 in a text frame fails the connection (1007).
                self.shared.metrics.disconnect(Disconnect::InvalidUtf8);
                self.error(
                    ErrorCode::InvalidUtf8,
                    "text frame is not valid UTF-8",
                    None,
                );
                Some(Closing {
                    code: close_code::INVALID_PAYLOAD,
                    reason: "invalid utf-8",
                    drain: true,
                })
            }
            // A peer that vanished mid-stream gets no close frame: nobody is there to read it.
            Some(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => None,
            Some(tungstenite::Error::Protocol(error)) => {
                // RFC 6455 §7.4.1: a protocol violation (reserved bits, unmasked or fragmented
                // control frames, bad opcodes, a malformed close frame) closes with 1002.
                tracing::debug!(%error, "protocol violation");
                Some(Closing {
                    code: PROTOCOL_ERROR,
                    reason: "protocol error",
                    drain: false,
                })
            }
            _ => {
                tracing::debug!(error = %inner, "read failed");
                None
            }
        }
    }

    fn auth_failed(&self, message: &str) -> Option<Closing> {
        self.shared.metrics.auth_failures.fetch_add(1, Relaxed);
        self.shared.metrics.disconnect(Disconnect::Auth);
        self.error(ErrorCode::Unauthorized, message, None);
        Some(Closing {
            code: close_code::POLICY,
            reason: "unauthorized",
            drain: true,
        })
    }

    fn token_expired(&self) -> Closing {
        self.shared.metrics.disconnect(Disconnect::Auth);
        self.error(ErrorCode::TokenExpired, "the token expired", None);
        Closing {
            code: close_code::POLICY,
            reason: "token expired",
            drain: true,
        }
    }

    /// Handles one text frame; `Some` when the connection must close. With the memory engine
    /// nothing here awaits.
    async fn handle(&mut self, text: &str) -> Option<Closing> {
        let frame = match frame::parse(text) {
            Ok(frame) => frame,
            Err(FrameError {
                code,
                message,
                reference,
            }) => {
                if matches!(self.auth, Auth::Pending) {
                    return self.auth_failed("the first frame must be `auth`");
                }
                self.error(code, message, reference);
                return None;
            }
        };
        match frame {
            Inbound::Auth {
                token,
                client,
                secret,
            } => self.auth(token, client, secret),
            _ if matches!(self.auth, Auth::Pending) => {
                self.auth_failed("the first frame must be `auth`")
            }
            Inbound::Subscribe { room, since, epoch } => {
                if self.shared.redis().is_some() && !crate::registry::is_node_room(&room) {
                    // Boxed: the Redis call's state would otherwise sit in every connection's
                    // task, idle ones included, on the memory engine too.
                    Box::pin(self.subscribe_shared(room, since, epoch)).await;
                } else {
                    self.subscribe(room, since, epoch);
                }
                None
            }
            Inbound::Unsubscribe { room } => {
                match self.subscriptions.remove(&room) {
                    Some(r) => {
                        r.unsubscribe(self.id, &self.shared.metrics);
                    }
                    None => self.error(
                        ErrorCode::NotSubscribed,
                        "not subscribed to this room",
                        Some(room),
                    ),
                }
                None
            }
            Inbound::Publish { room, id, data } => {
                if self.shared.redis().is_some() {
                    Box::pin(self.publish_shared(room, id, data)).await;
                } else {
                    self.publish(room, id, data);
                }
                None
            }
            Inbound::Refresh { token } => self.refresh(&token),
        }
    }

    fn identity(&self) -> Option<&Identity> {
        match &self.auth {
            Auth::Pending => None,
            Auth::FromRequest(i) | Auth::FromFrame(i) => Some(i),
        }
    }

    fn auth(
        &mut self,
        token: Option<String>,
        client: Option<String>,
        secret: Option<String>,
    ) -> Option<Closing> {
        let anonymous_upgrade = matches!(self.auth, Auth::FromRequest(Identity::Anonymous { .. }));
        if !matches!(self.auth, Auth::Pending) && !anonymous_upgrade {
            self.error(
                ErrorCode::AlreadyAuthenticated,
                "this connection is already authenticated",
                None,
            );
            return None;
        }
        let identity = match token {
            Some(token) => match self.shared.verify(&token) {
                Ok(claims) => Identity::Token(claims),
                Err(e) => return self.auth_failed(&e.to_string()),
            },
            None if self.shared.config.allow_anonymous => Identity::Anonymous {
                client: anonymous_id(client.as_deref(), secret.as_deref()),
            },
            None => return self.auth_failed("a token is required"),
        };
        if let Identity::Token(c) = &identity {
            self.shared.hold(self.id, &c.sub, c.jti.as_deref());
            self.expires = Some(expiry_deadline(c.exp, self.shared.config.token_leeway));
        }
        self.auth = Auth::FromFrame(identity);
        None
    }

    /// Who this connection is for publish dedupe and room quotas.
    fn client_key(&self) -> String {
        match self.identity() {
            Some(Identity::Token(c)) => c.sub.clone(),
            Some(Identity::Anonymous { client: Some(c) }) => c.clone(),
            // Without a proven client id, repeats are recognised within this connection only.
            _ => format!("conn:{}", self.id),
        }
    }

    fn refused(&self, refused: Refused, reference: String) {
        match refused {
            Refused::TooManyRooms => self.error(
                ErrorCode::TooManyRooms,
                "the hub is at its room limit",
                Some(reference),
            ),
            Refused::Quota => self.error(
                ErrorCode::RoomQuota,
                "this client created as many rooms as it may hold",
                Some(reference),
            ),
        }
    }

    /// Replaces the connection's token with a fresh one for the same `sub`.
    fn refresh(&mut self, token: &str) -> Option<Closing> {
        let Some(Identity::Token(current)) = self.identity() else {
            self.error(
                ErrorCode::Forbidden,
                "only a connection authenticated by a token can refresh it; use `auth`",
                None,
            );
            return None;
        };
        let sub = current.sub.clone();
        let claims = match self.shared.verify(token) {
            Ok(claims) => claims,
            Err(e) => return self.auth_failed(&e.to_string()),
        };
        if claims.sub != sub {
            self.error(
                ErrorCode::Forbidden,
                "a refreshed token must have the connection's `sub`",
                None,
            );
            return None;
        }
        self.shared
            .hold(self.id, &claims.sub, claims.jti.as_deref());
        self.expires = Some(expiry_deadline(claims.exp, self.shared.config.token_leeway));
        let exp = claims.exp;
        if let Auth::FromRequest(Identity::Token(c)) | Auth::FromFrame(Identity::Token(c)) =
            &mut self.auth
        {
            *c = claims;
        }
        // The new permissions hold for what is already subscribed, too.
        let denied: Vec<String> = self
            .subscriptions
            .keys()
            .filter(|room| !self.may(room, false))
            .cloned()
            .collect();
        for room in denied {
            if let Some(r) = self.subscriptions.remove(&room) {
                r.unsubscribe(self.id, &self.shared.metrics);
            }
            self.error(
                ErrorCode::Forbidden,
                "the refreshed token does not allow this room",
                Some(room),
            );
        }
        self.push(&ServerFrame::Refreshed { exp });
        None
    }

    fn may(&self, room: &str, publish: bool) -> bool {
        let cfg = &self.shared.config;
        // The deep health check's room carries only nonces; any authenticated client may listen.
        if !publish && room == crate::health::HEALTH_ROOM && self.identity().is_some() {
            return true;
        }
        match self.identity() {
            Some(Identity::Token(c)) if publish => c.may_publish(room),
            Some(Identity::Token(c)) => c.may_subscribe(room),
            Some(Identity::Anonymous { .. }) if publish => {
                crate::glob::any_matches(&cfg.anonymous_publish, room)
            }
            Some(Identity::Anonymous { .. }) => {
                crate::glob::any_matches(&cfg.anonymous_subscribe, room)
            }
            None => false,
        }
    }

    /// Checks a subscribe to `name` against the token's rooms and the subscription cap, answering
    /// a refusal, and ends an earlier subscription to the same room: a repeated subscribe
    /// restarts it, with a fresh replay. Whether the subscribe may go on.
    fn admit_subscription(&mut self, name: &str) -> bool {
        if !self.may(name, false) {
            self.error(
                ErrorCode::Forbidden,
                "no permission to subscribe to this room",
                Some(name.to_owned()),
            );
            return false;
        }
        if !self.subscriptions.contains_key(name)
            && self.subscriptions.len() >= self.shared.config.max_subscriptions
        {
            self.error(
                ErrorCode::TooManySubscriptions,
                "subscription limit reached",
                Some(name.to_owned()),
            );
            return false;
        }
        if let Some(old) = self.subscriptions.remove(name) {
            old.unsubscribe(self.id, &self.shared.metrics);
        }
        true
    }

    fn subscribe(&mut self, name: String, since: Option<u64>, epoch: Option<u64>) {
        if !self.admit_subscription(&name) {
            return;
        }
        let shared = &self.shared;
        loop {
            let room = match shared.room(&name, Some(&self.client_key())) {
                Ok(room) => room,
                Err(refused) => return self.refused(refused, name),
            };
            match room.subscribe(
                self.id,
                &self.outbox,
                since,
                epoch,
                &shared.limits,
                &shared.metrics,
            ) {
                // The room was retired between lookup and subscribe; the next lookup replaces it.
                None => continue,
                Some(recovery) => {
                    shared.metrics.count_recovery(recovery);
                    self.subscriptions.insert(name, room);
                    return;
                }
            }
        }
    }

    /// Subscribes through the Redis engine: watches the room's channel first, then reads its
    /// shared history, so nothing appended in between is missed.
    async fn subscribe_shared(&mut self, name: String, since: Option<u64>, epoch: Option<u64>) {
        if !self.admit_subscription(&name) {
            return;
        }
        let shared = self.shared.clone();
        let Some(engine) = shared.redis() else {
            return;
        };
        loop {
            let room = match shared.room(&name, Some(&self.client_key())) {
                Ok(room) => room,
                Err(refused) => return self.refused(refused, name),
            };
            // Read from the older of `since` and what this node delivered, so the room's
            // other subscribers are brought up to date from the same read.
            let after = match (since, room.delivered()) {
                (Some(s), Some(d)) => Some(s.min(d)),
                (s, d) => s.or(d),
            };
            // From here what other nodes append is kept for this subscribe, so nothing falls
            // between the shared read and `subscribe_from`; dropped unfinished (a failed read,
            // or this task ending mid-read), the guard takes the announcement back.
            let mut joining = Joining::begin(&room);
            let read = async {
                engine.watch(&name).await?;
                let h = engine.since(&name, after).await?;
                // A `since` from another epoch (Redis lost the room and started over) matches
                // nothing in this history: all of it is new to the client, so all of it is
                // replayed, as the memory engine does, not only what follows `since`.
                let foreign =
                    epoch.is_some_and(|e| e != h.epoch) || since.is_some_and(|s| s > h.last);
                match after {
                    Some(after) if foreign && after > 0 => engine.since(&name, Some(0)).await,
                    _ => Ok(h),
                }
            };
            let history = match read.await {
                Ok(h) => h,
                Err(error) => {
                    drop(joining);
                    tracing::debug!(%error, "subscribe failed");
                    return self.error(
                        ErrorCode::Unavailable,
                        "the hub's storage is unavailable; subscribe again",
                        Some(name),
                    );
                }
            };
            joining.finish();
            match room.subscribe_from(
                self.id,
                &self.outbox,
                (since, epoch),
                history,
                &shared.limits,
                &shared.metrics,
            ) {
                None => continue,
                Some(recovery) => {
                    shared.metrics.count_recovery(recovery);
                    shared.enforce_history_budget();
                    self.subscriptions.insert(name, room);
                    return;
                }
            }
        }
    }

    /// Publishes through the Redis engine: the ack comes once Redis holds the message; every
    /// node (this one too) delivers it from the room's channel.
    async fn publish_shared(
        &mut self,
        name: String,
        id: String,
        data: &serde_json::value::RawValue,
    ) {
        if name.starts_with('$') || !self.may(&name, true) {
            self.error(
                ErrorCode::Forbidden,
                "no permission to publish to this room",
                Some(id),
            );
            return;
        }
        let client = self.client_key();
        let shared = self.shared.clone();
        let Some(engine) = shared.redis() else {
            return;
        };
        match engine.append(&name, Some((&client, &id)), data).await {
            Ok(appended) => {
                if appended.duplicate {
                    shared.metrics.dedupe_hits.fetch_add(1, Relaxed);
                } else {
                    shared.metrics.publishes.fetch_add(1, Relaxed);
                }
                shared.metrics.acks.fetch_add(1, Relaxed);
                self.push(&ServerFrame::Ack {
                    id,
                    offset: appended.offset,
                });
            }
            Err(error) => {
                tracing::debug!(%error, "publish failed");
                self.error(
                    ErrorCode::Unavailable,
                    "the hub's storage is unavailable; retry with the same id",
                    Some(id),
                );
            }
        }
    }

    fn publish(&mut self, name: String, id: String, data: &serde_json::value::RawValue) {
        if name.starts_with('$') || !self.may(&name, true) {
            self.error(
                ErrorCode::Forbidden,
                "no permission to publish to this room",
                Some(id),
            );
            return;
        }
        let client = self.client_key();
        let shared = &self.shared;
        let offset = loop {
            let room = match shared.room(&name, Some(&client)) {
                Ok(room) => room,
                Err(refused) => return self.refused(refused, id),
            };
            match room.publish(Some((&client, &id)), data, &shared.limits, &shared.metrics) {
                Published::Applied { offset } | Published::Duplicate { offset } => break offset,
                Published::Gone => continue,
            }
        };
        shared.enforce_history_budget();
        shared.metrics.acks.fetch_add(1, Relaxed);
        self.push(&ServerFrame::Ack { id, offset });
    }
}

/// The dedupe id of an anonymous client: its name bound to a hash of its secret, so that only
/// the holder of the secret speaks as that id. Without a secret a name proves nothing, so there
/// is no id and the connection stands in for the client.
fn anonymous_id(client: Option<&str>, secret: Option<&str>) -> Option<String> {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, secret?.as_bytes());
    // `anon:` keeps these apart from tokens' subjects; 128 bits of the hash are plenty to keep
    // secrets apart, and the fixed length keeps the id unambiguous whatever the name holds.
    let mut id = format!("anon:{}:", client.unwrap_or_default());
    for b in &digest.as_ref()[..16] {
        let _ = write!(id, "{b:02x}");
    }
    Some(id)
}
