//! One reconcile of one cluster: read (cache, ClusterSync, lease), plan, execute against
//! the target cluster, fold the results into the ClusterSync status, write what changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use serde_json::{Value, json};
use syncsets_store::{ObjectKey, Stored};
use syncsets_types::hive::{ClusterSyncLeaseSpec, ClusterSyncStatus, MANAGED_LABEL};

use crate::cache::{Cache, unix_seconds};
use crate::clients::{Clients, Kubeconfig};
use crate::events;
use crate::health::{Admission, Ended, Health as Breakers};
use crate::hub::{HubKind, HubWriter};
use crate::kstatus::Health;
use crate::model::{Cluster, ObjRef, SetDef, SetKind, resources, split_key};
use crate::plan::{self, Context, Outcomes, Plan, RetiredOutcome, SetOutcome, Step};
use crate::target::{Failure, TargetError, Written};
use crate::{Error, Result};
use syncsets_bus::stable_hash;

/// The annotation of a ClusterSyncLease recording the digests of the sets' other inputs
/// when they were last applied ([`plan::inputs_digest`]).
pub const APPLIED_INPUTS_ANNOTATION: &str = "syncsets.io/applied-inputs";

/// The annotation of a ClusterSyncLease recording the resourceVersion of the kubeconfig
/// Secret at the last full apply: a new kubeconfig (maybe another API server) is applied
/// to in full.
pub const APPLIED_KUBECONFIG_ANNOTATION: &str = "syncsets.io/applied-kubeconfig";

/// What to do with the cluster's work item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until something changes (or the next full reapply).
    Done,
    /// Try again after this.
    Retry(Duration),
    /// It went well; look again after this (objects applied are still progressing).
    Recheck(Duration),
}

/// When a cluster's next full reapply is due (unix seconds), given its last one: the
/// interval plus up to 10% jitter, drawn from the cluster and the time of its last full
/// apply so that every replica computes the same instant.
pub fn full_reapply_due(key: &str, renewed: i64, interval: Duration) -> i64 {
    let jitter_span = interval.as_secs() / 10;
    let jitter = if jitter_span == 0 {
        0
    } else {
        stable_hash(format!("{key}@{renewed}").as_bytes()) % jitter_span
    };
    renewed + interval.as_secs() as i64 + jitter as i64
}

/// Settings of reconciles.
#[derive(Clone, Debug)]
pub struct ReconcileSettings {
    /// This replica's ordinal (`status.controlledByReplica`).
    pub replica: i64,
    /// Every set is reapplied to every cluster this often (plus up to 10% jitter).
    pub reapply_interval: Duration,
    /// Objects still progressing are looked at again this often.
    pub health_recheck: Duration,
}

/// Reconciles clusters.
#[derive(Debug)]
pub struct Reconciler {
    /// The hub as seen from events.
    pub cache: Arc<Cache>,
    /// Hub writes.
    pub hub: HubWriter,
    /// Target clients.
    pub clients: Clients,
    /// Retry and breaker state.
    pub health: Breakers,
    /// Settings.
    pub settings: ReconcileSettings,
    /// Kubernetes Events about clusters and sets.
    pub events: events::Recorder,
    /// When each cluster's next look at its unhealthy objects is due (this replica's):
    /// reconciles for other reasons do not start more of them.
    pub rechecks: std::sync::Mutex<HashMap<String, Instant>>,
}

/// What the lease says.
struct LeaseState {
    renewed: Option<i64>,
    digests: BTreeMap<String, String>,
    kubeconfig: Option<u64>,
}

fn lease_state(lease: Option<&syncsets_store::Stored>) -> LeaseState {
    let renewed = lease.and_then(|l| {
        l.object["spec"]["renewTime"]
            .as_str()
            .and_then(unix_seconds)
    });
    let annotations = lease.map(|l| &l.object["metadata"]["annotations"]);
    let digests = annotations
        .and_then(|a| a[APPLIED_INPUTS_ANNOTATION].as_str())
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let kubeconfig = annotations
        .and_then(|a| a[APPLIED_KUBECONFIG_ANNOTATION].as_str())
        .and_then(|s| s.parse().ok());
    LeaseState {
        renewed,
        digests,
        kubeconfig,
    }
}

fn now_time() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).expect("a valid time"))
}

