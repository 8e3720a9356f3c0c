//! The leader's part of rollouts, each tick: keep each governed set's current revision in a
//! ControllerRevision (pruning old ones), carry out undos asked for by annotation, step
//! every rollout and write the RolloutPolicies' status — the rollouts' one state.

use std::collections::BTreeMap;

use serde_json::json;
use syncsets_types::rollout::{
    REVISION_KIND_LABEL, REVISION_NAME_LABEL, RolloutPolicyStatus, SYSTEM_NAMESPACE, SetRollout,
    UNDO_ANNOTATION,
};
use syncsets_write::Proposal;

use super::{Policy, Seen, phase, step};
use crate::cache::Governed;
use crate::events::{Involved, Note, Type};
use crate::hub::HubKind;
use crate::model::{SetDef, SetKind};
use crate::reconcile::Reconciler;

/// Revisions kept per set beyond those a rollout uses (as `revisionHistoryLimit`).
const HISTORY: usize = 10;

/// The spec fields a revision keeps (a set's targets are its own, never rolled back).
const SPEC_FIELDS: [&str; 7] = [
    "resources",
    "resourceApplyMode",
    "patches",
    "secretMappings",
    "applyBehavior",
    "enableResourceTemplates",
    "enablePatchTemplates",
];

/// One leader tick's work on rollouts.
pub async fn drive(reconciler: &Reconciler) {
    let policies = reconciler.cache.policies();
    if policies.is_empty() {
        return;
    }
    let now = jiff::Timestamp::now();
    let mut rollouts: BTreeMap<String, (usize, Vec<SetRollout>)> = BTreeMap::new();
    for g in reconciler.cache.governed() {
        let entry = rollouts.entry(g.policy.name.clone()).or_default();
        entry.0 += 1;
        let Some(params) = &g.policy.progressive else {
            continue;
        };
        let set = &g.set;
        let id = (set.kind, set.namespace.clone(), set.name.clone());
        let previous = g.policy.rollouts.get(&id);
        if let Some(to) = set.asks.undo {
            undo(reconciler, &g, previous, to).await;
            // The next tick sees the new generation.
            if let Some(p) = previous {
                entry.1.push(p.clone());
            }
            continue;
        }
        if !g.revisions.contains_key(&set.generation) {
            keep_revision(reconciler, set).await;
        }
        let seen: Vec<Seen<'_>> = g
            .clusters
            .iter()
            .map(|(k, c, h)| Seen {
                key: k,
                cluster: c,
                held: h.as_ref(),
            })
            .collect();
        let stepped = step(params, set, previous, &seen, g.any_held, now);
        for note in stepped.notes {
            reconciler.events.record(Involved::set(set), note);
        }
        prune(reconciler, &g, &stepped.rollout).await;
        entry.1.push(stepped.rollout);
    }
    for gone in reconciler.cache.orphan_revisions() {
        delete_revision(reconciler, &gone).await;
    }
    for policy in policies {
        let (governed, list) = rollouts.remove(&policy.name).unwrap_or_default();
        write_status(reconciler, &policy, governed, list).await;
    }
}

async fn write_status(
    reconciler: &Reconciler,
    policy: &Policy,
    governed: usize,
    rollouts: Vec<SetRollout>,
) {
    let count = |phases: &[&str]| {
        rollouts
            .iter()
            .filter(|r| phases.contains(&r.phase.as_str()))
            .count() as i64
    };
    let status = RolloutPolicyStatus {
        observed_generation: Some(policy.generation),
        governed: Some(governed as i64),
        progressing: Some(count(&[phase::PROGRESSING, phase::PAUSED])),
        halted: Some(count(&[phase::HALTED])),
        rollouts,
    };
    let status = serde_json::to_value(&status).expect("status serialises");
    if status == policy.status {
        return;
    }
    if let Err(e) = reconciler
        .hub
        .update_status(HubKind::RolloutPolicy, "", &policy.name, &status)
        .await
    {
        tracing::warn!(policy = %policy.name, error = %syncsets_store::Chain(&e), "cannot write a rollout policy's status");
    }
}

/// Where a set's revisions live: a SyncSet's namespace, or [`SYSTEM_NAMESPACE`].
fn revision_namespace(set: &SetDef) -> &str {
    match set.kind {
        SetKind::SyncSet => &set.namespace,
        SetKind::SelectorSyncSet => SYSTEM_NAMESPACE,
    }
}

fn revision_name(set: &SetDef, generation: i64) -> String {
    let prefix = match set.kind {
        SetKind::SyncSet => "syncset",
        SetKind::SelectorSyncSet => "selectorsyncset",
    };
    let mut name = set.name.clone();
    name.truncate(253 - prefix.len() - 22);
    format!(
        "{prefix}-{}-{generation}",
        name.trim_end_matches(['-', '.'])
    )
}

