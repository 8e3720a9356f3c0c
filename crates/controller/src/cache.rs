//! The controller's view of the hub: ClusterDeployments, (Selector)SyncSets, what the
//! ClusterSyncs say and when each cluster was last fully applied, kept current from the
//! change events (listed once, then followed on the bus).
//!
//! ```text
//!   store ──list──▶ Cache ◀──follow── bus feed          every replica
//!                     │ apply(event) ─▶ Effect ─▶ the leader: enqueue clusters,
//!                     │                             summarise rollouts, schedule reapplies
//!                     └ sync() before a reconcile: catches up to the store's watermark,
//!                       so a reconcile sees every change committed before it started
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use syncsets_bus::follow::{Followed, catch_up};
use syncsets_store::{EventType, ListQuery, ObjectKey, OutboxEvent, Store};
use syncsets_types::hive::{ClusterSyncStatus, RolloutSummary, SyncSetCommonSpec, UsableSets};
use syncsets_types::rollout::{
    REVISION_KIND_LABEL, REVISION_NAME_LABEL, SYSTEM_NAMESPACE, SetRollout,
};
use tokio::sync::mpsc;

use crate::model::{Cluster, SetDef, SetKind, Targets, cluster_key, resources};
use crate::rollout::{Held, Policy, admits, governing, phase};
use crate::{Error, Result};

/// How many failing clusters a rollout summary names.
pub const FAILING_NAMED: usize = 5;

/// What a change means for the controllers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A cluster needs reconciling.
    Enqueue(String),
    /// Something rollout summaries count changed.
    Summaries,
    /// A set's rollout just settled: the last of its pending clusters reported, in sync or
    /// failing. Its summary is worth writing soon rather than at the next tick.
    Settled,
    /// A cluster's last full apply changed (`None`: it has none).
    Lease(String, Option<i64>),
    /// A cluster's kubeconfig Secret changed: its client is stale.
    Kubeconfig(String),
    /// The view was rebuilt from scratch: everything may have changed.
    Reloaded,
}

/// A set's result on one cluster, as its ClusterSync reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SetResult {
    kind: SetKind,
    name: String,
    generation: i64,
    success: bool,
    health: Doing,
    /// Why it failed or is not healthy.
    why: Option<Arc<str>>,
}

/// How a set's objects are doing on a cluster (its ClusterSync's `health`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doing {
    Healthy,
    Progressing,
    Degraded,
    /// Not recorded (written before health was, or the set failed).
    Unknown,
}

impl Doing {
    fn name(self) -> Option<&'static str> {
        match self {
            Self::Healthy => Some("Healthy"),
            Self::Progressing => Some("Progressing"),
            Self::Degraded => Some("Degraded"),
            Self::Unknown => None,
        }
    }
}

impl Doing {
    fn of(health: Option<&str>) -> Self {
        match health {
            Some("Healthy") => Self::Healthy,
            Some("Progressing") => Self::Progressing,
            Some("Degraded") => Self::Degraded,
            _ => Self::Unknown,
        }
    }
}

#[derive(Default)]
struct State {
    /// Every event up to here is reflected.
    position: u64,
    clusters: HashMap<String, Arc<Cluster>>,
    syncsets: HashMap<(String, String), Arc<SetDef>>,
    /// Cluster key → names of the SyncSets naming it.
    syncset_refs: HashMap<String, BTreeSet<String>>,
    selector_syncsets: BTreeMap<String, Arc<SetDef>>,
    /// Kubeconfig Secret (namespace, name) → clusters using it.
    kubeconfigs: HashMap<(String, String), BTreeSet<String>>,
    /// Secret (namespace, name) → the SelectorSyncSets its writer may use, for Secrets
    /// that record it (see [`UsableSets`]).
    secret_records: HashMap<(String, String), UsableSets>,
    /// Cluster key → its sets' results.
    results: HashMap<String, Vec<SetResult>>,
    /// Cluster key → last full apply (unix seconds).
    leases: HashMap<String, i64>,
    /// Each set's status as stored (which anyone with `update` on the status subresource
    /// may have written), to be compared with its computed summary.
    set_statuses: HashMap<SetId, Value>,
    /// Each set's rollout as counted so far: kept current change by change (a cluster's
    /// change recounts that cluster, a set's change that set), so a summary costs nothing
    /// however large the fleet.
    tallies: HashMap<SetId, Tally>,
    /// RolloutPolicies by name.
    policies: BTreeMap<String, Arc<Policy>>,
    /// Sets' revisions kept in ControllerRevisions, by set and revision.
    revisions: HashMap<(SetId, i64), Revision>,
    /// ControllerRevision (namespace, name) → the revision it keeps.
    revision_objects: HashMap<(String, String), (SetId, i64)>,
}

/// A set's spec at one revision, as a ControllerRevision keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    /// The uid of the set it belongs to (a set made again under the same name has other
    /// revisions).
    pub owner_uid: String,
    /// The ControllerRevision's namespace and name.
    pub object: (String, String),
    /// The spec.
    pub spec: SyncSetCommonSpec,
}

/// Which revision of a set a cluster gets.
enum Gate {
    /// The set as it is.
    Current,
    /// An earlier revision: a rollout has not reached the cluster.
    At(Arc<SetDef>),
    /// Nothing of it: a rollout of a new set has not reached the cluster.
    Absent,
    /// Leave it as it is: the revision the cluster holds is not kept.
    Hold,
}

/// The sets a cluster gets, at the revision each rollout gives it.
#[derive(Debug, Default)]
pub struct Assigned {
    /// The sets to apply.
    pub sets: Vec<Arc<SetDef>>,
    /// Sets to leave as they are on the cluster (neither applied nor retired).
    pub held: Vec<(SetKind, String)>,
}

/// What the leader needs to step a governed set's rollout.
pub struct Governed {
    /// The policy.
    pub policy: Arc<Policy>,
    /// The set.
    pub set: Arc<SetDef>,
    /// The clusters it targets, with its result on each.
    pub clusters: Vec<(String, Arc<Cluster>, Option<Held>)>,
    /// Some cluster has a result for it.
    pub any_held: bool,
    /// The revisions kept for it.
    pub revisions: BTreeMap<i64, Revision>,
}

/// A set: its kind, namespace and name.
type SetId = (SetKind, String, String);

fn set_id(set: &SetDef) -> SetId {
    (set.kind, set.namespace.clone(), set.name.clone())
}

/// Where a set stands on one cluster it targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counted {
    /// Its current generation was applied successfully; its objects are doing so.
    InSync(Doing),
    /// Applying it failed.
    Failing,
    /// Neither yet.
    Pending,
}

/// A set's rollout: the clusters it targets, and how it stands on them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tally {
    clusters: i64,
    in_sync: i64,
    /// Of those in sync: healthy, progressing, degraded, not recorded (by an earlier
    /// version, until the next apply).
    healthy: i64,
    progressing: i64,
    degraded: i64,
    unknown: i64,
    /// Failing clusters' keys, sorted.
    failing: BTreeSet<String>,
}