impl Reconciler {
    /// Reconciles the cluster with work-queue key `key`.
    pub async fn reconcile(&self, key: &str) -> Result<Next> {
        self.cache.sync().await?;
        let Some(cluster) = self.cache.cluster(key) else {
            return self.forget(key).await;
        };
        if let Some(reason) = cluster.skip_reason() {
            tracing::debug!(cluster = key, reason, "not syncing");
            return Ok(Next::Done);
        }
        // What this cluster's reconcile reads from the hub, read at one instant.
        let (ns, name) = (cluster.namespace.as_str(), cluster.name.as_str());
        let mut keys = vec![
            self.hub.key(HubKind::ClusterSync, ns, name),
            self.hub.key(HubKind::ClusterSyncLease, ns, name),
        ];
        keys.extend(Clients::kubeconfig_key(&cluster));
        let mut read = self.hub.get_many(&keys).await?.into_iter();
        let (cluster_sync, lease) = (read.next().flatten(), read.next().flatten());
        let kubeconfig_secret = read.next().flatten();
        let (cluster_sync, lease) = self.own_state(&cluster, cluster_sync, lease).await?;
        if let Admission::Wait(delay) = self.health.admit(key) {
            return Ok(Next::Retry(delay));
        }
        let assigned = self.cache.assigned(&cluster);
        let sets = assigned.sets;
        let previous: Option<ClusterSyncStatus> = cluster_sync
            .as_ref()
            .and_then(|c| c.object.get("status"))
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let lease_state = lease_state(lease.as_ref());
        let now = now_time();
        let kubeconfig_source = Clients::kubeconfig(&cluster, kubeconfig_secret);
        // The cache decided which sets apply from the Secret's record as it last saw it;
        // the kubeconfig used is the one read now, so its own record has the last word.
        let sets: Vec<_> = sets
            .into_iter()
            .filter(|s| s.kind == SetKind::SyncSet || kubeconfig_source.usable.allows(&s.name))
            .collect();
        let kubeconfig = kubeconfig_source.version;
        let full = lease_state.kubeconfig != kubeconfig
            || lease_state.renewed.is_none_or(|renewed| {
                now.0.as_second() >= full_reapply_due(key, renewed, self.settings.reapply_interval)
            });
        let secrets = self.source_secrets(&sets).await?;
        let versions = secret_versions(&secrets);
        let plan = plan::plan(
            &cluster,
            &sets,
            &Context {
                previous: previous.as_ref(),
                full,
                applied_digests: lease.is_some().then_some(&lease_state.digests),
                secret_versions: Some(&versions),
                held: &assigned.held,
            },
        );
        let (outcomes, worst) = if plan.has_work() {
            self.execute(&cluster, &kubeconfig_source, &plan, &secrets)
                .await
        } else {
            (Outcomes::default(), None)
        };
        let status = plan::fold(
            &plan,
            &outcomes,
            previous.as_ref(),
            self.settings.replica,
            &now,
        );
        first_applies(&cluster, &sets, previous.as_ref(), &status);
        let status_json = serde_json::to_value(&status).expect("status serialises");
        let cluster_sync = if previous.as_ref() != Some(&status) || cluster_sync.is_none() {
            let object = json!({
                "apiVersion": "hiveinternal.openshift.io/v1alpha1", "kind": "ClusterSync",
                "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner(
                    "hive.openshift.io/v1", "ClusterDeployment", name, &cluster.uid)]},
                "spec": {},
            });
            Some(
                self.hub
                    .write_status(HubKind::ClusterSync, &object, &status_json, cluster_sync)
                    .await?,
            )
        } else {
            cluster_sync
        };
        self.record_lease(
            &cluster,
            &plan,
            &status,
            lease,
            lease_state,
            full.then_some(kubeconfig),
            &now,
            cluster_sync.as_ref(),
        )
        .await?;

        let failed = status
            .sync_sets
            .iter()
            .chain(&status.selector_sync_sets)
            .any(|s| s.result != "Success");
        let ended = match (&outcomes.unreachable, failed, worst) {
            (Some(_), _, _) => Ended::Failed(Failure::Unreachable),
            (None, true, worst) => Ended::Failed(worst.unwrap_or(Failure::Rejected)),
            // A request that failed without failing a set (looking at objects again).
            (None, false, Some(worst)) => Ended::Failed(worst),
            (None, false, None) => Ended::Success,
        };
        let retry = self.ended(
            key,
            ended,
            outcomes.unreachable.as_deref().unwrap_or("unreachable"),
        );
        // Objects not healthy are looked at again until they are.
        let recheck = recheck_after(&status, &now, self.settings.health_recheck)
            .and_then(|delay| self.schedule_recheck(key, delay));
        self.record_events(
            &cluster,
            &sets,
            previous.as_ref(),
            &status,
            outcomes.unreachable.as_deref(),
        );
        Ok(match (retry, recheck) {
            (Some(delay), _) => Next::Retry(delay),
            (None, Some(delay)) => Next::Recheck(delay),
            (None, None) => Next::Done,
        })
    }

    /// Records how a reconcile of `key` ended in the cluster's health (`why`: what failed,
    /// if it did), noting its circuit breaker opening or closing as an Event; returns when
    /// to retry.
    pub fn ended(&self, key: &str, ended: Ended, why: &str) -> Option<Duration> {
        let was_open = self.health.unreachable(key);
        let retry = self.health.record(key, ended);
        let is_open = self.health.unreachable(key);
        if was_open != is_open
            && let Some(cluster) = self.cache.cluster(key)
        {
            let note = if is_open {
                events::Note {
                    kind: events::Type::Warning,
                    reason: "CircuitBreakerOpen",
                    message: format!(
                        "the cluster failed to answer repeatedly; it is tried again less often until it does: {why}"
                    ),
                }
            } else {
                events::Note {
                    kind: events::Type::Normal,
                    reason: "CircuitBreakerClosed",
                    message: "the cluster answers again".into(),
                }
            };
            self.events
                .record(events::Involved::cluster(&cluster), note);
        }
        retry
    }

    /// Records the Events this reconcile's outcome calls for (on transitions only). A
    /// cluster that cannot be reached gets one Event, not one per set, and its sets none.
    fn record_events(
        &self,
        cluster: &Cluster,
        sets: &[Arc<SetDef>],
        previous: Option<&ClusterSyncStatus>,
        status: &ClusterSyncStatus,
        unreachable: Option<&str>,
    ) {
        let (mut on_cluster, mut on_sets) = events::transitions(sets, previous, status);
        if let Some(message) = unreachable {
            if on_cluster.iter().any(|n| n.kind == events::Type::Warning) {
                on_cluster = vec![events::Note {
                    kind: events::Type::Warning,
                    reason: "ClusterUnreachable",
                    message: message.to_string(),
                }];
            }
            on_sets.clear();
        }
        for note in on_cluster {
            self.events.record(events::Involved::cluster(cluster), note);
        }
        for (set, note) in on_sets {
            self.events.record(events::Involved::set(set), note);
        }
    }

    /// The cluster's ClusterSync and lease as read — unless they were written for an earlier
    /// ClusterDeployment of the same name (their owner is another uid, or none): those are
    /// deleted, as Kubernetes' garbage collector would have, and so is what this replica
    /// kept of it (client, breaker), so nothing recorded for one cluster — the objects to
    /// delete in Sync mode above all — is ever acted on for another.
    async fn own_state(
        &self,
        cluster: &Cluster,
        cluster_sync: Option<Stored>,
        lease: Option<Stored>,
    ) -> Result<(Option<Stored>, Option<Stored>)> {
        let (ns, name) = (cluster.namespace.as_str(), cluster.name.as_str());
        let sync_ok = cluster_sync
            .as_ref()
            .is_none_or(|c| owner_uid(&c.object) == Some(cluster.uid.as_str()));
        let lease_ok = lease.as_ref().is_none_or(|l| {
            cluster_sync.as_ref().is_some_and(|c| {
                sync_ok && owner_uid(&l.object) == c.object["metadata"]["uid"].as_str()
            })
        });
        if sync_ok && lease_ok {
            return Ok((cluster_sync, lease));
        }
        tracing::info!(
            cluster = %cluster.key(),
            "dropping the ClusterSync state of an earlier ClusterDeployment of this name"
        );
        // At the versions read: state another replica wrote since is not lost (the
        // conflict makes this reconcile read again).
        if let Some(l) = &lease {
            let rv = Some(l.rv);
            self.hub
                .delete_at(HubKind::ClusterSyncLease, ns, name, rv)
                .await?;
        }
        if let Some(c) = cluster_sync.as_ref().filter(|_| !sync_ok) {
            let rv = Some(c.rv);
            self.hub
                .delete_at(HubKind::ClusterSync, ns, name, rv)
                .await?;
            self.clients.forget(&cluster.key());
            self.health.forget(&cluster.key());
            return Ok((None, None));
        }
        Ok((cluster_sync, None))
    }

    /// The cluster is gone: so are its ClusterSync and lease (the objects synced to it stay,
    /// as with Hive).
    async fn forget(&self, key: &str) -> Result<Next> {
        let Some((ns, name)) = split_key(key) else {
            return Ok(Next::Done);
        };
        self.hub.delete(HubKind::ClusterSyncLease, ns, name).await?;
        self.hub.delete(HubKind::ClusterSync, ns, name).await?;
        self.clients.forget(key);
        self.health.forget(key);
        self.rechecks.lock().expect("rechecks lock").remove(key);
        Ok(Next::Done)
    }

    /// A recheck of `key` after `delay`, unless one is due sooner already (each reconcile
    /// of a cluster with unhealthy objects asks for one; they must not multiply).
    fn schedule_recheck(&self, key: &str, delay: Duration) -> Option<Duration> {
        let now = Instant::now();
        let due = now + delay;
        let mut pending = self.rechecks.lock().expect("rechecks lock");
        match pending.get(key) {
            Some(&at) if at > now && at <= due => None,
            _ => {
                pending.insert(key.to_string(), due);
                Some(delay)
            }
        }
    }

    /// The hub Secrets the sets copy, with their resourceVersions (`None`: missing).
    async fn source_secrets(&self, sets: &[Arc<SetDef>]) -> Result<HubSecrets> {
        let mut secrets = HashMap::new();
        for source in sets.iter().flat_map(|s| s.source_secrets()) {
            if secrets.contains_key(&source) {
                continue;
            }
            let key = ObjectKey::new("", resources::SECRETS, &source.0, &source.1);
            let stored = self.hub.store().get(&key).await.map_err(Error::store)?;
            secrets.insert(source, stored.map(|s| (s.object, s.rv)));
        }
        Ok(secrets)
    }

    /// Writes the lease when this was a full reapply (`full`: with the kubeconfig's
    /// version then) or the applied inputs changed.
    #[expect(
        clippy::too_many_arguments,
        reason = "the reconcile's state, passed once"
    )]
    async fn record_lease(
        &self,
        cluster: &Cluster,
        plan: &Plan,
        status: &ClusterSyncStatus,
        lease: Option<syncsets_store::Stored>,
        old: LeaseState,
        full: Option<Option<u64>>,
        now: &Time,
        cluster_sync: Option<&syncsets_store::Stored>,
    ) -> Result<()> {
        let mut digests = BTreeMap::new();
        for p in &plan.sets {
            let id = plan::set_id(p.set.kind, &p.set.namespace, &p.set.name);
            let succeeded =
                plan::status_of(Some(status), &p.set).is_some_and(|s| s.result == "Success");
            let digest = match (&p.work, succeeded) {
                (Some(_), true) => p.digest.clone(),
                _ => old.digests.get(&id).cloned(),
            };
            if let Some(d) = digest {
                digests.insert(id, d);
            }
        }
        if full.is_none() && digests == old.digests {
            return Ok(());
        }
        let renewed = if full.is_some() {
            MicroTime(jiff::Timestamp::now())
        } else {
            match lease
                .as_ref()
                .and_then(|l| l.object["spec"]["renewTime"].as_str())
            {
                Some(t) => MicroTime(
                    t.parse()
                        .map_err(|_| Error::Admission("unreadable lease renewTime".into()))?,
                ),
                None => MicroTime(now.0),
            }
        };
        let mut metadata = json!({"name": cluster.name, "namespace": cluster.namespace});
        if let Some(cs) = cluster_sync {
            let uid = cs.object["metadata"]["uid"].as_str().unwrap_or_default();
            metadata["ownerReferences"] = json!([owner(
                "hiveinternal.openshift.io/v1alpha1",
                "ClusterSync",
                &cluster.name,
                uid
            )]);
        }
        let mut annotations = serde_json::Map::new();
        if !digests.is_empty() {
            let text = serde_json::to_string(&digests).expect("digests serialise");
            annotations.insert(APPLIED_INPUTS_ANNOTATION.into(), json!(text));
        }
        if let Some(kubeconfig) = full.unwrap_or(old.kubeconfig) {
            annotations.insert(
                APPLIED_KUBECONFIG_ANNOTATION.into(),
                json!(kubeconfig.to_string()),
            );
        }
        if !annotations.is_empty() {
            metadata["annotations"] = Value::Object(annotations);
        }
        let object = json!({
            "apiVersion": "hiveinternal.openshift.io/v1alpha1", "kind": "ClusterSyncLease",
            "metadata": metadata,
            "spec": ClusterSyncLeaseSpec { renew_time: renewed },
        });
        self.hub
            .put(HubKind::ClusterSyncLease, &object, lease)
            .await?;
        Ok(())
    }

    /// Does what the plan says on the target cluster.
    async fn execute(
        &self,
        cluster: &Cluster,
        kubeconfig: &Kubeconfig,
        plan: &Plan,
        secrets: &HubSecrets,
    ) -> (Outcomes, Option<Failure>) {
        let mut run = Run {
            outcomes: Outcomes {
                retired: vec![RetiredOutcome::default(); plan.retired.len()],
                sets: vec![SetOutcome::default(); plan.sets.len()],
                ..Outcomes::default()
            },
            worst: None,
        };
        let target = match self.clients.target(cluster, kubeconfig).await {
            Ok(t) => t,
            // Only objects to look at again: nothing fails for not seeing them now.
            Err(_) if plan.sets.iter().all(|s| s.work.is_none()) && plan.retired.is_empty() => {
                return run.finish();
            }
            Err(e) => {
                run.fail_everything(plan, &e);
                return run.finish();
            }
        };
        for (i, r) in plan.retired.iter().enumerate() {
            for obj in &r.delete {
                let started = Instant::now();
                let deleted = target.delete(obj).await;
                applied(&obj.kind, "delete", deleted.is_ok(), started);
                if let Err(e) = deleted {
                    if run.unreachable(plan, &e) {
                        return run.finish();
                    }
                    run.outcomes.retired[i]
                        .delete_failures
                        .push((obj.clone(), format!("could not delete resource: {e}")));
                }
            }
        }
        for (i, p) in plan.sets.iter().enumerate() {
            for obj in p.work.iter().flat_map(|w| &w.removed) {
                let started = Instant::now();
                let deleted = target.delete(obj).await;
                applied(&obj.kind, "delete", deleted.is_ok(), started);
                if let Err(e) = deleted {
                    if run.unreachable(plan, &e) {
                        return run.finish();
                    }
                    run.outcomes.sets[i]
                        .delete_failures
                        .push((obj.clone(), format!("could not delete resource: {e}")));
                }
            }
        }
        for (i, p) in plan.sets.iter().enumerate() {
            let Some(work) = &p.work else { continue };
            let Ok(steps) = &work.steps else { continue };
            for step in steps {
                // A Secret whose hub source is missing is refused before any request.
                let reached = match step {
                    Step::Secret {
                        source: Ok(source), ..
                    } => secrets.get(source).is_some_and(Option::is_some),
                    Step::Secret { .. } => false,
                    _ => true,
                };
                let started = Instant::now();
                let result = match step {
                    Step::Resource { index, rendered } => target
                        .write(
                            plan::object_to_apply(&p.set, *index, rendered.as_ref()),
                            work.behavior,
                        )
                        .await
                        .map(|(written, r)| (written, r, true))
                        .map_err(|e| (format!("failed to apply resource {index}: {e}"), e)),
                    Step::Secret {
                        index,
                        source,
                        target: to,
                    } => match secret_to_write(*index, source, to, secrets) {
                        Err(m) => Err((m.clone(), TargetError::config(m))),
                        Ok(secret) => target
                            .write(secret, work.behavior)
                            .await
                            .map(|(written, r)| (written, r, true))
                            .map_err(|e| (format!("failed to apply secret {index}: {e}"), e)),
                    },
                    Step::Patch {
                        index,
                        target: obj,
                        patch,
                        patch_type,
                    } => target
                        .patch(obj, patch, *patch_type)
                        .await
                        .map(|health| (Written::Applied(health), obj.clone(), false))
                        .map_err(|e| (format!("failed to apply patch {index}: {e}"), e)),
                };
                if reached {
                    applied(
                        step.kind(&p.set),
                        step.how(work.behavior),
                        result.is_ok(),
                        started,
                    );
                }
                match result {
                    Ok((written, object, tracked)) => {
                        let outcome = &mut run.outcomes.sets[i];
                        if let Written::Applied(health) = written {
                            // The last write of an object (a patch after its resource) says.
                            outcome.unhealthy.retain(|(o, _)| !o.same_object(&object));
                            if health != Health::Healthy {
                                outcome.unhealthy.push((object.clone(), health));
                            }
                        }
                        if tracked {
                            outcome.applied.push(object);
                        }
                    }
                    Err((message, e)) => {
                        if run.unreachable(plan, &e) {
                            return run.finish();
                        }
                        run.note(e.failure);
                        run.outcomes.sets[i].failure = Some(message);
                        break;
                    }
                }
            }
            let outcome = &mut run.outcomes.sets[i];
            outcome.checked = outcome.failure.is_none();
        }
        // Objects still progressing when last looked at, looked at again.
        for (i, p) in plan.sets.iter().enumerate() {
            if p.recheck.is_empty() {
                continue;
            }
            for object in &p.recheck {
                let health = match target.health(object).await {
                    Ok(health) => health,
                    Err(e) => {
                        if e.failure == Failure::Unreachable {
                            // What this run applied stays applied: only say so.
                            run.note(e.failure);
                            run.outcomes.unreachable = Some(e.message.clone());
                            return run.finish();
                        }
                        if e.code == 401 {
                            // Our credentials refused: retried as any such failure.
                            run.note(e.failure);
                        }
                        Health::Progressing(format!("could not be read: {e}"))
                    }
                };
                if health != Health::Healthy {
                    run.outcomes.sets[i]
                        .unhealthy
                        .push((object.clone(), health));
                }
            }
            run.outcomes.sets[i].checked = true;
        }
        drop(target);
        run.finish()
    }
}

