//! A connection's outbound queue: bounded in bytes, filled without awaiting, drained in batches.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::wire::Frame;

/// How a connection is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closing {
    /// The close code.
    pub(crate) code: u16,
    /// The close reason.
    pub(crate) reason: &'static str,
    /// Whether queued frames are written before the close frame.
    pub(crate) drain: bool,
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued for the writer.
    Queued,
    /// The queue overflowed with this frame: the connection just became a slow consumer.
    Overflowed,
    /// The connection is closing; the frame was dropped.
    Closed,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Frame>,
    bytes: usize,
    closing: Option<Closing>,
}

/// A connection's outbound queue.
///
/// A `std` mutex and not an async one: every critical section is a few pointer moves and never
/// awaits, which is what lets the publish path fan out without holding anything across an await.
#[derive(Debug)]
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    max_bytes: usize,
    /// Wakes the connection's task when frames or a close are queued, also while its write
    /// is stuck on a peer that stopped reading, so it can give up. Lock-free: a push costs
    /// one atomic swap, and only the first frame after a take wakes anyone.
    waker: AtomicWaker,
}

impl Outbox {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Outbox {
            inner: Mutex::default(),
            max_bytes,
            waker: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the queue inconsistent (every update is one step), so
        // a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame. Over the byte bound, the queue is dropped and the connection is closed
    /// as a slow consumer, so memory never grows with a client that does not read.
    pub(crate) fn push(&self, frame: Frame) -> Push {
        let mut inner = self.lock();
        if inner.closing.is_some() {
            return Push::Closed;
        }
        if inner.bytes + frame.len() > self.max_bytes {
            inner.queue = VecDeque::new();
            inner.bytes = 0;
            inner.closing = Some(Closing {
                code: resocket::hub::protocol::close_code::SLOW_CONSUMER,
                reason: "slow consumer",
                drain: false,
            });
            drop(inner);
            self.waker.wake();
            return Push::Overflowed;
        }
        self.enqueue(inner, frame);
        Push::Queued
    }

    /// Queues a frame of a replay without the byte bound. Replayed frames are the room history's
    /// own bytes (shared, not copied), so they cost no new memory, and a replay larger than the
    /// queue bound must not make a reconnecting client a slow consumer. They still count
    /// towards the bound, so live frames behind a replay that is not being read overflow.
    pub(crate) fn push_replay(&self, frame: Frame) {
        let inner = self.lock();
        if inner.closing.is_some() {
            return;
        }
        self.enqueue(inner, frame);
    }

    /// Appends an admitted frame, then releases the lock and wakes the writer if it needs it.
    fn enqueue(&self, mut inner: MutexGuard<'_, Inner>, frame: Frame) {
        inner.bytes += frame.len();
        let was_empty = inner.queue.is_empty();
        inner.queue.push_back(frame);
        drop(inner);
        // The writer takes the whole queue at once, so only the first frame after a take needs
        // to wake it; later ones ride along in the same batch.
        if was_empty {
            self.waker.wake();
        }
    }

    /// Asks the writer to close. The first request wins; a later one can only stop a drain.
    pub(crate) fn close(&self, closing: Closing) {
        let mut inner = self.lock();
        match &mut inner.closing {
            Some(c) if !closing.drain => c.drain = false,
            Some(_) => {}
            None => inner.closing = Some(closing),
        }
        let drain = inner.closing.is_some_and(|c| c.drain);
        if !drain {
            inner.queue = VecDeque::new();
            inner.bytes = 0;
        }
        drop(inner);
        self.waker.wake();
    }

    /// Moves every queued frame into `batch` and tells whether the writer should close after
    /// writing them.
    pub(crate) fn take(&self, batch: &mut VecDeque<Frame>) -> Option<Closing> {
        let mut inner = self.lock();
        std::mem::swap(&mut inner.queue, batch);
        inner.bytes = 0;
        inner.closing
    }

    /// [`take`](Self::take) once there is something to take: frames, or a close request.
    /// `Ready(None)` brought frames only.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Frame>,
    ) -> Poll<Option<Closing>> {
        // Registered before the look, so a push right after it still wakes the task.
        self.waker.register(cx.waker());
        let mut inner = self.lock();
        if inner.queue.is_empty() && inner.closing.is_none() {
            return Poll::Pending;
        }
        std::mem::swap(&mut inner.queue, batch);
        inner.bytes = 0;
        Poll::Ready(inner.closing)
    }

    /// Whether a close was requested.
    pub(crate) fn is_closing(&self) -> bool {
        self.lock().closing.is_some()
    }

    /// The close requested so far, without taking anything: a writer busy with a batch checks
    /// it to give up on a peer that stopped reading.
    pub(crate) fn poll_closing(&self, cx: &mut Context<'_>) -> Option<Closing> {
        self.waker.register(cx.waker());
        self.lock().closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_drops_the_queue_and_closes_as_slow_consumer() {
        let o = Outbox::new(10);
        assert_eq!(o.push(Frame::text("12345")), Push::Queued);
        assert_eq!(o.push(Frame::text("12345")), Push::Queued);
        assert_eq!(o.push(Frame::text("1")), Push::Overflowed);
        assert_eq!(o.push(Frame::text("1")), Push::Closed);
        let mut batch = VecDeque::new();
        let closing = o.take(&mut batch).unwrap();
        assert!(batch.is_empty());
        assert_eq!(closing.code, 4009);
        assert!(!closing.drain);
    }

    #[test]
    fn a_draining_close_keeps_the_queue_until_aborted() {
        let o = Outbox::new(100);
        o.push(Frame::text("a"));
        o.close(Closing {
            code: 1001,
            reason: "bye",
            drain: true,
        });
        let mut batch = VecDeque::new();
        assert!(o.take(&mut batch).unwrap().drain);
        assert_eq!(batch.len(), 1);
        o.close(Closing {
            code: 1001,
            reason: "bye",
            drain: false,
        });
        assert!(!o.take(&mut batch).unwrap().drain);
    }
}
