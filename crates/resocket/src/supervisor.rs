//! The task that owns the lifecycle: connect, handshake, run, back off, and finally close.
//!
//! The supervisor is the only owner of mutable state. Handles reach it through channels and
//! read what it publishes (a `watch` of [`Status`], a `broadcast` of events, atomic counters),
//! so no lock is ever shared. Every wait races the handles' requests ([`Requests`],
//! `requests.rs`), so a `close()` is honoured while connecting, handshaking or backing off, not
//! only while `Ready`.
//!
//! The byte stream under every attempt comes from a [`Dial`] (`dial.rs`): the real network
//! for [`Supervisor`], an in-memory pipe in the unit tests (`tests.rs`), which run the same
//! upgrade, codec, handshake and connection code on tokio's paused clock.

use std::{
    future::{Future, IntoFuture},
    pin::Pin,
    sync::Arc,
};

use tokio::{
    sync::{broadcast, watch},
    time::Instant,
};
use tokio_tungstenite::tungstenite::{self, handshake::client::Request};
use tracing::Instrument;

use crate::{
    client::Link,
    codec::WsStream,
    config::{ClientConfig, QueuePolicy},
    connection::{Connection, Exit},
    endpoints::{Endpoint, Endpoints},
    extension::Extensions,
    handshake::{with_timeout, HandshakeContext, HandshakeError, HandshakeIo},
    inbound::Received,
    queue::Outbox,
    retry::Backoff,
    state::{ConnectionEvent, ConnectionState, DropReason, Stats, Status},
    transport::{HeadFence, Target},
    Error, Message,
};

mod dial;
mod requests;

pub(crate) use dial::{Dial, Network};
pub(crate) use requests::{Ask, Command, Requests};

/// The owners of what outlives any one connection, lent together to each [`Connection`].
///
/// Each changes only through its own type's methods: [`Requests`] (commands, the channel set,
/// a deferred close), [`Outbox`] (the outbound queue and what was taken from it),
/// [`Received`] (received messages on their way to the user). The counters are atomics
/// shared with the handles, and the extensions are fixed at build time.
pub(crate) struct Pipes {
    pub(crate) requests: Requests,
    pub(crate) outbox: Outbox,
    pub(crate) received: Received,
    /// Counters, shared with the handles; atomics only.
    pub(crate) stats: Arc<Stats>,
    pub(crate) extensions: Extensions,
}

impl Pipes {
    pub(crate) fn new(
        requests: Requests,
        outbox: Outbox,
        received: Received,
        stats: Arc<Stats>,
        extensions: Extensions,
    ) -> Self {
        Pipes {
            requests,
            outbox,
            received,
            stats,
            extensions,
        }
    }
}

/// Publishes state to every handle.
pub(crate) struct Publisher {
    pub(crate) status: watch::Sender<Status>,
    pub(crate) events: broadcast::Sender<ConnectionEvent>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) extensions: Extensions,
}

impl Publisher {
    fn state(&self, state: ConnectionState, update: impl FnOnce(&mut Status)) {
        self.stats.set_state(&state);
        self.extensions.each(|ext, ctx| ext.on_state(&state, ctx));
        self.status.send_modify(|s| {
            s.state = state;
            update(s);
        });
    }

    fn event(&self, event: ConnectionEvent) {
        // No receiver is fine: events are for whoever listens.
        let _ = self.events.send(event);
    }
}

/// The client's background task, handed back unspawned by
/// [`ClientBuilder::build`](crate::ClientBuilder::build). Await it (or spawn it) to run the client.
#[must_use = "the client does nothing unless its supervisor is awaited or spawned"]
pub struct Supervisor(pub(crate) Lifecycle<Network>);

