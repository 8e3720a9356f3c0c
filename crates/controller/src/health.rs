//! Per-cluster retry policy: exponential backoff after failures (the one retry policy,
//! `syncsets_retry::Backoff`: jittered, so clusters that failed together do not all come
//! back in the same instant), a long pause after
//! authentication errors, and a circuit breaker for clusters that cannot be reached — after
//! a few connection failures in a row the cluster is left alone for a growing interval,
//! then probed once, so one dead cluster costs the fleet nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use syncsets_retry::Backoff;
use tokio::time::Instant;

use crate::target::Failure;

/// Retry settings.
#[derive(Clone, Debug)]
pub struct HealthSettings {
    /// First retry after a failure (each delay is random in its upper half).
    pub backoff_base: Duration,
    /// Longest retry delay after failures.
    pub backoff_max: Duration,
    /// Retry delay after the cluster refused our credentials.
    pub auth_backoff: Duration,
    /// Connection failures in a row that open the breaker.
    pub breaker_threshold: u32,
    /// First pause of an open breaker (doubles while probes fail).
    pub breaker_base: Duration,
    /// Longest pause of an open breaker.
    pub breaker_max: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(300),
            auth_backoff: Duration::from_secs(600),
            breaker_threshold: 3,
            breaker_base: Duration::from_secs(10),
            breaker_max: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Created at the first failure; a success forgets the whole state.
    backoff: Option<Backoff>,
    unreachable: u32,
    open_until: Option<Instant>,
    open_for: Duration,
}

/// Whether to reconcile a cluster now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Go,
    /// The breaker is half open: this reconcile is its probe.
    Probe,
    /// The breaker is open: try again after this.
    Wait(Duration),
}

/// How a reconcile ended, for the retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Everything applied.
    Success,
    /// Something failed; the worst failure.
    Failed(Failure),
}

/// The retry state of every cluster.
#[derive(Debug, Default)]
pub struct Health {
    settings: HealthSettings,
    clusters: Mutex<HashMap<String, State>>,
}

impl Health {
    /// With these settings.
    pub fn new(settings: HealthSettings) -> Self {
        Self {
            settings,
            clusters: Mutex::default(),
        }
    }

    /// Whether a cluster may be reconciled now.
    pub fn admit(&self, key: &str) -> Admission {
        let clusters = self.clusters.lock().expect("health lock");
        match clusters.get(key).and_then(|s| s.open_until) {
            None => Admission::Go,
            Some(until) => {
                let now = Instant::now();
                if now >= until {
                    Admission::Probe
                } else {
                    Admission::Wait(until - now)
                }
            }
        }
    }

    /// Whether a cluster's breaker is open (it is considered unreachable).
    pub fn unreachable(&self, key: &str) -> bool {
        is_open(&self.clusters.lock().expect("health lock"), key)
    }

    /// Records how a reconcile ended; returns when to retry, if it failed.
    pub fn record(&self, key: &str, ended: Ended) -> Option<Duration> {
        let mut clusters = self.clusters.lock().expect("health lock");
        let was_open = is_open(&clusters, key);
        let delay = Self::record_in(&mut clusters, &self.settings, key, ended);
        count_open(was_open, is_open(&clusters, key));
        delay
    }

    fn record_in(
        clusters: &mut HashMap<String, State>,
        s: &HealthSettings,
        key: &str,
        ended: Ended,
    ) -> Option<Duration> {
        let failure = match ended {
            Ended::Success => {
                clusters.remove(key);
                return None;
            }
            Ended::Failed(f) => f,
        };
        let state = clusters.entry(key.to_string()).or_default();
        let backoff = state
            .backoff
            .get_or_insert_with(|| Backoff::new(s.backoff_base, s.backoff_max))
            .next_delay();
        match failure {
            Failure::Unreachable => {
                state.unreachable += 1;
                if state.unreachable >= s.breaker_threshold {
                    state.open_for = if state.open_until.is_some() {
                        (state.open_for * 2).min(s.breaker_max)
                    } else {
                        s.breaker_base
                    };
                    state.open_until = Some(Instant::now() + state.open_for);
                    return Some(state.open_for);
                }
                Some(backoff)
            }
            Failure::Unauthorized => {
                state.unreachable = 0;
                Some(s.auth_backoff.max(backoff))
            }
            _ => {
                state.unreachable = 0;
                state.open_until = None;
                Some(backoff)
            }
        }
    }

    /// Forgets a cluster.
    pub fn forget(&self, key: &str) {
        let mut clusters = self.clusters.lock().expect("health lock");
        count_open(is_open(&clusters, key), false);
        clusters.remove(key);
    }
}

fn is_open(clusters: &HashMap<String, State>, key: &str) -> bool {
    clusters.get(key).is_some_and(|s| s.open_until.is_some())
}

/// Moves the open-breaker gauge when a cluster's breaker opens or closes.
fn count_open(was: bool, is: bool) {
    match (was, is) {
        (false, true) => metrics::gauge!("syncsets_clusters_circuit_open").increment(1.0),
        (true, false) => metrics::gauge!("syncsets_clusters_circuit_open").decrement(1.0),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backs_off_exponentially_and_resets_on_success() {
        let h = Health::default();
        let fail = Ended::Failed(Failure::Rejected);
        // Each delay d is random in [d/2, d].
        let within = |got: Option<Duration>, d: Duration| {
            let got = got.unwrap();
            assert!(got >= d / 2 && got <= d, "{got:?} not within {d:?}");
        };
        for d in [250, 500, 1000, 2000] {
            within(h.record("c", fail), Duration::from_millis(d));
        }
        for _ in 0..30 {
            h.record("c", fail);
        }
        within(h.record("c", fail), Duration::from_secs(300));
        assert_eq!(h.record("c", Ended::Success), None);
        within(h.record("c", fail), Duration::from_millis(250));
        assert_eq!(
            h.record("d", Ended::Failed(Failure::Unauthorized)),
            Some(Duration::from_secs(600)),
            "auth errors back off long"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_probes_and_closes() {
        let h = Health::default();
        let down = Ended::Failed(Failure::Unreachable);
        assert_eq!(h.admit("c"), Admission::Go);
        h.record("c", down);
        h.record("c", down);
        assert_eq!(h.admit("c"), Admission::Go, "below the threshold");
        assert_eq!(h.record("c", down), Some(Duration::from_secs(10)), "opens");
        assert!(h.unreachable("c"));
        assert_eq!(h.admit("c"), Admission::Wait(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(h.admit("c"), Admission::Probe);
        assert_eq!(
            h.record("c", down),
            Some(Duration::from_secs(20)),
            "a failed probe doubles the pause"
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(h.admit("c"), Admission::Probe);
        assert_eq!(h.record("c", Ended::Success), None);
        assert_eq!(h.admit("c"), Admission::Go, "closed");
        assert!(!h.unreachable("c"));
    }
}
