//! The printed result: one table of figures, then the ratios against their targets.

use std::{fmt::Write as _, time::Duration};

use crate::measure::{median, percentile};

/// A target a ratio is held to.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The ratio should be at least this.
    AtLeast(f64),
    /// The ratio should be at most this.
    AtMost(f64),
    /// Printed for information only.
    None,
}

/// Collects figures as cases finish and prints them together at the end.
#[derive(Debug, Default)]
pub struct Report {
    throughput: String,
    latency: String,
    wire: String,
    ratios: String,
}

/// Throughput figures of one contender in one case.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Median msgs/s over the measured rounds.
    pub median: f64,
    /// Best msgs/s over the measured rounds.
    pub best: f64,
}

/// Latency figures of one contender in one case.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Median round trip.
    pub p50: Duration,
    /// 99th percentile round trip.
    pub p99: Duration,
}

impl Report {
    /// Adds a throughput row and returns its figures for ratios.
    pub fn throughput(&mut self, case: &str, contender: &str, size: usize, rates: &[f64]) -> Rates {
        let figures = Rates {
            median: median(rates),
            best: rates.iter().copied().fold(0.0, f64::max),
        };
        let mib = figures.median * size as f64 / f64::from(1 << 20);
        let _ = writeln!(
            self.throughput,
            "| {case} | {contender} | {:.3} M | {:.3} M | {mib:.0} |",
            figures.median / 1e6,
            figures.best / 1e6,
        );
        figures
    }

    /// Adds a latency row from sorted samples and returns its figures for ratios.
    pub fn latency(&mut self, case: &str, contender: &str, sorted: &[Duration]) -> Latency {
        let figures = Latency {
            p50: percentile(sorted, 50.0),
            p99: percentile(sorted, 99.0),
        };
        let _ = writeln!(
            self.latency,
            "| {case} | {contender} | {} | {} | {} |",
            human(figures.p50),
            human(figures.p99),
            sorted.len(),
        );
        figures
    }

    /// Adds a row of bytes on the wire: what the server wrote per message (frame headers
    /// included) against the payload size.
    pub fn wire(&mut self, case: &str, contender: &str, bytes_per_message: f64, size: usize) {
        let _ = writeln!(
            self.wire,
            "| {case} | {contender} | {bytes_per_message:.1} | {:.2}× |",
            size as f64 / bytes_per_message,
        );
    }

    /// Adds a ratio line, marked against its target.
    pub fn ratio(&mut self, label: &str, value: f64, target: Target) {
        let verdict = match target {
            Target::AtLeast(t) if value >= t => format!("target ≥ {t}×: met"),
            Target::AtLeast(t) => format!("target ≥ {t}×: MISSED"),
            Target::AtMost(t) if value <= t => format!("target ≤ {t}×: met"),
            Target::AtMost(t) => format!("target ≤ {t}×: MISSED"),
            Target::None => String::new(),
        };
        let _ = writeln!(self.ratios, "| {label} | {value:.2}× | {verdict} |");
    }

    /// Prints everything collected so far.
    pub fn print(&self) {
        println!();
        println!("| case | contender | median msgs/s | best msgs/s | median MiB/s |");
        println!("|---|---|---|---|---|");
        print!("{}", self.throughput);
        println!();
        println!("| case | contender | p50 | p99 | samples |");
        println!("|---|---|---|---|---|");
        print!("{}", self.latency);
        if !self.wire.is_empty() {
            println!();
            println!("| case | contender | wire bytes per message | payload / wire |");
            println!("|---|---|---|---|");
            print!("{}", self.wire);
        }
        println!();
        println!("| ratio | value | target |");
        println!("|---|---|---|");
        print!("{}", self.ratios);
    }
}

/// Microseconds below 10 ms, milliseconds above.
fn human(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 10_000.0 {
        format!("{micros:.1} µs")
    } else {
        format!("{:.1} ms", micros / 1e3)
    }
}
