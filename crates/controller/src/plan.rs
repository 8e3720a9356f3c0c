//! Reconciling one cluster, without I/O: what to do ([`plan`]) and, once it was done, the
//! ClusterSync status it leads to ([`fold`]). The executor in between
//! ([`crate::reconcile`]) only talks to the target cluster.
//!
//! ```text
//!  (cluster, sets, last status, full?) ─plan─▶ Plan ─execute─▶ Outcomes ─fold─▶ new status
//! ```
//!
//! The rules are Hive's (`shared/docs/syncset-semantics.md`): SyncSets before
//! SelectorSyncSets, each by name; deletions of sets that no longer apply and of resources
//! removed from a set before any apply; within a set resources, then secret mappings, then
//! patches, stopping at the first failure; a template or decode error fails the set before
//! anything is applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use syncsets_types::hive::{ClusterSyncStatus, MANAGED_LABEL, SyncObjectPatch, SyncStatus};

use crate::model::{Cluster, ObjRef, SetDef, SetKind};
use crate::template;

/// How a set's resources are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Server-side apply: the object becomes what is declared (fields no longer declared
    /// disappear).
    Apply,
    /// Create when absent, otherwise leave it alone.
    CreateOnly,
    /// Create when absent, otherwise update the declared fields and keep the others.
    CreateOrUpdate,
}

impl Behavior {
    fn of(set: &SetDef) -> Self {
        match set.spec.apply_behavior.as_deref() {
            Some("CreateOnly") => Self::CreateOnly,
            Some("CreateOrUpdate") => Self::CreateOrUpdate,
            _ => Self::Apply,
        }
    }
}

/// A patch's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// Strategic merge patch (the default).
    Strategic,
    /// JSON merge patch.
    Merge,
    /// JSON patch.
    Json,
}

impl PatchType {
    /// The request's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Strategic => "application/strategic-merge-patch+json",
            Self::Merge => "application/merge-patch+json",
            Self::Json => "application/json-patch+json",
        }
    }
}

/// One write to the target cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `resources[index]`: the object to write is [`object_to_apply`] (made when it is
    /// written, so that a plan does not hold a copy of every object).
    Resource {
        /// Position in `spec.resources`.
        index: usize,
        /// The templated object, when templates apply (else the set's own is used).
        rendered: Option<Value>,
    },
    /// `secretMappings[index]`: copy a hub Secret.
    Secret {
        /// Position in `spec.secretMappings`.
        index: usize,
        /// (namespace, name) of the source on the hub, or why it cannot be read.
        source: Result<(String, String), String>,
        /// The Secret to write on the target.
        target: ObjRef,
    },
    /// `patches[index]`.
    Patch {
        /// Position in `spec.patches`.
        index: usize,
        /// The object patched.
        target: ObjRef,
        /// The patch document (templated).
        patch: String,
        /// Its type.
        patch_type: PatchType,
    },
}

/// The work of applying one set.
#[derive(Clone, Debug, PartialEq)]
pub struct Work {
    /// The writes, in order; `Err` when the set cannot be decoded or templated (nothing is
    /// written then).
    pub steps: Result<Vec<Step>, String>,
    /// How resources and secrets are written.
    pub behavior: Behavior,
    /// Objects the set declares now (resources and secret targets).
    pub declared: Vec<ObjRef>,
    /// Objects the set applied before and no longer declares (Sync mode): deleted first.
    pub removed: Vec<ObjRef>,
}

/// The plan for one set that applies to the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct SetPlan {
    /// The set.
    pub set: Arc<SetDef>,
    /// Its last status on this cluster.
    pub old: Option<SyncStatus>,
    /// What to do; `None` keeps the last status (applied at this generation already).
    pub work: Option<Work>,
    /// The digest of its inputs beyond its spec (see [`inputs_digest`]).
    pub digest: Option<String>,
    /// Without work: the objects applied that were still progressing, to look at again.
    pub recheck: Vec<ObjRef>,
}

/// A set that no longer applies (deleted, or it stopped matching): its tracked objects are
/// deleted.
#[derive(Clone, Debug, PartialEq)]
pub struct Retired {
    /// SyncSet or SelectorSyncSet.
    pub kind: SetKind,
    /// Its last status (with `resourcesToDelete`).
    pub old: SyncStatus,
    /// The objects to delete (those another applying set declares are kept).
    pub delete: Vec<ObjRef>,
}

