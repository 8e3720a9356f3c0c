//! This replica's side of the bus: one task reads the bus feed, opens each event (a Secret
//! is unsealed only here, in memory) and fans it out to the watches of this process.
//!
//! The hub delivers every event exactly once and in resourceVersion order: it drops what it
//! has already passed on (the relay publishes at least once), and when its feed was
//! interrupted ([`FeedItem::Resumed`]) it reads what it may have missed from the store's
//! outbox before going on.

use std::sync::Arc;
use std::time::Duration;

use syncsets_bus::{Bus, FeedItem};
use syncsets_store::{ChangeEvent, OutboxEvent, Store};
use tokio::sync::{broadcast, watch};

/// Events a slow watch may fall behind before it is closed (its client then re-watches from
/// the last version it saw, as Kubernetes clients do).
const WATCH_BUFFER: usize = 16_384;

/// The fan-out point of this replica.
#[derive(Debug)]
pub struct Hub {
    events: broadcast::Sender<Arc<ChangeEvent>>,
    position: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hub {
    /// Starts reading the bus.
    pub async fn start(store: Arc<dyn Store>, bus: &dyn Bus) -> syncsets_store::Result<Self> {
        let start = store.watermark().await?;
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let (position_tx, position) = watch::channel(start);
        let feed = bus.subscribe();
        let task = tokio::spawn(run(store, feed, events.clone(), position_tx, start));
        Ok(Self {
            events,
            position,
            task,
        })
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.events.subscribe()
    }

    /// The resourceVersion of the last event passed on (every earlier one was, too).
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Waits until the hub has passed on everything up to `rv`, or the timeout passes.
    pub async fn reach(&self, rv: u64, timeout: Duration) -> bool {
        let mut position = self.position.clone();
        tokio::time::timeout(timeout, position.wait_for(|p| *p >= rv))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut feed: tokio::sync::mpsc::Receiver<FeedItem>,
    events: broadcast::Sender<Arc<ChangeEvent>>,
    position: watch::Sender<u64>,
    mut last: u64,
) {
    // Passes one event on, unless it was passed on already.
    let pass_on = |event: &OutboxEvent, last: &mut u64| {
        if event.rv <= *last {
            return;
        }
        *last = event.rv;
        match store.open_event(event) {
            Ok(opened) => {
                let _ = events.send(Arc::new(opened));
            }
            Err(e) => {
                tracing::error!(rv = event.rv, error = %e, "cannot open a change event; skipping it");
            }
        }
        position.send_replace(*last);
    };
    while let Some(item) = feed.recv().await {
        match item {
            FeedItem::Event(event) => pass_on(&event, &mut last),
            FeedItem::Resumed => {
                let mut pause = Duration::from_millis(50);
                loop {
                    match store.outbox_after(last, 1024).await {
                        Ok(batch) if batch.is_empty() => break,
                        Ok(batch) => batch.iter().for_each(|e| pass_on(e, &mut last)),
                        Err(e) => {
                            tracing::warn!(error = %e, "catching up from the outbox failed; retrying");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
        }
    }
}
