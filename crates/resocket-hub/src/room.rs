//! A room: its offsets and epoch, bounded history, publish dedupe window and subscribers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use resocket::hub::protocol::ServerFrame;
use serde_json::value::RawValue;

use crate::budget::HistoryBudget;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Push};
use crate::wire::Frame;

/// History and dedupe bounds, copied from the hub's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) history_len: usize,
    pub(crate) history_age: Duration,
    pub(crate) history_bytes: usize,
    pub(crate) dedupe_window: usize,
}

#[derive(Debug)]
struct Entry {
    offset: u64,
    at: Instant,
    frame: Frame,
}

#[derive(Debug)]
struct State {
    epoch: u64,
    last: u64,
    history: VecDeque<Entry>,
    history_bytes: usize,
    /// `client \0 id` → offset. The key is shared with `dedupe_order`, one allocation each.
    dedupe: HashMap<Arc<str>, u64>,
    dedupe_order: VecDeque<Arc<str>>,
    subscribers: HashMap<u64, Arc<Outbox>>,
    /// Subscribes through an engine between their shared read and [`Room::subscribe_from`].
    joining: usize,
    /// What other nodes appended while such subscribes were waiting: it may be newer than
    /// their reads; each of them that finds the room empty applies it, and the last to finish
    /// drops it (bounded by the history length).
    held: Vec<(u64, u64, Frame)>,
    /// Set when the hub dropped the room from its map; a publisher holding it looks again.
    removed: bool,
}

/// A room. Its state sits behind a `std` mutex that is never held across an await.
#[derive(Debug)]
pub(crate) struct Room {
    name: Arc<str>,
    /// The client that created the room, charged against its room quota while the room lives.
    creator: Option<Arc<str>>,
    /// The hub-wide history budget every entry is counted in.
    budget: Arc<HistoryBudget>,
    state: Mutex<State>,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// Applied at this offset.
    Applied { offset: u64 },
    /// A repeat of an earlier publish, which got this offset.
    Duplicate { offset: u64 },
    /// The room was removed meanwhile; look it up again.
    Gone,
}

/// What a subscribe replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// No `since` was given.
    NotAsked,
    /// Every message after `since` was replayed.
    Full,
    /// Some messages after `since` are gone.
    Partial,
}

impl Room {
    pub(crate) fn new(
        name: Arc<str>,
        creator: Option<Arc<str>>,
        budget: Arc<HistoryBudget>,
    ) -> Self {
        let epoch = crate::engine::new_epoch();
        Room {
            name,
            creator,
            budget,
            state: Mutex::new(State {
                epoch,
                last: 0,
                history: VecDeque::new(),
                history_bytes: 0,
                dedupe: HashMap::new(),
                dedupe_order: VecDeque::new(),
                subscribers: HashMap::new(),
                joining: 0,
                held: Vec::new(),
                removed: false,
            }),
        }
    }