impl Tally {
    fn count(&mut self, cluster: &str, counted: Counted, add: bool) {
        let step = if add { 1 } else { -1 };
        self.clusters += step;
        match counted {
            Counted::InSync(doing) => {
                self.in_sync += step;
                match doing {
                    Doing::Healthy => self.healthy += step,
                    Doing::Progressing => self.progressing += step,
                    Doing::Degraded => self.degraded += step,
                    Doing::Unknown => self.unknown += step,
                }
            }
            Counted::Failing if add => {
                self.failing.insert(cluster.to_string());
            }
            Counted::Failing => {
                self.failing.remove(cluster);
            }
            Counted::Pending => {}
        }
    }

    /// Clusters neither in sync nor failing.
    fn pending(&self) -> i64 {
        self.clusters - self.in_sync - self.failing.len() as i64
    }

    fn summary(&self, generation: i64) -> RolloutSummary {
        RolloutSummary {
            observed_generation: Some(generation),
            clusters: Some(self.clusters),
            in_sync: Some(self.in_sync),
            failing: Some(self.failing.len() as i64),
            failing_clusters: self.failing.iter().take(FAILING_NAMED).cloned().collect(),
            // Counts that leave clusters out would mislead: none until every cluster in
            // sync has its health recorded.
            healthy: (self.unknown == 0).then_some(self.healthy),
            progressing: (self.unknown == 0).then_some(self.progressing),
            degraded: (self.unknown == 0).then_some(self.degraded),
            ..RolloutSummary::default()
        }
    }
}

/// The hub as the controllers see it.
pub struct Cache {
    store: Arc<dyn Store>,
    state: RwLock<State>,
    catching_up: tokio::sync::Mutex<()>,
    /// The position, for those waiting for the follower to reach one.
    advanced: tokio::sync::watch::Sender<u64>,
    effects: mpsc::UnboundedSender<Effect>,
}

/// How long a reconcile waits for the follower to reach the store's watermark before it
/// reads the outbox itself.
const FOLLOW_WAIT: Duration = Duration::from_millis(250);

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

