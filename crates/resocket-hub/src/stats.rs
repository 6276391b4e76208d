//! The `$stats` system room: a snapshot of the hub, published at a fixed interval.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::time::Interval;

use crate::hub::{Hub, Shared};
use crate::metrics::Disconnect;

/// The system room the dashboard subscribes to.
pub const STATS_ROOM: &str = "$stats";

/// The ticks of the stats interval until shutdown, for the tasks that report at that interval.
pub(crate) struct StatsTicks {
    tick: Interval,
    shutdown: watch::Receiver<bool>,
}

impl StatsTicks {
    /// Starts the ticks; the first comes one interval from now.
    pub(crate) async fn start(shared: &Shared) -> StatsTicks {
        let mut tick = tokio::time::interval(shared.config.stats_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A tokio interval's first tick is immediate.
        tick.tick().await;
        StatsTicks {
            tick,
            shutdown: shared.shutdown_rx(),
        }
    }

    /// Waits for the next tick; `false` once the hub shuts down.
    pub(crate) async fn next(&mut self) -> bool {
        tokio::select! {
            biased;
            _ = self.shutdown.wait_for(|s| *s) => false,
            _ = self.tick.tick() => true,
        }
    }
}

#[derive(serde::Serialize)]
struct Snapshot {
    /// Node id, engine, connections, subscriptions and Redis figures, as in `$nodes`.
    #[serde(flatten)]
    node: crate::nodes::NodeFigures,
    rooms: usize,
    in_per_s: f64,
    out_per_s: f64,
    publishes: u64,
    slow_consumer_disconnects: u64,
    rate_limited_disconnects: u64,
    rss_bytes: u64,
}

/// Publishes a snapshot every interval until shutdown, and retires idle rooms on the way.
pub(crate) async fn run(hub: Hub) {
    let shared = hub.shared.clone();
    let m = &shared.metrics;
    let (mut last_in, mut last_out, mut last_at) = (0, 0, Instant::now());
    let mut sampler = crate::nodes::Sampler::default();
    // Not at once: a snapshot of a hub that just started says nothing.
    let mut ticks = StatsTicks::start(&shared).await;
    while ticks.next().await {
        shared.retire_rooms();
        let (now_in, now_out, now) = (
            m.messages_in.load(Relaxed),
            m.messages_out.load(Relaxed),
            Instant::now(),
        );
        let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
        let snap = Snapshot {
            node: sampler.take(&hub),
            rooms: shared.room_count(),
            in_per_s: ((now_in - last_in) as f64 / secs).round(),
            out_per_s: ((now_out - last_out) as f64 / secs).round(),
            publishes: m.publishes.load(Relaxed),
            slow_consumer_disconnects: m.disconnects(Disconnect::SlowConsumer),
            rate_limited_disconnects: m.disconnects(Disconnect::RateLimited),
            rss_bytes: crate::metrics::rss_bytes().unwrap_or(0),
        };
        (last_in, last_out, last_at) = (now_in, now_out, now);
        let Ok(raw) = serde_json::to_string(&snap).map(RawValue::from_string) else {
            continue;
        };
        let Ok(raw) = raw else { continue };
        let Ok(room) = shared.room(STATS_ROOM, None) else {
            continue;
        };
        room.publish(None, &raw, &shared.limits, &shared.metrics);
        shared.enforce_history_budget();
    }
}
