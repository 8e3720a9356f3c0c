//! The fold: once a plan was executed, the ClusterSync status its outcomes lead to —
//! per-set results, failure messages, resources tracked for deletion in Sync mode,
//! transition times and the cluster's conditions, by Hive's rules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use syncsets_types::hive::{
    ClusterSyncCondition, ClusterSyncStatus, SyncStatus, UnhealthyResource,
};

use super::{Plan, SetPlan, Work};
use crate::kstatus::Health;
use crate::model::{ObjRef, SetKind};

/// What happened when a set's work was done.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetOutcome {
    /// Objects written, in order (resources and secret targets).
    pub applied: Vec<ObjRef>,
    /// The health of the objects written or looked at again (patched ones included) that
    /// are not healthy; `checked` says whether health was looked at at all.
    pub unhealthy: Vec<(ObjRef, Health)>,
    /// Health was looked at (every write succeeded, or the objects to recheck were read).
    pub checked: bool,
    /// The first failure (the set stopped there).
    pub failure: Option<String>,
    /// Removed objects that could not be deleted, with why.
    pub delete_failures: Vec<(ObjRef, String)>,
}

/// What happened to a retired set's objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetiredOutcome {
    /// Objects that could not be deleted, with why.
    pub delete_failures: Vec<(ObjRef, String)>,
}

/// The results of executing a plan, index for index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcomes {
    /// One per [`Plan::retired`].
    pub retired: Vec<RetiredOutcome>,
    /// One per [`Plan::sets`] (ignored for sets without work).
    pub sets: Vec<SetOutcome>,
    /// The cluster could not be reached: why.
    pub unreachable: Option<String>,
}

