//! The outbound queue: one for the client's whole life, bounded by messages and by bytes.
//!
//! The message bound is the capacity of a tokio `mpsc` channel; the byte bound is a
//! `Semaphore` whose permits are payload bytes. A sender takes both before its message enters
//! the channel, and the supervisor gives the bytes back when it takes messages out, once per
//! batch. Neither side takes a lock on the way, and a message the queue cannot take is handed
//! back inside [`SendError`].
//!
//! Only Text and Binary messages enter the queue. Control frames belong to the connection: a
//! queued Close would end one connection behind the supervisor's back (which then reconnects),
//! Pings and Pongs are the heartbeat's and the codec's, and a raw `Frame` could split a message
//! across a reconnect. They are refused with [`SendError::Unsupported`].
//!
//! The supervisor's end is an [`Outbox`]: the receiver and the messages already taken from it
//! but not yet written, which outlive any one connection.

use std::{
    collections::VecDeque,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::{mpsc, Semaphore, TryAcquireError};

use crate::{config::QueuePolicy, state::Stats, Message, SendError};

/// The payload size a message is charged against the byte bound.
pub(crate) fn payload_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) | Message::Frame(_) => 0,
    }
}

/// Creates the two ends of a queue.
pub(crate) fn channel(
    capacity: usize,
    max_bytes: usize,
    policy: QueuePolicy,
    stats: Arc<Stats>,
) -> (QueueTx, QueueRx) {
    // Semaphore permits are counted in u32 per acquire, so one message is charged at most
    // u32::MAX bytes; bounds beyond 4 GiB per message make no practical difference.
    let max_bytes = max_bytes.min(u32::MAX as usize);
    let (tx, rx) = mpsc::channel(capacity);
    let bytes = Arc::new(Semaphore::new(max_bytes));
    (
        QueueTx {
            tx,
            bytes: bytes.clone(),
            max_bytes,
            policy,
            stats,
        },
        QueueRx {
            rx,
            bytes,
            max_bytes,
        },
    )
}

/// The sending end, held by every `Client` handle.
#[derive(Debug, Clone)]
pub(crate) struct QueueTx {
    tx: mpsc::Sender<Message>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
    policy: QueuePolicy,
    stats: Arc<Stats>,
}

impl QueueTx {
    /// A message larger than the whole byte bound is charged the whole bound: it waits for an
    /// empty queue instead of failing forever.
    fn cost(&self, msg: &Message) -> u32 {
        payload_len(msg).min(self.max_bytes) as u32
    }

    /// Refuses what may not be queued: control frames always, anything while disconnected
    /// under the `Reject` policy.
    fn admit(&self, msg: Message) -> Result<Message, SendError<Message>> {
        if !matches!(msg, Message::Text(_) | Message::Binary(_)) {
            return Err(SendError::Unsupported(msg));
        }
        if self.policy == QueuePolicy::Reject && !self.stats.is_ready() {
            return Err(SendError::NotConnected(msg));
        }
        Ok(msg)
    }

    pub(crate) fn try_send(&self, msg: Message) -> Result<(), SendError<Message>> {
        self.try_enqueue(self.admit(msg)?)
    }

