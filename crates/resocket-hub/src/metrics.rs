//! The hub's counters and gauges, and their Prometheus text rendering.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::latency::Histogram;

/// Why the hub ended a connection, for the disconnect counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disconnect {
    SlowConsumer,
    RateLimited,
    PingTimeout,
    TooBig,
    Auth,
    InvalidUtf8,
}

impl Disconnect {
    const ALL: [Disconnect; 6] = [
        Disconnect::SlowConsumer,
        Disconnect::RateLimited,
        Disconnect::PingTimeout,
        Disconnect::TooBig,
        Disconnect::Auth,
        Disconnect::InvalidUtf8,
    ];

    fn label(self) -> &'static str {
        match self {
            Disconnect::SlowConsumer => "slow_consumer",
            Disconnect::RateLimited => "rate_limited",
            Disconnect::PingTimeout => "ping_timeout",
            Disconnect::TooBig => "too_big",
            Disconnect::Auth => "auth",
            Disconnect::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    Origin,
    Auth,
    Capacity,
    ShuttingDown,
    /// Closed at accept: too many sockets not yet upgraded.
    PendingCap,
    /// Closed before its upgrade: headers, TLS handshake or upgrade not done in time.
    Timeout,
}

/// Every counter is a relaxed atomic: they are statistics, never used to synchronize.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    rejected: [AtomicU64; 6],
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) write_batches: AtomicU64,
    pub(crate) publishes: AtomicU64,
    pub(crate) acks: AtomicU64,
    pub(crate) dedupe_hits: AtomicU64,
    pub(crate) recoveries_full: AtomicU64,
    pub(crate) recoveries_partial: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) error_frames: AtomicU64,
    disconnects: [AtomicU64; 6],
    pub(crate) subscriptions: AtomicU64,
    pub(crate) history_messages: AtomicU64,
    pub(crate) history_bytes: AtomicU64,
    pub(crate) history_evicted: AtomicU64,
    /// The engine this node runs on; fixed at start.
    engine: EngineKind,
    /// Redis calls, on the Redis engine.
    pub(crate) redis: RedisFigures,
}

impl Metrics {
    /// Zeroed figures for a node on `engine`.
    pub(crate) fn new(engine: EngineKind) -> Self {
        Metrics {
            engine,
            ..Metrics::default()
        }
    }

    /// The engine this node runs on.
    pub(crate) fn engine(&self) -> EngineKind {
        self.engine
    }

    /// Counts how a subscribe with `since` went; one without is not a recovery.
    pub(crate) fn count_recovery(&self, recovery: crate::room::Recovery) {
        match recovery {
            crate::room::Recovery::Full => self.recoveries_full.fetch_add(1, Relaxed),
            crate::room::Recovery::Partial => self.recoveries_partial.fetch_add(1, Relaxed),
            crate::room::Recovery::NotAsked => 0,
        };
    }