/// Unix seconds of an RFC 3339 timestamp.
pub fn unix_seconds(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

impl Cache {
    /// Lists the hub's objects; changes after that reach the cache through
    /// [`Cache::apply`] (or [`Cache::sync`]). Effects are sent to `effects`.
    pub async fn load(
        store: Arc<dyn Store>,
        effects: mpsc::UnboundedSender<Effect>,
    ) -> Result<Arc<Self>> {
        let cache = Arc::new(Self {
            store,
            state: RwLock::new(State::default()),
            catching_up: tokio::sync::Mutex::new(()),
            advanced: tokio::sync::watch::channel(0).0,
            effects,
        });
        cache.reload().await?;
        Ok(cache)
    }

    /// Rebuilds the view from lists.
    async fn reload(&self) -> Result<()> {
        let store = &self.store;
        let position = store.watermark().await.map_err(Error::store)?;
        let mut state = State {
            position,
            ..State::default()
        };
        for resource in [
            resources::CLUSTER_DEPLOYMENTS,
            resources::SYNCSETS,
            resources::SELECTOR_SYNCSETS,
            resources::CLUSTER_SYNCS,
            resources::CLUSTER_SYNC_LEASES,
            // For the SelectorSyncSets their writers may use (kubeconfigs).
            resources::SECRETS,
            resources::ROLLOUT_POLICIES,
            resources::CONTROLLER_REVISIONS,
        ] {
            let q = ListQuery {
                cluster: String::new(),
                resource: resource.to_string(),
                ..ListQuery::default()
            };
            let page = store.list(&q).await.map_err(Error::store)?;
            for raw in page.items {
                let stored = raw.parse().map_err(Error::store)?;
                let key = ObjectKey::new("", resource, &raw.namespace, &raw.name);
                state.put(&key, Some(&stored.object), &mut |_| {});
            }
        }
        *self.state.write().expect("cache lock") = state;
        self.advanced.send_replace(position);
        let _ = self.effects.send(Effect::Reloaded);
        Ok(())
    }

    /// The resourceVersion up to which the view is current.
    pub fn position(&self) -> u64 {
        self.state.read().expect("cache lock").position
    }

    /// Applies a followed change (older or repeated changes are ignored).
    pub fn apply(&self, followed: Followed<'_>) {
        match followed {
            Followed::Event(event) => self.apply_event(event),
            Followed::Gap { from } => {
                tracing::warn!(
                    from,
                    "changes were compacted before the controller read them; reloading"
                );
                // Marked stale: the next sync() reloads.
                self.state.write().expect("cache lock").position = 0;
                self.advanced.send_replace(0);
            }
        }
    }

    fn apply_event(&self, event: &OutboxEvent) {
        if !event.key.cluster.is_empty() || !interesting(&event.key.resource) {
            let mut state = self.state.write().expect("cache lock");
            if event.rv > state.position {
                state.position = event.rv;
                self.advanced.send_replace(event.rv);
            }
            return;
        }
        let object = match self.store.open_event(event) {
            Ok(opened) => opened.object,
            Err(e) => {
                tracing::error!(rv = event.rv, error = %syncsets_store::Chain(&e), "cannot open a change event");
                return;
            }
        };
        let mut state = self.state.write().expect("cache lock");
        if event.rv <= state.position {
            return;
        }
        state.position = event.rv;
        self.advanced.send_replace(event.rv);
        let live = (event.kind != EventType::Deleted).then_some(&object);
        let effects = &self.effects;
        state.put(&event.key, live, &mut |e| {
            let _ = effects.send(e);
        });
    }

    /// Catches up with every change committed before now, so that what follows sees them:
    /// usually by waiting for the follower (a few milliseconds behind), else by reading the
    /// outbox.
    pub async fn sync(&self) -> Result<()> {
        let watermark = self.store.watermark().await.map_err(Error::store)?;
        if self.position() >= watermark {
            return Ok(());
        }
        let mut advanced = self.advanced.subscribe();
        let reached = async { advanced.wait_for(|p| *p >= watermark).await.is_ok() };
        if tokio::time::timeout(FOLLOW_WAIT, reached).await == Ok(true) {
            return Ok(());
        }
        let _one_at_a_time = self.catching_up.lock().await;
        let position = self.position();
        if position >= watermark {
            return Ok(());
        }
        if position == 0 {
            return self.reload().await;
        }
        let mut gap = false;
        catch_up(self.store.as_ref(), position, &mut |f| match f {
            Followed::Event(e) => self.apply_event(e),
            Followed::Gap { .. } => gap = true,
        })
        .await;
        if gap {
            return self.reload().await;
        }
        let mut state = self.state.write().expect("cache lock");
        state.position = state.position.max(watermark);
        self.advanced.send_replace(state.position);
        Ok(())
    }

    /// A cluster by key.
    pub fn cluster(&self, key: &str) -> Option<Arc<Cluster>> {
        self.state
            .read()
            .expect("cache lock")
            .clusters
            .get(key)
            .cloned()
    }

    /// The key of every cluster, and of every ClusterSync or lease whose cluster is gone
    /// (reconciling those removes them).
    pub fn cluster_keys(&self) -> Vec<String> {
        let state = self.state.read().expect("cache lock");
        let mut keys: BTreeSet<&String> = state.clusters.keys().collect();
        keys.extend(state.results.keys());
        keys.extend(state.leases.keys());
        keys.into_iter().cloned().collect()
    }

    /// The sets that apply to a cluster, each as it is now.
    pub fn sets_for(&self, cluster: &Cluster) -> Vec<Arc<SetDef>> {
        let state = self.state.read().expect("cache lock");
        state.sets_for(cluster, &cluster.key()).cloned().collect()
    }

    /// The sets that apply to a cluster, each at the revision its rollout gives the
    /// cluster now.
    pub fn assigned(&self, cluster: &Cluster) -> Assigned {
        let state = self.state.read().expect("cache lock");
        let ck = cluster.key();
        let mut assigned = Assigned::default();
        for set in state.sets_for(cluster, &ck) {
            match state.gate(set, cluster, &ck) {
                Gate::Current => assigned.sets.push(set.clone()),
                Gate::At(at) => assigned.sets.push(at),
                Gate::Absent => {}
                Gate::Hold => assigned.held.push((set.kind, set.name.clone())),
            }
        }
        assigned
    }

    /// Every set a RolloutPolicy governs, with what stepping its rollout needs.
    pub fn governed(&self) -> Vec<Governed> {
        let state = self.state.read().expect("cache lock");
        let mut out = Vec::new();
        for set in state.live_sets() {
            let Some(policy) = governing(state.policies.values(), set) else {
                continue;
            };
            let id = set_id(set);
            let mut any_held = false;
            let mut clusters = Vec::new();
            for (ck, c) in &state.clusters {
                let result = state
                    .results
                    .get(ck)
                    .and_then(|rs| rs.iter().find(|r| r.kind == set.kind && r.name == set.name));
                any_held |= result.is_some();
                if c.skip_reason().is_some() || !set.applies_to(c) {
                    continue;
                }
                let held = result.map(|r| Held {
                    generation: r.generation,
                    success: r.success,
                    health: r.health.name(),
                    why: r.why.clone(),
                });
                clusters.push((ck.clone(), c.clone(), held));
            }
            clusters.sort_by(|a, b| a.0.cmp(&b.0));
            let revisions = state
                .revisions
                .iter()
                .filter(|((rid, _), rev)| *rid == id && rev.owner_uid == set.uid)
                .map(|((_, g), rev)| (*g, rev.clone()))
                .collect();
            out.push(Governed {
                policy: policy.clone(),
                set: set.clone(),
                clusters,
                any_held,
                revisions,
            });
        }
        out
    }

    /// Every RolloutPolicy.
    pub fn policies(&self) -> Vec<Arc<Policy>> {
        let state = self.state.read().expect("cache lock");
        state.policies.values().cloned().collect()
    }

    /// The ControllerRevisions kept for sets that are gone or made again (to delete).
    pub fn orphan_revisions(&self) -> Vec<(String, String)> {
        let state = self.state.read().expect("cache lock");
        state
            .revisions
            .iter()
            .filter(|((id, _), rev)| state.set(id).is_none_or(|s| s.uid != rev.owner_uid))
            .map(|(_, rev)| rev.object.clone())
            .collect()
    }

    /// Last full apply of every cluster that has one (unix seconds).
    pub fn leases(&self) -> HashMap<String, i64> {
        self.state.read().expect("cache lock").leases.clone()
    }

    /// Every set with its rollout summary as of now, and its status as stored.
    pub fn summaries(&self) -> Vec<(Arc<SetDef>, RolloutSummary, Option<Value>)> {
        let state = self.state.read().expect("cache lock");
        state
            .live_sets()
            .map(|set| {
                let id = set_id(set);
                let stored = state.set_statuses.get(&id).cloned();
                let tally = state.tallies.get(&id).cloned().unwrap_or_default();
                let mut summary = tally.summary(set.generation);
                if let Some(policy) =
                    governing(state.policies.values(), set).filter(|p| p.progressive.is_some())
                {
                    summary.rollout_policy = Some(policy.name.clone());
                    if let Some(r) = policy
                        .rollouts
                        .get(&id)
                        .filter(|r| r.revision == set.generation)
                    {
                        summary.rollout_phase = Some(r.phase.clone());
                        summary.rollout_wave = Some(format!("{}/{}", r.wave, r.waves.len()));
                    }
                }
                (set.clone(), summary, stored)
            })
            .collect()
    }
}

/// Resources the controller follows.
fn interesting(resource: &str) -> bool {
    matches!(
        resource,
        resources::CLUSTER_DEPLOYMENTS
            | resources::SYNCSETS
            | resources::SELECTOR_SYNCSETS
            | resources::CLUSTER_SYNCS
            | resources::CLUSTER_SYNC_LEASES
            | resources::SECRETS
            | resources::ROLLOUT_POLICIES
            | resources::CONTROLLER_REVISIONS
    )
}

impl State {
    /// Records an object's new state (`None`: deleted), reporting what that means, and
    /// recounts the rollouts it can change.
    fn put(&mut self, key: &ObjectKey, object: Option<&Value>, emit: &mut impl FnMut(Effect)) {
        match key.resource.as_str() {
            resources::CLUSTER_DEPLOYMENTS | resources::CLUSTER_SYNCS => {
                let ck = cluster_key(&key.namespace, &key.name);
                let before = self.count_cluster(&ck, false);
                self.record(key, object, emit);
                let after = self.count_cluster(&ck, true);
                let before: HashMap<SetId, i64> = before.into_iter().collect();
                let settled = after
                    .iter()
                    .any(|(id, pending)| *pending == 0 && before.get(id).is_some_and(|p| *p > 0));
                if settled {
                    emit(Effect::Settled);
                }
            }
            resources::SYNCSETS | resources::SELECTOR_SYNCSETS => {
                let kind = SetKind::of_resource(&key.resource).expect("a set's resource");
                let id = (kind, key.namespace.clone(), key.name.clone());
                let before = self.set(&id);
                self.record(key, object, emit);
                let after = self.set(&id);
                // A new status (the leader's summaries, each tick) changes no tally.
                if before != after {
                    match after {
                        Some(set) => {
                            let tally = self.recount(&set);
                            self.tallies.insert(id, tally);
                        }
                        None => {
                            self.tallies.remove(&id);
                        }
                    }
                }
            }
            resources::SECRETS => {
                // Its record decides which sets its clusters may be attached to.
                let users: Vec<String> = self
                    .kubeconfigs
                    .get(&(key.namespace.clone(), key.name.clone()))
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                for ck in &users {
                    self.count_cluster(ck, false);
                }
                self.record(key, object, emit);
                for ck in &users {
                    self.count_cluster(ck, true);
                }
            }
            _ => self.record(key, object, emit),
        }
    }

    /// Every set not being deleted.
    fn live_sets(&self) -> impl Iterator<Item = &Arc<SetDef>> {
        self.syncsets
            .values()
            .chain(self.selector_syncsets.values())
            .filter(|s| !s.deleting)
    }

    /// A set's definition.
    fn set(&self, (kind, namespace, name): &SetId) -> Option<Arc<SetDef>> {
        match kind {
            SetKind::SyncSet => self.syncsets.get(&(namespace.clone(), name.clone())),
            SetKind::SelectorSyncSet => self.selector_syncsets.get(name),
        }
        .cloned()
    }

    /// Which revision of `set` (which applies to it) the cluster `ck` gets: the current one
    /// without a progressive policy, or once its rollout reached the cluster; else the one
    /// the cluster holds, else the one the rollout started from.
    fn gate(&self, set: &Arc<SetDef>, cluster: &Cluster, ck: &str) -> Gate {
        let Some(policy) = governing(self.policies.values(), set) else {
            return Gate::Current;
        };
        let Some(params) = &policy.progressive else {
            return Gate::Current;
        };
        let id = set_id(set);
        let rollout: Option<&SetRollout> = policy
            .rollouts
            .get(&id)
            .filter(|r| r.uid.as_deref().is_none_or(|u| u == set.uid));
        if let Some(r) = rollout
            && r.revision == set.generation
            && admits(params, r, ck, cluster)
        {
            return Gate::Current;
        }
        // Not reached: the cluster keeps the revision it holds (or last tried: a failed
        // apply still records what Sync mode may delete), else gets the one the rollout
        // started from; nothing only when it has never had the set.
        let held = self
            .results
            .get(ck)
            .and_then(|rs| rs.iter().find(|r| r.kind == set.kind && r.name == set.name))
            .map(|r| r.generation);
        let from = match rollout {
            Some(r) if r.revision != set.generation && r.phase == phase::COMPLETE => {
                Some(r.revision)
            }
            Some(r) => r.from_revision,
            None => None,
        };
        match held.or(from) {
            Some(g) if g == set.generation => Gate::Current,
            Some(g) => match self
                .revisions
                .get(&(id, g))
                .filter(|rev| rev.owner_uid == set.uid)
            {
                Some(rev) => Gate::At(Arc::new(set.at_revision(g, rev.spec.clone()))),
                None => Gate::Hold,
            },
            None => Gate::Absent,
        }
    }

    /// The clusters a set applies to.
    fn enqueue_set(&self, set: &SetDef, emit: &mut impl FnMut(Effect)) {
        for c in self.clusters.values().filter(|c| set.applies_to(c)) {
            emit(Effect::Enqueue(c.key()));
        }
    }

    /// Where `set` stands on the cluster `ck` (`None`: it does not target it).
    fn counted(&self, set: &SetDef, cluster: &Cluster, ck: &str) -> Option<Counted> {
        if cluster.skip_reason().is_some() || !set.applies_to(cluster) {
            return None;
        }
        let result = self
            .results
            .get(ck)
            .and_then(|rs| rs.iter().find(|r| r.kind == set.kind && r.name == set.name));
        Some(match result {
            Some(r) if !r.success => Counted::Failing,
            Some(r) if r.generation == set.generation => Counted::InSync(r.health),
            _ => Counted::Pending,
        })
    }

    /// The sets that apply to `cluster` (whose key is `ck`): the SyncSets naming it, the
    /// SelectorSyncSets selecting it.
    fn sets_for<'a>(
        &'a self,
        cluster: &'a Cluster,
        ck: &str,
    ) -> impl Iterator<Item = &'a Arc<SetDef>> + 'a {
        let named = self
            .syncset_refs
            .get(ck)
            .into_iter()
            .flatten()
            .filter_map(|name| {
                self.syncsets
                    .get(&(cluster.namespace.clone(), name.clone()))
            });
        named
            .chain(self.selector_syncsets.values())
            .filter(|s| s.applies_to(cluster))
    }

    /// Adds the cluster `ck` to the tallies of the sets targeting it, or takes it out.
    /// Returns those sets with how many of their clusters were pending: before taking it
    /// out, after adding it.
    fn count_cluster(&mut self, ck: &str, add: bool) -> Vec<(SetId, i64)> {
        let Some(cluster) = self.clusters.get(ck) else {
            return Vec::new();
        };
        let counts: Vec<(SetId, Counted)> = self
            .sets_for(cluster, ck)
            .filter_map(|set| Some((set_id(set), self.counted(set, cluster, ck)?)))
            .collect();
        let mut pending = Vec::with_capacity(counts.len());
        for (id, counted) in counts {
            let tally = self.tallies.entry(id.clone()).or_default();
            let before = tally.pending();
            tally.count(ck, counted, add);
            pending.push((id, if add { tally.pending() } else { before }));
        }
        pending
    }

    /// A set's rollout counted afresh over every cluster it targets.
    fn recount(&self, set: &SetDef) -> Tally {
        let mut tally = Tally::default();
        let mut count = |ck: &str, c: &Cluster| {
            if let Some(counted) = self.counted(set, c, ck) {
                tally.count(ck, counted, true);
            }
        };
        match &set.targets {
            Targets::Refs(names) => {
                for name in names.iter().collect::<BTreeSet<_>>() {
                    let ck = cluster_key(&set.namespace, name);
                    if let Some(c) = self.clusters.get(&ck) {
                        count(&ck, c);
                    }
                }
            }
            Targets::Selector(_) => {
                for (ck, c) in &self.clusters {
                    count(ck, c);
                }
            }
        }
        tally
    }

    /// Records an object's new state (`None`: deleted), reporting what that means.
    fn record(&mut self, key: &ObjectKey, object: Option<&Value>, emit: &mut impl FnMut(Effect)) {
        let ck = cluster_key(&key.namespace, &key.name);
        match key.resource.as_str() {
            resources::CLUSTER_DEPLOYMENTS => {
                let new = object.map(|o| {
                    let mut cluster = Cluster::from_object(o);
                    cluster.kubeconfig_usable_sets = cluster
                        .kubeconfig_secret
                        .as_ref()
                        .and_then(|s| self.secret_records.get(&(key.namespace.clone(), s.clone())))
                        .cloned()
                        .unwrap_or_default();
                    Arc::new(cluster)
                });
                let old = match &new {
                    Some(c) => self.clusters.insert(ck.clone(), c.clone()),
                    None => self.clusters.remove(&ck),
                };
                if old.as_ref() == new.as_ref() {
                    return;
                }
                let secret_of = |c: &Option<Arc<Cluster>>| {
                    c.as_ref()
                        .and_then(|c| c.kubeconfig_secret.clone())
                        .map(|s| (key.namespace.clone(), s))
                };
                let (old_secret, new_secret) = (secret_of(&old), secret_of(&new));
                if old_secret != new_secret {
                    if let Some(s) = &old_secret
                        && let Some(users) = self.kubeconfigs.get_mut(s)
                    {
                        users.remove(&ck);
                        if users.is_empty() {
                            self.kubeconfigs.remove(s);
                        }
                    }
                    if let Some(s) = new_secret {
                        self.kubeconfigs.entry(s).or_default().insert(ck.clone());
                    }
                    emit(Effect::Kubeconfig(ck.clone()));
                }
                emit(Effect::Enqueue(ck));
                emit(Effect::Summaries);
            }
            resources::SYNCSETS | resources::SELECTOR_SYNCSETS => {
                let kind = SetKind::of_resource(&key.resource).expect("a set's resource");
                let new = object
                    .and_then(|o| SetDef::from_object(kind, o))
                    .map(Arc::new);
                let status_id = (kind, key.namespace.clone(), key.name.clone());
                let status = object.and_then(|o| o.get("status")).cloned();
                let status_changed = match status {
                    Some(s) => self.set_statuses.insert(status_id, s.clone()) != Some(s),
                    None => self.set_statuses.remove(&status_id).is_some(),
                };
                if status_changed {
                    emit(Effect::Summaries);
                }
                let id = (key.namespace.clone(), key.name.clone());
                let old = match (&new, kind) {
                    (Some(s), SetKind::SyncSet) => self.syncsets.insert(id, s.clone()),
                    (None, SetKind::SyncSet) => self.syncsets.remove(&id),
                    (Some(s), SetKind::SelectorSyncSet) => {
                        self.selector_syncsets.insert(key.name.clone(), s.clone())
                    }
                    (None, SetKind::SelectorSyncSet) => self.selector_syncsets.remove(&key.name),
                };
                if old.as_ref() == new.as_ref() {
                    return;
                }
                if kind == SetKind::SyncSet {
                    self.index_refs(&key.namespace, &key.name, old.as_deref(), new.as_deref());
                }
                // Clusters it applied to before or applies to now.
                for c in self.clusters.values() {
                    if old.as_ref().is_some_and(|s| s.applies_to(c))
                        || new.as_ref().is_some_and(|s| s.applies_to(c))
                    {
                        emit(Effect::Enqueue(c.key()));
                    }
                }
                emit(Effect::Summaries);
            }
            resources::SECRETS => {
                let id = (key.namespace.clone(), key.name.clone());
                let record = object
                    .map(|o| UsableSets::of(&o["metadata"]["annotations"]))
                    .unwrap_or_default();
                let old_record = match record {
                    UsableSets::Any => self.secret_records.remove(&id),
                    ref only => self.secret_records.insert(id.clone(), only.clone()),
                }
                .unwrap_or_default();
                if old_record != record {
                    // The sets its users may be attached to changed.
                    for c in self.kubeconfigs.get(&id).into_iter().flatten() {
                        if let Some(cluster) = self.clusters.get_mut(c) {
                            Arc::make_mut(cluster).kubeconfig_usable_sets = record.clone();
                        }
                    }
                    emit(Effect::Summaries);
                }
                if let Some(users) = self.kubeconfigs.get(&id) {
                    for c in users {
                        emit(Effect::Kubeconfig(c.clone()));
                        emit(Effect::Enqueue(c.clone()));
                    }
                }
                // Clusters of the sets that copy it.
                let sets = self
                    .syncsets
                    .values()
                    .chain(self.selector_syncsets.values());
                for set in sets.filter(|s| s.source_secrets().any(|src| src == id)) {
                    for c in self.clusters.values().filter(|c| set.applies_to(c)) {
                        emit(Effect::Enqueue(c.key()));
                    }
                }
            }
            resources::CLUSTER_SYNCS => {
                let results = object.map(results_of).unwrap_or_default();
                let changed = if results.is_empty() {
                    self.results.remove(&ck).is_some()
                } else {
                    self.results.insert(ck.clone(), results.clone()) != Some(results)
                };
                if changed {
                    emit(Effect::Summaries);
                }
                if object.is_none() && self.clusters.contains_key(&ck) {
                    emit(Effect::Enqueue(ck)); // deleted by someone: recreate it
                }
            }
            resources::ROLLOUT_POLICIES => {
                let new = object.and_then(Policy::from_object).map(Arc::new);
                let old = match &new {
                    Some(p) => self.policies.insert(key.name.clone(), p.clone()),
                    None => self.policies.remove(&key.name),
                };
                if old == new {
                    return;
                }
                emit(Effect::Summaries);
                // What decides which revision clusters get, per set.
                let gating = |p: &Option<Arc<Policy>>, set: &SetDef| {
                    p.as_ref().filter(|p| p.governs(set)).map(|p| {
                        let r = p.rollouts.get(&set_id(set));
                        (
                            p.progressive.clone(),
                            r.map(|r| (r.revision, r.from_revision, r.wave, r.phase.clone())),
                        )
                    })
                };
                let sets: Vec<Arc<SetDef>> = self
                    .syncsets
                    .values()
                    .chain(self.selector_syncsets.values())
                    .cloned()
                    .collect();
                for set in sets {
                    if gating(&old, &set) != gating(&new, &set) {
                        self.enqueue_set(&set, emit);
                    }
                }
            }
            resources::CONTROLLER_REVISIONS => {
                let object_id = (key.namespace.clone(), key.name.clone());
                let new = object.and_then(|o| revision_of(&key.namespace, &key.name, o));
                let old = self.revision_objects.remove(&object_id);
                if let Some(old) = &old {
                    self.revisions.remove(old);
                }
                if let Some((at, rev)) = new {
                    self.revision_objects.insert(object_id, at.clone());
                    // Clusters held for want of it may go on.
                    if let Some(set) = self.set(&at.0) {
                        self.enqueue_set(&set, emit);
                    }
                    self.revisions.insert(at, rev);
                }
            }
            resources::CLUSTER_SYNC_LEASES => {
                let renewed =
                    object.and_then(|o| o["spec"]["renewTime"].as_str().and_then(unix_seconds));
                let old = match renewed {
                    Some(t) => self.leases.insert(ck.clone(), t),
                    None => self.leases.remove(&ck),
                };
                if old != renewed {
                    emit(Effect::Lease(ck.clone(), renewed));
                }
                if object.is_none() && self.clusters.contains_key(&ck) {
                    // Deleting the lease asks for a full reapply now.
                    emit(Effect::Enqueue(ck));
                }
            }
            _ => {}
        }
    }

    fn index_refs(
        &mut self,
        namespace: &str,
        name: &str,
        old: Option<&SetDef>,
        new: Option<&SetDef>,
    ) {
        let refs = |s: Option<&SetDef>| -> Vec<String> {
            match s.map(|s| &s.targets) {
                Some(Targets::Refs(r)) => r.clone(),
                _ => Vec::new(),
            }
        };
        for cd in refs(old) {
            let ck = cluster_key(namespace, &cd);
            if let Some(names) = self.syncset_refs.get_mut(&ck) {
                names.remove(name);
                if names.is_empty() {
                    self.syncset_refs.remove(&ck);
                }
            }
        }
        for cd in refs(new) {
            self.syncset_refs
                .entry(cluster_key(namespace, &cd))
                .or_default()
                .insert(name.to_string());
        }
    }
}

