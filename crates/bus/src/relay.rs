//! The outbox relay: reads the store's outbox in resourceVersion order and publishes it.
//!
//! At least once, never out of order, never skipping: a batch is published (and confirmed
//! by the bus) before the relay records its position, and a failed publish is retried with
//! backoff until it succeeds, so a crash or a broker outage can repeat events but not lose
//! them. The outbox only yields events up to the store's watermark, so an event whose
//! transaction is still open cannot be overtaken by a later one. With several API servers
//! on one database, one of them relays ([`Store::lead`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use syncsets_retry::Backoff;
use syncsets_store::{OutboxEvent, Retention, Role, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Bus;

/// Relay settings.
#[derive(Clone, Copy, Debug)]
pub struct RelayConfig {
    /// Events read and published at once at most.
    pub batch: usize,
    /// How often the outbox is polled when this process has not written (other API servers
    /// on the same database may have).
    pub poll: Duration,
    /// How long published events are kept for watches that resume.
    pub retention: Retention,
    /// How often old events are compacted.
    pub compact_every: Duration,
    /// After a batch that was not full, how long events may gather before the next read:
    /// under a write load this bounds the relay's reads of the outbox (each also settles
    /// the watermark), which otherwise compete with the writers.
    pub linger: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 1024,
            poll: Duration::from_millis(10),
            retention: Retention::default(),
            compact_every: Duration::from_secs(10),
            linger: Duration::from_millis(5),
        }
    }
}

/// The running relay.
#[derive(Debug)]
pub struct Relay {
    task: JoinHandle<()>,
    published: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl Relay {
    /// Starts the relay.
    pub fn spawn(store: Arc<dyn Store>, bus: Arc<dyn Bus>, config: RelayConfig) -> Self {
        let published = Arc::new(AtomicU64::new(0));
        let (stop, stopping) = watch::channel(false);
        let task = tokio::spawn(run(store, bus, config, published.clone(), stopping));
        Self {
            task,
            published,
            stop,
        }
    }

    /// Stops once the batch being published is (or, if the bus is down, without waiting
    /// for it: the outbox keeps it for the next relay), after recording the position.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        self.stop.closed().await;
    }

    /// Events published since the relay started.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

async fn run(
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    config: RelayConfig,
    count: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    loop {
        if *stop.borrow() {
            return;
        }
        let lead = tokio::select! {
            lead = store.lead(Role::Relay) => lead,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = lead {
            tracing::warn!(error = %syncsets_store::Chain(&e), "outbox relay: cannot take the lead; retrying");
            backoff.wait().await;
            continue;
        }
        let mut position = match store.outbox_state().await {
            Ok(state) => state.published,
            Err(e) => {
                tracing::warn!(error = %syncsets_store::Chain(&e), "outbox relay: cannot read its position; retrying");
                backoff.wait().await;
                continue;
            }
        };
        tracing::info!(position, bus = bus.backend(), "outbox relay leading");
        let mut lag = Lag::new();
        // Bookkeeping (recording the position, compaction) runs beside the relay, so that
        // its writes never hold up an event.
        let (published_tx, published_rx) = watch::channel(position);
        let keeper = tokio::spawn(keep_books(store.clone(), published_rx, config));
        let mut checked = Instant::now();
        loop {
            if *stop.borrow() {
                keeper.abort();
                if let Err(e) = store.mark_published(position).await {
                    tracing::warn!(error = %syncsets_store::Chain(&e), "outbox relay: recording its position failed");
                }
                lag.clear();
                tracing::info!(position, "outbox relay stopped");
                return;
            }
            if checked.elapsed() >= Duration::from_secs(1) {
                checked = Instant::now();
                if !store.still_leading(Role::Relay).await {
                    tracing::warn!("outbox relay lost the lead");
                    keeper.abort();
                    lag.clear();
                    break;
                }
            }
            let batch = match store.outbox_after(position, config.batch).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %syncsets_store::Chain(&e), "outbox relay: reading the outbox failed");
                    backoff.wait().await;
                    continue;
                }
            };
            let batch: Vec<Arc<OutboxEvent>> = batch.into_iter().map(Arc::new).collect();
            let Some(last) = batch.last().map(|e| e.rv) else {
                lag.caught_up();
                tokio::select! {
                    _ = store.writes().notified() => {}
                    _ = tokio::time::sleep(config.poll) => {}
                    _ = stop.changed() => {}
                }
                continue;
            };
            let mut retry = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
            let mut stopped = false;
            while let Err(e) = bus.publish(&batch).await {
                tracing::warn!(error = %syncsets_store::Chain(&e), events = batch.len(), "outbox relay: publishing failed; retrying");
                lag.behind(&*store, position).await;
                tokio::select! {
                    () = retry.wait() => {}
                    _ = stop.wait_for(|s| *s) => { stopped = true; break; }
                }
            }
            if stopped {
                continue; // recorded and returned above, at the position published
            }
            position = last;
            count.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if batch.len() < config.batch {
                // Everything settled when the outbox was read has been published.
                lag.caught_up();
            } else {
                lag.behind(&*store, position).await;
            }
            backoff.reset();
            published_tx.send_replace(position);
            if batch.len() < config.batch && !config.linger.is_zero() {
                tokio::time::sleep(config.linger).await;
            }
        }
    }
}