    /// Takes both bounds' share and queues an admitted message, if there is room right now.
    ///
    /// This is also the first step of every waiting send: a tokio semaphore hands permits to
    /// its queued waiters before anyone else, so taking them here without waiting never
    /// overtakes a sender that waits, and the message skips two `Acquire` futures (their
    /// state machines and wait-list bookkeeping were a tenth of the 64 B send profile).
    #[inline]
    fn try_enqueue(&self, msg: Message) -> Result<(), SendError<Message>> {
        let permit = match self.bytes.try_acquire_many(self.cost(&msg)) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => return Err(SendError::Full(msg)),
            Err(TryAcquireError::Closed) => return Err(SendError::Closed(msg)),
        };
        match self.tx.try_reserve() {
            Ok(slot) => {
                // The receiver returns these bytes when it takes the message out.
                permit.forget();
                slot.send(msg);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(())) => Err(SendError::Full(msg)),
            Err(mpsc::error::TrySendError::Closed(())) => Err(SendError::Closed(msg)),
        }
    }

    /// The first step of a waiting send: admits `msg` and queues it if there is room right now.
    /// `Ok(None)`: queued; `Ok(Some(msg))`: full, the caller waits for room.
    async fn send_now(&self, msg: Message) -> Result<Option<Message>, SendError<Message>> {
        match self.try_enqueue(self.admit(msg)?) {
            Ok(()) => {
                // The waiting path spends the task's cooperative budget; this one must too, or
                // a sender whose queue never fills would never let its worker run anything else.
                tokio::task::coop::consume_budget().await;
                Ok(None)
            }
            Err(SendError::Full(msg)) => Ok(Some(msg)),
            Err(other) => Err(other),
        }
    }

    pub(crate) async fn send(&self, msg: Message) -> Result<(), SendError<Message>> {
        let Some(msg) = self.send_now(msg).await? else {
            return Ok(());
        };
        let Ok(permit) = self.bytes.acquire_many(self.cost(&msg)).await else {
            return Err(SendError::Closed(msg));
        };
        let Ok(slot) = self.tx.reserve().await else {
            return Err(SendError::Closed(msg));
        };
        permit.forget();
        slot.send(msg);
        Ok(())
    }

    pub(crate) async fn send_timeout(
        &self,
        msg: Message,
        timeout: Duration,
    ) -> Result<(), SendError<Message>> {
        let Some(msg) = self.send_now(msg).await? else {
            return Ok(());
        };
        let cost = self.cost(&msg);
        let reserve = async {
            let permit = self.bytes.acquire_many(cost).await.ok()?;
            let slot = self.tx.reserve().await.ok()?;
            Some((permit, slot))
        };
        match tokio::time::timeout(timeout, reserve).await {
            Ok(Some((permit, slot))) => {
                permit.forget();
                slot.send(msg);
                Ok(())
            }
            Ok(None) => Err(SendError::Closed(msg)),
            Err(_) => Err(SendError::Timeout(msg)),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving end, owned by the supervisor.
#[derive(Debug)]
pub(crate) struct QueueRx {
    rx: mpsc::Receiver<Message>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
}

impl QueueRx {
    /// Moves up to `limit` waiting messages into `buf` and returns their bytes to the bound.
    /// Returns how many, and their payload bytes.
    ///
    /// Returns `Ready((0, 0))` only when every sender is gone and the queue is empty.
    pub(crate) fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<Message>,
        limit: usize,
    ) -> Poll<(usize, usize)> {
        let start = buf.len();
        let n = std::task::ready!(self.rx.poll_recv_many(cx, buf, limit));
        let bytes = self.release(&buf[start..]);
        Poll::Ready((n, bytes))
    }

    /// Takes whatever is waiting right now, without waiting.
    pub(crate) fn drain_now(&mut self, buf: &mut Vec<Message>, limit: usize) -> usize {
        let start = buf.len();
        while buf.len() - start < limit {
            match self.rx.try_recv() {
                Ok(msg) => buf.push(msg),
                Err(_) => break,
            }
        }
        self.release(&buf[start..]);
        buf.len() - start
    }

    /// Gives the bytes of `taken` back to the bound, in one go; returns their payload bytes.
    fn release(&self, taken: &[Message]) -> usize {
        let (mut charged, mut bytes) = (0usize, 0usize);
        for msg in taken {
            let len = payload_len(msg);
            charged += len.min(self.max_bytes);
            bytes += len;
        }
        if charged > 0 {
            self.bytes.add_permits(charged);
        }
        bytes
    }

    /// Whether nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Refuses further sends; waiting senders get `SendError::Closed`.
    pub(crate) fn close(&mut self) {
        self.rx.close();
        self.bytes.close();
    }
}

/// The supervisor's end of the queue: messages taken out of the channel but not yet handed to
/// a socket. They survive a disconnect and go out first on the next connection.
///
/// It keeps the payload bytes it holds as it goes, so the `DropOldest` bound is checked
/// without walking the backlog on every wake-up.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: QueueRx,
    pending: VecDeque<Message>,
    /// The payload bytes of `pending`.
    pending_bytes: usize,
    /// Reused for every batch taken from the channel.
    scratch: Vec<Message>,
}

impl Outbox {
    pub(crate) fn new(queue: QueueRx) -> Outbox {
        Outbox {
            queue,
            pending: VecDeque::new(),
            pending_bytes: 0,
            scratch: Vec::new(),
        }
    }

    /// Whether nothing taken from the channel is waiting to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether nothing at all is waiting: neither taken nor still in the channel.
    pub(crate) fn is_drained(&self) -> bool {
        self.pending.is_empty() && self.queue.is_empty()
    }