/// Looking at objects that are not healthy again waits at most this long.
const RECHECK_MAX: Duration = Duration::from_secs(300);

/// When to look again at the objects of a cluster's sets that are not healthy: a quarter
/// of the time they have been so, between `base` and [`RECHECK_MAX`] (a rollout is
/// followed closely, a stuck one less and less often), rounded down to a power of two
/// milliseconds — RabbitMQ's delay tiers are powers of two, and a tier whose messages all
/// wait as long expires them in order. `None`: all healthy.
fn recheck_after(status: &ClusterSyncStatus, now: &Time, base: Duration) -> Option<Duration> {
    let base = base.max(Duration::from_millis(100));
    let delay = status
        .sync_sets
        .iter()
        .chain(&status.selector_sync_sets)
        .filter(|s| matches!(s.health.as_deref(), Some("Progressing" | "Degraded")))
        .map(|s| {
            let since = s.health_transition_time.as_ref().unwrap_or(now);
            let unhealthy_for = now.0.duration_since(since.0).as_secs_f64().max(0.0);
            Duration::from_secs_f64(unhealthy_for / 4.0).clamp(base, RECHECK_MAX.max(base))
        })
        .min()?;
    let ms = (delay.as_millis() as u64).max(1);
    Some(Duration::from_millis(1 << (63 - ms.leading_zeros())))
}

