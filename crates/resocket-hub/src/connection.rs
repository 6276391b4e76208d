//! One WebSocket connection: the session (what the client's frames mean) over the socket (the
//! outbox written in batches, frames read, pings), in one task.
//!
//! The socket runs on `resocket-proto`'s codec in the server role. Its steps are polled in one
//! function ([`Socket::poll_event`]), so a write stuck on a peer that does not read never
//! stops reading (a peer that reads only once its own writes are through would deadlock), and
//! a close request reaches a stuck writer at once. Frames from the outbox were encoded once for
//! every subscriber ([`Frame`]); the socket copies the plain or the compressed form into the
//! codec's write buffer and flushes once per batch.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use resocket::hub::protocol::{close_code, ErrorCode, ServerFrame};
use resocket_proto::{CloseFrame, Incoming, Message, WsError, WsStream};
use tokio::io::{AsyncRead, AsyncWrite};
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
use crate::wire::Frame;

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

/// Room for this many client messages when a read brings data; the session handles them one
/// by one, so more would only sit unused.
const READ_BATCH: usize = 4;

/// Who is on the other end.
#[derive(Debug)]
pub(crate) enum Identity {
    /// Authenticated by a token. Boxed: the claims are several strings, and the identity is
    /// held in every connection's future more than once.
    Token(Box<Claims>),
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

/// What the socket brought up for the session to act on.
enum Event {
    /// Client messages, in `Socket::inbox`.
    Messages,
    /// A Ping or a Pong: no content, but each counts against the rate limit.
    Control,
    /// Everything queued before a close request is written: send this Close.
    Close(Closing),
    /// The peer sent its Close; the codec has answered it.
    PeerClosed,
    /// The peer broke the protocol, crossed a limit, or the socket failed.
    ReadFailed(WsError),
    /// Writing failed: the peer is gone.
    WriteFailed,
}

/// The socket's side of a connection: the codec, the batch being written, the ping timer.
struct Socket<S> {
    ws: Box<WsStream<S>>,
    /// The client negotiated permessage-deflate: it gets each frame's compressed form.
    compressed: bool,
    /// Frames taken from the outbox and not yet in the codec's buffer.
    batch: VecDeque<Frame>,
    /// Frames and payload bytes in the codec's buffer since the last flush.
    unflushed: (u64, u64),
    /// A close taken from the outbox, sent once the batch before it is written.
    closing: Option<Closing>,
    /// Client messages read and not yet handled.
    inbox: Vec<Message>,
    ping: tokio::time::Interval,
    /// When the client last sent anything: a timestamp the ping tick reads, so liveness costs
    /// one clock read per frame.
    last_seen: Instant,
    dead_after: Duration,
}

/// Runs a connection to its end.
///
/// Every idle connection is one such future, so its size is the hub's memory per connection:
/// the codec sits behind one `Box` (the future would otherwise hold it in several of its
/// states), and the close handshake, run once, is boxed when it starts.
pub(crate) fn run<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    ws: Box<WsStream<S>>,
    id: u64,
    outbox: Arc<Outbox>,
    auth: Auth,
) -> impl std::future::Future<Output = ()> {
    let span = tracing::debug_span!("conn", id, compressed = ws.compression().is_some());
    serve_connection(shared, ws, id, outbox, auth).instrument(span)
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    ws: Box<WsStream<S>>,
    id: u64,
    outbox: Arc<Outbox>,
    auth: Auth,
) {
    let mut session = Session::start(shared, id, outbox, auth);
    let mut socket = Socket::new(ws, &session.shared.config);
    let ending = session.serve(&mut socket).await;
    let shared = session.shared.clone();
    // Released before the close handshake, which may wait on a peer that does not read.
    for (_, room) in session.subscriptions.drain() {
        room.unsubscribe(id, &shared.metrics);
    }
    drop(session);
    Box::pin(socket.finish(ending, shared.config.close_timeout)).await;
    shared.unregister(id);
    tracing::debug!("closed");
}

