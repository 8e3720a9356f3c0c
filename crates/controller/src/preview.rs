//! What a reconcile would change on one cluster, without changing anything: its [`Plan`]
//! carried out in the same order with every write a server-side dry run (`dryRun=All`),
//! each object compared with what the cluster answers it would become. `syncsets plan`
//! shows this for every cluster a set targets.

use std::sync::Arc;

use syncsets_types::hive::ClusterSyncStatus;

use crate::model::{Cluster, ObjRef, SetDef};
use crate::plan::{self, Context, Plan, Step};
use crate::reconcile::{HubSecrets, secret_to_write, secret_versions};
use crate::target::{Diff, Failure, Target, TargetError};

/// An object a reconcile would touch, and what would happen to it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Touched {
    /// The object (its namespace as the cluster would place it).
    pub object: ObjRef,
    /// What would happen to it.
    pub diff: Diff,
}

/// What a reconcile would do on one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preview {
    /// The objects, in the order the reconcile would write them (deletions first),
    /// unchanged ones included.
    pub objects: Vec<Touched>,
    /// Why it would fail, if it would: a set's first failure (after which that set writes
    /// nothing more), and deletions the cluster would refuse.
    pub failures: Vec<String>,
}

/// What a full reapply of `cluster` would do about one set: `set` as it would be (applied
/// if it targets the cluster, its objects deleted if it no longer does) against the
/// cluster's ClusterSync status `previous`. The cluster's other sets (`others`: any sets;
/// those that apply to the cluster count) are planned beside it, as the reconcile plans
/// them, so that what they declare is not deleted; the plan returned holds only `set`.
pub fn plan_one(
    cluster: &Cluster,
    set: &Arc<SetDef>,
    others: &[Arc<SetDef>],
    previous: Option<&ClusterSyncStatus>,
    secrets: &HubSecrets,
) -> Plan {
    let same = |kind, name: &str| kind == set.kind && name == set.name;
    let mut sets: Vec<Arc<SetDef>> = others
        .iter()
        .filter(|o| !same(o.kind, &o.name) && o.applies_to(cluster))
        .cloned()
        .collect();
    if set.applies_to(cluster) {
        sets.push(set.clone());
    }
    let versions = secret_versions(secrets);
    let mut plan = plan::plan(
        cluster,
        &sets,
        &Context {
            previous,
            full: true,
            applied_digests: None,
            secret_versions: Some(&versions),
            held: &[],
        },
    );
    plan.sets.retain(|p| same(p.set.kind, &p.set.name));
    plan.retired.retain(|r| same(r.kind, &r.old.name));
    plan
}

