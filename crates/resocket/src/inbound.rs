//! The inbound path: received data messages, handed to the user in batches with backpressure.
//!
//! The connection drains whatever the socket has buffered into a batch and hands the whole
//! batch over in one channel operation; [`Messages`] then pops from its current batch without
//! touching the channel. A wake-up and a channel slot are paid per batch, not per message.
//! When the channel is full the connection stops reading the socket, so TCP flow control slows
//! the server down: nothing is dropped, ever. (`BENCHMARKS.md` at the repository root has the
//! measurements behind the choices here.)
//!
//! Batches that could not go into the channel yet are held by [`InboundTx`]: one while the
//! connection applies backpressure, more while the client closes (when reading must go on until
//! the server's Close, up to a second inbound bound). What is still held when the client ends
//! goes to [`Messages`] through a one-time tail, read after the channel, so that `close().await`
//! never waits on a user who reads only after it.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_core::Stream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::{extension::Extensions, state::Stats, Error, Message, Status};

/// The most messages one batch carries; smaller inbound bounds use smaller batches.
const MAX_BATCH: usize = 256;

/// How batches are sized for a given bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
    pub(crate) channel_slots: usize,
}

impl BatchLimits {
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> BatchLimits {
        let messages = capacity.clamp(1, MAX_BATCH);
        let channel_slots = (capacity / messages).max(1);
        BatchLimits {
            messages,
            bytes: (max_bytes / channel_slots).max(1),
            channel_slots,
        }
    }
}

type ReserveFuture = Pin<
    Box<
        dyn Future<Output = Result<mpsc::OwnedPermit<Vec<Message>>, mpsc::error::SendError<()>>>
            + Send,
    >,
>;

/// The connection's end of the inbound channel, and the owner of received batches that are not
/// in the channel yet.
pub(crate) struct InboundTx {
    tx: mpsc::Sender<Vec<Message>>,
    /// Set while the channel is full; boxed once per backpressure episode, not per message.
    reserve: Option<ReserveFuture>,
    fan_out: Option<broadcast::Sender<Message>>,
    pub(crate) limits: BatchLimits,
    /// Received batches waiting for room in the channel, oldest first. They outlive a
    /// connection: a new one delivers them before anything it receives.
    held: VecDeque<(Vec<Message>, usize)>,
    held_messages: usize,
    held_bytes: usize,
    /// Where what is still held at the end goes; `Messages` reads it after the channel.
    tail: Option<oneshot::Sender<Vec<Message>>>,
}

impl InboundTx {
    /// Whether a received batch waits for the user: the connection then stops reading.
    pub(crate) fn is_blocked(&self) -> bool {
        !self.held.is_empty()
    }

    /// Keeps a received batch (of `bytes` payload bytes) for delivery after those held before.
    pub(crate) fn hold(&mut self, batch: Vec<Message>, bytes: usize) {
        if batch.is_empty() {
            return;
        }
        self.held_messages += batch.len();
        self.held_bytes += bytes;
        self.held.push_back((batch, bytes));
    }

    /// Like [`InboundTx::hold`], within a second inbound bound (`inbound_capacity` messages and
    /// `inbound_max_bytes`, as the channel's): the oldest messages are kept, those that do not
    /// fit are discarded. Returns how many messages were discarded.
    ///
    /// Used while closing, when the connection reads on without waiting for the user so that
    /// the server's Close is seen, against a server that floods until then.
    pub(crate) fn hold_within_bound(&mut self, mut batch: Vec<Message>, bytes: usize) -> u64 {
        let (max_messages, max_bytes) = self.held_bound();
        if self.held_messages + batch.len() <= max_messages && self.held_bytes + bytes <= max_bytes
        {
            self.hold(batch, bytes);
            return 0;
        }
        let mut kept = 0;
        let mut kept_bytes = 0;
        for msg in &batch {
            let len = crate::queue::payload_len(msg);
            if self.held_messages + kept + 1 > max_messages
                || self.held_bytes + kept_bytes + len > max_bytes
            {
                break;
            }
            kept += 1;
            kept_bytes += len;
        }
        let discarded = (batch.len() - kept) as u64;
        batch.truncate(kept);
        self.hold(batch, kept_bytes);
        discarded
    }

