//! `Client` as a `futures::Sink<Message>`: at most one message of its own beyond the queue's
//! bounds, and a close that is [`Client::close`].
//!
//! The common case costs what [`Client::try_send`] costs: `start_send` queues the message at
//! once. Only when the queue is full is the message parked in a future that waits for room
//! (a [`ReusableBoxFuture`], so its allocation is reused for the next one), and `poll_ready`
//! waits for that future before it lets another message in. So the order is kept and the
//! queue's bounds hold.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::Sink;
use tokio_util::sync::ReusableBoxFuture;

use super::{request_close, Client};
use crate::{CloseCode, CloseFrame, Message, SendError};

/// One handle's `Sink` work in progress.
#[derive(Default)]
pub(super) struct SinkState {
    /// A message waiting for room in the queue, while `parked` is set.
    waiting: Option<ReusableBoxFuture<'static, Result<(), SendError<Message>>>>,
    parked: bool,
    /// The close started by `poll_close`.
    closing: Option<ReusableBoxFuture<'static, ()>>,
    /// Set once that close has finished, so a later `poll_close` does not poll it again.
    closed: bool,
}

impl Client {
    /// Waits for the parked message, if any, to enter the queue.
    fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError<Message>>> {
        if !self.sink.parked {
            return Poll::Ready(Ok(()));
        }
        let waiting = self
            .sink
            .waiting
            .as_mut()
            .expect("a parked message has its future");
        let result = std::task::ready!(waiting.poll(cx));
        self.sink.parked = false;
        Poll::Ready(result)
    }

    /// Keeps `msg` until the queue has room for it.
    fn park(&mut self, msg: Message) {
        let queue = self.queue.clone();
        let send = async move { queue.send(msg).await };
        match &mut self.sink.waiting {
            Some(waiting) => waiting.set(send),
            None => self.sink.waiting = Some(ReusableBoxFuture::new(send)),
        }
        self.sink.parked = true;
    }
}

impl Sink<Message> for Client {
    type Error = SendError<Message>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_parked(cx)
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), Self::Error> {
        let this = self.get_mut();
        debug_assert!(!this.sink.parked, "start_send without poll_ready");
        match this.queue.try_send(this.unless_closing(msg)?) {
            Ok(()) => Ok(()),
            Err(SendError::Full(msg)) => {
                this.park(msg);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_parked(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        if this.sink.closed {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_parked(cx))?;
        let closing = this.sink.closing.get_or_insert_with(|| {
            let stats = this.stats.clone();
            let commands = this.commands.clone();
            let status = this.status.clone();
            let drain = this.drain_on_close;
            ReusableBoxFuture::new(async move {
                let frame = CloseFrame {
                    code: CloseCode::NORMAL.into(),
                    reason: "".into(),
                };
                // A permanent failure is not the sink's to report: `closed()` and
                // `Messages::end_reason` say it.
                let _ = request_close(&stats, commands, status, frame, drain).await;
            })
        });
        std::task::ready!(closing.poll(cx));
        this.sink.closed = true;
        Poll::Ready(Ok(()))
    }
}