    pub(crate) fn disconnect(&self, why: Disconnect) {
        self.disconnects[why as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn disconnects(&self, why: Disconnect) -> u64 {
        self.disconnects[why as usize].load(Relaxed)
    }

    pub(crate) fn reject(&self, why: Rejection) {
        self.rejected[why as usize].fetch_add(1, Relaxed);
    }

    /// Renders the Prometheus text exposition format (version 0.0.4). `rooms` is the room
    /// count and `node` this node's id (see [`Hub::node_id`](crate::Hub::node_id)).
    pub(crate) fn render(&self, rooms: usize, node: &str) -> String {
        let mut out = String::with_capacity(6144);
        self.render_node(&mut out, node);
        self.render_connections(&mut out, rooms);
        self.render_traffic(&mut out);
        self.render_publishing(&mut out);
        self.render_history(&mut out);
        self.render_disconnects(&mut out);
        self.render_rejections(&mut out);
        self.render_redis(&mut out);
        process(&mut out);
        out
    }

    /// Which node this is and which engine it runs on, as an info gauge.
    fn render_node(&self, out: &mut String, node: &str) {
        family(
            out,
            "resocket_hub_node_info",
            "gauge",
            "This node: its id and engine (memory or redis); always 1.",
        );
        let node = escape_label(node);
        let engine = self.engine.label();
        let _ = writeln!(
            out,
            "resocket_hub_node_info{{node=\"{node}\",engine=\"{engine}\"}} 1"
        );
    }

    /// Connections, rooms and subscriptions.
    fn render_connections(&self, out: &mut String, rooms: usize) {
        gauge(
            out,
            "resocket_hub_connections",
            "Open WebSocket connections.",
            load(&self.connections),
        );
        counter(
            out,
            "resocket_hub_connections_total",
            "WebSocket connections accepted.",
            load(&self.connections_total),
        );
        gauge(
            out,
            "resocket_hub_rooms",
            "Rooms with subscribers or history.",
            rooms as u64,
        );
        gauge(
            out,
            "resocket_hub_subscriptions",
            "Active subscriptions.",
            load(&self.subscriptions),
        );
    }

    /// Frames and bytes in and out, and how they were batched.
    fn render_traffic(&self, out: &mut String) {
        counter(
            out,
            "resocket_hub_write_batches_total",
            "Socket flushes; messages out divided by this is the mean batch.",
            load(&self.write_batches),
        );
        family(
            out,
            "resocket_hub_messages_total",
            "counter",
            "WebSocket data frames by direction.",
        );
        sample(
            out,
            "resocket_hub_messages_total",
            "direction",
            "in",
            &self.messages_in,
        );
        sample(
            out,
            "resocket_hub_messages_total",
            "direction",
            "out",
            &self.messages_out,
        );
        family(
            out,
            "resocket_hub_bytes_total",
            "counter",
            "WebSocket payload bytes by direction.",
        );
        sample(
            out,
            "resocket_hub_bytes_total",
            "direction",
            "in",
            &self.bytes_in,
        );
        sample(
            out,
            "resocket_hub_bytes_total",
            "direction",
            "out",
            &self.bytes_out,
        );
    }

    /// Publishes, acks, dedupe, recoveries, auth failures and error frames.
    fn render_publishing(&self, out: &mut String) {
        counter(
            out,
            "resocket_hub_publishes_total",
            "Publishes applied.",
            load(&self.publishes),
        );
        counter(
            out,
            "resocket_hub_acks_total",
            "Acks sent, repeats included.",
            load(&self.acks),
        );
        counter(
            out,
            "resocket_hub_dedupe_hits_total",
            "Repeated publishes acknowledged but not applied.",
            load(&self.dedupe_hits),
        );
        counter(
            out,
            "resocket_hub_auth_failures_total",
            "Rejected tokens and missing auth.",
            load(&self.auth_failures),
        );
        counter(
            out,
            "resocket_hub_error_frames_total",
            "Error frames sent.",
            load(&self.error_frames),
        );
        family(
            out,
            "resocket_hub_recoveries_total",
            "counter",
            "Subscribes with `since`, by whether every missed message was replayed.",
        );
        let name = "resocket_hub_recoveries_total";
        sample(out, name, "result", "full", &self.recoveries_full);
        sample(out, name, "result", "partial", &self.recoveries_partial);
    }

    /// What room history holds on this node, and what the budget evicted.
    fn render_history(&self, out: &mut String) {
        gauge(
            out,
            "resocket_hub_history_messages",
            "Messages held in room history.",
            load(&self.history_messages),
        );
        gauge(
            out,
            "resocket_hub_history_bytes",
            "Bytes held in room history.",
            load(&self.history_bytes),
        );
        counter(
            out,
            "resocket_hub_history_evicted_total",
            "Messages dropped from history to keep all rooms within the history budget.",
            load(&self.history_evicted),
        );
    }

    /// Connections the hub closed, by reason.
    fn render_disconnects(&self, out: &mut String) {
        let name = "resocket_hub_disconnects_total";
        family(
            out,
            name,
            "counter",
            "Connections the hub closed, by reason.",
        );
        for why in Disconnect::ALL {
            sample(
                out,
                name,
                "reason",
                why.label(),
                &self.disconnects[why as usize],
            );
        }
    }

    /// Upgrades refused, by reason.
    fn render_rejections(&self, out: &mut String) {
        let name = "resocket_hub_rejected_upgrades_total";
        family(out, name, "counter", "Upgrade requests refused, by reason.");
        let reasons = [
            "origin",
            "auth",
            "capacity",
            "shutting_down",
            "pending_cap",
            "timeout",
        ];
        for (why, count) in reasons.iter().zip(&self.rejected) {
            sample(out, name, "reason", why, count);
        }
    }

    /// Redis round trips, errors and reconnects; nothing on the memory engine.
    fn render_redis(&self, out: &mut String) {
        if self.engine != EngineKind::Redis {
            return;
        }
        let r = &self.redis;
        r.round_trips.render(
            out,
            "resocket_hub_redis_round_trip_seconds",
            "Round trips of this node's Redis calls (append, history reads, revocations, pings).",
        );
        gauge_f64(
            out,
            "resocket_hub_redis_last_round_trip_seconds",
            "The latest Redis round trip.",
            r.round_trips.totals().last_us as f64 / 1e6,
        );
        counter(
            out,
            "resocket_hub_redis_errors_total",
            "Redis calls that failed or timed out.",
            load(&r.errors),
        );
        counter(
            out,
            "resocket_hub_redis_reconnects_total",
            "Times this node lost its connection to Redis and made it again.",
            r.reconnects(),
        );
    }
}

/// Which engine a node runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum EngineKind {
    /// Rooms in this process.
    #[default]
    Memory,
    /// Rooms in Redis, shared by every node on it.
    Redis,
}

impl EngineKind {
    /// The name in metrics and stats: `memory` or `redis`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            EngineKind::Memory => "memory",
            EngineKind::Redis => "redis",
        }
    }
}