    /// Holds the frames a handshake left, whole, unless what is held already passed the bound;
    /// then they are discarded. Returns how many messages were discarded.
    ///
    /// A connection reads nothing while a batch is held, but every handshake may leave frames:
    /// over reconnects, with a user who does not read, they must not pile up. What a previous
    /// connection left plus one handshake's frames are always kept.
    pub(crate) fn hold_unless_over_bound(&mut self, batch: Vec<Message>, bytes: usize) -> u64 {
        let (max_messages, max_bytes) = self.held_bound();
        if self.held_messages > max_messages || self.held_bytes > max_bytes {
            return batch.len() as u64;
        }
        self.hold(batch, bytes);
        0
    }

    /// The most messages and bytes held beside the channel's own.
    fn held_bound(&self) -> (usize, usize) {
        let slots = self.limits.channel_slots;
        (self.limits.messages * slots, self.limits.bytes * slots)
    }

    /// Moves held batches into the channel, oldest first. `Ready` once nothing is held;
    /// `Pending` (with the waker registered) while the channel is full.
    pub(crate) fn poll_deliver_held(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some((batch, bytes)) = self.held.pop_front() {
            let messages = batch.len();
            let mut slot = Some(batch);
            if self.poll_deliver(cx, &mut slot).is_pending() {
                let batch = slot.expect("a batch stays while its delivery is pending");
                self.held.push_front((batch, bytes));
                return Poll::Pending;
            }
            self.held_messages -= messages;
            self.held_bytes -= bytes;
        }
        Poll::Ready(())
    }

    /// Hands whatever is still held to the stream's tail, at the end of the client: the
    /// user reads it after the channel, and nobody waits for that.
    pub(crate) fn hand_over_rest(&mut self) {
        let rest: Vec<Message> = std::mem::take(&mut self.held)
            .into_iter()
            .flat_map(|(batch, _)| batch)
            .collect();
        self.held_messages = 0;
        self.held_bytes = 0;
        if let Some(tail) = self.tail.take() {
            if !rest.is_empty() {
                // An error only means the user dropped `Messages`: nobody is left to deliver to.
                let _ = tail.send(rest);
            }
        }
    }

    /// Offers a batch's messages to the fan-out receivers, if there are any.
    pub(crate) fn fan_out(&self, batch: &[Message]) {
        if let Some(fan_out) = &self.fan_out {
            if fan_out.receiver_count() > 0 {
                for msg in batch {
                    // A send error only means every receiver left in the meantime.
                    let _ = fan_out.send(msg.clone());
                }
            }
        }
    }

    /// Hands `batch` to the user. `Ready` once delivered, or once the user dropped
    /// [`Messages`] (nobody is left to deliver to); `Pending` keeps the batch for later.
    fn poll_deliver(&mut self, cx: &mut Context<'_>, batch: &mut Option<Vec<Message>>) -> Poll<()> {
        if batch.is_none() {
            return Poll::Ready(());
        }
        if self.reserve.is_none() {
            match self.tx.try_reserve() {
                Ok(permit) => {
                    permit.send(batch.take().unwrap_or_default());
                    return Poll::Ready(());
                }
                Err(mpsc::error::TrySendError::Closed(())) => {
                    *batch = None;
                    return Poll::Ready(());
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    self.reserve = Some(Box::pin(self.tx.clone().reserve_owned()));
                }
            }
        }
        let reserve = self.reserve.as_mut().expect("set above");
        let result = std::task::ready!(reserve.as_mut().poll(cx));
        self.reserve = None;
        match result {
            Ok(permit) => {
                permit.send(batch.take().unwrap_or_default());
            }
            Err(_) => *batch = None,
        }
        Poll::Ready(())
    }
}

/// Received data messages on their way to the user: through the extensions' inbound hooks,
/// to the fan-out, into the counters, then held for the inbound channel. The one owner of the
/// connection-independent inbound state; the connection and the supervisor hand it what they
/// read.
pub(crate) struct Received {
    inbound: InboundTx,
    stats: Arc<Stats>,
    extensions: Extensions,
}

