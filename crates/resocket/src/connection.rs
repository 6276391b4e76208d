//! One live socket: a single poll loop over commands, timers, inbound frames and outbound writes.
//!
//! Reading and writing share one `&mut` socket, and a `tokio::select!` over a read future and a
//! write future cannot borrow it twice; splitting it would put a lock on every message. So the
//! loop is written as one `poll` function that visits every source in turn, in a fixed order
//! (commands first, so shutdown wins), and returns `Pending` only after every source said
//! `Pending`, each having registered the waker. Everything on the hot path is amortized per
//! batch: one `Instant::now()`, one counter update and one channel hand-off per batch read,
//! one `flush` per batch written.
//!
//! Reading goes frame by frame through [`WsStream::poll_step`] into a batch, which is sealed
//! (its payloads sliced out of the read buffer) and handed to the user in one operation.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{Instant, Sleep},
};
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Bytes};

use crate::{
    codec::{Incoming, WsStream},
    config::ClientConfig,
    queue::payload_len,
    state::Stats,
    supervisor::{Ask, Pipes},
    CloseFrame, Error, Message,
};

/// How a live connection ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// The user asked to close; the close handshake finished or timed out.
    Closed {
        /// Messages received while closing that did not fit the inbound bound.
        discarded: u64,
    },
    /// The connection failed or the server closed it.
    Failed {
        error: Error,
        /// Messages fed to the socket whose flush never completed.
        unconfirmed: u64,
    },
}

/// What one pass over the socket's buffered frames ended with.
enum Read {
    /// The batch is full; more may be buffered.
    More,
    /// Nothing more is buffered now; the socket's waker is registered.
    Idle,
    /// The stream ended: cleanly after the close handshake, or with an error.
    End(Result<(), tokio_tungstenite::tungstenite::Error>),
}

/// The most messages taken from the outbound queue per batch.
const WRITE_BATCH: usize = 512;

enum Closing {
    No,
    /// Writing what is queued, then the Close frame.
    Draining(CloseFrame),
    /// The Close frame is queued or sent; waiting for the server's.
    Sent,
}

