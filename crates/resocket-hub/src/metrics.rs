//! The hub's counters and gauges, and their Prometheus text rendering.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
}

impl Metrics {
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

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub(crate) fn render(&self, rooms: usize) -> String {
        let mut out = String::with_capacity(4096);
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let g = |a: &AtomicU64| a.load(Relaxed);
        one(
            "resocket_hub_connections",
            "gauge",
            "Open WebSocket connections.",
            g(&self.connections),
        );
        one(
            "resocket_hub_connections_total",
            "counter",
            "WebSocket connections accepted.",
            g(&self.connections_total),
        );
        one(
            "resocket_hub_rooms",
            "gauge",
            "Rooms with subscribers or history.",
            rooms as u64,
        );
        one(
            "resocket_hub_subscriptions",
            "gauge",
            "Active subscriptions.",
            g(&self.subscriptions),
        );
        one(
            "resocket_hub_write_batches_total",
            "counter",
            "Socket flushes; messages out divided by this is the mean batch.",
            g(&self.write_batches),
        );
        one(
            "resocket_hub_publishes_total",
            "counter",
            "Publishes applied.",
            g(&self.publishes),
        );
        one(
            "resocket_hub_acks_total",
            "counter",
            "Acks sent, repeats included.",
            g(&self.acks),
        );
        one(
            "resocket_hub_dedupe_hits_total",
            "counter",
            "Repeated publishes acknowledged but not applied.",
            g(&self.dedupe_hits),
        );
        one(
            "resocket_hub_auth_failures_total",
            "counter",
            "Rejected tokens and missing auth.",
            g(&self.auth_failures),
        );
        one(
            "resocket_hub_error_frames_total",
            "counter",
            "Error frames sent.",
            g(&self.error_frames),
        );
        one(
            "resocket_hub_history_messages",
            "gauge",
            "Messages held in room history.",
            g(&self.history_messages),
        );
        one(
            "resocket_hub_history_bytes",
            "gauge",
            "Bytes held in room history.",
            g(&self.history_bytes),
        );
        one(
            "resocket_hub_history_evicted_total",
            "counter",
            "Messages dropped from history to keep all rooms within the history budget.",
            g(&self.history_evicted),
        );

        let _ = writeln!(out, "# HELP resocket_hub_messages_total WebSocket data frames by direction.\n# TYPE resocket_hub_messages_total counter");
        let _ = writeln!(
            out,
            "resocket_hub_messages_total{{direction=\"in\"}} {}",
            g(&self.messages_in)
        );
        let _ = writeln!(
            out,
            "resocket_hub_messages_total{{direction=\"out\"}} {}",
            g(&self.messages_out)
        );
        let _ = writeln!(out, "# HELP resocket_hub_bytes_total WebSocket payload bytes by direction.\n# TYPE resocket_hub_bytes_total counter");
        let _ = writeln!(
            out,
            "resocket_hub_bytes_total{{direction=\"in\"}} {}",
            g(&self.bytes_in)
        );
        let _ = writeln!(
            out,
            "resocket_hub_bytes_total{{direction=\"out\"}} {}",
            g(&self.bytes_out)
        );
        let _ = writeln!(out, "# HELP resocket_hub_recoveries_total Subscribes with `since`, by whether every missed message was replayed.\n# TYPE resocket_hub_recoveries_total counter");
        let _ = writeln!(
            out,
            "resocket_hub_recoveries_total{{result=\"full\"}} {}",
            g(&self.recoveries_full)
        );
        let _ = writeln!(
            out,
            "resocket_hub_recoveries_total{{result=\"partial\"}} {}",
            g(&self.recoveries_partial)
        );
        let _ = writeln!(out, "# HELP resocket_hub_disconnects_total Connections the hub closed, by reason.\n# TYPE resocket_hub_disconnects_total counter");
        for why in Disconnect::ALL {
            let _ = writeln!(
                out,
                "resocket_hub_disconnects_total{{reason=\"{}\"}} {}",
                why.label(),
                self.disconnects(why)
            );
        }
        let _ = writeln!(out, "# HELP resocket_hub_rejected_upgrades_total Upgrade requests refused, by reason.\n# TYPE resocket_hub_rejected_upgrades_total counter");
        for (i, why) in [
            "origin",
            "auth",
            "capacity",
            "shutting_down",
            "pending_cap",
            "timeout",
        ]
        .iter()
        .enumerate()
        {
            let _ = writeln!(
                out,
                "resocket_hub_rejected_upgrades_total{{reason=\"{why}\"}} {}",
                g(&self.rejected[i])
            );
        }
        process(&mut out);
        out
    }
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