impl Received {
    pub(crate) fn new(inbound: InboundTx, stats: Arc<Stats>, extensions: Extensions) -> Self {
        Received {
            inbound,
            stats,
            extensions,
        }
    }

    /// How the connection sizes the batches it reads.
    pub(crate) fn limits(&self) -> BatchLimits {
        self.inbound.limits
    }

    /// Whether a received batch waits for the user: the connection then stops reading.
    pub(crate) fn is_blocked(&self) -> bool {
        self.inbound.is_blocked()
    }

    /// As [`InboundTx::poll_deliver_held`].
    pub(crate) fn poll_deliver_held(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.inbound.poll_deliver_held(cx)
    }

    /// Takes a sealed batch read from the socket, of `bytes` payload bytes. While `closing`,
    /// it is held within the second inbound bound (the connection reads on to reach the
    /// server's Close); returns how many messages were discarded past it.
    pub(crate) fn take_batch(
        &mut self,
        mut batch: Vec<Message>,
        bytes: usize,
        closing: bool,
    ) -> u64 {
        if !self.extensions.is_empty() {
            let extensions = &self.extensions;
            batch = batch
                .into_iter()
                .filter_map(|msg| extensions.inbound(msg))
                .collect();
        }
        if batch.is_empty() {
            return 0;
        }
        self.inbound.fan_out(&batch);
        Stats::add(&self.stats.messages_in, batch.len() as u64);
        Stats::add(&self.stats.bytes_in, bytes as u64);
        if !closing {
            self.inbound.hold(batch, bytes);
            return 0;
        }
        let discarded = self.inbound.hold_within_bound(batch, bytes);
        Stats::add(&self.stats.discarded, discarded);
        discarded
    }

    /// Takes the frames a handshake read and left for the user; returns how many messages were
    /// discarded because too much is held already.
    pub(crate) fn take_leftovers(&mut self, later: Vec<Message>) -> u64 {
        if later.is_empty() {
            return 0;
        }
        let bytes: usize = later.iter().map(crate::queue::payload_len).sum();
        Stats::add(&self.stats.messages_in, later.len() as u64);
        Stats::add(&self.stats.bytes_in, bytes as u64);
        let extensions = &self.extensions;
        let later: Vec<Message> = if extensions.is_empty() {
            later
        } else {
            later
                .into_iter()
                .filter_map(|m| extensions.inbound(m))
                .collect()
        };
        self.inbound.fan_out(&later);
        // Bounded, not blocking: a user who never reads must not make every reconnect's
        // leftovers pile up.
        let discarded = self.inbound.hold_unless_over_bound(later, bytes);
        Stats::add(&self.stats.discarded, discarded);
        discarded
    }

    /// As [`InboundTx::hand_over_rest`]: at the end of the client.
    pub(crate) fn hand_over_rest(&mut self) {
        self.inbound.hand_over_rest();
    }
}

/// Creates the inbound channel and the optional fan-out.
pub(crate) fn channel(
    capacity: usize,
    max_bytes: usize,
    fan_out_capacity: Option<usize>,
) -> (InboundTx, Messages, Option<broadcast::Sender<Message>>) {
    let limits = BatchLimits::new(capacity, max_bytes);
    let (tx, rx) = mpsc::channel(limits.channel_slots);
    let fan_out = fan_out_capacity.map(|c| broadcast::channel(c).0);
    let (tail_tx, tail_rx) = oneshot::channel();
    (
        InboundTx {
            tx,
            reserve: None,
            fan_out: fan_out.clone(),
            limits,
            held: VecDeque::new(),
            held_messages: 0,
            held_bytes: 0,
            tail: Some(tail_tx),
        },
        Messages {
            rx,
            current: Vec::new().into_iter(),
            tail: Some(tail_rx),
            status: None,
            ended: None,
        },
        fan_out,
    )
}