/// Answers an upgrade past the connection cap: the client gets a close code it can act on
/// (1013, retry later), not an HTTP status that many clients report only as "handshake failed".
pub(crate) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    ws: Box<WsStream<S>>,
    timeout: Duration,
) {
    let mut socket = Socket {
        ws,
        compressed: false,
        batch: VecDeque::new(),
        unflushed: (0, 0),
        closing: None,
        inbox: Vec::new(),
        ping: tokio::time::interval(Duration::from_secs(3600)),
        last_seen: Instant::now(),
        dead_after: Duration::MAX,
    };
    let closing = Closing {
        code: close_code::TRY_AGAIN_LATER,
        reason: "at capacity",
        drain: false,
    };
    socket.finish(Ending::Close(closing), timeout).await;
}

/// The session's deadlines, each `None` once it fired or stopped applying.
struct Deadlines {
    /// For the `auth` frame, while the connection has no identity.
    auth: Option<tokio::time::Instant>,
    /// The token's expiry.
    expiry: Option<tokio::time::Instant>,
    /// For the drain before a close.
    drain: Option<tokio::time::Instant>,
}

impl Deadlines {
    fn next(&self) -> Option<tokio::time::Instant> {
        [self.auth, self.expiry, self.drain]
            .into_iter()
            .flatten()
            .min()
    }
}