/// Everything one reconcile does, in order: `retired` deletions, then each set's `removed`
/// deletions, then each set's steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Sets that no longer apply.
    pub retired: Vec<Retired>,
    /// The sets that apply, SyncSets first, each kind by name.
    pub sets: Vec<SetPlan>,
    /// Sets left as they are (a rollout holds them): their statuses, kept.
    pub held: Vec<(SetKind, SyncStatus)>,
}

impl Plan {
    /// Whether the plan talks to the target cluster at all.
    pub fn has_work(&self) -> bool {
        self.retired.iter().any(|r| !r.delete.is_empty())
            || self.sets.iter().any(|s| {
                !s.recheck.is_empty()
                    || s.work.as_ref().is_some_and(|w| {
                        !w.removed.is_empty() || matches!(&w.steps, Ok(s) if !s.is_empty())
                    })
            })
    }
}

/// What reconciling needs to know besides the cluster and its sets.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// The cluster's last ClusterSync status.
    pub previous: Option<&'a ClusterSyncStatus>,
    /// A full reapply is due: every set is applied whatever its status.
    pub full: bool,
    /// Digests of the sets' other inputs when they were last applied, by set id
    /// ([`set_id`]).
    pub applied_digests: Option<&'a BTreeMap<String, String>>,
    /// resourceVersions of the hub Secrets the sets copy, by (namespace, name).
    pub secret_versions: Option<&'a BTreeMap<(String, String), u64>>,
    /// Sets that apply but are left as they are on the cluster (a rollout holds them at a
    /// revision it no longer has): neither applied nor retired.
    pub held: &'a [(SetKind, String)],
}