/// The stream of data messages (Text and Binary) the server sent, in order.
///
/// Ping, Pong and Close frames never appear here. The stream ends (`None`) once the client has
/// closed and every received message was taken, including those that arrived until the
/// server's Close: they can be read after `close()` returned. Reading slowly is safe: the
/// client stops reading the socket while this buffer is full, so the server is slowed down
/// instead of a message being dropped. (While closing, the client reads on to reach the
/// server's Close and holds up to a second inbound bound; anything past it is counted in a
/// [`ConnectionEvent::Discarded`](crate::ConnectionEvent::Discarded).)
///
/// Once it has ended, [`Messages::end_reason`] says why.
#[derive(Debug)]
pub struct Messages {
    rx: mpsc::Receiver<Vec<Message>>,
    current: std::vec::IntoIter<Message>,
    /// What the client still held when it ended; read once the channel has ended.
    tail: Option<oneshot::Receiver<Vec<Message>>>,
    /// The client's status, read once when the stream ends: the supervisor publishes `Closed`
    /// (with its error) before it drops the channel's sender, so it is final by then.
    status: Option<watch::Receiver<Status>>,
    ended: Option<Ended>,
}

/// Why a [`Messages`] stream ended; from [`Messages::end_reason`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Ended {
    /// The client closed cleanly: by [`Client::close`](crate::Client::close) or
    /// [`Client::close_with`](crate::Client::close_with), by dropping every handle, or, for a
    /// client that does not reconnect, by the server's Close 1000.
    Closed,
    /// Reconnecting gave up: the backoff allowed no further attempt.
    RetriesExhausted {
        /// How many attempts were made in the last retry cycle.
        attempts: u32,
        /// The error of the last attempt.
        last: Error,
    },
    /// A failure that is not retried ended the client: a permanent error (see
    /// [`Error::is_retryable`] and [`ClientBuilder::retry_if`](crate::ClientBuilder::retry_if)),
    /// the first failure under `exit_on_first_failure`, or any disconnect of a client that does
    /// not reconnect.
    Failed(Error),
    /// The client's task was dropped before it finished: its runtime shut down, or a
    /// [`Supervisor`](crate::Supervisor) from [`ClientBuilder::build`](crate::ClientBuilder::build)
    /// was dropped without being run.
    Aborted,
}

impl Ended {
    fn from_status(status: Option<&watch::Receiver<Status>>) -> Ended {
        let Some(status) = status else {
            return Ended::Aborted;
        };
        let status = status.borrow();
        if !status.state.is_closed() {
            return Ended::Aborted;
        }
        match &status.error {
            None => Ended::Closed,
            Some(Error::RetriesExhausted { attempts, last }) => Ended::RetriesExhausted {
                attempts: *attempts,
                last: (**last).clone(),
            },
            Some(error) => Ended::Failed(error.clone()),
        }
    }

    /// The error that ended the client, if one did.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Ended::RetriesExhausted { last, .. } => Some(last),
            Ended::Failed(error) => Some(error),
            Ended::Closed | Ended::Aborted => None,
        }
    }
}

impl Messages {
    /// Lets the stream read the client's final status when it ends.
    pub(crate) fn watching(mut self, status: watch::Receiver<Status>) -> Messages {
        self.status = Some(status);
        self
    }

    /// Why the stream ended: `None` while it has not (until `recv` returned `None`).
    pub fn end_reason(&self) -> Option<&Ended> {
        self.ended.as_ref()
    }

    fn end(&mut self) -> Poll<Option<Message>> {
        if self.ended.is_none() {
            self.ended = Some(Ended::from_status(self.status.as_ref()));
        }
        Poll::Ready(None)
    }