/// Records one write to a target cluster: `syncsets_applies_total{kind, type, result}`, and
/// Hive's `hive_syncsetinstance_resources_applied_total{type, result}` and
/// `hive_syncsetinstance_apply_duration_seconds{type, result}` (type: the set's
/// `applyBehavior` as Hive labels it — apply, createOrUpdate, createOnly — or patch, delete).
fn applied(kind: &str, how: &'static str, ok: bool, started: Instant) {
    let result = if ok { "success" } else { "error" };
    let kind = kind_label(kind);
    metrics::counter!("hive_syncsetinstance_resources_applied_total", "type" => how, "result" => result)
        .increment(1);
    metrics::histogram!("hive_syncsetinstance_apply_duration_seconds", "type" => how, "result" => result)
        .record(started.elapsed());
    metrics::counter!("syncsets_applies_total", "kind" => kind, "type" => how, "result" => result)
        .increment(1);
}

/// Hive's time-to-first-apply metrics, observed when a set first succeeds on a cluster,
/// counted from the set's creation, the cluster's installation or its last change of
/// reachability, whichever came last (as Hive counts): `hive_syncset_apply_duration_seconds
/// {group}` (a SyncSet's metrics group, else `none`) and
/// `hive_selectorsyncset_apply_duration_seconds{name}` (only until everything first
/// succeeded on the cluster: a set matched later, when labels change, says nothing about
/// applying); and `hive_clustersync_first_success_duration_seconds`, from installation to
/// every set applied.
fn first_applies(
    cluster: &Cluster,
    sets: &[Arc<SetDef>],
    previous: Option<&ClusterSyncStatus>,
    status: &ClusterSyncStatus,
) {
    let now = jiff::Timestamp::now();
    let seconds = |since: jiff::Timestamp| now.duration_since(since).as_secs_f64().max(0.0);
    let installed = cluster.installed_at;
    let cluster_first = previous.is_none_or(|p| p.first_success_time.is_none());
    let succeeded = |status: Option<&ClusterSyncStatus>, set: &SetDef| {
        plan::status_of(status, set).is_some_and(|s| s.first_success_time.is_some())
    };
    for set in sets {
        if !succeeded(Some(status), set) || succeeded(previous, set) {
            continue;
        }
        let Some(since) = [set.created, installed, cluster.reachability_changed_at]
            .into_iter()
            .flatten()
            .max()
        else {
            continue;
        };
        match set.kind {
            SetKind::SyncSet => {
                let group = set.metrics_group.clone().unwrap_or_else(|| "none".into());
                metrics::histogram!("hive_syncset_apply_duration_seconds", "group" => group)
                    .record(seconds(since));
            }
            SetKind::SelectorSyncSet if cluster_first => {
                let name = set.name.clone();
                metrics::histogram!("hive_selectorsyncset_apply_duration_seconds", "name" => name)
                    .record(seconds(since));
            }
            SetKind::SelectorSyncSet => {}
        }
    }
    if cluster_first
        && status.first_success_time.is_some()
        && let Some(installed) = installed
    {
        metrics::histogram!("hive_clustersync_first_success_duration_seconds")
            .record(seconds(installed));
    }
}