/// A set's id in digest maps: `SyncSet/ns/name` or `SelectorSyncSet/name`.
pub fn set_id(kind: SetKind, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

/// A digest of what a set's result depends on beyond its spec: the cluster labels its
/// templates read and the versions of the Secrets it copies; `None` when it depends on
/// neither. A changed digest reapplies the set: a label or Secret change reaches the
/// cluster without waiting for the next full reapply.
pub fn inputs_digest(
    set: &SetDef,
    cluster: &Cluster,
    secret_versions: &BTreeMap<(String, String), u64>,
) -> Option<String> {
    let templated = set.spec.enable_resource_templates == Some(true)
        || set.spec.enable_patch_templates == Some(true);
    if !templated && set.spec.secret_mappings.is_empty() {
        return None;
    }
    let mut text = String::new();
    if templated {
        for (k, v) in &cluster.labels {
            text.push_str(&format!("l:{k}={v};"));
        }
    }
    for source in set.source_secrets() {
        let rv = secret_versions.get(&source).copied().unwrap_or(0);
        text.push_str(&format!("s:{}/{}={rv};", source.0, source.1));
    }
    // A cryptographic digest: the labels are the cluster owner's to choose, and a collision
    // would let them keep a set from being reapplied.
    let digest = crate::clients::sha256(text.as_bytes());
    Some(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// The results of one kind of set in a ClusterSync status (none without a status).
pub fn statuses(status: Option<&ClusterSyncStatus>, kind: SetKind) -> &[SyncStatus] {
    match (status, kind) {
        (None, _) => &[],
        (Some(p), SetKind::SyncSet) => &p.sync_sets,
        (Some(p), SetKind::SelectorSyncSet) => &p.selector_sync_sets,
    }
}

/// The result of `set` in a ClusterSync status, if it has one.
pub fn status_of<'a>(
    status: Option<&'a ClusterSyncStatus>,
    set: &SetDef,
) -> Option<&'a SyncStatus> {
    statuses(status, set.kind)
        .iter()
        .find(|s| s.name == set.name)
}

/// Plans a reconcile of `cluster` with the sets that apply to it.
pub fn plan(cluster: &Cluster, sets: &[Arc<SetDef>], ctx: &Context<'_>) -> Plan {
    let mut sets: Vec<Arc<SetDef>> = sets.to_vec();
    sets.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    let no_versions = BTreeMap::new();
    let versions = ctx.secret_versions.unwrap_or(&no_versions);

    let mut planned: Vec<SetPlan> = sets
        .iter()
        .map(|set| {
            let old = status_of(ctx.previous, set).cloned();
            let digest = inputs_digest(set, cluster, versions);
            let id = set_id(set.kind, &set.namespace, &set.name);
            let inputs_changed = digest.is_some()
                && ctx
                    .applied_digests
                    .is_some_and(|d| d.get(&id) != digest.as_ref());
            let due = ctx.full
                || inputs_changed
                || old.as_ref().is_none_or(|o| {
                    o.result != "Success" || o.observed_generation != set.generation
                });
            let work = due.then(|| work_for(cluster, set, old.as_ref()));
            let recheck = match (&work, &old) {
                // Degraded ones too, less and less often: a Deployment past its deadline
                // may still make it.
                (None, Some(old)) => old
                    .unhealthy_resources
                    .iter()
                    .map(|u| ObjRef::from_status(&u.resource))
                    .collect(),
                _ => Vec::new(),
            };
            SetPlan {
                set: set.clone(),
                old,
                work,
                digest,
                recheck,
            }
        })
        .collect();

    // An object another applying set declares is not deleted: it moved between sets.
    let declared_anywhere: Vec<ObjRef> = planned
        .iter()
        .flat_map(|p| match &p.work {
            Some(w) => w.declared.clone(),
            None => declared_of(cluster, &p.set),
        })
        .collect();
    let kept = |r: &ObjRef| declared_anywhere.iter().any(|d| d.covers(r));
    for p in &mut planned {
        if let Some(w) = p.work.as_mut() {
            w.removed.retain(|r| !kept(r));
        }
    }

    let mut retired = Vec::new();
    let mut held = Vec::new();
    for kind in [SetKind::SyncSet, SetKind::SelectorSyncSet] {
        let mut old: Vec<&SyncStatus> = statuses(ctx.previous, kind)
            .iter()
            .filter(|s| {
                !sets
                    .iter()
                    .any(|set| set.kind == kind && set.name == s.name)
            })
            .collect();
        old.sort_by(|a, b| a.name.cmp(&b.name));
        for status in old {
            if ctx
                .held
                .iter()
                .any(|(k, n)| *k == kind && *n == status.name)
            {
                held.push((kind, status.clone()));
                continue;
            }
            let delete = status
                .resources_to_delete
                .iter()
                .map(ObjRef::from_status)
                .filter(|r| !kept(r))
                .collect();
            retired.push(Retired {
                kind,
                old: status.clone(),
                delete,
            });
        }
    }
    Plan {
        retired,
        sets: planned,
        held,
    }
}

/// The objects a set declares, for deciding what not to delete (errors declare nothing).
fn declared_of(cluster: &Cluster, set: &SetDef) -> Vec<ObjRef> {
    work_for(cluster, set, None).declared
}

fn work_for(cluster: &Cluster, set: &SetDef, old: Option<&SyncStatus>) -> Work {
    let behavior = Behavior::of(set);
    let (steps, declared) = match steps_for(cluster, set) {
        Ok((steps, declared)) => (Ok(steps), declared),
        Err(e) => (Err(e), Vec::new()),
    };
    // Sync mode deletes what the set no longer declares; a set that failed to decode
    // declares nothing, so nothing is deleted for it (it fails before anything is done).
    let removed = match (set.sync_mode(), old, &steps) {
        (true, Some(old), Ok(_)) => old
            .resources_to_delete
            .iter()
            .map(ObjRef::from_status)
            .filter(|r| !declared.iter().any(|d| d.covers(r)))
            .collect(),
        _ => Vec::new(),
    };
    Work {
        steps,
        behavior,
        declared,
        removed,
    }
}

/// The writes of a set, with the objects it declares.
fn steps_for(cluster: &Cluster, set: &SetDef) -> Result<(Vec<Step>, Vec<ObjRef>), String> {
    let spec = &set.spec;
    let mut steps = Vec::new();
    let mut declared = Vec::new();
    let mut decode_errors = Vec::new();
    for (index, raw) in spec.resources.iter().enumerate() {
        let rendered = if spec.enable_resource_templates == Some(true) {
            let mut object = raw.clone();
            if let Err(e) = template::render_value(&mut object, &cluster.labels) {
                decode_errors.push(format!("failed to parameterize resource {index}: {e}"));
                continue;
            }
            Some(object)
        } else {
            None
        };
        let object = rendered.as_ref().unwrap_or(raw);
        if let Err(e) = check_object(object) {
            decode_errors.push(format!("failed to decode resource {index}: {e}"));
            continue;
        }
        declared.push(ObjRef::of(object));
        steps.push(Step::Resource { index, rendered });
    }
    for (index, mapping) in spec.secret_mappings.iter().enumerate() {
        let source = set.secret_source(index);
        let target = ObjRef {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: mapping.target_ref.namespace.clone().unwrap_or_default(),
            name: mapping.target_ref.name.clone(),
        };
        declared.push(target.clone());
        steps.push(Step::Secret {
            index,
            source,
            target,
        });
    }
    for (index, patch) in spec.patches.iter().enumerate() {
        match patch_step(cluster, set, index, patch) {
            Ok(step) => steps.push(step),
            Err(e) => decode_errors.push(e),
        }
    }
    match decode_errors.len() {
        0 => Ok((steps, declared)),
        1 => Err(decode_errors.remove(0)),
        _ => Err(format!("[{}]", decode_errors.join(", "))),
    }
}

fn patch_step(
    cluster: &Cluster,
    set: &SetDef,
    index: usize,
    p: &SyncObjectPatch,
) -> Result<Step, String> {
    let patch = if set.spec.enable_patch_templates == Some(true) {
        template::render(&p.patch, &cluster.labels)
            .map_err(|e| format!("failed to parameterize patch {index}: {e}"))?
    } else {
        p.patch.clone()
    };
    let patch_type = match p.patch_type.as_deref() {
        None | Some("" | "strategic") => PatchType::Strategic,
        Some("merge") => PatchType::Merge,
        Some("json") => PatchType::Json,
        Some(other) => {
            return Err(format!(
                "failed to apply patch {index}: invalid patch type: {other}. Valid patch types are 'strategic', 'merge' or 'json'"
            ));
        }
    };
    if let Err(e) = serde_json::from_str::<Value>(&patch) {
        return Err(format!(
            "failed to apply patch {index}: the patch is not valid JSON: {e}"
        ));
    }
    Ok(Step::Patch {
        index,
        target: ObjRef {
            api_version: p.api_version.clone(),
            kind: p.kind.clone(),
            namespace: p.namespace.clone().unwrap_or_default(),
            name: p.name.clone(),
        },
        patch,
        patch_type,
    })
}

/// The object a [`Step::Resource`] writes: the set's resource (or its templated form)
/// with the managed label.
pub fn object_to_apply(set: &SetDef, index: usize, rendered: Option<&Value>) -> Value {
    let mut object = rendered.unwrap_or(&set.spec.resources[index]).clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if !labels.is_object() {
            *labels = Value::Object(Default::default());
        }
        labels[MANAGED_LABEL] = Value::String("true".into());
    }
    object
}