    /// Waits for the next message; `None` once the client is closed and drained.
    ///
    /// # Cancel safety
    /// Cancel safe: a message is only taken when this returns it.
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            if let Some(msg) = self.current.next() {
                return Poll::Ready(Some(msg));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.current = batch.into_iter(),
                Poll::Ready(None) => match self.tail.as_mut() {
                    Some(tail) => {
                        // The sender is gone with the channel's: this is ready now.
                        let rest = std::task::ready!(Pin::new(tail).poll(cx));
                        self.tail = None;
                        self.current = rest.unwrap_or_default().into_iter();
                    }
                    None => return self.end(),
                },
                Poll::Pending => {
                    // Idle: give back the spent batch's buffer (up to 10 KiB) instead of
                    // holding it until the next batch replaces it.
                    self.current = Vec::new().into_iter();
                    return Poll::Pending;
                }
            }
        }
    }

    /// Takes the next message if one is already here.
    pub fn try_recv(&mut self) -> Option<Message> {
        loop {
            if let Some(msg) = self.current.next() {
                return Some(msg);
            }
            match self.rx.try_recv() {
                Ok(batch) => self.current = batch.into_iter(),
                Err(mpsc::error::TryRecvError::Disconnected) if self.tail.is_some() => {
                    let rest = self.tail.as_mut().and_then(|tail| tail.try_recv().ok());
                    self.tail = None;
                    self.current = rest.unwrap_or_default().into_iter();
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    let _ = self.end();
                    return None;
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.current = Vec::new().into_iter();
                    return None;
                }
            }
        }
    }

    /// Waits for at least one message, then moves up to `limit` available ones into `buf`.
    /// Returns how many were added; 0 means the stream ended (or `limit` was 0).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv_many(&mut self, buf: &mut Vec<Message>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        let Some(first) = self.recv().await else {
            return 0;
        };
        buf.push(first);
        let mut added = 1;
        while added < limit {
            match self.try_recv() {
                Some(msg) => {
                    buf.push(msg);
                    added += 1;
                }
                None => break,
            }
        }
        added
    }
}

impl Stream for Messages {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.get_mut().poll_recv(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.current.len(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(range: std::ops::Range<usize>) -> Vec<Message> {
        range.map(|i| Message::text(i.to_string())).collect()
    }

    fn bytes_of(batch: &[Message]) -> usize {
        batch.iter().map(crate::queue::payload_len).sum()
    }

    #[tokio::test]
    async fn held_batches_come_after_the_channel_and_the_oldest_are_kept() {
        // One channel slot of up to 4 messages; the held bound is 4 messages as well.
        let (mut tx, mut messages, _) = channel(4, 1 << 20, None);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);

        let first = texts(0..4);
        tx.hold(first.clone(), bytes_of(&first));
        assert!(
            tx.poll_deliver_held(&mut cx).is_ready(),
            "the channel had room"
        );
        let second = texts(4..7);
        tx.hold(second.clone(), bytes_of(&second));
        assert!(
            tx.poll_deliver_held(&mut cx).is_pending(),
            "the channel is full"
        );
        assert!(tx.is_blocked());
        let third = texts(7..10);
        assert_eq!(tx.hold_within_bound(third.clone(), bytes_of(&third)), 2);

        tx.hand_over_rest();
        drop(tx);
        let mut received = Vec::new();
        while let Some(msg) = messages.recv().await {
            received.push(msg);
        }
        assert_eq!(received, texts(0..8));
    }

    #[test]
    fn handshake_leftovers_are_kept_once_beside_a_full_held_batch_but_do_not_pile_up() {
        let (mut tx, _messages, _) = channel(4, 1 << 20, None);
        let full = texts(0..4);
        tx.hold(full.clone(), bytes_of(&full));
        let first = texts(4..6);
        assert_eq!(
            tx.hold_unless_over_bound(first.clone(), bytes_of(&first)),
            0
        );
        let second = texts(6..7);
        assert_eq!(
            tx.hold_unless_over_bound(second.clone(), bytes_of(&second)),
            1
        );
    }

    #[test]
    fn try_recv_reads_the_tail_after_the_channel() {
        let (mut tx, mut messages, _) = channel(4, 1 << 20, None);
        let batch = texts(0..2);
        tx.hold(batch.clone(), bytes_of(&batch));
        tx.hand_over_rest();
        drop(tx);
        assert_eq!(messages.try_recv(), Some(Message::text("0")));
        assert_eq!(messages.try_recv(), Some(Message::text("1")));
        assert_eq!(messages.try_recv(), None);
    }
}
