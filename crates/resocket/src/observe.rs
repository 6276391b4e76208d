//! The read-only views a [`Client`](crate::Client) hands out: [`StatusWatch`] (the latest
//! [`Status`]), [`Events`] (every lifecycle event) and [`FanOut`] (a lossy copy of the data
//! messages).
//!
//! They wrap tokio's `watch` and `broadcast` receivers, so that the crate's API does not change
//! with tokio's and a receiver that falls behind is told so in the crate's own [`RecvError`].

use tokio::sync::{broadcast, watch};

use crate::{ConnectionEvent, Error, Message, Status};

/// Why a [`Events::recv`] or [`FanOut::recv`] returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The receiver fell behind its buffer and skipped this many items; the next `recv`
    /// returns the oldest one still buffered.
    #[error("receiver fell behind and skipped {0} items")]
    Lagged(u64),
    /// The client has ended and every buffered item was taken.
    #[error("client is closed")]
    Closed,
}

impl From<broadcast::error::RecvError> for RecvError {
    fn from(error: broadcast::error::RecvError) -> RecvError {
        match error {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        }
    }
}

/// Why an [`Events::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No event is waiting now.
    #[error("no event is waiting")]
    Empty,
    /// As [`RecvError::Lagged`].
    #[error("receiver fell behind and skipped {0} items")]
    Lagged(u64),
    /// As [`RecvError::Closed`].
    #[error("client is closed")]
    Closed,
}

/// The latest [`Status`] of a client, for reading it and waiting on its transitions; from
/// [`Client::status`](crate::Client::status).
#[derive(Debug, Clone)]
pub struct StatusWatch {
    rx: watch::Receiver<Status>,
}

impl StatusWatch {
    pub(crate) fn new(rx: watch::Receiver<Status>) -> StatusWatch {
        StatusWatch { rx }
    }

    /// The status now.
    pub fn current(&self) -> Status {
        self.rx.borrow().clone()
    }

    /// Waits until the status changes after the last one this watch saw, and returns it.
    ///
    /// # Errors
    /// [`Error::Closed`] once the client's task is gone and no change is left to see.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn changed(&mut self) -> Result<Status, Error> {
        self.rx.changed().await.map_err(|_| Error::Closed)?;
        Ok(self.rx.borrow_and_update().clone())
    }

    /// Waits until `condition` holds for the status (checking the current one first), and
    /// returns that status.
    ///
    /// # Errors
    /// [`Error::Closed`] when the client's task ended without the condition ever holding.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_for(
        &mut self,
        mut condition: impl FnMut(&Status) -> bool,
    ) -> Result<Status, Error> {
        match self.rx.wait_for(|s| condition(s)).await {
            Ok(status) => Ok(status.clone()),
            Err(_) => Err(Error::Closed),
        }
    }
}

/// Every [`ConnectionEvent`] from the moment it was made; from
/// [`Client::events`](crate::Client::events).
///
/// Buffers up to 256 events; a receiver that falls further behind gets
/// [`RecvError::Lagged`] with how many it missed, never a silent gap.
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<ConnectionEvent>,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<ConnectionEvent>) -> Events {
        Events { rx }
    }

    /// Waits for the next event.
    ///
    /// # Errors
    /// [`RecvError::Lagged`] after falling behind, [`RecvError::Closed`] once the client has
    /// ended and every event was taken.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv(&mut self) -> Result<ConnectionEvent, RecvError> {
        Ok(self.rx.recv().await?)
    }

    /// Takes the next event if one is waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when none is, otherwise as [`Events::recv`].
    pub fn try_recv(&mut self) -> Result<ConnectionEvent, TryRecvError> {
        use broadcast::error::TryRecvError as Tokio;
        self.rx.try_recv().map_err(|error| match error {
            Tokio::Empty => TryRecvError::Empty,
            Tokio::Lagged(n) => TryRecvError::Lagged(n),
            Tokio::Closed => TryRecvError::Closed,
        })
    }
}

/// A copy of every data message, beside the main [`Messages`](crate::Messages) stream; from
/// [`Client::fan_out`](crate::Client::fan_out) when
/// [`ClientConfig::fan_out_capacity`](crate::ClientConfig::fan_out_capacity) is set.
///
/// Unlike [`Messages`](crate::Messages) it never slows the socket: a receiver that falls more
/// than `fan_out_capacity` messages behind gets [`RecvError::Lagged`] with how many it missed,
/// never a silent gap.
#[derive(Debug)]
pub struct FanOut {
    rx: broadcast::Receiver<Message>,
}

impl FanOut {
    pub(crate) fn new(rx: broadcast::Receiver<Message>) -> FanOut {
        FanOut { rx }
    }

    /// Waits for the next message.
    ///
    /// # Errors
    /// [`RecvError::Lagged`] after falling behind, [`RecvError::Closed`] once the client has
    /// ended and every message was taken.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv(&mut self) -> Result<Message, RecvError> {
        Ok(self.rx.recv().await?)
    }
}