/// The set revision a ControllerRevision keeps, if it keeps one: labelled with its set,
/// in its SyncSet's namespace or, for a SelectorSyncSet, in [`SYSTEM_NAMESPACE`].
fn revision_of(namespace: &str, name: &str, object: &Value) -> Option<((SetId, i64), Revision)> {
    let labels = &object["metadata"]["labels"];
    let kind = SetKind::of_name(labels[REVISION_KIND_LABEL].as_str()?)?;
    if kind == SetKind::SelectorSyncSet && namespace != SYSTEM_NAMESPACE {
        return None;
    }
    let set_name = labels[REVISION_NAME_LABEL].as_str()?.to_string();
    let set_namespace = match kind {
        SetKind::SyncSet => namespace.to_string(),
        SetKind::SelectorSyncSet => String::new(),
    };
    let owner_uid = object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["kind"] == kind.as_str() && o["name"] == set_name.as_str())?["uid"]
        .as_str()?
        .to_string();
    let spec: SyncSetCommonSpec = serde_json::from_value(object["data"]["spec"].clone()).ok()?;
    let revision = object["revision"].as_i64()?;
    // One object per revision, named as the controllers name it.
    if name != crate::rollout::revision_name(kind, &set_name, revision) {
        return None;
    }
    Some((
        ((kind, set_namespace, set_name), revision),
        Revision {
            owner_uid,
            object: (namespace.to_string(), name.to_string()),
            spec,
        },
    ))
}