/// How this node's Redis calls go. Relaxed atomics only: every publish records a round trip.
#[derive(Debug, Default)]
pub(crate) struct RedisFigures {
    /// Round trips of every engine call.
    pub(crate) round_trips: Histogram,
    /// Calls that failed or timed out.
    errors: AtomicU64,
    /// Pub/sub connections made again after a loss.
    reconnects: AtomicU64,
}

impl RedisFigures {
    /// Counts a failed or timed-out call.
    pub(crate) fn failed(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// Counts the pub/sub connection made again after a loss. The node holds that connection
    /// all the time, so every loss of Redis shows here once; the command connection's manager
    /// reconnects on its own, often without a call seeing it.
    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    /// Calls that failed or timed out.
    pub(crate) fn errors(&self) -> u64 {
        load(&self.errors)
    }

    /// Reconnects so far.
    pub(crate) fn reconnects(&self) -> u64 {
        load(&self.reconnects)
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}

/// Appends a metric family's `HELP` and `TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends one labelled sample of a family.
fn sample(out: &mut String, name: &str, label: &str, value: &str, count: &AtomicU64) {
    let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {}", load(count));
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge_f64(out: &mut String, name: &str, help: &str, value: f64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value with `\\`, `"` and newlines escaped, as the text format asks.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends process figures from `/proc` (Linux only; elsewhere they are left out).
fn process(out: &mut String) {
    if let Some(rss) = rss_bytes() {
        let _ = writeln!(out, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(out, "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}", fds.count());
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields 14 and 15 (utime, stime) in clock ticks, counted after the `(comm)` field,
        // which may itself contain spaces. Linux reports USER_HZ = 100 to user space.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(u), Some(s)) = (f.get(11), f.get(12)) {
                let ticks = u.parse::<u64>().unwrap_or(0) + s.parse::<u64>().unwrap_or(0);
                let _ = writeln!(out, "# HELP process_cpu_seconds_total User and system CPU time.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}", ticks as f64 / 100.0);
            }
        }
    }
}

/// The process's resident set size, from `/proc/self/status`.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
