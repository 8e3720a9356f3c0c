//! What one replica does for all (the one holding the store's controller lock): turns
//! changes into work items, schedules every cluster's full reapply, and keeps the rollout
//! summaries of SyncSets and SelectorSyncSets current. Every replica also drops the client
//! of a cluster whose kubeconfig changed.
//!
//! Taking the lead enqueues every cluster once: whatever happened while nobody led (or a
//! trigger the previous leader did not get to send), each cluster is looked at again, and
//! one whose sets are all applied at their generation costs two reads.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use syncsets_bus::WorkQueue;
use syncsets_store::Role;
use syncsets_types::hive::RolloutSummary;
use tokio::sync::{Notify, mpsc};

use crate::Config;
use crate::cache::Effect;
use crate::hub::HubKind;
use crate::model::SetKind;
use crate::reconcile::{Reconciler, full_reapply_due};

/// Full reapplies, by due time (unix seconds).
#[derive(Default)]
struct Schedule {
    by_time: BTreeSet<(i64, String)>,
    by_key: HashMap<String, i64>,
}

impl Schedule {
    fn set(&mut self, key: &str, due: Option<i64>) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&(old, key.to_string()));
        }
        if let Some(due) = due {
            self.by_key.insert(key.to_string(), due);
            self.by_time.insert((due, key.to_string()));
        }
    }

    /// Keys due by `now`, each rescheduled `recheck` later (until its lease moves on).
    fn due(&mut self, now: i64, recheck: i64) -> Vec<String> {
        let mut due = Vec::new();
        while let Some((t, key)) = self.by_time.first().cloned() {
            if t > now {
                break;
            }
            self.set(&key, Some(now + recheck));
            due.push(key);
        }
        due
    }
}

/// Runs until aborted.
pub async fn run(
    reconciler: Arc<Reconciler>,
    queue: Arc<dyn WorkQueue>,
    mut effects: mpsc::UnboundedReceiver<Effect>,
    config: Config,
) {
    let leading = Arc::new(AtomicBool::new(false));
    let took_lead = Arc::new(Notify::new());
    let election = tokio::spawn(elect(
        reconciler.clone(),
        leading.clone(),
        took_lead.clone(),
    ));
    let _election = AbortOnDrop(election);
    let interval = config.reapply_interval;
    let recheck = (interval.as_secs() as i64 / 10).max(60);
    let mut schedule = Schedule::default();
    let mut summaries_dirty = true;
    let mut written: HashMap<SetId, Written> = HashMap::new();
    let mut tick = tokio::time::interval(config.summary_interval);
    let mut last_summaries = tokio::time::Instant::now();
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Clusters to enqueue (kept when the bus refuses them, and tried again).
    let mut enqueue: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            first = effects.recv() => {
                let Some(first) = first else { return };
                let mut batch = vec![first];
                while let Ok(e) = effects.try_recv() {
                    batch.push(e);
                }
                let mut settled = false;
                for effect in batch {
                    match effect {
                        Effect::Enqueue(key) => {
                            enqueue.insert(key);
                        }
                        Effect::Summaries => summaries_dirty = true,
                        Effect::Settled => settled = true,
                        Effect::Lease(key, renewed) => {
                            schedule.set(&key, renewed.map(|r| full_reapply_due(&key, r, interval)));
                        }
                        Effect::Kubeconfig(key) => reconciler.clients.forget(&key),
                        Effect::Reloaded => {
                            enqueue.extend(reconciler.cache.cluster_keys());
                            schedule = rebuild(&reconciler, interval);
                            summaries_dirty = true;
                        }
                    }
                }
                // A rollout that just settled is shown soon: whoever waits for it (a
                // `kubectl wait`, a pipeline) need not wait for the next tick. Soon, not
                // at once: clusters joining one by one each settle their sets again, and
                // summaries are written at most every SETTLED_SPACING.
                if settled {
                    summaries_dirty = true;
                    tick.reset_at(
                        (last_summaries + SETTLED_SPACING).max(tokio::time::Instant::now()),
                    );
                }
            }
            () = took_lead.notified() => {
                tracing::info!("leading the controllers: looking at every cluster");
                enqueue.extend(reconciler.cache.cluster_keys());
                schedule = rebuild(&reconciler, interval);
                written.clear();
                summaries_dirty = true;
            }
            _ = tick.tick() => {
                if leading.load(Ordering::Acquire) {
                    enqueue.extend(schedule.due(jiff::Timestamp::now().as_second(), recheck));
                    crate::rollout::drive(&reconciler).await;
                    if summaries_dirty {
                        summaries_dirty = false;
                        last_summaries = tokio::time::Instant::now();
                        write_summaries(&reconciler, &mut written).await;
                    }
                }
            }
        }
        if !leading.load(Ordering::Acquire) {
            // Whoever leads next enqueues every cluster.
            enqueue.clear();
            continue;
        }
        if enqueue.is_empty() {
            continue;
        }
        let keys: Vec<String> = enqueue.iter().cloned().collect();
        match queue.enqueue_all(&keys).await {
            Ok(()) => enqueue.clear(),
            // Kept, and tried again with the next change or tick.
            Err(e) => {
                tracing::warn!(clusters = keys.len(), error = %syncsets_store::Chain(&e), "cannot enqueue clusters")
            }
        }
    }
}