/// The per-set results of a ClusterSync.
fn results_of(object: &Value) -> Vec<SetResult> {
    let Ok(status) = serde_json::from_value::<ClusterSyncStatus>(object["status"].clone()) else {
        return Vec::new();
    };
    let mut results = Vec::new();
    for (kind, list) in [
        (SetKind::SyncSet, &status.sync_sets),
        (SetKind::SelectorSyncSet, &status.selector_sync_sets),
    ] {
        results.extend(list.iter().map(|s| {
            SetResult {
                kind,
                name: s.name.clone(),
                generation: s.observed_generation,
                success: s.result == "Success",
                health: Doing::of(s.health.as_deref()),
                why: s
                    .failure_message
                    .clone()
                    .or_else(|| {
                        s.unhealthy_resources.first().map(|u| {
                            let r = &u.resource;
                            let ns = r
                                .namespace
                                .as_deref()
                                .map_or(String::new(), |n| format!("{n}/"));
                            format!(
                                "{} {ns}{}: {}",
                                r.kind.as_deref().unwrap_or_default(),
                                r.name,
                                u.message
                            )
                        })
                    })
                    .map(Arc::from),
            }
        }));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use syncsets_store::MemoryStore;

    fn cd(name: &str, env: &str) -> Value {
        json!({"apiVersion": "hive.openshift.io/v1", "kind": "ClusterDeployment",
               "metadata": {"name": name, "namespace": "fleet", "labels": {"env": env}},
               "spec": {"installed": true, "clusterMetadata": {"adminKubeconfigSecretRef": {"name": format!("{name}-kc")}}}})
    }

    fn sss(name: &str, env: &str, generation: i64) -> Value {
        json!({"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet",
               "metadata": {"name": name, "generation": generation},
               "spec": {"clusterDeploymentSelector": {"matchLabels": {"env": env}}}})
    }

    async fn put(store: &dyn Store, resource: &str, ns: &str, obj: Value) {
        let key = ObjectKey::new("", resource, ns, obj["metadata"]["name"].as_str().unwrap());
        match store.get(&key).await.unwrap() {
            Some(cur) => store.update(&key, &obj, cur.rv).await.map(drop).unwrap(),
            None => store.create(&key, &obj, false).await.map(drop).unwrap(),
        }
    }

    /// A store with these clusters (name, env) and SelectorSyncSet `s` of `generation`
    /// for env `prod`.
    async fn rollout(clusters: &[(&str, &str)], generation: i64) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for (n, env) in clusters {
            put(
                store.as_ref(),
                resources::CLUSTER_DEPLOYMENTS,
                "fleet",
                cd(n, env),
            )
            .await;
        }
        let set = sss("s", "prod", generation);
        put(store.as_ref(), resources::SELECTOR_SYNCSETS, "", set).await;
        store
    }

    /// Cluster `n`'s ClusterSync saying how set `s` of `generation` went.
    fn cluster_sync(n: &str, result: &str, generation: i64) -> Value {
        json!({"apiVersion": "hiveinternal.openshift.io/v1alpha1", "kind": "ClusterSync",
            "metadata": {"name": n, "namespace": "fleet"},
            "status": {"syncSets": [], "selectorSyncSets": [{"name": "s",
                "observedGeneration": generation, "result": result,
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Effect>) -> Vec<Effect> {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(e);
        }
        out
    }

    /// A kubeconfig Secret's record of the sets its writer may use, as loaded from lists
    /// (start, failover, a gap) and as followed.
    #[tokio::test]
    async fn a_kubeconfig_secret_record_limits_its_clusters_sets_after_a_reload_too() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let secret = |record: Option<&str>| {
            let mut s = json!({"apiVersion": "v1", "kind": "Secret",
                               "metadata": {"name": "a-kc", "namespace": "fleet"}});
            if let Some(r) = record {
                s["metadata"]["annotations"] = json!({USABLE: r});
            }
            s
        };
        put(
            store.as_ref(),
            resources::SECRETS,
            "fleet",
            secret(Some("other")),
        )
        .await;
        put(
            store.as_ref(),
            resources::CLUSTER_DEPLOYMENTS,
            "fleet",
            cd("a", "prod"),
        )
        .await;
        for name in ["platform", "other"] {
            put(
                store.as_ref(),
                resources::SELECTOR_SYNCSETS,
                "",
                sss(name, "prod", 1),
            )
            .await;
        }
        let (tx, _rx) = mpsc::unbounded_channel();
        let cache = Cache::load(store.clone(), tx).await.unwrap();
        let names = |cache: &Cache| {
            let a = cache.cluster("fleet/a").unwrap();
            cache
                .sets_for(&a)
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&cache), ["other"]);
        // An administrator vouches for the Secret: every set.
        put(store.as_ref(), resources::SECRETS, "fleet", secret(None)).await;
        cache.sync().await.unwrap();
        assert_eq!(names(&cache), ["other", "platform"]);
        put(
            store.as_ref(),
            resources::SECRETS,
            "fleet",
            secret(Some("")),
        )
        .await;
        cache.sync().await.unwrap();
        assert_eq!(names(&cache), Vec::<String>::new());
    }

    const USABLE: &str = syncsets_types::hive::USABLE_SETS_ANNOTATION;

    #[tokio::test]
    async fn follows_changes_and_says_which_clusters_they_touch() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        put(
            store.as_ref(),
            resources::CLUSTER_DEPLOYMENTS,
            "fleet",
            cd("a", "prod"),
        )
        .await;
        put(
            store.as_ref(),
            resources::CLUSTER_DEPLOYMENTS,
            "fleet",
            cd("b", "dev"),
        )
        .await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cache = Cache::load(store.clone(), tx).await.unwrap();
        assert_eq!(drain(&mut rx), vec![Effect::Reloaded]);
        assert_eq!(cache.cluster_keys().len(), 2);

        put(
            store.as_ref(),
            resources::SELECTOR_SYNCSETS,
            "",
            sss("s", "prod", 1),
        )
        .await;
        cache.sync().await.unwrap();
        let effects = drain(&mut rx);
        assert!(effects.contains(&Effect::Enqueue("fleet/a".into())));
        assert!(!effects.contains(&Effect::Enqueue("fleet/b".into())));
        let a = cache.cluster("fleet/a").unwrap();
        assert_eq!(cache.sets_for(&a).len(), 1);

        // Moving the selector touches clusters matched before and after.
        put(
            store.as_ref(),
            resources::SELECTOR_SYNCSETS,
            "",
            sss("s", "dev", 2),
        )
        .await;
        cache.sync().await.unwrap();
        let effects = drain(&mut rx);
        assert!(effects.contains(&Effect::Enqueue("fleet/a".into())));
        assert!(effects.contains(&Effect::Enqueue("fleet/b".into())));

        // A kubeconfig Secret change reaches its cluster.
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b-kc", "namespace": "fleet"}});
        put(store.as_ref(), resources::SECRETS, "fleet", secret).await;
        cache.sync().await.unwrap();
        let effects = drain(&mut rx);
        assert!(effects.contains(&Effect::Kubeconfig("fleet/b".into())));
        assert!(effects.contains(&Effect::Enqueue("fleet/b".into())));
        assert!(!effects.contains(&Effect::Enqueue("fleet/a".into())));

        // Deleting a lease asks for a reapply.
        let lease = json!({"apiVersion": "hiveinternal.openshift.io/v1alpha1", "kind": "ClusterSyncLease",
            "metadata": {"name": "a", "namespace": "fleet"}, "spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}});
        put(
            store.as_ref(),
            resources::CLUSTER_SYNC_LEASES,
            "fleet",
            lease,
        )
        .await;
        cache.sync().await.unwrap();
        assert_eq!(
            drain(&mut rx),
            vec![Effect::Lease(
                "fleet/a".into(),
                unix_seconds("2026-01-01T00:00:00Z")
            )]
        );
        store
            .delete(
                &ObjectKey::new("", resources::CLUSTER_SYNC_LEASES, "fleet", "a"),
                None,
            )
            .await
            .unwrap();
        cache.sync().await.unwrap();
        assert_eq!(
            drain(&mut rx),
            vec![
                Effect::Lease("fleet/a".into(), None),
                Effect::Enqueue("fleet/a".into())
            ]
        );
    }

    #[tokio::test]
    async fn summarises_rollouts_from_cluster_syncs() {
        let store = rollout(
            &[("a", "prod"), ("b", "prod"), ("c", "prod"), ("d", "dev")],
            2,
        )
        .await;
        for (n, result, generation) in [
            ("a", "Success", 2),
            ("b", "Failure", 2),
            ("c", "Success", 1),
        ] {
            let cs = cluster_sync(n, result, generation);
            put(store.as_ref(), resources::CLUSTER_SYNCS, "fleet", cs).await;
        }
        let (tx, _rx) = mpsc::unbounded_channel();
        let cache = Cache::load(store.clone(), tx).await.unwrap();
        let summaries = cache.summaries();
        assert_eq!(summaries.len(), 1);
        assert_eq!(
            summaries[0].1,
            RolloutSummary {
                observed_generation: Some(2),
                clusters: Some(3),
                in_sync: Some(1),
                failing: Some(1),
                failing_clusters: vec!["fleet/b".into()],
                // a's health was not recorded.
                healthy: None,
                progressing: None,
                degraded: None,
                ..RolloutSummary::default()
            },
            "c is pending: it has the old generation"
        );
    }

    /// The last pending cluster of a rollout settles it, once, whether it ends in sync or
    /// failing; a change that leaves clusters pending, or comes after, does not.
    #[tokio::test]
    async fn says_when_a_rollout_settles() {
        let store = rollout(&[("a", "prod"), ("b", "prod")], 1).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cache = Cache::load(store.clone(), tx).await.unwrap();
        drain(&mut rx);
        let mut result = async |n: &str, result: &str| {
            let cs = cluster_sync(n, result, 1);
            put(store.as_ref(), resources::CLUSTER_SYNCS, "fleet", cs).await;
            cache.sync().await.unwrap();
            drain(&mut rx).contains(&Effect::Settled)
        };
        assert!(!result("a", "Success").await, "b is still pending");
        assert!(
            result("b", "Failure").await,
            "the last pending cluster failed"
        );
        assert!(!result("b", "Success").await, "settled already");
    }

    /// A change to the hub, for [`tallies_are_what_a_recount_finds`].
    #[derive(Clone, Debug)]
    enum Change {
        Cluster {
            i: usize,
            env: bool,
            installed: bool,
            paused: bool,
        },
        ClusterGone(usize),
        Selector {
            j: usize,
            env: bool,
            generation: i64,
        },
        SelectorGone(usize),
        Named {
            j: usize,
            refs: Vec<usize>,
            generation: i64,
        },
        NamedGone(usize),
        Results {
            i: usize,
            results: Vec<(bool, usize, bool, i64)>,
        },
        ResultsGone(usize),
        Record {
            i: usize,
            usable: Option<Vec<usize>>,
        },
    }

    fn change() -> impl proptest::strategy::Strategy<Value = Change> {
        use proptest::prelude::*;
        let i = 0..5usize;
        let j = 0..3usize;
        let generation = 1..3i64;
        prop_oneof![
            (
                i.clone(),
                any::<bool>(),
                proptest::bool::weighted(0.8),
                proptest::bool::weighted(0.2)
            )
                .prop_map(|(i, env, installed, paused)| Change::Cluster {
                    i,
                    env,
                    installed,
                    paused
                }),
            i.clone().prop_map(Change::ClusterGone),
            (j.clone(), any::<bool>(), generation.clone())
                .prop_map(|(j, env, generation)| Change::Selector { j, env, generation }),
            j.clone().prop_map(Change::SelectorGone),
            (
                j.clone(),
                proptest::collection::vec(0..6usize, 0..4),
                generation.clone()
            )
                .prop_map(|(j, refs, generation)| Change::Named {
                    j,
                    refs,
                    generation
                }),
            j.clone().prop_map(Change::NamedGone),
            (
                i.clone(),
                proptest::collection::vec((any::<bool>(), 0..3usize, any::<bool>(), 1..3i64), 0..4)
            )
                .prop_map(|(i, results)| Change::Results { i, results }),
            i.clone().prop_map(Change::ResultsGone),
            (
                i,
                proptest::option::of(proptest::collection::vec(0..3usize, 0..3))
            )
                .prop_map(|(i, usable)| Change::Record { i, usable }),
        ]
    }

    impl Change {
        /// The object changed (`None`: deleted), with its key.
        fn object(&self) -> (ObjectKey, Option<Value>) {
            let env = |e: bool| if e { "prod" } else { "dev" };
            let key =
                |resource: &str, ns: &str, name: String| ObjectKey::new("", resource, ns, &name);
            let cluster = |i: &usize| format!("c{i}");
            match self {
                Change::Cluster {
                    i,
                    env: e,
                    installed,
                    paused,
                } => {
                    let mut o = cd(&cluster(i), env(*e));
                    o["spec"]["installed"] = json!(installed);
                    if *paused {
                        o["metadata"]["annotations"] =
                            json!({"hive.openshift.io/syncset-pause": "true"});
                    }
                    (
                        key(resources::CLUSTER_DEPLOYMENTS, "fleet", cluster(i)),
                        Some(o),
                    )
                }
                Change::ClusterGone(i) => (
                    key(resources::CLUSTER_DEPLOYMENTS, "fleet", cluster(i)),
                    None,
                ),
                Change::Selector {
                    j,
                    env: e,
                    generation,
                } => (
                    key(resources::SELECTOR_SYNCSETS, "", format!("s{j}")),
                    Some(sss(&format!("s{j}"), env(*e), *generation)),
                ),
                Change::SelectorGone(j) => {
                    (key(resources::SELECTOR_SYNCSETS, "", format!("s{j}")), None)
                }
                Change::Named {
                    j,
                    refs,
                    generation,
                } => {
                    let refs: Vec<Value> =
                        refs.iter().map(|r| json!({"name": cluster(r)})).collect();
                    let o = json!({"apiVersion": "hive.openshift.io/v1", "kind": "SyncSet",
                        "metadata": {"name": format!("n{j}"), "namespace": "fleet", "generation": generation},
                        "spec": {"clusterDeploymentRefs": refs}});
                    (key(resources::SYNCSETS, "fleet", format!("n{j}")), Some(o))
                }
                Change::NamedGone(j) => (key(resources::SYNCSETS, "fleet", format!("n{j}")), None),
                Change::Results { i, results } => {
                    let entry = |(success, j, _, generation): &(bool, usize, bool, i64),
                                 prefix: &str| {
                        json!({
                        "name": format!("{prefix}{j}"), "observedGeneration": generation,
                        "result": if *success { "Success" } else { "Failure" },
                        "lastTransitionTime": "2026-01-01T00:00:00Z"})
                    };
                    let (selector, named): (Vec<_>, Vec<_>) = results.iter().partition(|r| r.2);
                    let o = json!({"apiVersion": "hiveinternal.openshift.io/v1alpha1", "kind": "ClusterSync",
                        "metadata": {"name": cluster(i), "namespace": "fleet"},
                        "status": {"syncSets": named.iter().map(|r| entry(r, "n")).collect::<Vec<_>>(),
                                   "selectorSyncSets": selector.iter().map(|r| entry(r, "s")).collect::<Vec<_>>()}});
                    (key(resources::CLUSTER_SYNCS, "fleet", cluster(i)), Some(o))
                }
                Change::ResultsGone(i) => {
                    (key(resources::CLUSTER_SYNCS, "fleet", cluster(i)), None)
                }
                Change::Record { i, usable } => {
                    let mut o = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": format!("{}-kc", cluster(i)), "namespace": "fleet"}});
                    if let Some(u) = usable {
                        let names: Vec<String> = u.iter().map(|j| format!("s{j}")).collect();
                        o["metadata"]["annotations"] = json!({USABLE: names.join(",")});
                    }
                    (
                        key(resources::SECRETS, "fleet", format!("{}-kc", cluster(i))),
                        Some(o),
                    )
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Rollout summaries are kept current change by change, not recounted: after any
        /// sequence of changes, each set's tally is what counting every cluster finds.
        #[test]
        fn tallies_are_what_a_recount_finds(changes in proptest::collection::vec(change(), 1..40)) {
            let mut state = State::default();
            for c in &changes {
                let (key, object) = c.object();
                state.put(&key, object.as_ref(), &mut |_| {});
                let sets = state.syncsets.values().chain(state.selector_syncsets.values());
                for set in sets {
                    let kept = state.tallies.get(&set_id(set)).cloned().unwrap_or_default();
                    proptest::prop_assert_eq!(kept, state.recount(set), "{} after {:?}", set.name, c);
                }
                let live = state.syncsets.len() + state.selector_syncsets.len();
                proptest::prop_assert!(state.tallies.len() <= live, "tallies of sets that are gone");
            }
        }
    }

    /// Under a rollout that has reached nobody yet, each cluster gets the revision it holds
    /// (else the one the rollout started from), as a whole set at that generation — what
    /// its reapplies, drift corrections and Sync-mode deletions then follow; one holding a
    /// revision no longer kept is held; once the rollout completes, all get the set as is.
    #[tokio::test]
    async fn clusters_a_rollout_has_not_reached_keep_the_revision_they_hold() {
        let store = rollout(&[("a", "prod"), ("b", "prod"), ("c", "prod")], 3).await;
        let cm = |v: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "m", "namespace": "default"}, "data": {"v": v}})
        };
        let mut set = sss("s", "prod", 3);
        set["metadata"]["uid"] = json!("u");
        set["metadata"]["labels"] = json!({"rollout": "careful"});
        set["spec"]["resources"] = json!([cm("3")]);
        put(store.as_ref(), resources::SELECTOR_SYNCSETS, "", set).await;
        let revision = |generation: i64| {
            json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": crate::rollout::revision_name(SetKind::SelectorSyncSet, "s", generation),
                    "namespace": SYSTEM_NAMESPACE,
                    "labels": {REVISION_KIND_LABEL: "SelectorSyncSet", REVISION_NAME_LABEL: "s"},
                    "ownerReferences": [{"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet", "name": "s", "uid": "u"}]},
                "data": {"spec": {"resources": [cm(&generation.to_string())]}}, "revision": generation})
        };
        put(
            store.as_ref(),
            resources::CONTROLLER_REVISIONS,
            SYSTEM_NAMESPACE,
            revision(2),
        )
        .await;
        // a holds revision 2 (kept); b nothing yet; c revision 1 (not kept).
        put(
            store.as_ref(),
            resources::CLUSTER_SYNCS,
            "fleet",
            cluster_sync("a", "Success", 2),
        )
        .await;
        put(
            store.as_ref(),
            resources::CLUSTER_SYNCS,
            "fleet",
            cluster_sync("c", "Success", 1),
        )
        .await;
        let policy = |phase: &str, wave: i64| {
            json!({"apiVersion": "syncsets.io/v1alpha1", "kind": "RolloutPolicy", "metadata": {"name": "careful"},
                "spec": {"selector": {"matchLabels": {"rollout": "careful"}},
                         "strategy": {"type": "Progressive", "progressive": {}}},
                "status": {"rollouts": [{"kind": "SelectorSyncSet", "name": "s", "uid": "u",
                    "revision": 3, "fromRevision": 2, "phase": phase, "wave": wave,
                    "waves": [{"name": "others", "slice": 1, "slices": 1, "clusters": 3}],
                    "clusters": 3, "updated": 0, "healthy": 0, "progressing": 0, "failed": 0}]}})
        };
        put(
            store.as_ref(),
            resources::ROLLOUT_POLICIES,
            "",
            policy("Paused", 0),
        )
        .await;
        let (tx, _rx) = mpsc::unbounded_channel();
        let cache = Cache::load(store.clone(), tx).await.unwrap();
        let assigned =
            |name: &str| cache.assigned(&cache.cluster(&format!("fleet/{name}")).unwrap());
        for name in ["a", "b"] {
            let got = assigned(name);
            assert_eq!(got.sets.len(), 1, "{name}");
            assert_eq!(got.sets[0].generation, 2, "{name}");
            assert_eq!(got.sets[0].spec.resources, [cm("2")], "{name}");
            assert!(got.held.is_empty());
        }
        let c = assigned("c");
        assert!(c.sets.is_empty());
        assert_eq!(c.held, [(SetKind::SelectorSyncSet, "s".to_string())]);
        // Reached: the set as it is.
        put(
            store.as_ref(),
            resources::ROLLOUT_POLICIES,
            "",
            policy("Complete", 1),
        )
        .await;
        cache.sync().await.unwrap();
        for name in ["a", "b", "c"] {
            let got = assigned(name);
            assert_eq!((got.sets.len(), got.sets[0].generation), (1, 3), "{name}");
        }
    }
}