/// Carries out `plan` on `target` as dry runs; `secrets` are the hub Secrets its sets copy.
/// `Err` when the cluster cannot be asked (unreachable, or our credentials refused):
/// nothing more can be said about it.
pub async fn preview(
    target: &Target,
    plan: &Plan,
    secrets: &HubSecrets,
) -> Result<Preview, TargetError> {
    let mut out = Preview::default();
    let deletions = plan.retired.iter().flat_map(|r| &r.delete).chain(
        plan.sets
            .iter()
            .flat_map(|p| p.work.iter().flat_map(|w| &w.removed)),
    );
    for object in deletions {
        match target.preview_delete(object).await {
            Ok(diff) => out.touch(object.clone(), diff),
            Err(e) => match not_previewable(reached(e)?) {
                Ok(why) => out.touch(object.clone(), Diff::NotPreviewable(why)),
                Err(e) => out
                    .failures
                    .push(format!("could not delete resource {object}: {e}")),
            },
        }
    }
    for p in &plan.sets {
        let Some(work) = &p.work else { continue };
        let steps = match &work.steps {
            Ok(steps) => steps,
            Err(message) => {
                out.failures.push(message.clone());
                continue;
            }
        };
        for step in steps {
            let (declared, what, index, result) = match step {
                Step::Resource { index, rendered } => {
                    let object = plan::object_to_apply(&p.set, *index, rendered.as_ref());
                    let declared = ObjRef::of(&object);
                    let result = target.preview_write(object, work.behavior).await;
                    (declared, "resource", index, result)
                }
                Step::Secret {
                    index,
                    source,
                    target: to,
                } => match secret_to_write(*index, source, to, secrets) {
                    Err(m) => {
                        out.failures.push(m);
                        break;
                    }
                    Ok(secret) => {
                        let result = target.preview_write(secret, work.behavior).await;
                        (to.clone(), "secret", index, result)
                    }
                },
                Step::Patch {
                    index,
                    target: object,
                    patch,
                    patch_type,
                } => {
                    if out.creates(object) {
                        // The object is created by an earlier step: patched then, not now.
                        continue;
                    }
                    let result = target
                        .preview_patch(object, patch, *patch_type)
                        .await
                        .map(|diff| (diff, object.clone()));
                    (object.clone(), "patch", index, result)
                }
            };
            let e = match result {
                Ok((diff, object)) => {
                    out.touch(object, diff);
                    continue;
                }
                Err(e) => reached(e)?,
            };
            if e.failure == Failure::NotFound && out.creates_home_of(&declared) {
                // Its namespace or kind does not exist yet: an earlier step creates it.
                out.touch(declared, Diff::Create);
                continue;
            }
            match not_previewable(e) {
                Ok(why) => out.touch(declared, Diff::NotPreviewable(why)),
                Err(e) => {
                    // What a cluster says of a Secret it refused may quote the Secret's
                    // data (a policy webhook's message, say): only its status is shown.
                    let said = if declared.kind == "Secret" && declared.group().is_empty() {
                        e.status()
                    } else {
                        e.to_string()
                    };
                    out.failures
                        .push(format!("failed to apply {what} {index}: {said}"));
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// A failure that still says something about the cluster, or one that means it could not
/// be asked at all (unreachable, no usable kubeconfig, our credentials refused).
fn reached(e: TargetError) -> Result<TargetError, TargetError> {
    match e.failure {
        Failure::Unreachable | Failure::Config => Err(e),
        Failure::Unauthorized if e.code == 401 => Err(e),
        _ => Ok(e),
    }
}

/// Why a write cannot be previewed, when the cluster refused it only for being a dry run
/// (an admission webhook with side effects refuses dry runs); else the failure.
fn not_previewable(e: TargetError) -> Result<String, TargetError> {
    if e.code == 400 && e.message.contains("does not support dry run") {
        Ok(e.message)
    } else {
        Err(e)
    }
}

impl Preview {
    /// Records what would happen to an object; a second write of the same object (a patch
    /// of an object a resource declares) adds its fields to the first's.
    fn touch(&mut self, object: ObjRef, diff: Diff) {
        let earlier = self
            .objects
            .iter_mut()
            .find(|t| t.object.same_object(&object));
        match (earlier, diff) {
            (None, diff) => self.objects.push(Touched { object, diff }),
            (Some(t), Diff::Change(more)) => match &mut t.diff {
                Diff::Change(fields) => {
                    for field in more {
                        if !fields.contains(&field) {
                            fields.push(field);
                        }
                    }
                }
                Diff::Unchanged => t.diff = Diff::Change(more),
                _ => {}
            },
            (Some(t), diff @ Diff::NotPreviewable(_)) => t.diff = diff,
            (Some(_), _) => {}
        }
    }

    /// Whether an earlier step creates `object`.
    fn creates(&self, object: &ObjRef) -> bool {
        self.objects
            .iter()
            .any(|t| t.diff == Diff::Create && t.object.same_object(object))
    }

    /// Whether an earlier step creates the namespace `object` goes to, or a
    /// CustomResourceDefinition of its group (named `<plural>.<group>`).
    fn creates_home_of(&self, object: &ObjRef) -> bool {
        let group = object.group();
        self.objects.iter().any(|t| {
            t.diff == Diff::Create
                && ((t.object.kind == "Namespace"
                    && t.object.group().is_empty()
                    && !object.namespace.is_empty()
                    && t.object.name == object.namespace)
                    || (t.object.kind == "CustomResourceDefinition"
                        && !group.is_empty()
                        && t.object.name.split_once('.').map(|(_, g)| g) == Some(group)))
        })
    }
}
