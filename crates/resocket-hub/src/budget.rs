//! The hub-wide history byte budget: one atomic count of what every room's history holds.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// What one history entry costs beyond its frame's bytes: the entry in the room's queue, the
/// shared header the frame's bytes get once they are cloned for fan-out, and allocator slack.
/// Counting it keeps the budget honest for small messages, where it is most of the memory.
pub(crate) const ENTRY_OVERHEAD: usize = 96;

/// The bytes all rooms' history may hold, and how many it holds now.
///
/// Rooms charge and release it under their own locks; the registry evicts the oldest history
/// across rooms once it is over. A relaxed atomic is enough: the count only decides when to
/// evict, and eviction re-reads it.
#[derive(Debug)]
pub(crate) struct HistoryBudget {
    used: AtomicUsize,
    limit: usize,
}

impl HistoryBudget {
    pub(crate) fn new(limit: usize) -> Self {
        HistoryBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Counts an entry of `frame_len` bytes into history.
    pub(crate) fn charge(&self, frame_len: usize) {
        self.used.fetch_add(frame_len + ENTRY_OVERHEAD, Relaxed);
    }

    /// Counts an entry of `frame_len` bytes out of history; returns what it cost.
    pub(crate) fn release(&self, frame_len: usize) -> usize {
        let cost = frame_len + ENTRY_OVERHEAD;
        self.used.fetch_sub(cost, Relaxed);
        cost
    }

    /// The bytes counted now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Whether history holds more than the budget.
    pub(crate) fn is_over(&self) -> bool {
        self.used() > self.limit
    }

    /// Where an eviction pass stops: an eighth below the limit, so that a pass, which visits
    /// every room, runs once per eighth of the budget published rather than once per publish.
    pub(crate) fn target(&self) -> usize {
        self.limit - self.limit / 8
    }
}
