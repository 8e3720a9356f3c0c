//! # syncsets-retry
//!
//! One retry policy, and the one way to state a rate limit ([`quota`]).
//!
//! The retry policy is for every loop that waits on something that failed or is not ready yet
//! (the store, the broker, a namespace still emptying, transactions still in flight):
//!
//! ```text
//!   d = first ─▶ 2·first ─▶ 4·first ─▶ … ─▶ cap ─▶ cap …   each wait random in [d/2, d)
//!   success ─▶ reset() ─▶ first again
//! ```
//!
//! Exponential, capped, with jitter so that replicas and tasks that failed together do
//! not retry together — backon's `ExponentialBuilder`, kept as a value so a loop can fail
//! at several points, share one growing delay and restart it after a success.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};

/// A growing delay between attempts.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
}

impl Backoff {
    /// Delays `d` from `first`, doubling up to `cap`; each wait is random between `d / 2`
    /// and `d`, so no wait exceeds `cap`. Never gives up.
    pub fn new(first: Duration, cap: Duration) -> Self {
        // backon waits between its delay and twice it: half of ours.
        let builder = ExponentialBuilder::default()
            .with_min_delay(first / 2)
            .with_max_delay(cap.max(first) / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            delays: builder.build(),
            builder,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on attempts or total delay, the iterator never ends.
        self.delays
            .next()
            .unwrap_or_else(|| self.builder.build().next().unwrap_or_default())
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

/// The rate of `qps` requests a second with bursts of `burst`, for a `governor` limiter;
/// `None` (no limit) when `qps` is not above zero.
pub fn quota(qps: f64, burst: u32) -> Option<governor::Quota> {
    if qps.is_nan() || qps <= 0.0 {
        return None;
    }
    let burst = std::num::NonZeroU32::new(burst.max(1)).expect("at least one");
    governor::Quota::with_period(Duration::from_secs_f64(1.0 / qps)).map(|q| q.allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_with_jitter_and_restart() {
        let (first, cap) = (Duration::from_millis(50), Duration::from_millis(400));
        let mut b = Backoff::new(first, cap);
        let mut base = first;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d >= base / 2 && d <= base, "{d:?} for {base:?}");
            base = (base * 2).min(cap);
        }
        b.reset();
        let d = b.next_delay();
        assert!(d >= first / 2 && d <= first, "{d:?}");
    }

    #[test]
    fn jitter_spreads_retries_that_start_together() {
        let distinct: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay())
            .collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }
}