    /// The client charged for this room, if any.
    pub(crate) fn creator(&self) -> Option<&Arc<str>> {
        self.creator.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the state consistent at each step that could panic
        // (allocation), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a publish once per `(client, id)`: assigns the next offset, serializes the
    /// `message` frame once, keeps it in history and queues the same bytes for every subscriber.
    pub(crate) fn publish(
        &self,
        dedupe_key: Option<(&str, &str)>,
        data: &RawValue,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Published {
        let key: Option<Arc<str>> = dedupe_key.map(|(client, id)| format!("{client}\0{id}").into());
        let mut st = self.lock();
        if st.removed {
            return Published::Gone;
        }
        if let Some(offset) = key.as_ref().and_then(|k| st.dedupe.get(k)) {
            metrics.dedupe_hits.fetch_add(1, Relaxed);
            return Published::Duplicate { offset: *offset };
        }
        let offset = st.last + 1;
        let frame = ServerFrame::Message {
            room: self.name.to_string(),
            epoch: st.epoch,
            offset,
            data,
        };
        // Encoded once, header and payload: every subscriber and history share these bytes.
        let frame = Frame::json(&frame);
        st.last = offset;
        let now = Instant::now();
        for outbox in st.subscribers.values() {
            if outbox.push(frame.clone()) == Push::Overflowed {
                metrics.disconnect(crate::metrics::Disconnect::SlowConsumer);
            }
        }
        st.history_bytes += frame.len();
        self.budget.charge(frame.len());
        metrics.history_messages.fetch_add(1, Relaxed);
        metrics.history_bytes.fetch_add(frame.len() as u64, Relaxed);
        st.history.push_back(Entry {
            offset,
            at: now,
            frame,
        });
        prune(&mut st, limits, now, &self.budget, metrics);
        if let Some(key) = key {
            st.dedupe.insert(key.clone(), offset);
            st.dedupe_order.push_back(key);
            while st.dedupe_order.len() > limits.dedupe_window {
                if let Some(old) = st.dedupe_order.pop_front() {
                    st.dedupe.remove(&old);
                }
            }
        }
        metrics.publishes.fetch_add(1, Relaxed);
        Published::Applied { offset }
    }

    /// Adds a subscriber. The `subscribed` frame and any replay are queued under the same lock
    /// that publishes take, so no message falls between the replay and the live stream.
    pub(crate) fn subscribe(
        &self,
        conn: u64,
        outbox: &Arc<Outbox>,
        since: Option<u64>,
        epoch: Option<u64>,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Option<Recovery> {
        let mut st = self.lock();
        if st.removed {
            return None;
        }
        prune(&mut st, limits, Instant::now(), &self.budget, metrics);
        let oldest = st.history.front().map_or(st.last + 1, |e| e.offset);
        let (recovery, first, from) = match since {
            None => (Recovery::NotAsked, None, u64::MAX),
            Some(since) => {
                // A `since` from another epoch, or beyond the newest offset, cannot be matched
                // to this history: replay everything still held and say it is not a recovery.
                let foreign = epoch.is_some_and(|e| e != st.epoch) || since > st.last;
                if !foreign && since + 1 >= oldest {
                    (Recovery::Full, Some(since + 1), since + 1)
                } else {
                    (Recovery::Partial, Some(oldest), oldest)
                }
            }
        };
        self.admit(&mut st, conn, outbox, recovery, first, metrics);
        for entry in st.history.iter().filter(|e| e.offset >= from) {
            outbox.push_replay(entry.frame.clone());
        }
        Some(recovery)
    }

    /// The room's epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// The epoch, newest offset and the history held after `after`, read under the lock.
    pub(crate) fn history(
        &self,
        after: Option<u64>,
        limits: &Limits,
        metrics: &Metrics,
    ) -> crate::engine::History {
        let mut st = self.lock();
        prune(&mut st, limits, Instant::now(), &self.budget, metrics);
        let entries = match after {
            Some(after) => st
                .history
                .iter()
                .filter(|e| e.offset > after)
                .map(|e| (e.offset, e.frame.clone()))
                .collect(),
            None => Vec::new(),
        };
        crate::engine::History {
            epoch: st.epoch,
            last: st.last,
            entries,
        }
    }

    /// The offset a subscribe must read shared history from so that this node's subscribers
    /// can be brought up to date too: the newest offset delivered here, while anyone listens.
    pub(crate) fn delivered(&self) -> Option<u64> {
        let st = self.lock();
        (!st.subscribers.is_empty()).then_some(st.last)
    }

    /// Delivers a message another engine node appended (or this node, through the engine):
    /// fans it out and keeps it in the local history. An offset already delivered is skipped;
    /// a jump in offsets or a new epoch means messages were lost, which every subscriber is
    /// told with a fresh `subscribed{recovered:false}` before the message.
    pub(crate) fn deliver(
        &self,
        epoch: u64,
        offset: u64,
        frame: Frame,
        limits: &Limits,
        metrics: &Metrics,
    ) {
        let mut st = self.lock();
        if st.removed {
            return;
        }
        // A subscribe between its read and `subscribe_from` may have read too early for this:
        // held for it even while the room has subscribers, since they may all leave before it
        // registers, and then it starts over from its own read.
        if st.joining > 0 && st.held.len() < limits.history_len {
            st.held.push((epoch, offset, frame.clone()));
        }
        if st.subscribers.is_empty() {
            // Without subscribers nothing here needs it, and a subscribe reads shared storage
            // afresh; keeping it would also keep the room (and its watch) alive forever.
            return;
        }
        self.apply_shared(&mut st, epoch, offset, frame, limits, metrics);
    }

    /// Takes a message from shared storage into the local history, in offset order: a repeat
    /// is skipped, a jump or a new epoch tells every subscriber what was lost.
    fn apply_shared(
        &self,
        st: &mut State,
        epoch: u64,
        offset: u64,
        frame: Frame,
        limits: &Limits,
        metrics: &Metrics,
    ) {
        if epoch == st.epoch && offset <= st.last {
            return;
        }
        if epoch != st.epoch || offset > st.last + 1 {
            lost(st, &self.name, epoch, offset, &self.budget, metrics);
        }
        append_local(st, offset, frame, limits, &self.budget, metrics);
    }

    /// Announces a subscribe through an engine, before its shared read: until it reaches
    /// [`subscribe_from`](Self::subscribe_from) (or [`abandon_join`](Self::abandon_join)), what
    /// other nodes append is held for it.
    pub(crate) fn begin_join(&self) {
        self.lock().joining += 1;
    }

    /// A subscribe announced with [`begin_join`](Self::begin_join) that will not finish (its
    /// shared read failed).
    pub(crate) fn abandon_join(&self) {
        let mut st = self.lock();
        st.joining = st.joining.saturating_sub(1);
        if st.joining == 0 {
            st.held = Vec::new();
        }
    }

    /// Adds a subscriber from a history read in shared storage (`h`, read after `since` or
    /// after what this node delivered, whichever is older); `ask` is the `(since, epoch)` the
    /// client gave. Messages in `h` this node has not delivered yet are delivered first, so
    /// the room's subscribers stay in step.
    pub(crate) fn subscribe_from(
        &self,
        conn: u64,
        outbox: &Arc<Outbox>,
        ask: (Option<u64>, Option<u64>),
        h: crate::engine::History,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Option<Recovery> {
        let (since, epoch) = ask;
        let mut st = self.lock();
        st.joining = st.joining.saturating_sub(1);
        // Joins still waiting may need it too, from their own reads: the last one takes it.
        let held = if st.joining == 0 {
            std::mem::take(&mut st.held)
        } else if st.subscribers.is_empty() {
            st.held.clone()
        } else {
            Vec::new()
        };
        if st.removed {
            return None;
        }
        let nobody_listened = st.subscribers.is_empty();
        if nobody_listened {
            // Nobody listened: what this node held may be stale; shared storage is the truth.
            while pop_oldest(&mut st, &self.budget, metrics) > 0 {}
            st.epoch = h.epoch;
            st.last = h.last;
        } else if st.epoch != h.epoch {
            let first = h.entries.first().map_or(h.last + 1, |(o, _)| *o);
            lost(&mut st, &self.name, h.epoch, first, &self.budget, metrics);
            st.last = first - 1;
        }
        for (offset, frame) in &h.entries {
            if *offset > st.last {
                if *offset > st.last + 1 {
                    lost(&mut st, &self.name, h.epoch, *offset, &self.budget, metrics);
                }
                append_local(
                    &mut st,
                    *offset,
                    frame.clone(),
                    limits,
                    &self.budget,
                    metrics,
                );
            }
        }
        // What arrived between the shared read and now, in the order it came. With subscribers
        // it was applied as it came.
        if nobody_listened {
            for (epoch, offset, frame) in held {
                self.apply_shared(&mut st, epoch, offset, frame, limits, metrics);
            }
        }
        let (recovery, first) = match since {
            None => (Recovery::NotAsked, None),
            Some(since) => {
                let foreign = epoch.is_some_and(|e| e != st.epoch) || since > st.last;
                let first = h.entries.first().map_or(h.last + 1, |(o, _)| *o);
                if !foreign && (since >= h.last || first <= since + 1) {
                    (Recovery::Full, Some(since + 1))
                } else {
                    (Recovery::Partial, Some(first))
                }
            }
        };
        self.admit(&mut st, conn, outbox, recovery, first, metrics);
        if let Some(from) = first {
            for (_, frame) in h.entries.iter().filter(|(o, _)| *o >= from) {
                outbox.push_replay(frame.clone());
            }
            // Delivered here after the shared read: the local history has them.
            let after = h.last.max(from.saturating_sub(1));
            for entry in st.history.iter().filter(|e| e.offset > after) {
                outbox.push_replay(entry.frame.clone());
            }
        }
        Some(recovery)
    }

    /// Queues the `subscribed` frame for `recovery` (replay from `first`) and adds the
    /// subscriber. The caller holds the lock and queues the replay next: no publish can come
    /// between them.
    fn admit(
        &self,
        st: &mut State,
        conn: u64,
        outbox: &Arc<Outbox>,
        recovery: Recovery,
        first: Option<u64>,
        metrics: &Metrics,
    ) {
        let reply = ServerFrame::<()>::Subscribed {
            room: self.name.to_string(),
            epoch: st.epoch,
            offset: st.last,
            recovered: recovery != Recovery::Partial,
            first,
        };
        outbox.push_replay(Frame::json(&reply));
        if st.subscribers.insert(conn, outbox.clone()).is_none() {
            metrics.subscriptions.fetch_add(1, Relaxed);
        }
    }

    /// Whether the hub dropped this room from its map.
    pub(crate) fn is_removed(&self) -> bool {
        self.lock().removed
    }

    /// Removes a subscriber; `false` if it was not subscribed.
    pub(crate) fn unsubscribe(&self, conn: u64, metrics: &Metrics) -> bool {
        let removed = self.lock().subscribers.remove(&conn).is_some();
        if removed {
            metrics.subscriptions.fetch_sub(1, Relaxed);
        }
        removed
    }

    /// Marks the room removed if nobody subscribes and its history has aged out.
    pub(crate) fn try_retire(&self, limits: &Limits, metrics: &Metrics) -> bool {
        let mut st = self.lock();
        prune(&mut st, limits, Instant::now(), &self.budget, metrics);
        if st.subscribers.is_empty() && st.history.is_empty() {
            st.removed = true;
        }
        st.removed
    }

    /// When the oldest message still held was published.
    pub(crate) fn oldest_at(&self) -> Option<Instant> {
        self.lock().history.front().map(|e| e.at)
    }

    /// Evicts the oldest history for the hub's budget: at least one message, then more while
    /// they are no newer than `through` (the next room's oldest) and fewer than `want` bytes
    /// are freed. Returns the bytes freed and the new oldest message's time.
    ///
    /// The room's oldest offset moves on, so a later `since` before it is `recovered: false`.
    pub(crate) fn evict(
        &self,
        through: Option<Instant>,
        want: usize,
        metrics: &Metrics,
    ) -> (usize, Option<Instant>) {
        let mut st = self.lock();
        let (mut freed, mut evicted) = (0, 0);
        while let Some(front) = st.history.front() {
            if freed > 0 && (freed >= want || through.is_some_and(|t| front.at > t)) {
                break;
            }
            freed += pop_oldest(&mut st, &self.budget, metrics);
            evicted += 1;
        }
        shrink(&mut st);
        metrics.history_evicted.fetch_add(evicted, Relaxed);
        (freed, st.history.front().map(|e| e.at))
    }
}

/// Fans a message out and keeps it in history (a message from shared storage).
fn append_local(
    st: &mut State,
    offset: u64,
    frame: Frame,
    limits: &Limits,
    budget: &HistoryBudget,
    metrics: &Metrics,
) {
    st.last = offset;
    for outbox in st.subscribers.values() {
        if outbox.push(frame.clone()) == Push::Overflowed {
            metrics.disconnect(crate::metrics::Disconnect::SlowConsumer);
        }
    }
    let now = Instant::now();
    st.history_bytes += frame.len();
    budget.charge(frame.len());
    metrics.history_messages.fetch_add(1, Relaxed);
    metrics.history_bytes.fetch_add(frame.len() as u64, Relaxed);
    st.history.push_back(Entry {
        offset,
        at: now,
        frame,
    });
    prune(st, limits, now, budget, metrics);
}

/// Tells every subscriber that the messages before `next` (in `epoch`) that this node did
/// not deliver are lost, and starts the local history over from there.
fn lost(
    st: &mut State,
    name: &str,
    epoch: u64,
    next: u64,
    budget: &HistoryBudget,
    metrics: &Metrics,
) {
    while pop_oldest(st, budget, metrics) > 0 {}
    st.epoch = epoch;
    st.last = next.saturating_sub(1);
    metrics.recoveries_partial.fetch_add(1, Relaxed);
    let reply = ServerFrame::<()>::Subscribed {
        room: name.to_string(),
        epoch,
        offset: st.last,
        recovered: false,
        first: Some(next),
    };
    let text = Frame::json(&reply);
    for outbox in st.subscribers.values() {
        outbox.push(text.clone());
    }
}

/// Drops history past any of its bounds, oldest first.
fn prune(st: &mut State, limits: &Limits, now: Instant, budget: &HistoryBudget, metrics: &Metrics) {
    let mut pruned = false;
    while let Some(front) = st.history.front() {
        let too_old = now.saturating_duration_since(front.at) > limits.history_age;
        if !(st.history.len() > limits.history_len
            || st.history_bytes > limits.history_bytes
            || too_old)
        {
            break;
        }
        pop_oldest(st, budget, metrics);
        pruned = true;
    }
    if pruned {
        shrink(st);
    }
}

/// Drops the oldest message; returns what it cost the budget.
fn pop_oldest(st: &mut State, budget: &HistoryBudget, metrics: &Metrics) -> usize {
    let Some(entry) = st.history.pop_front() else {
        return 0;
    };
    let len = entry.frame.len();
    st.history_bytes -= len;
    metrics.history_messages.fetch_sub(1, Relaxed);
    metrics.history_bytes.fetch_sub(len as u64, Relaxed);
    budget.release(len)
}

/// Gives back queue capacity a history no longer needs: a room that once held its full count
/// would otherwise keep that much memory after eviction emptied it, for as long as it lives.
fn shrink(st: &mut State) {
    let (len, cap) = (st.history.len(), st.history.capacity());
    if cap > 64 && len < cap / 4 {
        st.history.shrink_to(len * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn limits(len: usize) -> Limits {
        Limits {
            history_len: len,
            history_age: Duration::from_secs(60),
            history_bytes: 1 << 20,
            dedupe_window: 2,
        }
    }

    /// A room named `r` under a history budget that never evicts.
    fn room() -> Room {
        Room::new("r".into(), None, Arc::new(HistoryBudget::new(1 << 30)))
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    fn drain(o: &Outbox) -> Vec<String> {
        let mut b = VecDeque::new();
        o.take(&mut b);
        b.into_iter().map(|f| f.as_str().to_string()).collect()
    }

    #[test]
    fn replays_exactly_after_since_or_says_it_cannot() {
        let (room, m, l) = (room(), Metrics::default(), limits(3));
        for i in 0..5 {
            room.publish(None, &raw(&i.to_string()), &l, &m);
        }
        let o = Arc::new(Outbox::new(1 << 20));
        assert_eq!(
            room.subscribe(1, &o, Some(3), None, &l, &m),
            Some(Recovery::Full)
        );
        let got = drain(&o);
        assert!(
            got[0].contains(r#""offset":5,"recovered":true,"first":4"#),
            "{}",
            got[0]
        );
        assert_eq!(got.len(), 3);
        assert!(got[1].contains(r#""offset":4,"data":3"#));

        let o = Arc::new(Outbox::new(1 << 20));
        assert_eq!(
            room.subscribe(2, &o, Some(0), None, &l, &m),
            Some(Recovery::Partial)
        );
        let got = drain(&o);
        assert!(
            got[0].contains(r#""recovered":false,"first":3"#),
            "{}",
            got[0]
        );
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn history_is_bounded_by_count_bytes_and_age() {
        let m = Metrics::default();
        let mut l = limits(3);
        l.history_bytes = 400;
        let room = room();
        for i in 0..5 {
            room.publish(None, &raw(&i.to_string()), &l, &m);
        }
        assert_eq!(room.lock().history.len(), 3, "count");
        room.publish(None, &raw(&format!("\"{}\"", "x".repeat(300))), &l, &m);
        assert_eq!(room.lock().history.len(), 1, "bytes");
        let mut st = room.lock();
        let budget = room.budget.clone();
        prune(&mut st, &l, Instant::now() + l.history_age * 2, &budget, &m);
        assert!(st.history.is_empty(), "age");
        assert_eq!(st.history_bytes, 0);
        assert_eq!(m.history_messages.load(Relaxed), 0);
    }

    #[test]
    fn repeated_ids_are_applied_once_within_the_window() {
        let (room, m, l) = (room(), Metrics::default(), limits(10));
        let d = raw("1");
        assert_eq!(
            room.publish(Some(("c", "a")), &d, &l, &m),
            Published::Applied { offset: 1 }
        );
        assert_eq!(
            room.publish(Some(("c", "a")), &d, &l, &m),
            Published::Duplicate { offset: 1 }
        );
        assert_eq!(
            room.publish(Some(("d", "a")), &d, &l, &m),
            Published::Applied { offset: 2 }
        );
        room.publish(Some(("c", "b")), &d, &l, &m);
        // The window holds two keys, so ("c","a") has been evicted.
        assert_eq!(
            room.publish(Some(("c", "a")), &d, &l, &m),
            Published::Applied { offset: 4 }
        );
    }

    fn shared(offsets: &[u64]) -> crate::engine::History {
        crate::engine::History {
            epoch: 7,
            last: offsets.last().copied().unwrap_or(2),
            entries: offsets.iter().map(|o| (*o, frame(*o))).collect(),
        }
    }

    fn frame(offset: u64) -> Frame {
        Frame::text(&format!(
            r#"{{"type":"message","room":"r","epoch":7,"offset":{offset},"data":0}}"#
        ))
    }

    /// One `subscribed` (a second would report a loss), then messages at `expected` offsets.
    fn assert_subscribed_once_then(outbox: &Outbox, expected: &[u64]) {
        let got = offsets(&drain(outbox));
        let subscribed = got.iter().filter(|(t, _)| t == "subscribed").count();
        assert_eq!(subscribed, 1, "a second one would report a loss: {got:?}");
        let msgs: Vec<_> = got
            .into_iter()
            .filter(|(t, _)| t == "message")
            .map(|(_, o)| o)
            .collect();
        assert_eq!(msgs, expected);
    }

    fn offsets(frames: &[String]) -> Vec<(String, u64)> {
        frames
            .iter()
            .map(|f| {
                let v: serde_json::Value = serde_json::from_str(f).unwrap();
                (
                    v["type"].as_str().unwrap().to_string(),
                    v["offset"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_jump_in_shared_offsets_tells_subscribers_they_lost_messages() {
        let (room, m, l) = (room(), Metrics::default(), limits(10));
        let o = Arc::new(Outbox::new(1 << 20));
        room.subscribe_from(1, &o, (None, None), shared(&[]), &l, &m);
        room.deliver(7, 3, frame(3), &l, &m);
        room.deliver(7, 3, frame(3), &l, &m);
        room.deliver(7, 6, frame(6), &l, &m);
        let got = drain(&o);
        assert_eq!(
            offsets(&got),
            [
                ("subscribed".into(), 2),
                ("message".into(), 3),
                ("subscribed".into(), 5),
                ("message".into(), 6)
            ]
        );
        assert!(
            got[2].contains(r#""recovered":false,"first":6"#),
            "{}",
            got[2]
        );
    }

    #[test]
    fn a_shared_subscribe_brings_the_rooms_subscribers_up_to_date_without_repeats() {
        let (room, m, l) = (room(), Metrics::default(), limits(10));
        let (a, b) = (
            Arc::new(Outbox::new(1 << 20)),
            Arc::new(Outbox::new(1 << 20)),
        );
        room.subscribe_from(1, &a, (None, None), shared(&[]), &l, &m);
        // Offsets 3 and 4 were appended; this node's pub/sub has not brought them yet.
        assert_eq!(
            room.subscribe_from(2, &b, (Some(2), Some(7)), shared(&[3, 4]), &l, &m),
            Some(Recovery::Full)
        );
        room.deliver(7, 4, frame(4), &l, &m);
        room.deliver(7, 5, frame(5), &l, &m);
        let msgs = |o: &Outbox| {
            offsets(&drain(o))
                .into_iter()
                .filter(|(t, _)| t == "message")
                .map(|(_, o)| o)
                .collect::<Vec<_>>()
        };
        assert_eq!(msgs(&a), [3, 4, 5]);
        assert_eq!(msgs(&b), [3, 4, 5]);
    }

    #[test]
    fn what_arrives_between_a_shared_read_and_the_subscribe_is_not_lost() {
        let (room, m, l) = (room(), Metrics::default(), limits(10));
        let a = Arc::new(Outbox::new(1 << 20));
        // The subscribe read shared storage up to offset 2 (`since` 1: it wants 2 on); offsets 3
        // and 4 reach this node before it registers, while the room has no subscriber yet.
        room.begin_join();
        room.deliver(7, 3, frame(3), &l, &m);
        room.deliver(7, 4, frame(4), &l, &m);
        assert_eq!(
            room.subscribe_from(1, &a, (Some(1), Some(7)), shared(&[2]), &l, &m),
            Some(Recovery::Full)
        );
        room.deliver(7, 5, frame(5), &l, &m);
        assert_subscribed_once_then(&a, &[2, 3, 4, 5]);
    }

    #[test]
    fn a_join_keeps_what_arrives_after_its_read_when_the_last_subscriber_leaves_meanwhile() {
        let (room, m, l) = (room(), Metrics::default(), limits(10));
        let (a, b) = (
            Arc::new(Outbox::new(1 << 20)),
            Arc::new(Outbox::new(1 << 20)),
        );
        room.subscribe_from(1, &a, (None, None), shared(&[]), &l, &m);
        // `b` reads shared storage up to offset 2; offset 3 reaches this node while `a` is still
        // subscribed, then `a` leaves before `b` registers.
        room.begin_join();
        room.deliver(7, 3, frame(3), &l, &m);
        room.unsubscribe(1, &m);
        assert_eq!(
            room.subscribe_from(2, &b, (Some(2), Some(7)), shared(&[]), &l, &m),
            Some(Recovery::Full)
        );
        room.deliver(7, 4, frame(4), &l, &m);
        assert_subscribed_once_then(&b, &[3, 4]);
    }

    #[test]
    fn every_waiting_join_keeps_what_arrives_after_its_read() {
        let (room, m, l) = (room(), Metrics::default(), limits(10));
        let (a, b, c) = (
            Arc::new(Outbox::new(1 << 20)),
            Arc::new(Outbox::new(1 << 20)),
            Arc::new(Outbox::new(1 << 20)),
        );
        room.subscribe_from(1, &a, (None, None), shared(&[]), &l, &m);
        // `b` and `c` both read shared storage up to offset 2; offset 3 arrives while `a` is
        // subscribed; `b` registers, then `a` and `b` leave before `c` registers.
        room.begin_join();
        room.begin_join();
        room.deliver(7, 3, frame(3), &l, &m);
        room.subscribe_from(2, &b, (Some(2), Some(7)), shared(&[]), &l, &m);
        room.unsubscribe(1, &m);
        room.unsubscribe(2, &m);
        room.subscribe_from(3, &c, (Some(2), Some(7)), shared(&[]), &l, &m);
        room.deliver(7, 4, frame(4), &l, &m);
        let got = offsets(&drain(&c));
        assert_eq!(
            got,
            [
                ("subscribed".into(), 3),
                ("message".into(), 3),
                ("message".into(), 4)
            ],
            "nothing reported lost"
        );
        assert!(room.lock().held.is_empty(), "the last join drops the held");
    }

    #[test]
    fn an_abandoned_join_holds_nothing() {
        let (room, m, l) = (room(), Metrics::default(), limits(10));
        room.begin_join();
        room.abandon_join();
        room.deliver(7, 3, frame(3), &l, &m);
        assert!(room.lock().held.is_empty());
    }
}
