//! Backoff: how long to wait before the next connection attempt, and when to give up.
//!
//! A [`Backoff`] is a source of delays, in the spirit of `backon`: the supervisor asks for the
//! next delay after every failed attempt and calls [`Backoff::reset`] once a connection has
//! stayed `Ready` for `stable_after`. There is one backoff per client, not per connection, so a
//! server that accepts and then drops every connection meets growing delays, never a tight loop.

use std::{fmt, time::Duration};

/// A source of retry delays.
pub trait Backoff: Send + 'static {
    /// The delay before the next attempt, or `None` to give up.
    fn next_delay(&mut self) -> Option<Duration>;

    /// Starts over, after a connection proved stable.
    fn reset(&mut self);
}

impl Backoff for Box<dyn Backoff> {
    fn next_delay(&mut self) -> Option<Duration> {
        (**self).next_delay()
    }

    fn reset(&mut self) {
        (**self).reset()
    }
}

/// How randomness is mixed into an exponential delay.
///
/// With `d = min(max, base · factorⁿ)`:
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jitter {
    /// `d` exactly. Many clients then retry in lock step; prefer a jittered form.
    None,
    /// `random(0, d)`: spreads clients best, but may retry almost at once.
    Full,
    /// `d/2 + random(0, d/2)`: spreads clients and still guarantees delays that grow. The default.
    Equal,
    /// `min(max, random(base, previous · 3))`, from the AWS architecture blog.
    Decorrelated,
}

/// Exponential backoff with jitter, a cap and an optional retry limit.
///
/// Defaults (the `standard` preset): base 1 s, factor 2, max 60 s, [`Jitter::Equal`], retries
/// forever. Equal jitter is the default because it keeps every delay at least half of the
/// exponential value, so the gaps between attempts grow even in the unluckiest draw; full
/// jitter can draw a near-zero delay, which is the tight loop this crate exists to avoid.
#[derive(Clone)]
pub struct ExponentialBackoff {
    base: Duration,
    max: Duration,
    factor: f64,
    jitter: Jitter,
    max_retries: Option<u32>,
    retries: u32,
    previous: Duration,
    rng: fastrand::Rng,
}

impl fmt::Debug for ExponentialBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExponentialBackoff")
            .field("base", &self.base)
            .field("max", &self.max)
            .field("factor", &self.factor)
            .field("jitter", &self.jitter)
            .field("max_retries", &self.max_retries)
            .field("retries", &self.retries)
            .finish()
    }
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        Self::standard()
    }
}

impl ExponentialBackoff {
    /// A backoff from `base` to `max`, doubling, with equal jitter.
    pub fn new(base: Duration, max: Duration) -> Self {
        ExponentialBackoff {
            base,
            max,
            factor: 2.0,
            jitter: Jitter::Equal,
            max_retries: None,
            retries: 0,
            previous: base,
            rng: fastrand::Rng::new(),
        }
    }

    /// 100 ms to 5 s, factor 1.5: for feeds where every second of gap costs.
    pub fn fast() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5)).with_factor(1.5)
    }

    /// 1 s to 60 s, factor 2: the default.
    pub fn standard() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// 2 s to 120 s, factor 2: for servers that must not be stormed.
    pub fn conservative() -> Self {
        Self::new(Duration::from_secs(2), Duration::from_secs(120))
    }

    /// Sets the growth factor (default 2). Values below 1 are treated as 1.
    pub fn with_factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() && factor >= 1.0 {
            factor
        } else {
            1.0
        };
        self
    }

    /// Sets the jitter (default [`Jitter::Equal`]).
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Gives up after `retries` retries: `with_max_attempts(3)` yields exactly three delays.
    pub fn with_max_attempts(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Seeds the random source, for reproducible delays in tests.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// The un-jittered delay of retry `n` (0-based): `min(max, base · factorⁿ)`.
    fn exponential(&self, n: u32) -> Duration {
        let grown = self.base.as_secs_f64() * self.factor.powi(n.min(1024) as i32);
        if !grown.is_finite() || grown >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(grown).min(self.max)
        }
    }

    fn random_between(&mut self, low: Duration, high: Duration) -> Duration {
        let (low, high) = (low.as_nanos() as u64, high.as_nanos() as u64);
        if high <= low {
            return Duration::from_nanos(low);
        }
        Duration::from_nanos(self.rng.u64(low..=high))
    }
}

impl Backoff for ExponentialBackoff {
    fn next_delay(&mut self) -> Option<Duration> {
        if self.max_retries.is_some_and(|max| self.retries >= max) {
            return None;
        }
        let d = self.exponential(self.retries);
        let delay = match self.jitter {
            Jitter::None => d,
            Jitter::Full => self.random_between(Duration::ZERO, d),
            Jitter::Equal => self.random_between(d / 2, d),
            Jitter::Decorrelated => {
                let high = self.previous.saturating_mul(3).max(self.base);
                self.random_between(self.base, high).min(self.max)
            }
        };
        self.previous = delay;
        self.retries = self.retries.saturating_add(1);
        Some(delay)
    }

    fn reset(&mut self) {
        self.retries = 0;
        self.previous = self.base;
    }
}

/// The same delay every time, optionally a limited number of times.
#[derive(Debug, Clone)]
pub struct FixedDelay {
    delay: Duration,
    max_retries: Option<u32>,
    retries: u32,
}

impl FixedDelay {
    /// Waits `delay` before every retry, forever.
    pub fn new(delay: Duration) -> Self {
        FixedDelay {
            delay,
            max_retries: None,
            retries: 0,
        }
    }

    /// Gives up after `retries` retries.
    pub fn with_max_attempts(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }
}