/// Kubernetes' `utilerrors.NewAggregate` formatting: one message bare, several in brackets.
fn aggregate(messages: &[String]) -> String {
    let mut unique: Vec<&String> = Vec::new();
    for m in messages {
        if !unique.contains(&m) {
            unique.push(m);
        }
    }
    match unique.as_slice() {
        [one] => (*one).clone(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn delete_message(failures: &[(ObjRef, String)]) -> Option<String> {
    (!failures.is_empty()).then(|| {
        aggregate(
            &failures
                .iter()
                .map(|(r, e)| format!("failed to delete {r}: {e}"))
                .collect::<Vec<_>>(),
        )
    })
}

fn sort_refs(refs: &mut Vec<ObjRef>) {
    refs.sort_by(|a, b| {
        (&a.api_version, &a.kind, &a.namespace, &a.name).cmp(&(
            &b.api_version,
            &b.kind,
            &b.namespace,
            &b.name,
        ))
    });
    refs.dedup_by(|a, b| a.same_object(b));
}

/// Keeps `old`'s timestamps when nothing else changed, else marks the transition now:
/// `lastTransitionTime` for Hive's fields, `healthTransitionTime` for `health`.
fn stamp(mut new: SyncStatus, old: Option<&SyncStatus>, now: &Time) -> SyncStatus {
    let hive = |s: &SyncStatus| SyncStatus {
        health: None,
        unhealthy_resources: Vec::new(),
        health_transition_time: None,
        ..s.clone()
    };
    if let Some(old) = old {
        new.last_transition_time = old.last_transition_time.clone();
        new.first_success_time = old.first_success_time.clone();
        if hive(&new) != hive(old) {
            new.last_transition_time = now.clone();
        }
    }
    new.health_transition_time = match old {
        _ if new.health.is_none() => None,
        Some(old) if old.health == new.health => old.health_transition_time.clone(),
        _ => Some(now.clone()),
    };
    if new.result == "Success" && new.first_success_time.is_none() {
        new.first_success_time = Some(now.clone());
    }
    new
}

/// A set's health on a cluster from its objects' ([`SyncStatus::health`]).
fn set_health(outcome: &SetOutcome) -> (Option<String>, Vec<UnhealthyResource>) {
    /// Objects listed at most, and a message's length at most (in characters).
    const LISTED: usize = 100;
    const MESSAGE: usize = 256;
    if !outcome.checked {
        return (None, Vec::new());
    }
    let mut worst = "Healthy";
    let mut unhealthy = Vec::new();
    for (object, health) in &outcome.unhealthy {
        let (state, message) = match health {
            Health::Healthy => continue,
            Health::Progressing(m) => ("Progressing", m),
            Health::Failed(m) => ("Degraded", m),
        };
        if state == "Degraded" || worst == "Healthy" {
            worst = state;
        }
        if unhealthy.len() < LISTED {
            unhealthy.push(UnhealthyResource {
                resource: object.to_status(),
                health: state.into(),
                message: message.chars().take(MESSAGE).collect(),
            });
        }
    }
    (Some(worst.into()), unhealthy)
}

/// A set's status after its objects were looked at again (nothing applied).
fn rechecked(old: &SyncStatus, outcome: &SetOutcome, now: &Time) -> SyncStatus {
    if !outcome.checked {
        return old.clone();
    }
    let (health, unhealthy_resources) = set_health(outcome);
    let new = SyncStatus {
        health,
        unhealthy_resources,
        ..old.clone()
    };
    stamp(new, Some(old), now)
}

fn set_status(p: &SetPlan, work: &Work, outcome: &SetOutcome, now: &Time) -> SyncStatus {
    let old = p.old.as_ref();
    let old_refs: Vec<ObjRef> = old
        .map(|o| {
            o.resources_to_delete
                .iter()
                .map(ObjRef::from_status)
                .collect()
        })
        .unwrap_or_default();
    let mut failure = match &work.steps {
        Err(e) => Some(e.clone()),
        Ok(_) => outcome.failure.clone(),
    };
    let mut tracked = Vec::new();
    if p.set.sync_mode() {
        tracked.extend(outcome.applied.iter().cloned());
        // Declared objects applied before but not reached this time stay tracked.
        tracked.extend(
            old_refs
                .iter()
                .filter(|r| work.declared.iter().any(|d| d.covers(r)))
                .filter(|r| !outcome.applied.iter().any(|a| a.same_object(r)))
                .cloned(),
        );
        if work.steps.is_err() {
            tracked.extend(old_refs.iter().cloned());
        }
        // Objects the plan kept (declared by another set) are no longer this set's.
    }
    tracked.extend(outcome.delete_failures.iter().map(|(r, _)| r.clone()));
    if let Some(d) = delete_message(&outcome.delete_failures) {
        failure = Some(match failure {
            Some(f) => format!("{f}\n{d}"),
            None => d,
        });
    }
    sort_refs(&mut tracked);
    let (health, unhealthy_resources) = if failure.is_some() {
        (None, Vec::new())
    } else {
        set_health(outcome)
    };
    let new = SyncStatus {
        health,
        unhealthy_resources,
        health_transition_time: None,
        name: p.set.name.clone(),
        observed_generation: p.set.generation,
        resources_to_delete: tracked.iter().map(ObjRef::to_status).collect(),
        result: if failure.is_some() {
            "Failure"
        } else {
            "Success"
        }
        .into(),
        failure_message: failure,
        last_transition_time: now.clone(),
        first_success_time: None,
    };
    stamp(new, old, now)
}

/// The new ClusterSync status after executing `plan` (with `outcomes`), given the previous
/// one. `replica` is this controller's ordinal, recorded when anything was done.
pub fn fold(
    plan: &Plan,
    outcomes: &Outcomes,
    previous: Option<&ClusterSyncStatus>,
    replica: i64,
    now: &Time,
) -> ClusterSyncStatus {
    let mut sync_sets = Vec::new();
    let mut selector_sync_sets = Vec::new();
    let list = |kind: SetKind,
                ss: &mut Vec<SyncStatus>,
                sss: &mut Vec<SyncStatus>,
                s: SyncStatus| match kind {
        SetKind::SyncSet => ss.push(s),
        SetKind::SelectorSyncSet => sss.push(s),
    };
    for (i, r) in plan.retired.iter().enumerate() {
        let failures = outcomes
            .retired
            .get(i)
            .map(|o| o.delete_failures.clone())
            .unwrap_or_default();
        let Some(message) = delete_message(&failures) else {
            continue; // everything deleted: the set is forgotten
        };
        let mut remaining: Vec<ObjRef> = failures.into_iter().map(|(r, _)| r).collect();
        sort_refs(&mut remaining);
        let new = SyncStatus {
            name: r.old.name.clone(),
            observed_generation: r.old.observed_generation,
            resources_to_delete: remaining.iter().map(ObjRef::to_status).collect(),
            result: "Failure".into(),
            failure_message: Some(message),
            last_transition_time: now.clone(),
            first_success_time: None,
            health: None,
            unhealthy_resources: Vec::new(),
            health_transition_time: None,
        };
        list(
            r.kind,
            &mut sync_sets,
            &mut selector_sync_sets,
            stamp(new, Some(&r.old), now),
        );
    }
    for (i, p) in plan.sets.iter().enumerate() {
        let status = match (&p.work, &p.old) {
            (Some(work), _) => {
                let outcome = outcomes.sets.get(i).cloned().unwrap_or_default();
                set_status(p, work, &outcome, now)
            }
            (None, Some(old)) => match outcomes.sets.get(i) {
                Some(outcome) if !p.recheck.is_empty() => rechecked(old, outcome, now),
                _ => old.clone(),
            },
            (None, None) => unreachable!("a set without a status always has work"),
        };
        list(p.set.kind, &mut sync_sets, &mut selector_sync_sets, status);
    }
    for (kind, status) in &plan.held {
        list(
            *kind,
            &mut sync_sets,
            &mut selector_sync_sets,
            status.clone(),
        );
    }
    sync_sets.sort_by(|a, b| a.name.cmp(&b.name));
    selector_sync_sets.sort_by(|a, b| a.name.cmp(&b.name));

    let did_work = plan.has_work() || plan.sets.iter().any(|s| s.work.is_some());
    let controlled_by_replica = if did_work {
        Some(replica)
    } else {
        previous.and_then(|p| p.controlled_by_replica)
    };
    let condition = failed_condition(
        &sync_sets,
        &selector_sync_sets,
        outcomes.unreachable.as_deref(),
        previous.and_then(|p| p.conditions.first()),
        now,
    );
    let first_success_time = previous
        .and_then(|p| p.first_success_time.clone())
        .or_else(|| first_success(&sync_sets, &selector_sync_sets, now));
    ClusterSyncStatus {
        sync_sets,
        selector_sync_sets,
        conditions: vec![condition],
        first_success_time,
        controlled_by_replica,
    }
}

/// When every set has succeeded at least once: the latest of their first successes (now
/// when there are none).
fn first_success(ss: &[SyncStatus], sss: &[SyncStatus], now: &Time) -> Option<Time> {
    let all: Vec<&SyncStatus> = ss.iter().chain(sss).collect();
    if all.is_empty() {
        return Some(now.clone());
    }
    all.iter()
        .map(|s| s.first_success_time.clone())
        .collect::<Option<Vec<Time>>>()?
        .into_iter()
        .max()
}

fn names_for_message(kind: &str, names: &[&str]) -> String {
    let plural = if names.len() > 1 { "s" } else { "" };
    format!("{kind}{plural} {}", names.join(", "))
}

/// Hive's `Failed` condition, with reason `Unreachable` when the cluster could not be
/// reached. Its timestamps change only when it does.
pub(super) fn failed_condition(
    ss: &[SyncStatus],
    sss: &[SyncStatus],
    unreachable: Option<&str>,
    old: Option<&ClusterSyncCondition>,
    now: &Time,
) -> ClusterSyncCondition {
    let failing = |list: &[SyncStatus]| -> Vec<String> {
        list.iter()
            .filter(|s| s.result != "Success")
            .map(|s| s.name.clone())
            .collect()
    };
    let (f_ss, f_sss) = (failing(ss), failing(sss));
    let count = f_ss.len() + f_sss.len();
    let (status, reason, message) = if count == 0 {
        (
            "False",
            "Success",
            "All SyncSets and SelectorSyncSets have been applied to the cluster".to_string(),
        )
    } else {
        let mut names = Vec::new();
        if !f_ss.is_empty() {
            let n: Vec<&str> = f_ss.iter().map(String::as_str).collect();
            names.push(names_for_message("SyncSet", &n));
        }
        if !f_sss.is_empty() {
            let n: Vec<&str> = f_sss.iter().map(String::as_str).collect();
            names.push(names_for_message("SelectorSyncSet", &n));
        }
        let verb = if count > 1 { "are" } else { "is" };
        let mut message = format!("{} {verb} failing", names.join(" and "));
        let reason = match unreachable {
            Some(why) => {
                message.push_str(&format!(": the cluster is unreachable: {why}"));
                "Unreachable"
            }
            None => "Failure",
        };
        ("True", reason, message)
    };
    let unchanged = old.is_some_and(|o| {
        o.type_ == "Failed"
            && o.status == status
            && o.reason.as_deref() == Some(reason)
            && o.message.as_deref() == Some(message.as_str())
    });
    if unchanged {
        return old.cloned().expect("checked");
    }
    ClusterSyncCondition {
        type_: "Failed".into(),
        status: status.into(),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
        reason: Some(reason.into()),
        message: Some(message),
    }
}
