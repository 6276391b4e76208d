//! The memory engine: rooms, history, offsets and dedupe in this process. It is the hub's
//! default; the hub calls the same [`Room`] methods directly, without an await, on its hot path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;

use super::{Appended, Engine, History, Unavailable};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::room::{Limits, Published, Room};

/// Everything in one process: a single node, so there are no other nodes to fan out to.
#[derive(Debug)]
pub(crate) struct MemoryEngine {
    rooms: Arc<Registry>,
    limits: Limits,
    metrics: Arc<Metrics>,
    revoked: Mutex<HashSet<String>>,
}

impl MemoryEngine {
    pub(crate) fn new(rooms: Arc<Registry>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        MemoryEngine {
            rooms,
            limits,
            metrics,
            revoked: Mutex::default(),
        }
    }

    fn room(&self, name: &str) -> Arc<Room> {
        loop {
            // The engine's own rooms are the hub's (`None` creator): never refused.
            if let Ok(room) = self.rooms.room(name, None) {
                if !room.is_removed() {
                    return room;
                }
            }
        }
    }
}

impl Engine for MemoryEngine {
    async fn append(
        &self,
        room: &str,
        dedupe: Option<(&str, &str)>,
        data: &RawValue,
    ) -> Result<Appended, Unavailable> {
        loop {
            let r = self.room(room);
            match r.publish(dedupe, data, &self.limits, &self.metrics) {
                Published::Applied { offset } => {
                    return Ok(Appended {
                        epoch: r.epoch(),
                        offset,
                        duplicate: false,
                    })
                }
                Published::Duplicate { offset } => {
                    return Ok(Appended {
                        epoch: r.epoch(),
                        offset,
                        duplicate: true,
                    })
                }
                Published::Gone => continue,
            }
        }
    }

    async fn since(&self, room: &str, after: Option<u64>) -> Result<History, Unavailable> {
        Ok(self.room(room).history(after, &self.limits, &self.metrics))
    }

    async fn watch(&self, _room: &str) -> Result<(), Unavailable> {
        Ok(())
    }

    fn unwatch(&self, _room: &str) {}

    async fn revoke(&self, ids: &[String]) -> Result<(), Unavailable> {
        let mut list = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        list.extend(ids.iter().map(|id| crate::revocation::normalize(id)));
        Ok(())
    }

    async fn revoked(&self) -> Result<HashSet<String>, Unavailable> {
        Ok(self
            .revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
}
