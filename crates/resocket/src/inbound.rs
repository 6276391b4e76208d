//! The inbound path: received data messages, handed to the user in batches with backpressure.
//!
//! The connection drains whatever the socket has buffered into a batch and hands the whole
//! batch over in one channel operation; [`Messages`] then pops from its current batch without
//! touching the channel. A wake-up and a channel slot are paid per batch, not per message.
//! When the channel is full the connection stops reading the socket, so TCP flow control slows
//! the server down: nothing is dropped, ever. (`BENCHMARKS.md` at the repository root has the
//! measurements behind the choices here.)

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use tokio::sync::{broadcast, mpsc};

use crate::Message;

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

/// The connection's end of the inbound channel.
pub(crate) struct InboundTx {
    tx: mpsc::Sender<Vec<Message>>,
    /// Set while the channel is full; boxed once per backpressure episode, not per message.
    reserve: Option<ReserveFuture>,
    fan_out: Option<broadcast::Sender<Message>>,
    pub(crate) limits: BatchLimits,
}

impl InboundTx {
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
    pub(crate) fn poll_deliver(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut Option<Vec<Message>>,
    ) -> Poll<()> {
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

/// Creates the inbound channel and the optional fan-out.
pub(crate) fn channel(
    capacity: usize,
    max_bytes: usize,
    fan_out_capacity: Option<usize>,
) -> (InboundTx, Messages, Option<broadcast::Sender<Message>>) {
    let limits = BatchLimits::new(capacity, max_bytes);
    let (tx, rx) = mpsc::channel(limits.channel_slots);
    let fan_out = fan_out_capacity.map(|c| broadcast::channel(c).0);
    (
        InboundTx {
            tx,
            reserve: None,
            fan_out: fan_out.clone(),
            limits,
        },
        Messages {
            rx,
            current: Vec::new().into_iter(),
        },
        fan_out,
    )
}

/// The stream of data messages (Text and Binary) the server sent, in order.
///
/// Ping, Pong and Close frames never appear here. The stream ends (`None`) once the client has
/// closed and every received message was taken. Reading slowly is safe: the client stops
/// reading the socket while this buffer is full, so the server is slowed down instead of a
/// message being dropped.
#[derive(Debug)]
pub struct Messages {
    rx: mpsc::Receiver<Vec<Message>>,
    current: std::vec::IntoIter<Message>,
}

impl Messages {
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
                Poll::Ready(None) => return Poll::Ready(None),
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
                Err(_) => {
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