    /// The payload bytes taken from the channel and not yet written.
    #[cfg(test)]
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Moves up to `limit` waiting messages from the channel to the back of the outbox.
    /// Returns how many; `0` when none is waiting (the waker is then registered) or when the
    /// channel is closed and empty.
    pub(crate) fn poll_refill(&mut self, cx: &mut Context<'_>, limit: usize) -> usize {
        match self.queue.poll_recv_many(cx, &mut self.scratch, limit) {
            Poll::Ready((n, bytes)) => {
                self.take_scratch(bytes);
                n
            }
            Poll::Pending => 0,
        }
    }

    /// Waits for messages in the channel while no socket takes them, and drops the oldest
    /// past the bounds, so that senders never wait on a dead connection. Returns how many were
    /// dropped, or `None` once every sender is gone.
    pub(crate) fn poll_drop_oldest(
        &mut self,
        cx: &mut Context<'_>,
        capacity: usize,
        max_bytes: usize,
    ) -> Poll<Option<u64>> {
        let (n, bytes) = std::task::ready!(self.queue.poll_recv_many(cx, &mut self.scratch, 512));
        if n == 0 {
            return Poll::Ready(None);
        }
        self.take_scratch(bytes);
        let mut dropped = 0u64;
        while self.pending.len() > capacity
            || (self.pending_bytes > max_bytes && self.pending.len() > 1)
        {
            self.pop_front();
            dropped += 1;
        }
        Poll::Ready(Some(dropped))
    }

    /// The oldest message waiting to be written.
    pub(crate) fn pop_front(&mut self) -> Option<Message> {
        let msg = self.pending.pop_front()?;
        self.pending_bytes -= payload_len(&msg);
        Some(msg)
    }

    /// Adds messages to go out after everything waiting.
    pub(crate) fn push_back(&mut self, msgs: impl IntoIterator<Item = Message>) {
        for msg in msgs {
            self.pending_bytes += payload_len(&msg);
            self.pending.push_back(msg);
        }
    }

    /// Adds messages to go out before everything waiting, in their order.
    pub(crate) fn push_front(&mut self, msgs: Vec<Message>) {
        for msg in msgs.into_iter().rev() {
            self.pending_bytes += payload_len(&msg);
            self.pending.push_front(msg);
        }
    }

    /// Refuses further sends; what is already queued can still be taken.
    pub(crate) fn close(&mut self) {
        self.queue.close();
    }

    /// Closes the queue and drops everything in it and in the outbox; returns how many
    /// messages that was.
    pub(crate) fn discard_all(&mut self) -> u64 {
        self.queue.close();
        let mut rest = std::mem::take(&mut self.scratch);
        self.queue.drain_now(&mut rest, usize::MAX);
        let discarded = (self.pending.len() + rest.len()) as u64;
        self.pending.clear();
        self.pending_bytes = 0;
        discarded
    }