/// How the session ended, for the socket's last steps.
enum Ending {
    /// Send this Close, then wait a little for the peer's.
    Close(Closing),
    /// The peer closed first: only the codec's answer is left to flush.
    PeerClosed,
    /// The socket is gone.
    Gone,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    fn new(ws: Box<WsStream<S>>, cfg: &crate::config::HubConfig) -> Self {
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + cfg.ping_interval,
            cfg.ping_interval,
        );
        // A writer stuck on a slow socket must not fire a burst of pings once it is free again.
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Socket {
            compressed: ws.compression().is_some(),
            ws,
            batch: VecDeque::new(),
            unflushed: (0, 0),
            closing: None,
            inbox: Vec::new(),
            ping,
            last_seen: Instant::now(),
            dead_after: cfg.ping_interval + cfg.ping_timeout,
        }
    }

    /// The next thing the session must act on. Writing, pinging and reading are each given a
    /// turn, in that order; none waits for another.
    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        shared: &Shared,
        outbox: &Outbox,
    ) -> Poll<Event> {
        if let Poll::Ready(event) = self.poll_write(cx, shared, outbox) {
            return Poll::Ready(event);
        }
        self.poll_ping(cx, shared, outbox);
        self.poll_read(cx)
    }

    /// Moves the outbox into the codec and flushes, a batch at a time; hands a close request
    /// up once everything queued before it is written (at once when it does not drain).
    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        shared: &Shared,
        outbox: &Outbox,
    ) -> Poll<Event> {
        loop {
            // A close that does not drain (slow consumer, drain time over) wins over a write
            // stuck on a peer that stopped reading.
            if let Some(c) = outbox.poll_closing(cx).filter(|c| !c.drain) {
                self.batch.clear();
                return Poll::Ready(Event::Close(c));
            }
            if let Err(event) = ready!(self.poll_feed(cx)) {
                return Poll::Ready(event);
            }
            if self.unflushed.0 > 0 || self.ws.wants_flush() {
                if ready!(self.ws.poll_flush(cx)).is_err() {
                    return Poll::Ready(Event::WriteFailed);
                }
                self.count_flushed(shared);
            }
            if let Some(c) = self.closing.take() {
                return Poll::Ready(Event::Close(c));
            }
            self.closing = ready!(outbox.poll_take(cx, &mut self.batch));
        }
    }

    /// Feeds the batch into the codec's buffer, as far as the buffer takes it.
    fn poll_feed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Event>> {
        while let Some(frame) = self.batch.front() {
            if ready!(self.ws.poll_ready(cx)).is_err() {
                return Poll::Ready(Err(Event::WriteFailed));
            }
            let bytes = if self.compressed {
                frame.deflated()
            } else {
                frame.plain()
            };
            if self.ws.start_send_encoded(bytes).is_err() {
                // The peer's Close went through already: what is left has no one to go to.
                self.batch.clear();
                break;
            }
            self.unflushed.0 += 1;
            self.unflushed.1 += frame.len() as u64;
            self.batch.pop_front();
        }
        Poll::Ready(Ok(()))
    }

    fn count_flushed(&mut self, shared: &Shared) {
        let (frames, bytes) = std::mem::take(&mut self.unflushed);
        if frames > 0 {
            shared.metrics.messages_out.fetch_add(frames, Relaxed);
            shared.metrics.write_batches.fetch_add(1, Relaxed);
            shared.metrics.bytes_out.fetch_add(bytes, Relaxed);
        }
    }

    /// Pings on schedule; a client silent past `ping_interval + ping_timeout` is closed with
    /// 4000. The Ping goes out with the next flush.
    fn poll_ping(&mut self, cx: &mut Context<'_>, shared: &Shared, outbox: &Outbox) {
        while self.ping.poll_tick(cx).is_ready() {
            if self.last_seen.elapsed() > self.dead_after {
                shared.metrics.disconnect(Disconnect::PingTimeout);
                outbox.close(Closing {
                    code: close_code::PING_TIMEOUT,
                    reason: "ping timeout",
                    drain: false,
                });
            } else if self.ws.accepts_data() {
                let _ = self.ws.start_send(Message::Ping(bytes::Bytes::new()));
                // The flush that sends it happens on the next turn of the write step.
                cx.waker().wake_by_ref();
            }
        }
    }

    /// Reads until a frame the session acts on; Pings are answered by the codec (the Pong
    /// leaves with the next flush). Fragments of a message not yet complete are taken in
    /// without an event.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            let step = ready!(self.ws.poll_step(cx, &mut self.inbox, READ_BATCH));
            self.ws.seal(&mut self.inbox);
            self.last_seen = Instant::now();
            if self.ws.wants_flush() {
                // A Pong or a Close reply waits in the buffer: the write step flushes it.
                cx.waker().wake_by_ref();
            }
            return Poll::Ready(match step {
                Ok(Some(Incoming::Data(_))) if self.inbox.is_empty() => continue,
                Ok(Some(Incoming::Data(_))) => Event::Messages,
                Ok(Some(Incoming::Ping | Incoming::Pong(_))) => Event::Control,
                Ok(Some(Incoming::Close(_)) | None) => Event::PeerClosed,
                Err(e) => Event::ReadFailed(e),
            });
        }
    }

    /// The socket's last steps: the Close and a bounded wait for the peer's, or the flush of
    /// the codec's answer to the peer's Close. Then whatever has arrived is read and dropped:
    /// Linux answers a socket closed with unread input by a reset, which throws away what the
    /// peer has not read yet (the messages before our Close, and the Close itself).
    async fn finish(&mut self, ending: Ending, timeout: Duration) {
        let handshake = async {
            match ending {
                Ending::Gone => {}
                Ending::PeerClosed => {
                    let _ = poll_fn(|cx| self.poll_until_end(cx)).await;
                }
                Ending::Close(c) => {
                    let frame = CloseFrame {
                        code: c.code.into(),
                        reason: c.reason.into(),
                    };
                    // Refused only after the peer's Close, which the codec answered already.
                    let _ = self.ws.start_send(Message::Close(Some(frame)));
                    if poll_fn(|cx| self.ws.poll_flush(cx)).await.is_err() {
                        return;
                    }
                    // A peer declared dead for not answering pings will not answer this either.
                    if c.code == close_code::PING_TIMEOUT {
                        return;
                    }
                    // RFC 6455 7.1.1 has the server wait for the peer's Close; one that reads
                    // answers within a round trip, one that does not is given up on soon.
                    let reply = poll_fn(|cx| self.poll_until_end(cx));
                    let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, reply).await;
                }
            }
        };
        // One deadline for everything: a peer that neither reads nor answers holds its socket
        // no longer than `close_timeout`. A slow consumer's socket is full when it is closed,
        // so its Close can only go out behind what it has not read.
        let _ = tokio::time::timeout(timeout, handshake).await;
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Some(Ok(Some(_))) = self.poll_step_now(&mut cx) {}
    }

    /// Reads and drops frames until the close handshake is through or the socket fails.
    fn poll_until_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            self.inbox.clear();
            match ready!(self.ws.poll_step(cx, &mut self.inbox, 1)) {
                Ok(Some(_)) => self.ws.seal(&mut self.inbox),
                Ok(None) | Err(_) => return Poll::Ready(()),
            }
        }
    }

    /// One read step that does not wait: `None` when nothing has arrived.
    fn poll_step_now(&mut self, cx: &mut Context<'_>) -> Option<Result<Option<Incoming>, WsError>> {
        self.inbox.clear();
        let step = match self.ws.poll_step(cx, &mut self.inbox, 1) {
            Poll::Ready(step) => step,
            Poll::Pending => return None,
        };
        self.ws.seal(&mut self.inbox);
        Some(step)
    }
}