/// Distinct kinds labelled at most: kinds come from what sets declare, and series never
/// go away, so any further kind is labelled `other`.
const KINDS_LABELLED: usize = 256;

/// The `kind` label of an apply.
fn kind_label(kind: &str) -> String {
    static KINDS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut kinds = KINDS.lock().expect("kinds lock");
    if !kinds.iter().any(|k| k == kind) {
        if kinds.len() >= KINDS_LABELLED {
            return "other".to_string();
        }
        kinds.push(kind.to_string());
    }
    kind.to_string()
}

/// The outcomes of one execution, as they accumulate.
struct Run {
    outcomes: Outcomes,
    /// The worst failure met (for the retry policy).
    worst: Option<Failure>,
}

impl Run {
    fn finish(self) -> (Outcomes, Option<Failure>) {
        (self.outcomes, self.worst)
    }

    fn note(&mut self, failure: Failure) {
        let rank = |f: Failure| match f {
            Failure::Unreachable => 3,
            Failure::Unauthorized => 2,
            _ => 1,
        };
        if self.worst.is_none_or(|w| rank(failure) > rank(w)) {
            self.worst = Some(failure);
        }
    }

    /// Nothing more can be done: every set with work not yet failed fails with `e`.
    fn fail_everything(&mut self, plan: &Plan, e: &TargetError) {
        self.note(e.failure);
        for (i, p) in plan.sets.iter().enumerate() {
            if p.work.is_some() && self.outcomes.sets[i].failure.is_none() {
                self.outcomes.sets[i].failure = Some(e.message.clone());
            }
        }
        for (i, r) in plan.retired.iter().enumerate() {
            if self.outcomes.retired[i].delete_failures.is_empty() {
                self.outcomes.retired[i].delete_failures = r
                    .delete
                    .iter()
                    .map(|o| (o.clone(), e.message.clone()))
                    .collect();
            }
        }
    }