/// The relay's gauges: `syncsets_outbox_backlog` (resourceVersions committed and not yet
/// published: an upper bound on the events waiting, as aborted transactions leave gaps) and
/// `syncsets_relay_lag_seconds` (how long since the relay last had published everything it
/// found: 0 while it keeps up; it grows while the relay falls behind or cannot publish).
/// Only the replica leading the relay reports them.
struct Lag {
    since: Instant,
    /// When the backlog was last measured (the store's watermark costs a settle on
    /// PostgreSQL: once per [`BACKLOG_EVERY`] at most).
    measured: Option<Instant>,
    backlog: metrics::Gauge,
    lag: metrics::Gauge,
}

/// How often the backlog is measured at most while the relay is behind.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

impl Lag {
    fn new() -> Self {
        metrics::describe_gauge!(
            "syncsets_outbox_backlog",
            "Changes committed and not yet published by the outbox relay (resourceVersions between its position and the store's watermark)."
        );
        metrics::describe_gauge!(
            "syncsets_relay_lag_seconds",
            metrics::Unit::Seconds,
            "Seconds since the outbox relay last had published every change it found (0 while it keeps up)."
        );
        Self {
            since: Instant::now(),
            measured: None,
            backlog: metrics::gauge!("syncsets_outbox_backlog"),
            lag: metrics::gauge!("syncsets_relay_lag_seconds"),
        }
    }

    /// Everything found was published.
    fn caught_up(&mut self) {
        self.since = Instant::now();
        self.backlog.set(0.0);
        self.lag.set(0.0);
    }

    /// More is waiting behind `position`.
    async fn behind(&mut self, store: &dyn Store, position: u64) {
        self.lag.set(self.since.elapsed().as_secs_f64());
        if self.measured.is_some_and(|at| at.elapsed() < BACKLOG_EVERY) {
            return;
        }
        self.measured = Some(Instant::now());
        if let Ok(watermark) = store.watermark().await {
            self.backlog.set(watermark.saturating_sub(position) as f64);
        }
    }

    /// This replica no longer relays.
    fn clear(&mut self) {
        self.backlog.set(0.0);
        self.lag.set(0.0);
    }
}

/// How often the published position is recorded at most. After a crash the relay repeats
/// what it published since (receivers drop duplicates).
const RECORD_EVERY: Duration = Duration::from_millis(100);

/// Records the relay's position as it advances, and compacts the outbox now and then.
async fn keep_books(
    store: Arc<dyn Store>,
    mut published: watch::Receiver<u64>,
    config: RelayConfig,
) {
    let mut compacted = Instant::now();
    loop {
        let changed = tokio::time::timeout(config.compact_every, published.changed()).await;
        if matches!(changed, Ok(Err(_))) {
            return; // the relay stopped
        }
        if changed.is_ok() {
            let position = *published.borrow_and_update();
            if let Err(e) = store.mark_published(position).await {
                // Harmless: a later position is recorded next.
                tracing::warn!(error = %syncsets_store::Chain(&e), "outbox relay: recording its position failed");
            }
        }
        if compacted.elapsed() >= config.compact_every {
            compacted = Instant::now();
            if let Err(e) = store.compact(config.retention).await {
                tracing::warn!(error = %syncsets_store::Chain(&e), "outbox compaction failed");
            }
        }
        tokio::time::sleep(RECORD_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FeedItem, LocalBus};
    use serde_json::json;
    use syncsets_store::{MemoryStore, ObjectKey};

    #[tokio::test]
    async fn relays_every_write_in_order_and_records_its_position() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let bus = Arc::new(LocalBus::new());
        let mut feed = bus.subscribe();
        let _relay = Relay::spawn(store.clone(), bus.clone(), RelayConfig::default());
        let mut rvs = Vec::new();
        for i in 0..50 {
            let key = ObjectKey::new("", "configmaps", "ns", &format!("c{i}"));
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": key.name, "namespace": "ns"}});
            rvs.push(store.create(&key, &obj, false).await.unwrap().rv);
        }
        let mut seen = Vec::new();
        while seen.len() < rvs.len() {
            match tokio::time::timeout(Duration::from_secs(5), feed.recv()).await {
                Ok(Some(FeedItem::Event(e))) => seen.push(e.rv),
                Ok(Some(FeedItem::Resumed)) => {}
                other => panic!("feed ended early: {other:?}"),
            }
        }
        assert_eq!(seen, rvs);
        for _ in 0..100 {
            if store.outbox_state().await.unwrap().published == *rvs.last().unwrap() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the relay did not record its position");
    }
}
