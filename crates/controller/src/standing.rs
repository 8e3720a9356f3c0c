//! This replica's standing in the membership: whether it may act on target clusters.
//!
//! The other replicas count a replica alive until `ttl` after the time its last heartbeat
//! carries, then take its shards. A replica's standing holds only until `renew_deadline`
//! (shorter than `ttl`, as client-go's leader election's renew deadline is shorter than its
//! lease) after it began writing its last stored heartbeat. So a replica that cannot renew —
//! cut off from the store, or paused — has stopped acting before anyone may take its work,
//! whatever else it can still reach. It is measured on this process's monotonic clock and
//! checked at each step of the work rather than announced by a task, because a paused
//! process resumes all its tasks at once: a reconcile must find the standing lapsed before
//! it takes another step, not after the membership task has had its turn.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use tokio::time::Sleep;

/// Whether this replica may act (see the module documentation).
#[derive(Debug)]
pub struct Standing {
    /// `None`: always (a single replica, nobody to hand work to).
    deadline: Option<Duration>,
    /// When the last stored heartbeat began, on both clocks (`None` before the first).
    renewed: Mutex<Option<(Instant, SystemTime)>>,
}

impl Standing {
    /// A standing that never lapses (no membership: this replica is the only one).
    pub fn always() -> Self {
        Self {
            deadline: None,
            renewed: Mutex::new(None),
        }
    }

    /// A standing that holds for `deadline` after each renewal, and not before the first.
    pub fn renewed_within(deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            renewed: Mutex::new(None),
        }
    }

    /// A heartbeat that began at `began` (and `began_wall`, the time it carries) is stored.
    pub fn renewed(&self, began: Instant, began_wall: SystemTime) {
        let mut renewed = self.renewed.lock().expect("standing lock");
        if renewed.is_none_or(|(last, _)| last < began) {
            *renewed = Some((began, began_wall));
        }
    }

    /// How long it still holds from now (zero once lapsed); `None`: forever. The elapsed
    /// time is the longer of the monotonic clock's and the wall clock's: the monotonic
    /// clock does not count a machine's suspension, and the others judge by wall time.
    fn remaining(&self) -> Option<Duration> {
        let deadline = self.deadline?;
        let renewed = *self.renewed.lock().expect("standing lock");
        Some(renewed.map_or(Duration::ZERO, |(began, began_wall)| {
            let wall = SystemTime::now()
                .duration_since(began_wall)
                .unwrap_or_default();
            deadline.saturating_sub(began.elapsed().max(wall))
        }))
    }

    /// Whether it holds now.
    pub fn holds(&self) -> bool {
        self.remaining().is_none_or(|left| !left.is_zero())
    }

    /// When it lapsed (or will), by the wall clock: the last renewal's time plus the
    /// deadline. `None` for a standing that never lapses.
    pub fn lapses_at(&self) -> Option<SystemTime> {
        let deadline = self.deadline?;
        let renewed = *self.renewed.lock().expect("standing lock");
        Some(renewed.map_or(SystemTime::UNIX_EPOCH, |(_, wall)| wall + deadline))
    }

    /// Resolves once it no longer holds (never, for [`Standing::always`]). Every poll looks
    /// at the clock itself, so a task resumed after the deadline sees it lapsed before a
    /// timer has had the chance to fire.
    pub async fn lapsed(&self) {
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        std::future::poll_fn(|cx| {
            loop {
                let Some(left) = self.remaining() else {
                    return Poll::Pending;
                };
                if left.is_zero() {
                    return Poll::Ready(());
                }
                let at = tokio::time::Instant::now() + left;
                let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                timer.as_mut().reset(at);
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        })
        .await;
    }

    /// Resolves once it holds (at once, if it does).
    pub async fn held(&self) {
        while !self.holds() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_for_the_deadline_after_each_renewal_and_not_before_the_first() {
        let s = Standing::renewed_within(Duration::from_millis(300));
        assert!(!s.holds(), "not before the first heartbeat");
        let now = Instant::now();
        s.renewed(now, SystemTime::now());
        assert!(s.holds());
        // An older heartbeat that completes late does not move it back.
        s.renewed(now - Duration::from_secs(1), SystemTime::now());
        assert!(s.holds());
        std::thread::sleep(Duration::from_millis(350));
        assert!(!s.holds(), "lapsed after the deadline");
        // A renewal that began before the deadline passed but completed after it (a slow
        // store) counts from when it began.
        s.renewed(
            Instant::now() - Duration::from_millis(400),
            SystemTime::now(),
        );
        assert!(!s.holds());
        s.renewed(Instant::now(), SystemTime::now());
        assert!(s.holds());
        assert!(Standing::always().holds());
    }

    #[tokio::test]
    async fn lapsed_resolves_at_the_deadline() {
        let s = Standing::renewed_within(Duration::from_millis(200));
        s.renewed(Instant::now(), SystemTime::now());
        let started = Instant::now();
        s.lapsed().await;
        assert!(started.elapsed() >= Duration::from_millis(190));
        assert!(!s.holds());
    }
}