/// The supervisor's state and loop, over any [`Dial`]: the real network for [`Supervisor`],
/// an in-memory pipe in tests.
pub(crate) struct Lifecycle<D> {
    pub(crate) link: Link,
    pub(crate) pipes: Pipes,
    pub(crate) publish: Publisher,
    pub(crate) backoff: Box<dyn Backoff>,
    /// Where attempts go; it moves on after every failure.
    pub(crate) endpoints: Endpoints,
    /// Opens the stream for every attempt.
    pub(crate) dial: D,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl IntoFuture for Supervisor {
    type Output = Result<(), Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// How one connection attempt ended.
enum Attempt {
    /// The user closed while it ran.
    Closed,
    /// It failed (before or after `Ready`).
    Failed { error: Error, stable: bool },
}

impl Supervisor {
    /// Runs the client to the end: `Ok` when closed by the user, `Err` on a permanent failure.
    pub async fn run(self) -> Result<(), Error> {
        self.0.run().await
    }
}

impl<D: Dial> Lifecycle<D> {
    /// The same client over another transport.
    #[cfg(test)]
    pub(crate) fn with_dial<E: Dial>(self, dial: E) -> Lifecycle<E> {
        Lifecycle {
            link: self.link,
            pipes: self.pipes,
            publish: self.publish,
            backoff: self.backoff,
            endpoints: self.endpoints,
            dial,
        }
    }

    /// As [`Supervisor::run`].
    pub(crate) async fn run(mut self) -> Result<(), Error> {
        let result = self.lifecycle().await;
        self.finish(result.clone()).await;
        result
    }

    async fn lifecycle(&mut self) -> Result<(), Error> {
        let mut attempt: u32 = 0;
        let mut ever_ready = false;
        loop {
            attempt += 1;
            let url = self.endpoints.current().1.name.clone();
            let span = tracing::info_span!("attempt", attempt, url = %url);
            let outcome = self
                .attempt(attempt, &mut ever_ready)
                .instrument(span)
                .await;
            let error = match outcome {
                Attempt::Closed => return Ok(()),
                Attempt::Failed { error, stable } => {
                    if stable {
                        // A connection that stayed up starts a new retry cycle.
                        self.backoff.reset();
                        attempt = 0;
                    }
                    error
                }
            };
            if !self.link.config.reconnect {
                return if is_normal_close(&error) {
                    Ok(())
                } else {
                    Err(error)
                };
            }
            let permanent = !self.link.should_retry(&error);
            if !self.endpoints.failed(permanent) {
                return Err(error);
            }
            // With several endpoints "the first attempt" is the first round, one on each: a
            // start-up check asks whether the service answers, not one node of it.
            let first_round_failed = attempt as usize >= self.endpoints.len();
            if !ever_ready && first_round_failed && self.link.config.exit_on_first_failure {
                return Err(error);
            }
            let Some(mut delay) = self.backoff.next_delay() else {
                return Err(Error::RetriesExhausted {
                    attempts: attempt.max(1),
                    last: Box::new(error),
                });
            };
            if let Some(asked) = error.retry_after() {
                delay = delay.max(asked);
            }
            tracing::debug!(?delay, error = %error, "backing off");
            let next = attempt + 1;
            self.publish.state(
                ConnectionState::BackingOff {
                    attempt: next,
                    delay,
                },
                |_| {},
            );
            self.publish.event(ConnectionEvent::BackingOff {
                attempt: next,
                delay,
            });
            self.publish
                .extensions
                .each(|ext, ctx| ext.on_reconnect_scheduled(delay, next, ctx));
            if wait(
                &mut self.pipes,
                &self.publish,
                &self.link.config,
                tokio::time::sleep(delay),
            )
            .await
            .is_none()
            {
                return Ok(());
            }
        }
    }

    /// One attempt: connect, handshake, run until the connection ends.
    async fn attempt(&mut self, attempt: u32, ever_ready: &mut bool) -> Attempt {
        self.announce_connecting(attempt);
        let (mut ws, response) = match self.connect(attempt).await {
            Ok(upgraded) => upgraded,
            Err(end) => return end,
        };
        if let Err(end) = self.handshake(&mut ws, response, attempt).await {
            return end;
        }
        let reconnect = std::mem::replace(ever_ready, true);
        let ready_at = self.become_ready(&ws, reconnect);
        self.serve(&mut ws, ready_at).await
    }

    fn announce_connecting(&self, attempt: u32) {
        let name = self.endpoints.current().1.name.clone();
        self.publish
            .state(ConnectionState::Connecting { attempt }, |s| {
                s.attempt = attempt;
                s.endpoint = Some(name.clone());
            });
        self.publish.event(ConnectionEvent::Connecting {
            attempt,
            endpoint: name,
        });
    }

    /// Opens the stream and upgrades it, within `connect_timeout`.
    async fn connect(
        &mut self,
        attempt: u32,
    ) -> Result<(WsStream<D::Io>, crate::handshake::Response), Attempt> {
        let (index, endpoint) = self.endpoints.current();
        let connect_timeout = self.link.config.connect_timeout;
        // Boxed, like the handshake below: these futures are large and live only until
        // `Ready`, and inline they would size the task for its whole life (measured: the
        // task's future went from 24 KiB to a few KiB per client).
        let connect = tokio::time::timeout(
            connect_timeout,
            Box::pin(open(&self.link, &self.dial, attempt, index, endpoint)),
        );
        match wait(&mut self.pipes, &self.publish, &self.link.config, connect).await {
            None => Err(Attempt::Closed),
            Some(Err(_elapsed)) => {
                Err(self.failed(Error::ConnectTimeout(connect_timeout), 0, false))
            }
            Some(Ok(Err(error))) => Err(self.failed(error, 0, false)),
            Some(Ok(Ok(upgraded))) => Ok(upgraded),
        }
    }

    /// Runs the user's handshake (auth, static subscriptions), then replays the runtime
    /// channel set, all before `Ready`: queued user messages only flow after both.
    async fn handshake(
        &mut self,
        ws: &mut WsStream<D::Io>,
        response: crate::handshake::Response,
        attempt: u32,
    ) -> Result<(), Attempt> {
        self.publish.state(ConnectionState::Handshaking, |_| {});
        self.publish.event(ConnectionEvent::Handshaking);
        let context = HandshakeContext {
            attempt,
            reconnects: self.publish.status.borrow().reconnects,
            response: Arc::new(response),
        };
        let mut later = Vec::new();
        let handshaker = self.link.handshaker.clone();
        let limit = handshaker
            .timeout()
            .unwrap_or(self.link.config.handshake_timeout);
        let replay = self.pipes.requests.replay();
        let replayed: Vec<String> = replay
            .as_ref()
            .map(|(_, channels)| channels.clone())
            .unwrap_or_default();
        let handshake = Box::pin(async {
            let mut io = HandshakeIo::new(ws, &mut later, &context);
            with_timeout(limit, handshaker.name(), handshaker.handshake(&mut io)).await?;
            if let Some((format, channels)) = replay {
                let limit = format.step_timeout().unwrap_or(limit);
                with_timeout(limit, "channels", format.run(&mut io, &channels))
                    .await
                    .map_err(|e| e.with_step("replaying channel subscriptions"))?;
            }
            Ok::<(), HandshakeError>(())
        });
        let handshake = wait(&mut self.pipes, &self.publish, &self.link.config, handshake).await;
        // Frames the handshake read but did not consume are the user's, however it ended, and
        // come after anything received before (a batch the last connection left).
        self.receive_leftovers(later);
        match handshake {
            None => Err(Attempt::Closed),
            Some(Err(error)) => Err(self.failed(Error::Handshake(Arc::new(error)), 0, false)),
            Some(Ok(())) => {
                // Channels added while the handshake ran were recorded but not yet sent.
                let missed = self.pipes.requests.missed_since(&replayed);
                self.pipes.outbox.push_front(missed);
                Ok(())
            }
        }
    }

    /// Publishes `Ready`; returns when it began.
    fn become_ready(&mut self, ws: &WsStream<D::Io>, reconnect: bool) -> Instant {
        self.endpoints.connected();
        let ready_at = Instant::now();
        self.publish.state(ConnectionState::Ready, |s| {
            s.connected_at = Some(ready_at.into_std());
            s.compression = ws.compression();
            if reconnect {
                s.reconnects += 1;
            }
        });
        self.publish.event(ConnectionEvent::Ready { reconnect });
        self.publish
            .extensions
            .each(|ext, ctx| ext.on_connect(reconnect, ctx));
        tracing::debug!(reconnect, "ready");
        ready_at
    }

    /// Runs the live connection until it ends; `ready_at` decides whether it was stable.
    async fn serve(&mut self, ws: &mut WsStream<D::Io>, ready_at: Instant) -> Attempt {
        let close = self.pipes.requests.take_deferred_close();
        let exit = Connection::new(ws, &mut self.pipes, &self.link.config)
            .closing_by(close)
            .run()
            .await;
        match exit {
            Exit::Closed { discarded } => {
                if discarded > 0 {
                    tracing::warn!(discarded, "received while closing, past the inbound bound");
                    self.publish
                        .event(ConnectionEvent::Discarded { count: discarded });
                }
                Attempt::Closed
            }
            Exit::Failed { error, unconfirmed } => {
                let stable = ready_at.elapsed() >= self.link.config.stable_after;
                self.failed(error, unconfirmed, stable)
            }
        }
    }

    /// Takes in frames the handshake read and left for the user.
    fn receive_leftovers(&mut self, later: Vec<Message>) {
        let discarded = self.pipes.received.take_leftovers(later);
        if discarded > 0 {
            tracing::warn!(discarded, "left by the handshake, past the inbound bound");
            self.publish
                .event(ConnectionEvent::Discarded { count: discarded });
        }
    }

    fn failed(&self, error: Error, unconfirmed: u64, stable: bool) -> Attempt {
        tracing::debug!(error = %error, unconfirmed, "disconnected");
        let close = error.close_frame().cloned();
        self.publish.state(
            ConnectionState::Disconnected {
                reason: error.clone(),
            },
            |s| {
                s.last_error = Some(error.clone());
                if close.is_some() {
                    s.last_close = close;
                }
            },
        );
        self.publish.event(ConnectionEvent::Disconnected {
            reason: error.clone(),
            unconfirmed,
        });
        self.publish.extensions.each(|ext, ctx| {
            ext.on_error(&error, ctx);
            ext.on_disconnect(&error, ctx);
        });
        Attempt::Failed { error, stable }
    }

    /// Publishes the end, accounts for what could not be sent, and hands over what was received.
    async fn finish(&mut self, result: Result<(), Error>) {
        let pipes = &mut self.pipes;
        let undelivered = pipes.outbox.discard_all();
        if undelivered > 0 {
            Stats::add(&pipes.stats.dropped, undelivered);
            self.publish.event(ConnectionEvent::Dropped {
                count: undelivered,
                reason: DropReason::Shutdown,
            });
        }
        // What the user has not taken yet goes to the stream's tail, read after the channel:
        // `close().await` returns without waiting for a user who reads only after it.
        pipes.received.hand_over_rest();
        let error = result.err();
        if let Some(error) = &error {
            self.publish
                .extensions
                .each(|ext, ctx| ext.on_error(error, ctx));
        }
        self.publish
            .state(ConnectionState::Closed, |s| s.error = error.clone());
        self.publish.event(ConnectionEvent::Closed { error });
    }
}

/// Runs `work` while serving commands and the queue policy; `None` means the user closed.
///
/// While not `Ready`, the `DropOldest` policy keeps draining the queue into the outbox and
/// drops from its front, so senders never wait on a dead connection; every drop is counted
/// and reported.
async fn wait<F: Future>(
    pipes: &mut Pipes,
    publish: &Publisher,
    config: &ClientConfig,
    work: F,
) -> Option<F::Output> {
    let Pipes {
        requests,
        outbox,
        stats,
        ..
    } = pipes;
    // Off for good once every sender is gone: nothing more can arrive to drop.
    let mut drop_oldest = config.queue_policy == QueuePolicy::DropOldest;
    tokio::pin!(work);
    loop {
        let close_deadline = requests.deferred_close_deadline();
        let accepting = !requests.has_deferred_close();
        tokio::select! {
            biased;
            ask = requests.next(config.drain_on_close), if accepting => {
                let (frame, drain) = match ask {
                    Ask::Close { frame, drain } => (frame, drain),
                    // Not connected: the set changed now, the wire on the next connect.
                    Ask::Send(_) => continue,
                };
                if !drain || outbox.is_drained() {
                    return None;
                }
                // Keep connecting so the backlog can go out, but only until close_timeout.
                outbox.close();
                requests.defer_close(frame, Instant::now() + config.close_timeout);
            }
            () = sleep_until_or_never(close_deadline) => return None,
            out = &mut work => return Some(out),
            dropped = std::future::poll_fn(|cx| {
                outbox.poll_drop_oldest(cx, config.queue_capacity, config.queue_max_bytes)
            }), if drop_oldest => {
                let Some(dropped) = dropped else {
                    drop_oldest = false;
                    continue;
                };
                if dropped > 0 {
                    Stats::add(&stats.dropped, dropped);
                    publish.event(ConnectionEvent::Dropped { count: dropped, reason: DropReason::DropOldest });
                }
            }
        }
    }
}

/// Whether the server ended the connection with Close 1000: the clean end of a client that
/// does not reconnect.
fn is_normal_close(error: &Error) -> bool {
    matches!(error, Error::ServerClosed { frame: Some(frame) } if u16::from(frame.code) == 1000)
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Opens the stream (TCP and TLS, on the real path) and performs the upgrade, with a freshly
/// built request.
///
/// tungstenite runs the upgrade on a [`HeadFence`], so that frames sent right behind the
/// `101` response stay for resocket's codec, which takes the socket from there.
async fn open<D: Dial>(
    link: &Link,
    dial: &D,
    attempt: u32,
    index: usize,
    endpoint: &Endpoint,
) -> Result<(WsStream<D::Io>, crate::handshake::Response), Error> {
    let request: Request = link.request(attempt, index, endpoint)?;
    let offered = crate::codec::offered(&link.config, request.headers());
    let target = Target::from_uri(request.uri())?;
    let mut socket = dial.dial(link, &target).await?;
    let mut fence = HeadFence::new(&mut socket);
    let upgrade = tokio_tungstenite::client_async_with_config(
        request,
        &mut fence,
        Some(link.config.websocket_config()),
    )
    .await
    // The upgrade's own stream is dropped unused: it never read a frame.
    .map(|(_, response)| response);
    let rest = fence.into_rest();
    match upgrade {
        Ok(response) => {
            let codec = crate::codec::codec_config(&link.config, &offered, response.headers())?;
            Ok((WsStream::new(socket, &rest, codec), response))
        }
        Err(tungstenite::Error::Http(mut refused)) => {
            // tungstenite's body is what it read past the head: here, the fence has it.
            let body = refused.body_mut().get_or_insert_with(Vec::new);
            body.extend_from_slice(&rest);
            Err(crate::transport::upgrade_error(tungstenite::Error::Http(
                refused,
            )))
        }
        Err(e) => Err(crate::transport::upgrade_error(e)),
    }
}

#[cfg(test)]
mod tests;