impl Step {
    /// The kind of object the step writes.
    pub fn kind<'a>(&'a self, set: &'a SetDef) -> &'a str {
        match self {
            Step::Resource { index, rendered } => {
                rendered.as_ref().unwrap_or(&set.spec.resources[*index])["kind"]
                    .as_str()
                    .unwrap_or_default()
            }
            Step::Secret { .. } => "Secret",
            Step::Patch { target, .. } => &target.kind,
        }
    }

    /// How the step writes, as Hive's apply metrics label it.
    pub fn how(&self, behavior: Behavior) -> &'static str {
        match (self, behavior) {
            (Step::Patch { .. }, _) => "patch",
            (_, Behavior::Apply) => "apply",
            (_, Behavior::CreateOnly) => "createOnly",
            (_, Behavior::CreateOrUpdate) => "createOrUpdate",
        }
    }
}

/// A resource must be an object with apiVersion, kind and metadata.name.
fn check_object(object: &Value) -> Result<(), String> {
    if !object.is_object() {
        return Err("a resource must be an object".into());
    }
    for (field, value) in [
        ("apiVersion", &object["apiVersion"]),
        ("kind", &object["kind"]),
        ("metadata.name", &object["metadata"]["name"]),
    ] {
        if value.as_str().is_none_or(str::is_empty) {
            return Err(format!("Object '{field}' is missing"));
        }
    }
    if !object["metadata"].is_object() {
        return Err("Object 'metadata' is not an object".into());
    }
    Ok(())
}

mod fold;

pub use fold::{Outcomes, RetiredOutcome, SetOutcome, fold};

#[cfg(test)]
mod tests;
