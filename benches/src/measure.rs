//! Running rounds and turning them into figures: medians, bests, percentiles.
//!
//! Contenders of one case run interleaved, round by round, in a rotating order, so that a
//! slow spell of the machine (another build, a frequency change) hurts all of them alike
//! instead of whichever happened to run during it.

use std::time::Duration;

use crate::{RoundTrip, Throughput};

/// Messages per second for `n` messages in `elapsed`.
pub fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// The median of some figures (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs one warm-up round of `warmup` messages, then `rounds` rounds of `n` for every case,
/// interleaved; returns the msgs/s of every measured round, per case.
///
/// Each round runs in a spawned task, so that user code competes for the runtime's two
/// workers with the server and the library's own tasks, as it would in an application.
pub async fn throughput(
    cases: &mut [Box<dyn Throughput>],
    n: u64,
    warmup: u64,
    rounds: usize,
) -> Vec<Vec<f64>> {
    for i in 0..cases.len() {
        run_throughput(cases, i, warmup).await;
    }
    let mut rates = vec![Vec::with_capacity(rounds); cases.len()];
    for round in 0..rounds {
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let elapsed = run_throughput(cases, i, n).await;
            rates[i].push(rate(n, elapsed));
        }
    }
    rates
}

async fn run_throughput(cases: &mut [Box<dyn Throughput>], i: usize, n: u64) -> Duration {
    let case = std::mem::replace(&mut cases[i], Box::new(Placeholder));
    let (case, elapsed) = tokio::spawn(async move {
        let mut case = case;
        let elapsed = case.round(n).await;
        (case, elapsed)
    })
    .await
    .expect("round panicked");
    cases[i] = case;
    elapsed
}

/// Like [`throughput`] for round-trip cases; returns every measured sample, sorted, per case.
pub async fn round_trips(
    cases: &mut [Box<dyn RoundTrip>],
    n: u64,
    warmup: u64,
    rounds: usize,
) -> Vec<Vec<Duration>> {
    for i in 0..cases.len() {
        run_round_trips(cases, i, warmup).await;
    }
    let mut samples = vec![Vec::with_capacity(n as usize * rounds); cases.len()];
    for round in 0..rounds {
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            samples[i].extend(run_round_trips(cases, i, n).await);
        }
    }
    for s in &mut samples {
        s.sort_unstable();
    }
    samples
}

async fn run_round_trips(cases: &mut [Box<dyn RoundTrip>], i: usize, n: u64) -> Vec<Duration> {
    let case = std::mem::replace(&mut cases[i], Box::new(Placeholder));
    let (case, samples) = tokio::spawn(async move {
        let mut case = case;
        let samples = case.round(n).await;
        (case, samples)
    })
    .await
    .expect("round panicked");
    cases[i] = case;
    samples
}

/// Stands in for a case while it runs in its own task.
struct Placeholder;

impl Throughput for Placeholder {
    fn round(&mut self, _: u64) -> crate::BoxFut<'_, Duration> {
        unreachable!("placeholder never runs")
    }
}

impl RoundTrip for Placeholder {
    fn round(&mut self, _: u64) -> crate::BoxFut<'_, Vec<Duration>> {
        unreachable!("placeholder never runs")
    }
}