    /// When the cluster cannot be reached, stops: the rest would fail the same way, each
    /// after a timeout.
    fn unreachable(&mut self, plan: &Plan, e: &TargetError) -> bool {
        if e.failure != Failure::Unreachable {
            return false;
        }
        self.outcomes.unreachable = Some(e.message.clone());
        self.fail_everything(plan, e);
        true
    }
}

/// The hub Secrets sets copy, with their resourceVersions (`None`: missing), by
/// (namespace, name).
pub type HubSecrets = HashMap<(String, String), Option<(Value, u64)>>;

/// The resourceVersions of the hub Secrets that exist, for [`plan::Context`].
pub(crate) fn secret_versions(secrets: &HubSecrets) -> BTreeMap<(String, String), u64> {
    secrets
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|(_, rv)| (k.clone(), *rv)))
        .collect()
}

/// The Secret secret mapping `index` writes to `to`, copied from its hub `source` — or why
/// it cannot be written.
pub(crate) fn secret_to_write(
    index: usize,
    source: &std::result::Result<(String, String), String>,
    to: &ObjRef,
    secrets: &HubSecrets,
) -> std::result::Result<Value, String> {
    let source = source.as_ref().map_err(Clone::clone)?;
    match secrets.get(source).and_then(Option::as_ref) {
        None => Err(format!(
            "failed to read secret {index}: secrets \"{}\" not found",
            source.1
        )),
        Some((secret, _)) => Ok(copied_secret(secret, to)),
    }
}

