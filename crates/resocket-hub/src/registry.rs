//! The room registry: finds and creates rooms under the room cap and per-client room quotas,
//! retires idle rooms, and keeps all rooms' history within the hub-wide byte budget.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::budget::HistoryBudget;
use crate::metrics::Metrics;
use crate::room::{Limits, Room};

/// Why a room could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The hub holds its maximum of rooms.
    TooManyRooms,
    /// The client holds its maximum of rooms it created.
    Quota,
}

#[derive(Debug, Default)]
struct Rooms {
    map: HashMap<Arc<str>, Arc<Room>>,
    /// Live rooms per creating client. A client with none has no entry, so the map holds at
    /// most one entry per room.
    created: HashMap<Arc<str>, usize>,
}

impl Rooms {
    /// Takes a room out of the map and returns its slot to its creator's quota.
    fn remove(&mut self, name: &str) {
        let Some(room) = self.map.remove(name) else {
            return;
        };
        if let Some(creator) = room.creator() {
            if let Some(n) = self.created.get_mut(&**creator) {
                *n -= 1;
                if *n == 0 {
                    self.created.remove(&**creator);
                }
            }
        }
    }
}

/// Every room of the hub.
#[derive(Debug)]
pub(crate) struct Registry {
    rooms: Mutex<Rooms>,
    budget: Arc<HistoryBudget>,
    /// Held by the one caller running an eviction pass; others skip theirs rather than queue.
    evicting: Mutex<()>,
    max_rooms: usize,
    max_rooms_per_client: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Maps stay consistent through a panic elsewhere (each update is one call).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rooms the hub itself feeds; whoever touches one first is not charged for it.
pub(crate) fn is_hub_room(name: &str) -> bool {
    is_node_room(name) || name == crate::nodes::NODES_ROOM
}

/// Hub rooms each node keeps to itself, even on a shared engine: `$stats` and `$healthz` speak
/// of the node a client is connected to. (`$nodes` is shared: it lists every node.)
pub(crate) fn is_node_room(name: &str) -> bool {
    name == crate::stats::STATS_ROOM || name == crate::health::HEALTH_ROOM
}

impl Registry {
    pub(crate) fn new(
        max_rooms: usize,
        max_rooms_per_client: usize,
        history_budget: usize,
    ) -> Self {
        Registry {
            rooms: Mutex::default(),
            budget: Arc::new(HistoryBudget::new(history_budget)),
            evicting: Mutex::new(()),
            max_rooms,
            max_rooms_per_client,
        }
    }

    /// The room named `name`, created if needed and charged to `creator`.
    ///
    /// Every room counts against the room cap, `$` rooms included. Rooms the hub creates
    /// itself (`creator` is `None`) are never refused; there are two of them at most.
    ///
    /// # Errors
    ///
    /// A new room is refused when `creator` already holds its quota of rooms, or the hub its
    /// maximum.
    pub(crate) fn room(&self, name: &str, creator: Option<&str>) -> Result<Arc<Room>, Refused> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.map.get(name) {
            // A room retired meanwhile is replaced: its history is gone, so a new epoch is right.
            if !room.is_removed() {
                return Ok(room.clone());
            }
            rooms.remove(name);
        }
        let creator = creator.filter(|_| !is_hub_room(name));
        if let Some(client) = creator {
            if rooms.created.get(client).copied().unwrap_or(0) >= self.max_rooms_per_client {
                return Err(Refused::Quota);
            }
            if rooms.map.len() >= self.max_rooms {
                return Err(Refused::TooManyRooms);
            }
        }
        let creator: Option<Arc<str>> = creator.map(Arc::from);
        if let Some(client) = &creator {
            *rooms.created.entry(client.clone()).or_insert(0) += 1;
        }
        let key: Arc<str> = name.into();
        let room = Arc::new(Room::new(key.clone(), creator, self.budget.clone()));
        rooms.map.insert(key, room.clone());
        Ok(room)
    }

    /// The number of rooms.
    pub(crate) fn len(&self) -> usize {
        lock(&self.rooms).map.len()
    }