/// Summaries written because a rollout settled come at most this often.
const SETTLED_SPACING: Duration = Duration::from_millis(200);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn rebuild(reconciler: &Reconciler, interval: Duration) -> Schedule {
    let mut schedule = Schedule::default();
    for (key, renewed) in reconciler.cache.leases() {
        schedule.set(&key, Some(full_reapply_due(&key, renewed, interval)));
    }
    schedule
}

/// Takes the store's controller lock, and keeps checking it is still held.
async fn elect(reconciler: Arc<Reconciler>, leading: Arc<AtomicBool>, took_lead: Arc<Notify>) {
    let store = reconciler.hub.store().clone();
    loop {
        if let Err(e) = store.lead(Role::Controller).await {
            tracing::warn!(error = %syncsets_store::Chain(&e), "cannot take the controller lead; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        leading.store(true, Ordering::Release);
        took_lead.notify_one();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !store.still_leading(Role::Controller).await {
                tracing::warn!("lost the controller lead");
                leading.store(false, Ordering::Release);
                break;
            }
        }
    }
}

/// Writes the rollout summaries that changed since last written, and those whose stored
/// status someone else has changed since (the summary is the controller's to keep).
async fn write_summaries(reconciler: &Reconciler, written: &mut HashMap<SetId, Written>) {
    let summaries = reconciler.cache.summaries();
    let live: HashSet<SetId> = summaries
        .iter()
        .map(|(s, _, _)| (s.kind, s.namespace.clone(), s.name.clone()))
        .collect();
    for gone in written.keys().filter(|k| !live.contains(*k)) {
        set_cluster_gauges(gone, None);
    }
    written.retain(|k, _| live.contains(k));
    for (set, summary, stored) in summaries {
        let id = (set.kind, set.namespace.clone(), set.name.clone());
        set_cluster_gauges(&id, Some(&summary));
        if let Some(w) = written.get(&id)
            && w.summary == summary
            && stored.as_ref() == Some(&w.stored)
        {
            continue;
        }
        let kind = HubKind::from(set.kind);
        let status: Value = serde_json::to_value(&summary).expect("summaries serialise");
        match reconciler
            .hub
            .update_status(kind, &set.namespace, &set.name, &status)
            .await
        {
            Ok(stored) => {
                written.insert(id, Written { summary, stored });
            }
            Err(e) => {
                tracing::warn!(set = %set.name, error = %syncsets_store::Chain(&e), "cannot write a rollout summary")
            }
        }
    }
}

/// The gauges of a set's clusters by state (`in_sync`, `failing`, `pending`), from its
/// summary; zero for a set that is gone. The leader writes them, as it writes summaries.
fn set_cluster_gauges((kind, namespace, name): &SetId, summary: Option<&RolloutSummary>) {
    let kind = match kind {
        SetKind::SyncSet => "SyncSet",
        SetKind::SelectorSyncSet => "SelectorSyncSet",
    };
    let count = |n: Option<i64>| n.unwrap_or(0).max(0) as f64;
    let (in_sync, failing, clusters) = summary.map_or((0.0, 0.0, 0.0), |s| {
        (count(s.in_sync), count(s.failing), count(s.clusters))
    });
    for (state, value) in [
        ("in_sync", in_sync),
        ("failing", failing),
        ("pending", (clusters - in_sync - failing).max(0.0)),
    ] {
        metrics::gauge!("syncsets_set_clusters", "kind" => kind, "namespace" => namespace.clone(),
            "name" => name.clone(), "state" => state)
        .set(value);
    }
    // Of those in sync, how what the set applied is doing (once every one's is known;
    // zero for a set that is gone).
    if summary.is_some_and(|s| s.healthy.is_none()) {
        return;
    }
    for (health, value) in [
        ("healthy", summary.and_then(|s| s.healthy)),
        ("progressing", summary.and_then(|s| s.progressing)),
        ("degraded", summary.and_then(|s| s.degraded)),
    ] {
        metrics::gauge!("syncsets_set_clusters_health", "kind" => kind,
            "namespace" => namespace.clone(), "name" => name.clone(), "health" => health)
        .set(count(value));
    }
}

/// A set: kind, namespace, name.
type SetId = (SetKind, String, String);

/// A summary the leader wrote, and the status as the hub stored it.
struct Written {
    summary: RolloutSummary,
    stored: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_reapplies_come_in_time_order_and_are_rechecked() {
        let mut s = Schedule::default();
        s.set("b", Some(20));
        s.set("a", Some(10));
        s.set("c", Some(30));
        s.set("c", None);
        assert_eq!(s.due(5, 100), Vec::<String>::new());
        assert_eq!(s.due(25, 100), ["a", "b"]);
        assert_eq!(s.due(50, 100), Vec::<String>::new(), "rescheduled");
        assert_eq!(
            s.due(125, 100),
            ["a", "b"],
            "rechecked until the lease moves on"
        );
    }
}
