//! The engine seam: what a room needs from its storage and broker. Offsets, history, epoch and
//! publish dedupe live in the engine; so do fan-out to other hub nodes and shared revocations.
//!
//! Two engines: [`memory`] keeps everything in this process (the default, and the hub's own
//! synchronous path, so fan-out on one node costs no await); [`redis`] keeps it in Redis (one
//! server or a Redis Cluster) so that several hub nodes serve the same rooms.

use std::collections::HashSet;
use std::future::Future;

use crate::wire::Frame;
use serde_json::value::RawValue;

pub(crate) mod memory;
pub(crate) mod redis;
mod redis_cluster;
pub(crate) mod redis_conn;

#[cfg(test)]
mod contract;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// The room's epoch.
    pub(crate) epoch: u64,
    /// The message's offset: new, or the one the same `(client, id)` got before.
    pub(crate) offset: u64,
    /// Whether this was a repeat of an earlier publish, applied no second time.
    pub(crate) duplicate: bool,
}

/// A room's history after an offset, read at one instant.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    /// The room's epoch.
    pub(crate) epoch: u64,
    /// The newest offset.
    pub(crate) last: u64,
    /// `message` frames after the asked offset still held, oldest first, each with its offset.
    pub(crate) entries: Vec<(u64, Frame)>,
}

impl History {
    /// Whether every offset after `after` up to `last` is in `entries`.
    #[cfg(test)]
    pub(crate) fn is_complete_after(&self, after: u64) -> bool {
        after >= self.last || self.entries.first().is_some_and(|(o, _)| *o <= after + 1)
    }
}

/// The engine could not reach its storage; the operation did not happen, or its outcome is
/// unknown (a retry with the same message id is safe: it is deduplicated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage unavailable: {0}")]
pub(crate) struct Unavailable(pub(crate) String);

/// What a room needs from its storage and broker.
///
/// Generic rather than object-safe: the hub names its engines, and generic async methods cost
/// no boxed future per call.
pub(crate) trait Engine: Send + Sync {
    /// Appends a `message` for `data` to `room` at the next offset, unless `dedupe` (client id,
    /// message id) was applied before, in which case nothing is appended and the earlier
    /// offset comes back. The check and the append are one step.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when the storage cannot be reached.
    fn append(
        &self,
        room: &str,
        dedupe: Option<(&str, &str)>,
        data: &RawValue,
    ) -> impl Future<Output = Result<Appended, Unavailable>> + Send;

    /// The room's epoch, newest offset and the history held after `after` (`None`: no entries).
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when the storage cannot be reached.
    fn since(
        &self,
        room: &str,
        after: Option<u64>,
    ) -> impl Future<Output = Result<History, Unavailable>> + Send;

    /// The room's epoch, which changes whenever its history is lost.
    // The hub learns epochs from `since`; this is the seam's direct question, for its tests.
    #[cfg_attr(not(test), allow(dead_code))]
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when the storage cannot be reached.
    fn epoch(&self, room: &str) -> impl Future<Output = Result<u64, Unavailable>> + Send {
        async move { self.since(room, None).await.map(|h| h.epoch) }
    }

    /// Starts receiving the room's appends from every node, in offset order, through the
    /// engine's [`Listener`]. Idempotent.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when the broker cannot be reached.
    fn watch(&self, room: &str) -> impl Future<Output = Result<(), Unavailable>> + Send;

    /// Stops receiving the room's appends.
    fn unwatch(&self, room: &str);

    /// Adds deny-list entries for every node; each node's [`Listener::revoked`] hears of them.
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when the storage cannot be reached.
    fn revoke(&self, ids: &[String]) -> impl Future<Output = Result<(), Unavailable>> + Send;

    /// Every shared deny-list entry.
    // The Redis engine's pub/sub task reads the list itself on every reconnect.
    #[cfg_attr(not(test), allow(dead_code))]
    ///
    /// # Errors
    ///
    /// [`Unavailable`] when the storage cannot be reached.
    fn revoked(&self) -> impl Future<Output = Result<HashSet<String>, Unavailable>> + Send;
}

/// Where an engine hands what other nodes did.
pub(crate) trait Listener: Send + Sync + 'static {
    /// A `message` frame appended to a watched room. Per room, calls come in offset order with
    /// no offset twice; a hole that could not be filled shows as a jump in offsets (or epoch).
    fn message(&self, room: &str, epoch: u64, offset: u64, frame: Frame);

    /// Deny-list entries revoked on some node (on a reconnect, the whole shared list).
    fn revoked(&self, ids: HashSet<String>);
}

/// The `message` frame's bytes before the epoch: `{"type":"message","room":<room>,"epoch":`.
/// Built by hand so that an engine can finish the frame where the offset is assigned.
pub(crate) fn frame_prefix(room: &str) -> String {
    let mut prefix = String::with_capacity(room.len() + 40);
    prefix.push_str(r#"{"type":"message","room":"#);
    // Serializing a string cannot fail.
    prefix.push_str(&serde_json::to_string(room).unwrap_or_default());
    prefix.push_str(r#","epoch":"#);
    prefix
}

/// A fresh epoch: random, within 53 bits so that JavaScript clients read it exactly.
pub(crate) fn new_epoch() -> u64 {
    fastrand::u64(1..(1 << 53))
}