    /// Moves the batch just taken, of `bytes` payload bytes, behind what is pending.
    fn take_scratch(&mut self, bytes: usize) {
        self.pending_bytes += bytes;
        self.pending.extend(self.scratch.drain(..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: usize, max_bytes: usize, policy: QueuePolicy) -> (QueueTx, QueueRx) {
        channel(capacity, max_bytes, policy, Arc::new(Stats::default()))
    }

    #[tokio::test]
    async fn full_by_count_hands_the_message_back() {
        let (tx, _rx) = queue(2, 1 << 20, QueuePolicy::Queue);
        tx.try_send(Message::text("a")).unwrap();
        tx.try_send(Message::text("b")).unwrap();
        let err = tx.try_send(Message::text("c")).unwrap_err();
        assert!(err.is_full());
        assert_eq!(err.into_inner(), Message::text("c"));
    }

    #[tokio::test]
    async fn full_by_bytes_and_room_comes_back_after_receive() {
        let (tx, mut rx) = queue(100, 10, QueuePolicy::Queue);
        tx.try_send(Message::binary(vec![0u8; 8])).unwrap();
        assert!(tx
            .try_send(Message::binary(vec![0u8; 4]))
            .unwrap_err()
            .is_full());
        let mut buf = Vec::new();
        assert_eq!(rx.drain_now(&mut buf, 10), 1);
        tx.try_send(Message::binary(vec![0u8; 4])).unwrap();
    }

    #[tokio::test]
    async fn oversized_message_waits_for_an_empty_queue() {
        let (tx, mut rx) = queue(100, 10, QueuePolicy::Queue);
        tx.try_send(Message::binary(vec![0u8; 100])).unwrap();
        assert!(tx
            .try_send(Message::binary(vec![0u8; 1]))
            .unwrap_err()
            .is_full());
        let mut buf = Vec::new();
        rx.drain_now(&mut buf, 10);
        tx.try_send(Message::binary(vec![0u8; 100])).unwrap();
    }

    fn poll_once<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let waker = futures_util::task::noop_waker();
        fut.poll(&mut Context::from_waker(&waker))
    }

    #[tokio::test]
    async fn a_send_waiting_for_a_slot_is_not_overtaken_by_a_later_one() {
        let (tx, mut rx) = queue(1, 1 << 20, QueuePolicy::Queue);
        tx.try_send(Message::text("a")).unwrap();
        let mut waiting = std::pin::pin!(tx.send(Message::text("b")));
        assert!(poll_once(waiting.as_mut()).is_pending());
        let mut buf = Vec::new();
        assert_eq!(rx.drain_now(&mut buf, 10), 1);
        // The freed slot belongs to the waiting send already.
        let err = tx.try_send(Message::text("c")).unwrap_err();
        assert!(err.is_full());
        let err = tx.send_timeout(Message::text("d"), Duration::from_millis(1));
        assert!(err.await.unwrap_err().is_timeout());
        assert!(matches!(poll_once(waiting.as_mut()), Poll::Ready(Ok(()))));
        buf.clear();
        rx.drain_now(&mut buf, 10);
        assert_eq!(buf, [Message::text("b")]);
    }

    #[tokio::test]
    async fn a_send_waiting_for_bytes_is_not_overtaken_by_a_smaller_one() {
        let (tx, mut rx) = queue(100, 10, QueuePolicy::Queue);
        tx.try_send(Message::binary(vec![1u8; 8])).unwrap();
        let mut waiting = std::pin::pin!(tx.send(Message::binary(vec![2u8; 8])));
        assert!(poll_once(waiting.as_mut()).is_pending());
        let mut buf = Vec::new();
        rx.drain_now(&mut buf, 10);
        // 10 bytes are free, 8 of them promised to the waiting send: 4 more do not fit.
        assert!(tx
            .try_send(Message::binary(vec![3u8; 4]))
            .unwrap_err()
            .is_full());
        assert!(matches!(poll_once(waiting.as_mut()), Poll::Ready(Ok(()))));
        tx.try_send(Message::binary(vec![4u8; 2])).unwrap();
        buf.clear();
        rx.drain_now(&mut buf, 10);
        assert_eq!(
            buf,
            [Message::binary(vec![2u8; 8]), Message::binary(vec![4u8; 2])]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_sender_whose_queue_never_fills_still_lets_other_tasks_run() {
        let (tx, _rx) = queue(100_000, 1 << 30, QueuePolicy::Queue);
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = tokio::spawn({
            let ran = ran.clone();
            async move {
                for _ in 0..10_000 {
                    tx.send(Message::text("x")).await.unwrap();
                }
                ran.load(std::sync::atomic::Ordering::SeqCst)
            }
        });
        let other = tokio::spawn({
            let ran = ran.clone();
            async move { ran.store(true, std::sync::atomic::Ordering::SeqCst) }
        });
        let saw_other = tokio::time::timeout(Duration::from_secs(10), sender)
            .await
            .unwrap()
            .unwrap();
        other.await.unwrap();
        assert!(saw_other, "the other task ran while the sender was busy");
    }

    #[tokio::test(start_paused = true)]
    async fn send_timeout_times_out_and_returns_the_message() {
        let (tx, _rx) = queue(1, 100, QueuePolicy::Queue);
        tx.try_send(Message::text("a")).unwrap();
        let err = tx
            .send_timeout(Message::text("b"), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(err.into_inner(), Message::text("b"));
    }

    #[tokio::test]
    async fn closed_queue_refuses() {
        let (tx, mut rx) = queue(4, 100, QueuePolicy::Queue);
        rx.close();
        assert!(tx.try_send(Message::text("a")).unwrap_err().is_closed());
        assert!(tx.send(Message::text("a")).await.unwrap_err().is_closed());
    }

    #[tokio::test]
    async fn control_frames_are_refused_and_handed_back() {
        let (tx, _rx) = queue(4, 100, QueuePolicy::Queue);
        let close = Message::Close(Some(crate::CloseFrame {
            code: 1000.into(),
            reason: "".into(),
        }));
        let frame =
            Message::Frame(tokio_tungstenite::tungstenite::protocol::frame::Frame::ping(vec![1]));
        let refused = [
            Message::Ping(vec![1].into()),
            Message::Pong(vec![2].into()),
            close,
            frame,
        ];
        for msg in refused {
            let err = tx.try_send(msg.clone()).unwrap_err();
            assert!(err.is_unsupported(), "{msg:?}: {err}");
            assert_eq!(err.into_inner(), msg);
            let err = tx.send(msg.clone()).await.unwrap_err();
            assert!(err.is_unsupported(), "{msg:?}: {err}");
            let err = tx
                .send_timeout(msg.clone(), Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(err.is_unsupported(), "{msg:?}: {err}");
        }
        tx.try_send(Message::text("data")).unwrap();
        tx.try_send(Message::binary(vec![0u8; 4])).unwrap();
    }

    #[tokio::test]
    async fn reject_policy_fails_fast_while_not_ready() {
        let (tx, _rx) = queue(4, 100, QueuePolicy::Reject);
        assert!(tx
            .try_send(Message::text("a"))
            .unwrap_err()
            .is_not_connected());
        assert!(tx
            .send(Message::text("a"))
            .await
            .unwrap_err()
            .is_not_connected());
    }

    /// The bytes an outbox holds, counted the slow way.
    fn counted(outbox: &Outbox) -> usize {
        outbox.pending.iter().map(payload_len).sum()
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_within_both_bounds_and_tracks_bytes_as_it_goes() {
        let (tx, rx) = queue(64, 1 << 20, QueuePolicy::DropOldest);
        let mut outbox = Outbox::new(rx);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for i in 0..10 {
            tx.try_send(Message::text("x".repeat(10 + i))).unwrap();
        }
        // Four messages at most, and at most 50 bytes: 18 + 19 = 37 fits, 17 more does not.
        let dropped = outbox.poll_drop_oldest(&mut cx, 4, 50);
        assert_eq!(dropped, Poll::Ready(Some(8)));
        assert_eq!(outbox.pending_bytes(), 37);
        assert_eq!(outbox.pending_bytes(), counted(&outbox));

        assert_eq!(outbox.pop_front(), Some(Message::text("x".repeat(18))));
        outbox.push_front(vec![Message::text("ab"), Message::text("cde")]);
        outbox.push_back([Message::binary(vec![0u8; 7])]);
        assert_eq!(outbox.pending_bytes(), 19 + 2 + 3 + 7);
        assert_eq!(outbox.pending_bytes(), counted(&outbox));
        assert_eq!(outbox.pop_front(), Some(Message::text("ab")));

        // A single message larger than the byte bound is kept: dropping it would lose the newest.
        tx.try_send(Message::text("y".repeat(100))).unwrap();
        assert_eq!(
            outbox.poll_drop_oldest(&mut cx, 4, 50),
            Poll::Ready(Some(3))
        );
        assert_eq!(outbox.pending_bytes(), 100);
        assert_eq!(outbox.pending_bytes(), counted(&outbox));
        assert_eq!(outbox.discard_all(), 1);
        assert_eq!(outbox.pending_bytes(), 0);
    }

    #[tokio::test]
    async fn refill_takes_from_the_channel_in_order_after_what_is_pending() {
        let (tx, rx) = queue(64, 1 << 20, QueuePolicy::Queue);
        let mut outbox = Outbox::new(rx);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.poll_refill(&mut cx, 8), 0);
        outbox.push_back([Message::text("a")]);
        for text in ["b", "c", "d"] {
            tx.try_send(Message::text(text)).unwrap();
        }
        assert_eq!(outbox.poll_refill(&mut cx, 2), 2);
        assert!(!outbox.is_drained(), "one is still in the channel");
        assert_eq!(outbox.poll_refill(&mut cx, 8), 1);
        assert_eq!(outbox.pending_bytes(), 4);
        let order: Vec<Message> = std::iter::from_fn(|| outbox.pop_front()).collect();
        assert_eq!(order, ["a", "b", "c", "d"].map(Message::text));
        assert!(outbox.is_drained());
    }
}
