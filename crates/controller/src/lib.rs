//! # syncsets-controller
//!
//! Keeps every registered cluster in sync with the SyncSets and SelectorSyncSets that
//! target it, as Hive's clustersync controller does, without a Kubernetes hub:
//!
//! ```text
//!  store ─list/follow─▶ Cache (every replica) ──Effect──▶ leader (one replica, store lock)
//!                        │                                  ├─ enqueue touched clusters
//!                        │                                  ├─ schedule full reapplies
//!                        │                                  └─ write rollout summaries
//!                        ▼                                           │
//!   work queue "clustersync" (sharded; one consumer per shard) ◀─────┘
//!                        │
//!                        ▼  bounded workers, a timeout each, stopped if the lease is lost
//!   Reconciler: plan (pure) ─▶ execute (kube-rs ─▶ target cluster) ─▶ fold ─▶ ClusterSync
//! ```
//!
//! The work item is a ClusterDeployment (`namespace/name`). A shard of the queue is
//! consumed by one replica at a time and a replica never works on a key twice at once, so
//! no cluster is ever reconciled by two replicas at the same time; a replica that loses its
//! broker session stops the reconciles of that session before another can start them.

mod cache;
mod clients;
mod events;
mod health;
mod hub;
pub mod journal;
pub mod kstatus;
mod leader;
mod membership;
mod model;
mod plan;
pub mod preview;
mod reconcile;
mod rollout;
mod standing;
mod target;
mod template;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use syncsets_bus::Bus;
use syncsets_bus::follow::follow;
use syncsets_store::{Store, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use cache::{Cache, Effect};
pub use clients::{ClientSettings, Clients, Kubeconfig};
pub use health::{Health, HealthSettings};
pub use hub::{HubKind, HubWriter, MANAGER};
pub use membership::{MembershipSettings, owned_shards};
pub use model::{Cluster, ObjRef, SetDef, SetKind, cluster_key};
pub use plan::{Behavior, Plan, status_of};
pub use reconcile::{
    APPLIED_INPUTS_ANNOTATION, HubSecrets, Next, ReconcileSettings, Reconciler, full_reapply_due,
};
pub use standing::Standing;
pub use target::{Diff, FIELD_MANAGER, Failure, Target, TargetError, changed_fields, segment};

/// The work queue of cluster reconciles.
pub const QUEUE: &str = "clustersync";

/// Controller errors (of the hub side: target failures end up in ClusterSync status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error("store")]
    Store(#[source] StoreError),
    /// A hub write was refused by admission (a bug, or a schema the controller does not
    /// expect).
    #[error("admission: {0}")]
    Admission(String),
    /// A hub write kept racing other writers.
    #[error("{0} kept changing while being written")]
    Conflict(String),
    /// The bus failed.
    #[error("bus")]
    Bus(#[from] syncsets_bus::BusError),
}

impl Error {
    fn store(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Controller settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica's ordinal, recorded in `ClusterSync.status.controlledByReplica`.
    pub replica: i64,
    /// Reconciles running at once.
    pub workers: usize,
    /// Every set is reapplied to every cluster this often (plus up to 10% jitter).
    pub reapply_interval: Duration,
    /// A reconcile taking longer is abandoned (and retried).
    pub reconcile_timeout: Duration,
    /// Objects applied that are still progressing (a Deployment rolling out…) are looked
    /// at again this often until they are healthy or have failed.
    pub health_recheck: Duration,
    /// How often rollout summaries are brought up to date.
    pub summary_interval: Duration,
    /// Target clients.
    pub clients: ClientSettings,
    /// Retries and circuit breakers.
    pub health: HealthSettings,
    /// Heartbeats that spread the queue's shards over the live replicas.
    pub membership: MembershipSettings,
    /// Appends `start`/`end` lines of every reconcile here (a debugging aid; tests use it
    /// to prove that no cluster is reconciled twice at once).
    pub journal: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            replica: 0,
            workers: 64,
            reapply_interval: Duration::from_secs(2 * 3600),
            reconcile_timeout: Duration::from_secs(300),
            health_recheck: Duration::from_secs(10),
            summary_interval: Duration::from_secs(1),
            clients: ClientSettings::default(),
            health: HealthSettings::default(),
            membership: MembershipSettings::default(),
            journal: None,
        }
    }
}

/// The HELP of the controllers' metrics (recorded where they happen: `worker.rs`,
/// `leader.rs`, `health.rs`).
fn describe_metrics() {
    metrics::describe_counter!(
        "syncsets_reconciles_total",
        "Reconciles of a cluster by how they ended: done, retry, error, timeout, lease_lost, lapsed."
    );
    metrics::describe_histogram!(
        "syncsets_reconcile_duration_seconds",
        metrics::Unit::Seconds,
        "How long reconciles of a cluster took, by how they ended."
    );
    metrics::describe_counter!(
        "syncsets_applies_total",
        "Writes to target clusters, by kind of object, type (apply, createOrUpdate, createOnly, patch, delete) and result (success, error)."
    );
    metrics::describe_counter!(
        "hive_syncsetinstance_resources_applied_total",
        "Counter incremented each time we sync a resource to a remote cluster, labeled by type of apply and result (as Hive's)."
    );
    metrics::describe_histogram!(
        "hive_syncsetinstance_apply_duration_seconds",
        metrics::Unit::Seconds,
        "Time to apply individual resources in a syncset, labeled by type of apply and result (as Hive's)."
    );
    metrics::describe_histogram!(
        "hive_syncset_apply_duration_seconds",
        metrics::Unit::Seconds,
        "Time to first successfully apply syncset to a cluster (as Hive's), by the SyncSet's metrics group."
    );
    metrics::describe_histogram!(
        "hive_selectorsyncset_apply_duration_seconds",
        metrics::Unit::Seconds,
        "Time to first successfully apply each SelectorSyncSet to a new cluster (as Hive's)."
    );
    metrics::describe_histogram!(
        "hive_clustersync_first_success_duration_seconds",
        metrics::Unit::Seconds,
        "Time between cluster install complete and all syncsets applied (as Hive's)."
    );
    metrics::describe_gauge!(
        "syncsets_clusters_circuit_open",
        "Clusters behind an open circuit breaker (considered unreachable) on this replica."
    );
    metrics::describe_gauge!(
        "syncsets_set_clusters",
        "Clusters a SyncSet or SelectorSyncSet targets, by state (in_sync, failing, pending), as the leader summarises them."
    );
    metrics::describe_gauge!(
        "syncsets_set_clusters_health",
        "Clusters where a SyncSet or SelectorSyncSet is in sync, by how what it applied is doing (healthy, progressing, degraded: kstatus), as the leader summarises them."
    );
    metrics::describe_gauge!(
        "syncsets_rollout_wave",
        "The wave a set's progressive rollout is at (1 to syncsets_rollout_waves), as the leader steps it."
    );
    metrics::describe_gauge!(
        "syncsets_rollout_waves",
        "How many waves a set's progressive rollout has."
    );
    metrics::describe_gauge!(
        "syncsets_rollout_halted",
        "1 while a set's progressive rollout is halted (more clusters failed than its policy's maxFailures), else 0."
    );
}

/// The running controllers of this replica.
#[derive(Debug)]
pub struct Controller {
    reconciler: Arc<Reconciler>,
    store: Arc<dyn Store>,
    member: Option<String>,
    tasks: Vec<JoinHandle<()>>,
    /// The workers, which stop taking work when `stop` turns true.
    workers: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Controller {
    /// Loads the hub's state and starts following changes, leading (when this replica
    /// wins the store's lock) and working the queue.
    pub async fn start(store: Arc<dyn Store>, bus: Arc<dyn Bus>, config: Config) -> Result<Self> {
        describe_metrics();
        let (effects_tx, effects) = mpsc::unbounded_channel();
        // Subscribed before listing: nothing committed after the list is missed.
        let feed = bus.subscribe();
        let cache = Cache::load(store.clone(), effects_tx).await?;
        let follower = {
            let (store, cache) = (store.clone(), cache.clone());
            let start = cache.position();
            tokio::spawn(async move {
                follow(store, feed, start, |f| cache.apply(f)).await;
            })
        };
        let (events, recording) =
            events::Recorder::start(HubWriter::new(store.clone()), config.replica);
        let reconciler = Arc::new(Reconciler {
            cache: cache.clone(),
            hub: HubWriter::new(store.clone()),
            clients: Clients::new(config.clients.clone()),
            health: Health::new(config.health.clone()),
            settings: ReconcileSettings {
                replica: config.replica,
                reapply_interval: config.reapply_interval,
                health_recheck: config.health_recheck,
            },
            events,
            rechecks: Default::default(),
        });
        let queue = bus.queue(QUEUE);
        let mut tasks = vec![follower, recording];
        // With a sharded queue, the live replicas share its shards (before any work is
        // taken, so that this replica only ever consumes its own).
        let (member, standing) = if queue.shards() > 1 {
            let member = membership::Member::join(
                store.clone(),
                queue.clone(),
                config.replica,
                config.membership.clone(),
            )
            .await
            .map_err(Error::store)?;
            let (id, standing) = (member.id.clone(), member.standing());
            tasks.push(tokio::spawn(member.run()));
            (Some(id), standing)
        } else {
            (None, Arc::new(Standing::always()))
        };
        let leader = tokio::spawn(leader::run(
            reconciler.clone(),
            queue.clone(),
            effects,
            config.clone(),
        ));
        let (stop, stopping) = watch::channel(false);
        let workers = tokio::spawn(worker::run(
            reconciler.clone(),
            queue,
            config,
            standing,
            stopping,
        ));
        tasks.push(leader);
        tracing::info!(
            bus = bus.backend(),
            store = store.backend(),
            "controllers started"
        );
        Ok(Self {
            reconciler,
            store,
            member,
            tasks,
            workers: Some(workers),
            stop,
        })
    }

    /// Stops: takes no new work, lets the reconciles in flight end (for `grace` at most;
    /// those still running then are stopped, and their clusters' work stays queued), then
    /// leaves the membership at once (the other replicas take this one's shards without
    /// waiting for its heartbeat to expire).
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.send_replace(true);
        if let Some(mut workers) = self.workers.take()
            && tokio::time::timeout(grace, &mut workers).await.is_err()
        {
            tracing::warn!(
                ?grace,
                "reconciles still running after the grace period; stopping them"
            );
            workers.abort();
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(id) = self.member.take() {
            let leave = membership::leave(self.store.as_ref(), &id);
            if tokio::time::timeout(Duration::from_secs(5), leave)
                .await
                .is_err()
            {
                tracing::warn!(
                    "leaving the membership timed out: the others take this replica's shards when its heartbeat expires"
                );
            }
        }
    }

    /// The reconciler (its cache, clients and health), for inspection.
    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(&self.workers) {
            t.abort();
        }
    }
}