/// Keeps the set's spec at its current generation in a ControllerRevision.
async fn keep_revision(reconciler: &Reconciler, set: &SetDef) {
    let namespace = revision_namespace(set);
    if set.kind == SetKind::SelectorSyncSet
        && let Err(e) = ensure_system_namespace(reconciler).await
    {
        tracing::warn!(error = %syncsets_store::Chain(&e), "cannot make the namespace of SelectorSyncSets' revisions");
        return;
    }
    let object = json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(set, set.generation), "namespace": namespace,
            "labels": {REVISION_KIND_LABEL: set.kind.as_str(), REVISION_NAME_LABEL: set.name},
            "ownerReferences": [{"apiVersion": "hive.openshift.io/v1", "kind": set.kind.as_str(),
                "name": set.name, "uid": set.uid}],
        },
        "data": {"spec": set.spec},
        "revision": set.generation,
    });
    if let Err(e) = reconciler
        .hub
        .put(HubKind::ControllerRevision, &object, None)
        .await
    {
        tracing::warn!(set = %set.display_name(), error = %syncsets_store::Chain(&e), "cannot keep a set's revision");
    }
}

async fn ensure_system_namespace(reconciler: &Reconciler) -> crate::Result<()> {
    let key = reconciler.hub.key(HubKind::Namespace, "", SYSTEM_NAMESPACE);
    if reconciler.hub.get_many(&[key]).await?[0].is_some() {
        return Ok(());
    }
    let object = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": SYSTEM_NAMESPACE}});
    match reconciler.hub.put(HubKind::Namespace, &object, None).await {
        Ok(_) | Err(crate::Error::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the set's revisions beyond the newest [`HISTORY`] and those its rollout uses.
async fn prune(reconciler: &Reconciler, g: &Governed, rollout: &SetRollout) {
    if g.revisions.len() <= HISTORY + 2 {
        return;
    }
    let used = [Some(rollout.revision), rollout.from_revision];
    let old: Vec<&(String, String)> = g
        .revisions
        .iter()
        .rev()
        .filter(|(n, _)| !used.contains(&Some(**n)))
        .skip(HISTORY)
        .map(|(_, rev)| &rev.object)
        .collect();
    for object in old {
        delete_revision(reconciler, object).await;
    }
}

async fn delete_revision(reconciler: &Reconciler, (namespace, name): &(String, String)) {
    if let Err(e) = reconciler
        .hub
        .delete(HubKind::ControllerRevision, namespace, name)
        .await
    {
        tracing::warn!(%namespace, %name, error = %syncsets_store::Chain(&e), "cannot delete an old revision");
    }
}

/// Rolls a set back as its `syncsets.io/rollout-undo` annotation asks: writes the spec of
/// that revision (by default the one its rollout started from, else the one before the
/// current) as the set's new generation, which then rolls out like any change.
async fn undo(
    reconciler: &Reconciler,
    g: &Governed,
    rollout: Option<&SetRollout>,
    to: Option<i64>,
) {
    let set = &g.set;
    let to = to.or_else(|| {
        rollout
            .filter(|r| r.revision == set.generation && r.phase != phase::COMPLETE)
            .and_then(|r| r.from_revision)
            .or_else(|| {
                g.revisions
                    .range(..set.generation)
                    .next_back()
                    .map(|(n, _)| *n)
            })
    });
    let revision = to.and_then(|n| g.revisions.get(&n).map(|rev| (n, rev)));
    let spec = revision.map(|(_, rev)| serde_json::to_value(&rev.spec).expect("spec serialises"));
    let kind = match set.kind {
        SetKind::SyncSet => HubKind::SyncSet,
        SetKind::SelectorSyncSet => HubKind::SelectorSyncSet,
    };
    let written = reconciler
        .hub
        .write(kind, &set.namespace, &set.name, false, None, |current| {
            let Some(current) = current else {
                return Ok(Proposal::Keep);
            };
            let mut object = current.object.clone();
            if let Some(annotations) = object["metadata"]["annotations"].as_object_mut() {
                annotations.remove(UNDO_ANNOTATION);
            }
            if let Some(spec) = &spec {
                let target = object["spec"].as_object_mut();
                if let Some(target) = target {
                    for field in SPEC_FIELDS {
                        target.remove(field);
                    }
                    for (k, v) in spec.as_object().into_iter().flatten() {
                        if SPEC_FIELDS.contains(&k.as_str()) && !v.is_null() {
                            target.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            Ok(Proposal::Write(object))
        })
        .await;
    let note = match (written, revision) {
        (Err(e), _) => {
            tracing::warn!(set = %set.display_name(), error = %syncsets_store::Chain(&e), "cannot undo a rollout");
            return;
        }
        (Ok(_), Some((n, _))) => Note {
            kind: Type::Normal,
            reason: "RolloutUndone",
            message: format!(
                "rolled back from revision {} to the spec of revision {n}, as a new revision",
                set.generation
            ),
        },
        (Ok(_), None) => Note {
            kind: Type::Warning,
            reason: "UndoFailed",
            message: match to {
                Some(n) => format!("revision {n} is not kept: nothing to roll back to"),
                None => "no earlier revision is kept: nothing to roll back to".into(),
            },
        },
    };
    reconciler.events.record(Involved::set(set), note);
}
