//! A token bucket for the per-connection rate limit.

use std::time::Instant;

/// Allows `per_sec` frames per second on average and bursts of up to `burst`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    per_sec: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(per_sec: u32, burst: u32) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            per_sec: f64::from(per_sec),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    /// Takes one token at `now`; `false` when the bucket is empty.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3);
        b.last = t0;
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        assert!((0..3).all(|_| b.try_take(t0 + Duration::from_secs(10))));
        assert!(!b.try_take(t0 + Duration::from_secs(10)));
    }
}
