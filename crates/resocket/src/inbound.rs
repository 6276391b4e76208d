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
    sync::mpsc::{Receiver, SyncSender},
    task::{Context, Poll},
};

use futures_core::Stream;
use tokio::sync::{broadcast, mpsc};

use crate::Message;

/// The most messages one batch carries; smaller inbound bounds use smaller batches.
const MAX_BATCH: usize = 256;

/// Payloads up to `COPY_MAX` bytes are copied into an [`Arena`] block; larger ones are few per
/// read buffer and stay zero-copy slices of it.
const COPY_MAX: usize = 4 << 10;

/// The size of one arena block: a page of 64 messages of 1 KiB, below glibc's mmap threshold.
const ARENA_BLOCK: usize = 64 << 10;

/// How many emptied blocks wait for reuse: at most 1 MiB per connection, the in-flight bytes of
/// a default inbound buffer full of 1 KiB messages.
const SPARE_BLOCKS: usize = 16;

/// One arena block as the owner of a [`bytes::Bytes`]. When the user drops the last message in
/// it, the block goes back to its arena through `spares`, or is freed if that is full or gone.
///
/// The alignment keeps the reference count apart: `Bytes::from_owner` puts the count in the
/// same allocation as its owner, so a 128-byte aligned owner gives every block's count a cache
/// line (and an adjacent-line prefetch pair) of its own. A frozen `BytesMut` keeps its count in
/// a 40-byte allocation, and the counts of consecutive blocks then shared a line, which the
/// user (dropping one batch) and the reader (slicing the next) fought over.
#[repr(align(128))]
struct Block {
    data: Vec<u8>,
    spares: SyncSender<Vec<u8>>,
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        data.clear();
        // Full, or the connection is gone: then the block is simply freed.
        let _ = self.spares.try_send(data);
    }
}

/// A message whose payload sits in the open block and is not yet sliced out of it.
#[derive(Debug, Clone, Copy)]
struct Placed {
    /// The message's slot in its batch, held by an empty placeholder until the block seals.
    index: usize,
    start: usize,
    end: usize,
    text: bool,
}

/// Moves received payloads out of tungstenite's read buffer into blocks of their own.
///
/// A received message is a slice of tungstenite's read buffer. While a batch waits for the
/// user, those slices keep the buffer shared, so every refill allocates (and zero-fills) a new
/// 128 KiB buffer, and the reader and the user bump the same reference count from two cores for
/// every message. Instead each payload is copied into the open block (one `memcpy`), a
/// placeholder holds its slot in the batch, and [`Arena::seal`] turns the block into one
/// `Bytes` and slices every message out of it: tungstenite keeps reusing its buffer, and the
/// reader and the user never write the same cache line. Text is re-checked as UTF-8 by
/// `Utf8Bytes::try_from`, since the crate takes no `unsafe`.
///
/// Emptied blocks come back for reuse. The `memcpy` into a freshly allocated block missed the
/// cache on every line and stalled the reader more than parsing the frame did; a block that
/// went round recently is still warm (while the inbound buffer's bytes fit in the cache: hence
/// the default `inbound_capacity`), and reuse skips `malloc`/`free` across threads too.
///
/// A block that a batch barely filled (a quiet connection: one message per wake-up) is not
/// handed out: the batch gets a right-sized copy and the block stays open for the next batch,
/// so a message kept for long pins its own bytes, not 64 KiB.
#[derive(Debug)]
pub(crate) struct Arena {
    block: Vec<u8>,
    placed: Vec<Placed>,
    spares_tx: SyncSender<Vec<u8>>,
    spares: Receiver<Vec<u8>>,
}

impl Default for Arena {
    fn default() -> Self {
        let (spares_tx, spares) = std::sync::mpsc::sync_channel(SPARE_BLOCKS);
        Arena {
            block: Vec::new(),
            placed: Vec::new(),
            spares_tx,
            spares,
        }
    }
}