    /// The room named `name`, if it exists; never creates one.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Room>> {
        lock(&self.rooms).map.get(name).cloned()
    }

    /// Drops rooms that have neither subscribers nor history; `removed` hears each name, with
    /// the map locked, so that a lookup that creates the room again comes after it.
    pub(crate) fn retire(&self, limits: &Limits, metrics: &Metrics, removed: impl Fn(&str)) {
        let rooms: Vec<(Arc<str>, Arc<Room>)> = lock(&self.rooms)
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, room) in rooms {
            // The room is marked removed under its own lock first, so a publisher or subscriber
            // that raced us sees the mark and looks the name up again.
            if room.try_retire(limits, metrics) {
                let mut map = lock(&self.rooms);
                if map.map.get(&name).is_some_and(|r| Arc::ptr_eq(r, &room)) {
                    map.remove(&name);
                    removed(&name);
                }
            }
        }
    }

    /// Brings all history back within the budget when it is over, evicting the oldest
    /// messages across rooms first. Cheap when under budget: one atomic load.
    pub(crate) fn enforce_budget(&self, metrics: &Metrics) {
        if !self.budget.is_over() {
            return;
        }
        // Another caller is evicting, and re-reads the count until it is under target.
        let Ok(_pass) = self.evicting.try_lock() else {
            return;
        };
        let rooms: Vec<Arc<Room>> = lock(&self.rooms).map.values().cloned().collect();
        // Oldest first across rooms: a heap of each room's oldest message time.
        let mut oldest: BinaryHeap<Reverse<(std::time::Instant, usize)>> = rooms
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.oldest_at().map(|at| Reverse((at, i))))
            .collect();
        let target = self.budget.target();
        while self.budget.used() > target {
            let Some(Reverse((_, i))) = oldest.pop() else {
                break;
            };
            let next = oldest.peek().map(|Reverse((at, _))| *at);
            let want = self.budget.used().saturating_sub(target);
            if let (_, Some(at)) = rooms[i].evict(next, want, metrics) {
                oldest.push(Reverse((at, i)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            history_len: 1000,
            history_age: Duration::from_secs(60),
            history_bytes: 1 << 20,
            dedupe_window: 10,
        }
    }

    #[test]
    fn quota_counts_live_rooms_and_frees_them_on_retire() {
        let (reg, m, l) = (Registry::new(10, 2, 1 << 20), Metrics::default(), limits());
        reg.room("a", Some("x")).unwrap();
        reg.room("$b", Some("x")).unwrap();
        assert_eq!(reg.room("c", Some("x")).unwrap_err(), Refused::Quota);
        // Looking up an existing room is no creation.
        reg.room("a", Some("x")).unwrap();
        reg.room("c", Some("y")).unwrap();
        reg.retire(&l, &m, |_| {});
        assert_eq!(reg.len(), 0);
        reg.room("c", Some("x")).unwrap();
    }

    #[test]
    fn every_client_room_counts_against_the_cap_but_hub_rooms_are_never_refused() {
        let reg = Registry::new(2, 10, 1 << 20);
        reg.room("$one", Some("x")).unwrap();
        reg.room("$two", Some("y")).unwrap();
        assert_eq!(
            reg.room("$three", Some("z")).unwrap_err(),
            Refused::TooManyRooms
        );
        reg.room(crate::stats::STATS_ROOM, None).unwrap();
        reg.room(crate::health::HEALTH_ROOM, Some("z")).unwrap();
        assert_eq!(reg.len(), 4);
    }

    #[test]
    fn over_budget_the_oldest_history_across_rooms_goes_first() {
        let (m, l) = (Metrics::default(), limits());
        // About 1,180 bytes per entry (the epoch's digits vary a little): room for six.
        let reg = Registry::new(10, 10, 7200);
        let data = RawValue::from_string(format!("\"{}\"", "x".repeat(1000))).unwrap();
        let (a, b) = (reg.room("a", None).unwrap(), reg.room("b", None).unwrap());
        for room in [&a, &a, &a, &a, &b, &b, &b, &b] {
            room.publish(None, &data, &l, &m);
            reg.enforce_budget(&m);
            assert!(reg.budget.used() <= 7200);
        }
        // The seventh entry passed the budget: the two oldest, both in room a, went.
        let since_start = |r: &Room| {
            let o = Arc::new(crate::outbox::Outbox::new(1 << 20));
            r.subscribe(1, &o, Some(0), None, &l, &m);
            let mut q = std::collections::VecDeque::new();
            o.take(&mut q);
            serde_json::from_str::<serde_json::Value>(q[0].as_str()).unwrap()
        };
        let (a, b) = (since_start(&a), since_start(&b));
        assert_eq!(
            (a["recovered"].as_bool(), a["first"].as_u64()),
            (Some(false), Some(3))
        );
        assert_eq!(
            (b["recovered"].as_bool(), b["first"].as_u64()),
            (Some(true), Some(1))
        );
        assert_eq!(
            m.history_evicted.load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }
}
