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
    for gone in reconciler.cache.orphan_revisions() {
        delete_revision(reconciler, &gone).await;
    }
    if reconciler.cache.policies().is_empty() {
        return;
    }
    // Step from every change committed so far (the policies' status included): a status
    // written from an older view would take a rollout back.
    if let Err(e) = reconciler.cache.sync().await {
        tracing::warn!(error = %syncsets_store::Chain(&e), "cannot catch up before stepping rollouts");
        return;
    }
    let policies = reconciler.cache.policies();
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
        let previous = g
            .policy
            .rollouts
            .get(&id)
            .filter(|p| p.uid.as_deref().is_none_or(|u| u == set.uid));
        if let Some(asked) = &set.asks.undo {
            undo(reconciler, &g, previous, asked).await;
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
    gauges(&rollouts);
    for policy in policies {
        let (governed, list) = rollouts.remove(&policy.name).unwrap_or_default();
        write_status(reconciler, &policy, governed, list).await;
    }
}

/// The rollout gauges of every governed set; zero for those no longer governed.
fn gauges(rollouts: &BTreeMap<String, (usize, Vec<SetRollout>)>) {
    type Labels = [(&'static str, String); 4];
    static SHOWN: std::sync::Mutex<Vec<Labels>> = std::sync::Mutex::new(Vec::new());
    let mut now: Vec<Labels> = Vec::new();
    for (policy, (_, list)) in rollouts {
        for r in list {
            let labels: Labels = [
                ("kind", r.kind.clone()),
                ("namespace", r.namespace.clone().unwrap_or_default()),
                ("name", r.name.clone()),
                ("policy", policy.clone()),
            ];
            metrics::gauge!("syncsets_rollout_wave", &labels).set(r.wave as f64);
            metrics::gauge!("syncsets_rollout_waves", &labels).set(r.waves.len() as f64);
            metrics::gauge!("syncsets_rollout_halted", &labels)
                .set(f64::from(u8::from(r.phase == phase::HALTED)));
            now.push(labels);
        }
    }
    let mut shown = SHOWN.lock().expect("gauges lock");
    for gone in shown.iter().filter(|l| !now.contains(l)) {
        for name in [
            "syncsets_rollout_wave",
            "syncsets_rollout_waves",
            "syncsets_rollout_halted",
        ] {
            metrics::gauge!(name, gone).set(0.0);
        }
    }
    *shown = now;
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
            "name": super::revision_name(set.kind, &set.name, set.generation), "namespace": namespace,
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
async fn undo(reconciler: &Reconciler, g: &Governed, rollout: Option<&SetRollout>, asked: &str) {
    let set = &g.set;
    let fail = |message: String| Note {
        kind: Type::Warning,
        reason: "UndoFailed",
        message,
    };
    let to = match asked.trim() {
        "" | "previous" => None,
        n => match n.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                if clear_undo(reconciler, set, None).await.is_ok() {
                    reconciler.events.record(
                        Involved::set(set),
                        fail(format!(
                            "{UNDO_ANNOTATION}={asked:?} names no revision: give its number, or \
                             nothing for the previous one"
                        )),
                    );
                }
                return;
            }
        },
    };
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
    let note = match (clear_undo(reconciler, set, spec.as_ref()).await, revision) {
        (Err(e), _) => {
            // Refused (the old spec no longer passes admission, say): the annotation stays
            // and the Event says why; the rollout waits for a person.
            tracing::warn!(set = %set.display_name(), error = %syncsets_store::Chain(&e), "cannot undo a rollout");
            fail(format!("cannot roll back: {e}"))
        }
        (Ok(false), _) => return, // seen already, or the set changed since
        (Ok(true), Some((n, _))) => Note {
            kind: Type::Normal,
            reason: "RolloutUndone",
            message: format!(
                "rolled back from revision {} to the spec of revision {n}, as a new revision",
                set.generation
            ),
        },
        (Ok(true), None) => fail(match to {
            Some(n) => format!("revision {n} is not kept: nothing to roll back to"),
            None => "no earlier revision is kept: nothing to roll back to".into(),
        }),
    };
    reconciler.events.record(Involved::set(set), note);
}

/// Removes the set's undo annotation and, with `spec`, writes that revision's spec fields
/// as its own — only if the set is still as the cache saw it (the same generation, the
/// annotation there), so an undo is carried out once and never over a later edit. Returns
/// whether it wrote.
async fn clear_undo(
    reconciler: &Reconciler,
    set: &SetDef,
    spec: Option<&serde_json::Value>,
) -> crate::Result<bool> {
    let kind = HubKind::from(set.kind);
    let mut wrote = false;
    reconciler
        .hub
        .write(kind, &set.namespace, &set.name, false, None, |current| {
            wrote = false;
            let Some(current) = current else {
                return Ok(Proposal::Keep);
            };
            let mut object = current.object.clone();
            let asked = object["metadata"]["annotations"]
                .as_object_mut()
                .and_then(|a| a.remove(UNDO_ANNOTATION));
            if asked.is_none() || object["metadata"]["generation"].as_i64() != Some(set.generation)
            {
                return Ok(Proposal::Keep);
            }
            if let Some(spec) = spec
                && let Some(target) = object["spec"].as_object_mut()
            {
                for field in SPEC_FIELDS {
                    target.remove(field);
                }
                for (k, v) in spec.as_object().into_iter().flatten() {
                    if SPEC_FIELDS.contains(&k.as_str()) && !v.is_null() {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
            wrote = true;
            Ok(Proposal::Write(object))
        })
        .await?;
    Ok(wrote)
}
