//! Working the queue: at most `workers` reconciles at once, each with a deadline, each
//! stopped the moment its lease is lost (another replica may take the cluster then).

use std::sync::Arc;
use std::time::Duration;

use syncsets_bus::{Lease, WorkQueue};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Config;
use crate::health::Ended;
use crate::journal::{Event, note};
use crate::reconcile::{Next, Reconciler};
use crate::target::Failure;

/// Runs until aborted (which stops every reconcile in flight).
pub async fn run(reconciler: Arc<Reconciler>, queue: Arc<dyn WorkQueue>, config: Config) {
    let permits = Arc::new(Semaphore::new(config.workers.max(1)));
    let mut running = JoinSet::new();
    loop {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let lease = loop {
            // Reap finished reconciles while waiting, so the set does not grow.
            while running.try_join_next().is_some() {}
            match queue.next().await {
                Ok(lease) => break lease,
                Err(e) => {
                    tracing::warn!(error = %syncsets_store::Chain(&e), "work queue unavailable; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let (reconciler, config) = (reconciler.clone(), config.clone());
        running.spawn(async move {
            work(&reconciler, lease, &config).await;
            drop(permit);
        });
    }
}

async fn work(reconciler: &Reconciler, lease: Lease, config: &Config) {
    let key = lease.key().to_string();
    let journal = config.journal.as_deref();
    note(journal, Event::Start, config.replica, &key);
    let result = tokio::select! {
        r = tokio::time::timeout(config.reconcile_timeout, reconciler.reconcile(&key)) => Some(r),
        () = lease.lost() => None,
    };
    note(journal, Event::End, config.replica, &key);
    match result {
        None => {
            tracing::warn!(cluster = %key, "lost the work item mid-reconcile (broker session ended); stopped");
            drop(lease);
        }
        Some(Ok(Ok(Next::Done))) => lease.done(),
        Some(Ok(Ok(Next::Retry(delay)))) => lease.retry(delay),
        Some(Ok(Err(e))) => {
            tracing::warn!(cluster = %key, error = %syncsets_store::Chain(&e), "reconcile failed");
            let delay = reconciler
                .health
                .record(&key, Ended::Failed(Failure::Rejected));
            lease.retry(delay.unwrap_or(Duration::from_secs(1)));
        }
        Some(Err(_)) => {
            tracing::warn!(cluster = %key, timeout = ?config.reconcile_timeout, "reconcile timed out");
            let delay = reconciler
                .health
                .record(&key, Ended::Failed(Failure::Unreachable));
            lease.retry(delay.unwrap_or(Duration::from_secs(1)));
        }
    }
}