impl Session {
    fn start(shared: Arc<Shared>, id: u64, outbox: Arc<Outbox>, auth: Auth) -> Session {
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
        Session {
            id,
            shared,
            outbox,
            auth,
            subscriptions: HashMap::new(),
            expires,
        }
    }

    /// Acts on the socket's events until the connection must end: the auth deadline, the
    /// token's expiry, the client's frames, and the outbox's close request.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&mut self, socket: &mut Socket<S>) -> Ending {
        let shared = self.shared.clone();
        let outbox = self.outbox.clone();
        let cfg = &shared.config;
        let mut bucket = TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst);
        // One timer for every deadline of the session (the `auth` frame's, the token's expiry,
        // the drain before a close), set to the nearest and moved only when that changes, so
        // the per-frame path registers no timer and an idle connection holds one.
        let mut deadlines = Deadlines {
            auth: Some(tokio::time::Instant::now() + cfg.auth_timeout),
            expiry: self.expires,
            drain: None,
        };
        let mut token = self.expires;
        let mut armed = None;
        let mut timer = pin!(tokio::time::sleep(Duration::ZERO));
        loop {
            if deadlines.drain.is_none() && self.outbox.is_closing() {
                // A peer that does not read must not hold a closing connection open.
                deadlines.drain = Some(tokio::time::Instant::now() + cfg.close_timeout);
            }
            if self.expires != token {
                token = self.expires;
                deadlines.expiry = token;
            }
            if !matches!(self.auth, Auth::Pending) {
                deadlines.auth = None;
            }
            let next = deadlines.next();
            if next != armed {
                armed = next;
                if let Some(at) = next {
                    timer.as_mut().reset(at);
                }
            }
            let event = tokio::select! {
                biased;
                () = &mut timer, if armed.is_some() => {
                    let now = tokio::time::Instant::now();
                    if deadlines.drain.is_some_and(|at| at <= now) {
                        return Ending::Gone;
                    }
                    // Each fires once; the close it asks for then runs its course.
                    if deadlines.auth.is_some_and(|at| at <= now) {
                        deadlines.auth = None;
                        self.close(self.auth_timed_out());
                    }
                    if deadlines.expiry.is_some_and(|at| at <= now) {
                        deadlines.expiry = None;
                        self.close(self.token_expired());
                    }
                    continue;
                }
                event = poll_fn(|cx| socket.poll_event(cx, &shared, &outbox)) => event,
            };
            match event {
                Event::Close(c) => return Ending::Close(c),
                Event::PeerClosed => return Ending::PeerClosed,
                Event::WriteFailed => return Ending::Gone,
                Event::ReadFailed(e) => match self.read_error(e) {
                    Some(c) => self.close(c),
                    None => return Ending::Gone,
                },
                Event::Control => {
                    // Pings count against the rate limit: the codec answers each with a Pong,
                    // so a Ping flood would otherwise make the hub write without limit.
                    if let Some(c) = self.rate_check(&mut bucket) {
                        self.close(c);
                    }
                }
                Event::Messages => {
                    // The timer fires on the driver's next tick; a frame read in between must
                    // not slip through on an expired token.
                    if deadlines
                        .expiry
                        .is_some_and(|at| tokio::time::Instant::now() >= at)
                    {
                        deadlines.expiry = None;
                        self.close(self.token_expired());
                    }
                    let inbox = std::mem::take(&mut socket.inbox);
                    // Boxed, once per batch read: handling a message (the engine's calls among
                    // it) is the largest state of this future, and held inline it would be
                    // reserved in every idle connection. The handling allocates anyway.
                    Box::pin(self.messages(inbox, &mut bucket)).await;
                }
            }
        }
    }

    fn close(&self, closing: Closing) {
        self.outbox.close(closing);
    }

    /// Handles a batch of client messages in order, until one closes the connection.
    async fn messages(&mut self, inbox: Vec<Message>, bucket: &mut TokenBucket) {
        for msg in inbox {
            if self.outbox.is_closing() {
                break;
            }
            if let Some(c) = self.message(msg, bucket).await {
                self.close(c);
            }
        }
    }

    fn auth_timed_out(&self) -> Closing {
        self.shared.metrics.auth_failures.fetch_add(1, Relaxed);
        self.shared.metrics.disconnect(Disconnect::Auth);
        self.error(ErrorCode::Unauthorized, "no auth frame in time", None);
        Closing {
            code: close_code::POLICY,
            reason: "auth timeout",
            drain: true,
        }
    }

    /// One client message: the rate limit, then its meaning. `Some` when the connection must
    /// close.
    async fn message(&mut self, msg: Message, bucket: &mut TokenBucket) -> Option<Closing> {
        if let Some(c) = self.rate_check(bucket) {
            return Some(c);
        }
        let Message::Text(text) = msg else {
            self.error(ErrorCode::BinaryUnsupported, "frames are JSON text", None);
            return None;
        };
        self.shared.metrics.messages_in.fetch_add(1, Relaxed);
        self.shared
            .metrics
            .bytes_in
            .fetch_add(text.len() as u64, Relaxed);
        self.handle(text.as_str()).await
    }

    fn push(&self, frame: &ServerFrame<()>) {
        if self.outbox.push(Frame::json(frame)) == crate::outbox::Push::Overflowed {
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

    /// The close for a read error: the class of the error picks the code.
    fn read_error(&self, error: WsError) -> Option<Closing> {
        match error {
            // Also a compressed message that inflates past the limit: the inflater stops there.
            WsError::Capacity(_) => {
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
            // RFC 6455 §8.1: invalid UTF-8 in a text frame fails the connection (1007); so does
            // a compressed message that is not DEFLATE (RFC 7692 §8.2.2: invalid payload data).
            WsError::Utf8(_) => {
                self.invalid_payload("text frame is not valid UTF-8", "invalid utf-8")
            }
            WsError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => self.invalid_payload(
                "compressed message is not valid DEFLATE data",
                "invalid compressed data",
            ),
            // A peer that vanished mid-stream gets no close frame: nobody is there to read it.
            WsError::Protocol(resocket_proto::ProtocolError::ResetWithoutClosingHandshake) => None,
            WsError::Protocol(error) => {
                // RFC 6455 §7.4.1: a protocol violation (reserved bits, unmasked or fragmented
                // control frames, bad opcodes, a malformed close frame; RSV1 on a control or
                // continuation frame) closes with 1002.
                tracing::debug!(%error, "protocol violation");
                Some(Closing {
                    code: PROTOCOL_ERROR,
                    reason: "protocol error",
                    drain: false,
                })
            }
            error => {
                tracing::debug!(%error, "read failed");
                None
            }
        }
    }

    fn invalid_payload(&self, message: &str, reason: &'static str) -> Option<Closing> {
        self.shared.metrics.disconnect(Disconnect::InvalidUtf8);
        self.error(ErrorCode::InvalidUtf8, message, None);
        Some(Closing {
            code: close_code::INVALID_PAYLOAD,
            reason,
            drain: true,
        })
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
                self.unsubscribe(room);
                None
            }
            Inbound::Publish { room, id, data } => {
                if room.starts_with('$') || !self.may(&room, true) {
                    self.error(
                        ErrorCode::Forbidden,
                        "no permission to publish to this room",
                        Some(id),
                    );
                } else if self.shared.redis().is_some() {
                    Box::pin(self.publish_shared(room, id, data)).await;
                } else {
                    self.publish(room, id, data);
                }
                None
            }
            Inbound::Refresh { token } => self.refresh(&token),
        }
    }

    fn unsubscribe(&mut self, room: String) {
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
                Ok(claims) => Identity::Token(Box::new(claims)),
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
            **c = claims;
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

    /// Publishes, with permission checked, through the Redis engine: the ack comes once Redis
    /// holds the message; every node (this one too) delivers it from the room's channel.
    async fn publish_shared(
        &mut self,
        name: String,
        id: String,
        data: &serde_json::value::RawValue,
    ) {
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

    /// Publishes, with permission checked, on the memory engine.
    fn publish(&mut self, name: String, id: String, data: &serde_json::value::RawValue) {
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
