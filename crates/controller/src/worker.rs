//! Working the queue: at most `workers` reconciles at once, each with a deadline, each
//! stopped the moment its lease is lost or this replica's standing lapses (another replica
//! may take the cluster then), and no new one taken while the standing does not hold.

use std::sync::Arc;
use std::time::Duration;

use syncsets_bus::{Lease, WorkQueue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::Config;
use crate::health::Ended;
use crate::journal::{Event, note, note_at};
use crate::reconcile::{Next, Reconciler};
use crate::standing::Standing;
use crate::target::Failure;

/// Runs until `stop` turns true, then waits for the reconciles in flight to end (or until
/// aborted, which stops every reconcile in flight).
pub async fn run(
    reconciler: Arc<Reconciler>,
    queue: Arc<dyn WorkQueue>,
    config: Config,
    standing: Arc<Standing>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(config.workers.max(1)));
    let mut running = JoinSet::new();
    loop {
        let taken = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => None,
            taken = take(&permits, &standing, queue.as_ref(), &mut running) => Some(taken),
        };
        let Some((permit, lease)) = taken else { break };
        let (reconciler, config, standing) = (reconciler.clone(), config.clone(), standing.clone());
        running.spawn(async move {
            work(&reconciler, lease, &config, &standing).await;
            drop(permit);
        });
    }
    tracing::info!(
        reconciles = running.len(),
        "controllers stopping: no new work taken; waiting for the reconciles in flight"
    );
    while running.join_next().await.is_some() {}
}

/// A worker's place and the next lease, once this replica's standing holds.
async fn take(
    permits: &Arc<Semaphore>,
    standing: &Standing,
    queue: &dyn WorkQueue,
    running: &mut JoinSet<()>,
) -> (OwnedSemaphorePermit, Lease) {
    let permit = permits.clone().acquire_owned().await.expect("never closed");
    standing.held().await;
    loop {
        // Reap finished reconciles while waiting, so the set does not grow.
        while running.try_join_next().is_some() {}
        match queue.next().await {
            Ok(lease) => return (permit, lease),
            Err(e) => {
                tracing::warn!(error = %syncsets_store::Chain(&e), "work queue unavailable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Why a reconcile stopped before it ended.
enum Stopped {
    /// The lease was lost: the broker session ended.
    LeaseLost,
    /// This replica's standing lapsed.
    Lapsed,
}

async fn work(reconciler: &Reconciler, lease: Lease, config: &Config, standing: &Standing) {
    let key = lease.key().to_string();
    if !standing.holds() {
        // Handed over while the standing lapsed: back to the queue, untouched.
        drop(lease);
        return;
    }
    let journal = config.journal.as_deref();
    note(journal, Event::Start, config.replica, &key);
    let started = std::time::Instant::now();
    // Biased: each time the reconcile could take a step, the standing is looked at first.
    let result = tokio::select! {
        biased;
        () = standing.lapsed() => Err(Stopped::Lapsed),
        () = lease.lost() => Err(Stopped::LeaseLost),
        r = tokio::time::timeout(config.reconcile_timeout, reconciler.reconcile(&key)) => Ok(r),
    };
    let outcome = match &result {
        Err(Stopped::Lapsed) => "lapsed",
        Err(Stopped::LeaseLost) => "lease_lost",
        Ok(Ok(Ok(Next::Done))) => "done",
        Ok(Ok(Ok(Next::Retry(_)))) => "retry",
        Ok(Ok(Ok(Next::Recheck(_)))) => "recheck",
        Ok(Ok(Err(_))) => "error",
        Ok(Err(_)) => "timeout",
    };
    metrics::histogram!("syncsets_reconcile_duration_seconds", "result" => outcome)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("syncsets_reconciles_total", "result" => outcome).increment(1);
    match &result {
        Err(Stopped::Lapsed) => {
            let lapsed = standing
                .lapses_at()
                .unwrap_or_else(std::time::SystemTime::now);
            note_at(journal, Event::End, config.replica, &key, lapsed);
        }
        _ => note(journal, Event::End, config.replica, &key),
    }
    match result {
        Err(Stopped::LeaseLost) => {
            tracing::warn!(cluster = %key, "lost the work item mid-reconcile (broker session ended); stopped");
            drop(lease);
        }
        Err(Stopped::Lapsed) => {
            tracing::warn!(cluster = %key, "this replica's standing lapsed mid-reconcile (heartbeat not stored in time); stopped");
            drop(lease);
        }
        Ok(Ok(Ok(Next::Done))) => lease.done(),
        Ok(Ok(Ok(Next::Retry(delay)))) => lease.retry(delay),
        Ok(Ok(Ok(Next::Recheck(delay)))) => lease.after(delay),
        Ok(Ok(Err(e))) => {
            tracing::warn!(cluster = %key, error = %syncsets_store::Chain(&e), "reconcile failed");
            let delay = reconciler.ended(
                &key,
                Ended::Failed(Failure::Rejected),
                "the reconcile failed",
            );
            lease.retry(delay.unwrap_or(Duration::from_secs(1)));
        }
        Ok(Err(_)) => {
            tracing::warn!(cluster = %key, timeout = ?config.reconcile_timeout, "reconcile timed out");
            let delay = reconciler.ended(
                &key,
                Ended::Failed(Failure::Unreachable),
                "the reconcile timed out",
            );
            lease.retry(delay.unwrap_or(Duration::from_secs(1)));
        }
    }
}