/// The target copy of a hub Secret: its data and type; of its metadata only labels and
/// annotations; plus the managed label.
fn copied_secret(source: &Value, to: &ObjRef) -> Value {
    let mut labels = source["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(MANAGED_LABEL.into(), json!("true"));
    let mut metadata = json!({"name": to.name, "labels": labels});
    if !to.namespace.is_empty() {
        metadata["namespace"] = json!(to.namespace);
    }
    if let Some(a) = source["metadata"]
        .get("annotations")
        .filter(|a| a.is_object())
    {
        metadata["annotations"] = a.clone();
    }
    let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata});
    for field in ["data", "type", "immutable"] {
        if let Some(v) = source.get(field) {
            secret[field] = v.clone();
        }
    }
    secret
}

/// The uid of an object's first owner.
fn owner_uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["ownerReferences"][0]["uid"].as_str()
}

fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "blockOwnerDeletion": true})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_not_healthy_are_looked_at_again_less_and_less_often() {
        let at = |s: i64| Time(jiff::Timestamp::from_second(1_000_000 + s).unwrap());
        let set = |health: Option<&str>, since: i64| syncsets_types::hive::SyncStatus {
            name: "s".into(),
            observed_generation: 1,
            resources_to_delete: vec![],
            result: "Success".into(),
            failure_message: None,
            last_transition_time: at(0),
            first_success_time: None,
            health: health.map(String::from),
            unhealthy_resources: vec![],
            health_transition_time: Some(at(since)),
        };
        let status = |sets| ClusterSyncStatus {
            selector_sync_sets: sets,
            ..ClusterSyncStatus::default()
        };
        let base = Duration::from_secs(10);
        let after = |sets, now| recheck_after(&status(sets), &at(now), base);
        assert_eq!(after(vec![set(Some("Healthy"), 0)], 0), None);
        assert_eq!(after(vec![set(None, 0)], 0), None);
        let ms = |ms| Some(Duration::from_millis(ms));
        // Just progressing: the base (10 s → 8.192 s, a power of two ms); 200 s in: a
        // quarter (50 s → 32.768 s); an hour in: at most five minutes (→ 262.144 s).
        assert_eq!(after(vec![set(Some("Progressing"), 0)], 1), ms(8192));
        assert_eq!(after(vec![set(Some("Progressing"), 0)], 200), ms(32768));
        assert_eq!(after(vec![set(Some("Degraded"), 0)], 3600), ms(262_144));
        // The soonest of several.
        assert_eq!(
            after(
                vec![set(Some("Degraded"), 0), set(Some("Progressing"), 3590)],
                3600,
            ),
            ms(8192)
        );
    }

    #[test]
    fn full_reapplies_are_spread_over_a_tenth_of_the_interval() {
        let interval = Duration::from_secs(7200);
        let dues: Vec<i64> = (0..200)
            .map(|i| {
                full_reapply_due(&format!("fleet/c{i}"), 1_000_000, interval) - 1_000_000 - 7200
            })
            .collect();
        assert!(dues.iter().all(|j| (0..720).contains(j)));
        let distinct: std::collections::BTreeSet<_> = dues.iter().collect();
        assert!(distinct.len() > 150, "jitter differs between clusters");
        // Every replica, of any build, computes the same instant: FNV-1a of
        // "fleet/c1@5" is 71 modulo 720.
        assert_eq!(full_reapply_due("fleet/c1", 5, interval), 5 + 7200 + 71);
    }

    #[test]
    fn secret_copies_keep_data_type_labels_and_annotations_only() {
        let src = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "s", "namespace": "hub", "uid": "u", "resourceVersion": "4",
                "labels": {"a": "b"}, "annotations": {"c": "d"}},
            "data": {"tls.crt": "eA==", "tls.key": "eQ=="}});
        let to = ObjRef {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: "apps".into(),
            name: "t".into(),
        };
        assert_eq!(
            copied_secret(&src, &to),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "t", "namespace": "apps",
                    "labels": {"a": "b", "hive.openshift.io/managed": "true"}, "annotations": {"c": "d"}},
                "data": {"tls.crt": "eA==", "tls.key": "eQ=="}})
        );
    }
}