impl Backoff for FixedDelay {
    fn next_delay(&mut self) -> Option<Duration> {
        if self.max_retries.is_some_and(|max| self.retries >= max) {
            return None;
        }
        self.retries += 1;
        Some(self.delay)
    }

    fn reset(&mut self) {
        self.retries = 0;
    }
}

/// Never retries: the first failure ends the client.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRetry;

impl Backoff for NoRetry {
    fn next_delay(&mut self) -> Option<Duration> {
        None
    }

    fn reset(&mut self) {}
}

/// A backoff computed by a closure from the 0-based retry number.
///
/// Built by [`from_fn`].
pub struct FnBackoff<F> {
    f: F,
    retries: u32,
}

impl<F> fmt::Debug for FnBackoff<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnBackoff")
            .field("retries", &self.retries)
            .finish()
    }
}

/// A backoff from a closure: `f(n)` is the delay before retry `n` (0-based), `None` gives up.
///
/// ```
/// use std::time::Duration;
/// let backoff = resocket::retry::from_fn(|n| (n < 5).then(|| Duration::from_millis(100 * u64::from(n))));
/// # let _ = backoff;
/// ```
pub fn from_fn<F>(f: F) -> FnBackoff<F>
where
    F: FnMut(u32) -> Option<Duration> + Send + 'static,
{
    FnBackoff { f, retries: 0 }
}

impl<F> Backoff for FnBackoff<F>
where
    F: FnMut(u32) -> Option<Duration> + Send + 'static,
{
    fn next_delay(&mut self) -> Option<Duration> {
        let delay = (self.f)(self.retries)?;
        self.retries = self.retries.saturating_add(1);
        Some(delay)
    }

    fn reset(&mut self) {
        self.retries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JITTERS: [Jitter; 4] = [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ];

    #[test]
    fn zero_base_never_panics() {
        for jitter in JITTERS {
            let mut b = ExponentialBackoff::new(Duration::ZERO, Duration::ZERO)
                .with_jitter(jitter)
                .with_seed(7);
            for _ in 0..100 {
                assert_eq!(b.next_delay(), Some(Duration::ZERO));
            }
        }
    }

    #[test]
    fn max_attempts_gives_exactly_that_many_retries() {
        for jitter in JITTERS {
            let mut b = ExponentialBackoff::fast()
                .with_jitter(jitter)
                .with_max_attempts(3)
                .with_seed(1);
            let delays: Vec<_> = std::iter::from_fn(|| b.next_delay()).take(10).collect();
            assert_eq!(delays.len(), 3, "{jitter:?}");
            b.reset();
            assert!(b.next_delay().is_some(), "reset starts over");
        }
        let mut fixed = FixedDelay::new(Duration::from_millis(5)).with_max_attempts(3);
        assert_eq!(
            std::iter::from_fn(|| fixed.next_delay()).take(10).count(),
            3
        );
        assert_eq!(NoRetry.next_delay(), None);
    }

    #[test]
    fn jittered_delays_stay_within_bounds() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for seed in 0..50 {
            for jitter in JITTERS {
                let mut b = ExponentialBackoff::new(base, max)
                    .with_factor(1.5)
                    .with_jitter(jitter)
                    .with_seed(seed);
                for n in 0..40u32 {
                    let d = b.next_delay().unwrap();
                    let exp = b.exponential(n);
                    let (low, high) = match jitter {
                        Jitter::None => (exp, exp),
                        Jitter::Full => (Duration::ZERO, exp),
                        Jitter::Equal => (exp / 2, exp),
                        Jitter::Decorrelated => (base, max),
                    };
                    assert!(
                        d >= low && d <= high,
                        "{jitter:?} seed {seed} n {n}: {d:?} not in {low:?}..={high:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn equal_jitter_delays_never_shrink_until_the_cap() {
        for seed in 0..100 {
            let mut b = ExponentialBackoff::standard().with_seed(seed);
            let delays: Vec<_> = (0..6).map(|_| b.next_delay().unwrap()).collect();
            assert!(
                delays.windows(2).all(|w| w[1] >= w[0]),
                "seed {seed}: {delays:?}"
            );
        }
    }

    #[test]
    fn same_seed_same_delays() {
        let run = || {
            let mut b = ExponentialBackoff::standard()
                .with_jitter(Jitter::Full)
                .with_seed(42);
            (0..10).map(|_| b.next_delay().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn presets_have_documented_bounds() {
        let f = ExponentialBackoff::fast();
        assert_eq!(
            (f.base, f.max, f.factor),
            (Duration::from_millis(100), Duration::from_secs(5), 1.5)
        );
        let s = ExponentialBackoff::standard();
        assert_eq!(
            (s.base, s.max, s.factor),
            (Duration::from_secs(1), Duration::from_secs(60), 2.0)
        );
        let c = ExponentialBackoff::conservative();
        assert_eq!(
            (c.base, c.max, c.factor),
            (Duration::from_secs(2), Duration::from_secs(120), 2.0)
        );
    }

    #[test]
    fn huge_retry_counts_saturate_at_the_cap() {
        let mut b = ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(60))
            .with_jitter(Jitter::None);
        for _ in 0..5000 {
            assert!(b.next_delay().unwrap() <= Duration::from_secs(60));
        }
    }

    #[test]
    fn closure_backoff_counts_retries() {
        let mut b = from_fn(|n| (n < 2).then_some(Duration::from_millis(u64::from(n))));
        assert_eq!(b.next_delay(), Some(Duration::ZERO));
        assert_eq!(b.next_delay(), Some(Duration::from_millis(1)));
        assert_eq!(b.next_delay(), None);
        b.reset();
        assert_eq!(b.next_delay(), Some(Duration::ZERO));
    }
}