impl Arena {
    /// Adds `msg` to `batch`, its payload copied into the open block when it is small enough.
    pub(crate) fn push(&mut self, batch: &mut Vec<Message>, msg: Message) {
        let (payload, text) = match &msg {
            Message::Binary(data) if data.len() <= COPY_MAX => (data.as_ref(), false),
            Message::Text(text) if text.len() <= COPY_MAX => (text.as_bytes(), true),
            _ => {
                batch.push(msg);
                return;
            }
        };
        if self.block.capacity() - self.block.len() < payload.len() {
            self.seal(batch);
            if self.block.capacity() - self.block.len() < payload.len() {
                self.block = self
                    .spares
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(ARENA_BLOCK));
            }
        }
        let start = self.block.len();
        self.block.extend_from_slice(payload);
        self.placed.push(Placed {
            index: batch.len(),
            start,
            end: self.block.len(),
            text,
        });
        // Neither placeholder allocates.
        batch.push(if text {
            Message::Text(crate::Utf8Bytes::from_static(""))
        } else {
            Message::Binary(bytes::Bytes::new())
        });
    }

    /// Slices every placed message out of the open block. Call before `batch` leaves the
    /// reader.
    pub(crate) fn seal(&mut self, batch: &mut [Message]) {
        if self.placed.is_empty() {
            return;
        }
        let filled = if self.block.len() * 16 < self.block.capacity() {
            let copy = bytes::Bytes::copy_from_slice(&self.block);
            self.block.clear();
            copy
        } else {
            bytes::Bytes::from_owner(Block {
                data: std::mem::take(&mut self.block),
                spares: self.spares_tx.clone(),
            })
        };
        for placed in self.placed.drain(..) {
            let payload = filled.slice(placed.start..placed.end);
            batch[placed.index] = if placed.text {
                Message::Text(
                    crate::Utf8Bytes::try_from(payload)
                        .expect("a copy of a valid UTF-8 payload is valid UTF-8"),
                )
            } else {
                Message::Binary(payload)
            };
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(arena: &mut Arena, msgs: Vec<Message>) -> Vec<Message> {
        let mut batch = Vec::new();
        for msg in msgs {
            arena.push(&mut batch, msg);
        }
        arena.seal(&mut batch);
        batch
    }

    fn binary_ptr(msg: &Message) -> *const u8 {
        let Message::Binary(data) = msg else {
            unreachable!()
        };
        data.as_ptr()
    }

    #[test]
    fn arena_copies_small_payloads_and_keeps_them_equal_and_in_order() {
        let mut arena = Arena::default();
        let text = "é".repeat(400);
        let original = vec![
            Message::binary(vec![7u8; 64]),
            Message::text(text),
            Message::binary(vec![9u8; 1000]),
            Message::text("日本語 🦀"),
        ];
        let copied = sealed(&mut arena, original.clone());
        assert_eq!(copied, original);
        assert_ne!(
            binary_ptr(&original[0]),
            binary_ptr(&copied[0]),
            "small payloads leave the read buffer"
        );
    }

    #[test]
    fn arena_leaves_large_payloads_zero_copy() {
        let mut arena = Arena::default();
        let original = Message::binary(vec![1u8; COPY_MAX + 1]);
        let copied = sealed(&mut arena, vec![original.clone()]);
        assert_eq!(binary_ptr(&original), binary_ptr(&copied[0]));
    }

    #[test]
    fn arena_gives_a_sparse_batch_its_own_allocation_and_keeps_the_block() {
        let mut arena = Arena::default();
        let first = sealed(&mut arena, vec![Message::binary(vec![1u8; 64])]);
        let second = sealed(&mut arena, vec![Message::binary(vec![2u8; 64])]);
        assert_eq!(first, vec![Message::binary(vec![1u8; 64])]);
        assert_eq!(second, vec![Message::binary(vec![2u8; 64])]);
        assert!(
            arena.block.capacity() >= ARENA_BLOCK,
            "the open block stays with the arena"
        );
    }

    #[test]
    fn arena_reuses_a_block_once_its_messages_are_dropped() {
        let mut arena = Arena::default();
        let full: Vec<Message> = (0..ARENA_BLOCK / 1024)
            .map(|i| Message::binary(vec![i as u8; 1024]))
            .collect();
        let batch = sealed(&mut arena, full.clone());
        let block_start = binary_ptr(&batch[0]);
        drop(batch);
        let again = sealed(&mut arena, full.clone());
        assert_eq!(again, full);
        assert_eq!(
            binary_ptr(&again[0]),
            block_start,
            "the spare block came back"
        );
    }

    #[test]
    fn arena_opens_a_new_block_when_one_fills() {
        let mut arena = Arena::default();
        let original: Vec<Message> = (0..3 * ARENA_BLOCK / COPY_MAX)
            .map(|i| Message::binary(vec![i as u8; COPY_MAX]))
            .collect();
        let copied = sealed(&mut arena, original.clone());
        assert_eq!(copied, original);
    }
}
