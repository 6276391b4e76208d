//! The inbound path: received data messages, handed to the user in batches with backpressure.
//!
//! The connection drains whatever the socket has buffered into a batch and hands the whole
//! batch over in one channel operation; [`Messages`] then pops from its current batch without
//! touching the channel. A wake-up and a channel slot are paid per batch, not per message,
//! which is what keeps resocket's receive path near raw tokio-tungstenite speed. When the
//! channel is full the connection stops reading the socket, so TCP flow control slows the
//! server down: nothing is dropped, ever.

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

/// Payloads from `COPY_MIN` to `COPY_MAX` bytes are copied into an [`Arena`]. Smaller ones gain
/// nothing from it (measured: 64 B messages lost 10 % of receive throughput), larger ones are
/// few per read buffer and stay zero-copy.
const COPY_MIN: usize = 512;
const COPY_MAX: usize = 4 << 10;

/// The size of one arena block: below glibc's mmap threshold, so freed blocks come back hot.
const ARENA_BLOCK: usize = 32 << 10;

/// Moves small received payloads out of tungstenite's read buffer into blocks of their own.
///
/// A received message is a slice of tungstenite's read buffer. While a batch waits for the
/// user, those slices keep the buffer shared, so every refill allocates (and zero-fills) a new
/// 128 KiB buffer, and the reader and the user bump the same reference count from two cores
/// for every message. Copying small payloads into a block per batch costs a `memcpy` each and
/// one allocation per block, and lets tungstenite reuse its buffer. Text is re-checked as UTF-8
/// by `Utf8Bytes::try_from`, since the crate takes no `unsafe`.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    block: bytes::BytesMut,
}

impl Arena {
    /// The message with its payload in an arena block (small payloads), or as it was.
    pub(crate) fn detach(&mut self, msg: Message) -> Message {
        match msg {
            Message::Binary(data) if (COPY_MIN..=COPY_MAX).contains(&data.len()) => {
                Message::Binary(self.copy(&data))
            }
            Message::Text(text) if (COPY_MIN..=COPY_MAX).contains(&text.len()) => {
                let copied = self.copy(text.as_bytes());
                match crate::Utf8Bytes::try_from(copied) {
                    Ok(text) => Message::Text(text),
                    // Unreachable (the bytes came from valid UTF-8), but the original is
                    // still here to hand over unchanged.
                    Err(_) => Message::Text(text),
                }
            }
            other => other,
        }
    }

    /// Starts a fresh block for a new batch: a block shared by two batches would have the
    /// reader splitting it while the user drops the previous batch's slices, both touching
    /// one reference count from two cores.
    pub(crate) fn start_batch(&mut self) {
        self.block = bytes::BytesMut::new();
    }

    fn copy(&mut self, payload: &[u8]) -> bytes::Bytes {
        if self.block.capacity() - self.block.len() < payload.len() {
            // The old block lives on in the slices already handed out.
            self.block = bytes::BytesMut::with_capacity(ARENA_BLOCK.max(payload.len()));
        }
        self.block.extend_from_slice(payload);
        self.block.split().freeze()
    }
}

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
    /// Offers a message to the fan-out receivers, if there are any.
    pub(crate) fn fan_out(&self, msg: &Message) {
        if let Some(fan_out) = &self.fan_out {
            if fan_out.receiver_count() > 0 {
                // A send error only means every receiver left in the meantime.
                let _ = fan_out.send(msg.clone());
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
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(batch) => self.current = batch.into_iter(),
                None => return Poll::Ready(None),
            }
        }
    }

    /// Takes the next message if one is already here.
    pub fn try_recv(&mut self) -> Option<Message> {
        loop {
            if let Some(msg) = self.current.next() {
                return Some(msg);
            }
            self.current = self.rx.try_recv().ok()?.into_iter();
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

    #[test]
    fn arena_copies_mid_sized_payloads_and_keeps_them_equal() {
        let mut arena = Arena::default();
        arena.start_batch();
        let text = "é".repeat(400);
        let binary = vec![7u8; 1000];
        assert_eq!(
            arena.detach(Message::text(text.clone())),
            Message::text(text)
        );
        let original = Message::binary(binary.clone());
        let copied = arena.detach(original.clone());
        assert_eq!(copied, original);
        let (Message::Binary(a), Message::Binary(b)) = (&original, &copied) else {
            unreachable!()
        };
        assert_ne!(
            a.as_ptr(),
            b.as_ptr(),
            "mid-sized payloads leave the read buffer"
        );
    }

    #[test]
    fn arena_leaves_small_and_large_payloads_zero_copy() {
        let mut arena = Arena::default();
        for len in [16, COPY_MAX + 1] {
            let original = Message::binary(vec![1u8; len]);
            let Message::Binary(before) = original.clone() else {
                unreachable!()
            };
            let Message::Binary(after) = arena.detach(original) else {
                unreachable!()
            };
            assert_eq!(
                before.as_ptr(),
                after.as_ptr(),
                "{len} bytes should not be copied"
            );
        }
    }
}