/// The state of one live connection. Lives only while the socket does.
pub(crate) struct Connection<'a, S> {
    ws: &'a mut WsStream<S>,
    pipes: &'a mut Pipes,
    config: &'a ClientConfig,
    timer: Pin<Box<Sleep>>,
    /// Control frames (heartbeat, Close) go out before queued data.
    control: Option<Message>,
    /// Data messages fed since the last completed flush.
    unflushed: u64,
    unflushed_bytes: u64,
    needs_flush: bool,
    last_rx: Instant,
    next_ping: Option<Instant>,
    /// When the outstanding heartbeat was sent, if no frame has arrived since.
    awaiting_since: Option<Instant>,
    ping_sent_at: Instant,
    ping_id: u64,
    close_frame: Option<CloseFrame>,
    closing: Closing,
    close_deadline: Option<Instant>,
    /// Messages received while closing that did not fit the inbound bound.
    discarded: u64,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Connection<'a, S> {
    pub(crate) fn new(
        ws: &'a mut WsStream<S>,
        pipes: &'a mut Pipes,
        config: &'a ClientConfig,
    ) -> Self {
        let now = Instant::now();
        let next_ping = config.ping_interval.map(|every| now + every);
        let mut conn = Connection {
            ws,
            pipes,
            config,
            timer: Box::pin(tokio::time::sleep_until(now + Duration::from_secs(3600))),
            control: None,
            unflushed: 0,
            unflushed_bytes: 0,
            needs_flush: false,
            last_rx: now,
            next_ping,
            awaiting_since: None,
            ping_sent_at: now,
            ping_id: 0,
            close_frame: None,
            closing: Closing::No,
            close_deadline: None,
            discarded: 0,
        };
        conn.arm_timer();
        conn
    }

    /// Starts with a draining close the user asked for before this connection was up: the
    /// backlog goes out, then the Close frame, unless `deadline` passes first.
    pub(crate) fn closing_by(mut self, close: Option<(CloseFrame, Instant)>) -> Self {
        if let Some((frame, deadline)) = close {
            self.start_close(frame, true);
            self.close_deadline = Some(deadline);
            self.arm_timer();
        }
        self
    }

    /// Runs until the connection ends.
    ///
    /// # Cancel safety
    /// Not cancel safe: the supervisor awaits it to completion.
    pub(crate) async fn run(mut self) -> Exit {
        std::future::poll_fn(|cx| self.poll_run(cx)).await
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        // Requests first: a close must win over a busy socket.
        self.poll_requests(cx);
        if let Some(exit) = self.poll_timer(cx) {
            return Poll::Ready(exit);
        }
        if let Poll::Ready(exit) = self.poll_read(cx) {
            return Poll::Ready(exit);
        }
        if let Poll::Ready(exit) = self.poll_write(cx) {
            return Poll::Ready(exit);
        }
        Poll::Pending
    }

    /// Serves the handles' requests: a close starts closing, a change to the channel set goes
    /// out after what is queued.
    fn poll_requests(&mut self, cx: &mut Context<'_>) {
        let drain_on_close = self.config.drain_on_close;
        while let Poll::Ready(ask) = self.pipes.requests.poll_next(cx, drain_on_close) {
            match ask {
                Ask::Close { frame, drain } => {
                    self.start_close(frame, drain);
                    if self.pipes.requests.handles_gone() {
                        // Nothing else can come: asking again would only repeat the close.
                        return;
                    }
                }
                Ask::Send(now) => self.pipes.outbox.push_back(now),
            }
        }
    }

    fn start_close(&mut self, frame: CloseFrame, drain: bool) {
        if !matches!(self.closing, Closing::No) {
            return;
        }
        // No new messages from here on; those already queued drain below if asked to.
        self.pipes.outbox.close();
        self.close_deadline = Some(Instant::now() + self.config.close_timeout);
        if drain {
            self.closing = Closing::Draining(frame);
        } else {
            self.control = Some(Message::Close(Some(frame)));
            self.closing = Closing::Sent;
        }
        self.arm_timer();
    }

    /// The earliest instant anything time-driven must happen.
    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let pong = self
            .awaiting_since
            .map(|sent| sent + self.config.pong_timeout);
        let idle = self.config.idle_timeout.map(|idle| self.last_rx + idle);
        [self.next_ping, pong, idle, self.close_deadline]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    /// Re-arms the timer only when the deadline moved; a timer that fires early just re-checks.
    fn arm_timer(&mut self) {
        let deadline = self.next_deadline();
        if deadline != self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Option<Exit> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if self.close_deadline.is_some_and(|d| now >= d) {
                // Ours: the close the user asked for is done. The server's: it sent its Close
                // but never closed TCP, and the connection ends anyway.
                if matches!(self.closing, Closing::No) {
                    return Some(self.ended());
                }
                // What is already here arrived in time: read it before the socket goes.
                if let Poll::Ready(exit) = self.poll_read(cx) {
                    return Some(exit);
                }
                return Some(self.closed());
            }
            // While the user's buffer is full we are not reading, so silence proves nothing
            // about the peer: count the time as alive.
            let blocked_on_user = self.pipes.received.is_blocked();
            if blocked_on_user {
                self.last_rx = now;
                self.awaiting_since = None;
            }
            if let Some(error) = self.liveness_verdict(now) {
                // A last look at the socket before declaring it dead: frames that are already
                // here prove the peer alive, and are never left unread in a dropped socket.
                if let Poll::Ready(exit) = self.poll_read(cx) {
                    return Some(exit);
                }
                if self.liveness_verdict(now).is_some() {
                    return Some(self.fail(error));
                }
            }
            if let (Some(at), Some(every)) = (self.next_ping, self.config.ping_interval) {
                if now >= at && matches!(self.closing, Closing::No) {
                    self.send_heartbeat(now);
                    self.next_ping = Some(now + every);
                }
            }
            let deadline = self.next_deadline();
            self.timer.as_mut().reset(deadline);
        }
        None
    }

    /// The timeout that has passed at `now`, if the peer is overdue.
    fn liveness_verdict(&self, now: Instant) -> Option<Error> {
        if let Some(sent) = self.awaiting_since {
            if now >= sent + self.config.pong_timeout {
                return Some(Error::HeartbeatTimeout(self.config.pong_timeout));
            }
        }
        let idle = self.config.idle_timeout?;
        (now >= self.last_rx + idle).then_some(Error::IdleTimeout(idle))
    }

    fn send_heartbeat(&mut self, now: Instant) {
        if self.control.is_some() {
            return;
        }
        self.ping_id = self.ping_id.wrapping_add(1);
        self.ping_sent_at = now;
        self.awaiting_since.get_or_insert(now);
        self.control = Some(match &self.config.heartbeat_message {
            Some(app) => app.clone(),
            None => Message::Ping(Bytes::copy_from_slice(&self.ping_id.to_be_bytes())),
        });
        Stats::add(&self.pipes.stats.pings, 1);
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        loop {
            // A batch the user has not taken yet blocks further reads: that is the backpressure.
            // Not while closing: the server may send data until its Close (RFC 6455, 5.5.1), and
            // only reading on reaches that Close; what comes until then is held, within a bound.
            let closing = !matches!(self.closing, Closing::No);
            if self.pipes.received.poll_deliver_held(cx).is_pending() && !closing {
                return Poll::Pending;
            }
            let limits = self.pipes.received.limits();
            let mut batch: Vec<Message> = Vec::new();
            let mut bytes = 0usize;
            let mut saw_frame = false;
            let read = loop {
                match self.ws.poll_step(cx, &mut batch, limits.messages) {
                    Poll::Ready(Ok(Some(incoming))) => {
                        saw_frame = true;
                        match incoming {
                            Incoming::Data(len) => {
                                bytes += len;
                                if batch.len() >= limits.messages || bytes >= limits.bytes {
                                    break Read::More;
                                }
                            }
                            Incoming::Pong(payload) => self.on_pong(&payload),
                            Incoming::Close(frame) => {
                                self.close_frame = frame;
                                // The server should now close TCP; it gets `close_timeout`.
                                if self.close_deadline.is_none() {
                                    self.close_deadline =
                                        Some(Instant::now() + self.config.close_timeout);
                                    self.arm_timer();
                                }
                            }
                            // Answered by the codec; the Pong goes out with the next flush.
                            Incoming::Ping => {}
                        }
                    }
                    Poll::Ready(Ok(None)) => break Read::End(Ok(())),
                    Poll::Ready(Err(e)) => break Read::End(Err(e)),
                    Poll::Pending => break Read::Idle,
                }
            };
            if saw_frame {
                self.last_rx = Instant::now();
                self.awaiting_since = None;
            }
            if !batch.is_empty() {
                self.ws.seal(&mut batch);
                self.discarded += self.pipes.received.take_batch(batch, bytes, closing);
            }
            match read {
                Read::End(Ok(())) => return Poll::Ready(self.ended()),
                Read::End(Err(e)) => return Poll::Ready(self.fail(Error::from_ws(e))),
                Read::More => continue,
                Read::Idle => {
                    // Offers what was just held (registering the waker if the channel is full).
                    let _ = self.pipes.received.poll_deliver_held(cx);
                    return Poll::Pending;
                }
            }
        }
    }

    fn on_pong(&mut self, payload: &[u8]) {
        if payload == self.ping_id.to_be_bytes() {
            let rtt = self.ping_sent_at.elapsed().as_micros().max(1) as u64;
            self.pipes
                .stats
                .rtt_micros
                .store(rtt, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The socket reached its end: the close handshake we asked for, or the server's doing.
    fn ended(&mut self) -> Exit {
        if matches!(self.closing, Closing::No) {
            let frame = self.close_frame.take();
            self.fail(Error::ServerClosed { frame })
        } else {
            self.closed()
        }
    }

    /// The close the user asked for is over.
    fn closed(&self) -> Exit {
        Exit::Closed {
            discarded: self.discarded,
        }
    }

    fn fail(&mut self, error: Error) -> Exit {
        if matches!(self.closing, Closing::No) {
            Stats::add(&self.pipes.stats.unconfirmed, self.unflushed);
            Exit::Failed {
                error,
                unconfirmed: self.unflushed,
            }
        } else {
            // A failure while closing is still the end the user asked for.
            self.closed()
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        loop {
            if let Some(control) = self.control.take() {
                match self.feed(cx, control) {
                    Ok(None) => {}
                    Ok(Some(back)) => {
                        self.control = Some(back);
                        return Poll::Pending;
                    }
                    Err(e) => return Poll::Ready(e),
                }
            }
            if self.pipes.outbox.is_empty() && !matches!(self.closing, Closing::Sent) {
                let got = self.pipes.outbox.poll_refill(cx, WRITE_BATCH);
                if got == 0 {
                    if let Closing::Draining(frame) = &self.closing {
                        // The queue is empty and closed: everything was written, now the Close.
                        self.control = Some(Message::Close(Some(frame.clone())));
                        self.closing = Closing::Sent;
                        continue;
                    }
                }
            }
            // After the server's Close no data may follow (RFC 6455, 5.5.1): what is queued stays
            // in the outbox for the next connection instead of failing here and being lost.
            while !self.pipes.outbox.is_empty() && self.ws.accepts_data() {
                match self.poll_socket_ready(cx) {
                    Ok(true) => {}
                    Ok(false) => return Poll::Pending,
                    Err(exit) => return Poll::Ready(exit),
                }
                let Some(msg) = self.pipes.outbox.pop_front() else {
                    break;
                };
                let len = payload_len(&msg) as u64;
                if !self.pipes.extensions.is_empty() {
                    self.pipes.extensions.outbound(&msg);
                }
                if let Err(exit) = self.start_send(msg) {
                    return Poll::Ready(exit);
                }
                self.unflushed += 1;
                self.unflushed_bytes += len;
            }
            if !self.needs_flush && !self.ws.wants_flush() {
                return Poll::Pending;
            }
            match self.ws.poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    let stats = &self.pipes.stats;
                    Stats::add(&stats.messages_out, self.unflushed);
                    Stats::add(&stats.bytes_out, self.unflushed_bytes);
                    self.unflushed = 0;
                    self.unflushed_bytes = 0;
                    self.needs_flush = false;
                    if self.pipes.outbox.is_empty() && self.control.is_none() {
                        // Loop once more: the queue may have filled while we flushed.
                        continue;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(self.fail(Error::from_ws(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Feeds one message without flushing. `Ok(Some(msg))` hands it back when the socket is
    /// not ready (its waker is registered); `Err` is the connection's end.
    fn feed(&mut self, cx: &mut Context<'_>, msg: Message) -> Result<Option<Message>, Exit> {
        if !self.poll_socket_ready(cx)? {
            return Ok(Some(msg));
        }
        self.start_send(msg)?;
        Ok(None)
    }

    /// Whether the socket takes another message now; `false` registers the waker.
    fn poll_socket_ready(&mut self, cx: &mut Context<'_>) -> Result<bool, Exit> {
        match self.ws.poll_ready(cx) {
            Poll::Pending => Ok(false),
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Ready(Err(e)) => Err(self.fail(Error::from_ws(e))),
        }
    }

    /// Hands a message to the socket after `poll_socket_ready` said yes.
    fn start_send(&mut self, msg: Message) -> Result<(), Exit> {
        match self.ws.start_send(msg) {
            Ok(()) => {
                self.needs_flush = true;
                Ok(())
            }
            Err(e) => Err(self.fail(Error::from_ws(e))),
        }
    }
}

/// The Close frame `close()` sends: 1000, no reason.
pub(crate) fn normal_close() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::{future::Future, sync::Arc, task::Context, time::Duration};

    use tokio::{io::AsyncWriteExt, sync::mpsc};

    use super::*;
    use crate::{
        config::QueuePolicy,
        extension::Extensions,
        inbound::{self, Messages, Received},
        queue::{self, Outbox},
        supervisor::{Command, Requests},
    };

    /// The handle's ends of the channels, kept alive for as long as a test runs.
    type HandleEnds = (mpsc::Sender<Command>, queue::QueueTx);

    /// The pipes a supervisor would lend a connection, the user's stream and the handle's ends.
    fn pipes(config: &ClientConfig) -> (Pipes, Messages, HandleEnds) {
        let stats = Arc::new(Stats::default());
        let (queue_tx, queue_rx) = queue::channel(
            config.queue_capacity,
            config.queue_max_bytes,
            QueuePolicy::Queue,
            stats.clone(),
        );
        let (inbound_tx, messages, _) =
            inbound::channel(config.inbound_capacity, config.inbound_max_bytes, None);
        let (commands_tx, commands_rx) = mpsc::channel(8);
        let extensions = Extensions::new(Vec::new(), queue_tx.clone(), stats.clone());
        let pipes = Pipes::new(
            Requests::new(commands_rx, None),
            Outbox::new(queue_rx),
            Received::new(inbound_tx, stats.clone(), extensions.clone()),
            stats,
            extensions,
        );
        (pipes, messages, (commands_tx, queue_tx))
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_is_already_here_when_the_pong_deadline_passes_is_read_not_lost() {
        let config = ClientConfig {
            ping_interval: Some(Duration::from_secs(1)),
            pong_timeout: Duration::from_secs(1),
            ..ClientConfig::default()
        };
        let (client_io, mut server_io) = tokio::io::duplex(1 << 16);
        let mut ws = WsStream::new(client_io, &[], &config);
        let (mut pipes, mut messages, _keep) = pipes(&config);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);

        let mut run = Box::pin(Connection::new(&mut ws, &mut pipes, &config).run());
        assert!(run.as_mut().poll(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(run.as_mut().poll(&mut cx).is_pending(), "the ping goes out");
        // No Pong, but a Text frame "x", in the socket by the time the deadline is looked at.
        server_io.write_all(&[0x81, 0x01, b'x']).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            run.as_mut().poll(&mut cx).is_pending(),
            "a frame that is here proves the peer alive"
        );
        drop(run);
        assert_eq!(messages.try_recv(), Some(Message::text("x")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_is_already_here_when_the_close_times_out_is_read_not_lost() {
        let config = ClientConfig {
            ping_interval: None,
            close_timeout: Duration::from_secs(1),
            ..ClientConfig::default()
        };
        let (client_io, mut server_io) = tokio::io::duplex(1 << 16);
        let mut ws = WsStream::new(client_io, &[], &config);
        let (mut pipes, mut messages, (commands_tx, _queue_tx)) = pipes(&config);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);

        let mut run = Box::pin(Connection::new(&mut ws, &mut pipes, &config).run());
        commands_tx
            .send(Command::Close {
                frame: normal_close(),
                drain: false,
            })
            .await
            .unwrap();
        assert!(
            run.as_mut().poll(&mut cx).is_pending(),
            "our Close goes out"
        );
        // The server never sends its Close, but a Text frame "x" is in the socket by the time
        // the close times out.
        server_io.write_all(&[0x81, 0x01, b'x']).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(
            run.as_mut().poll(&mut cx),
            Poll::Ready(Exit::Closed { discarded: 0 })
        ));
        drop(run);
        assert_eq!(messages.try_recv(), Some(Message::text("x")));
    }
}
