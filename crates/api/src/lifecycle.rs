//! What happens around writes: preparing a logical cluster on first use (its default
//! namespaces and stored CRDs), keeping the registry in step with CRD objects, and
//! terminating namespaces (contents first, then the namespace itself).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use syncsets_machinery::meta::{self, FieldValidation, Ownership, WriteContext};
use syncsets_machinery::registry::KindInfo;
use syncsets_retry::Backoff;
use syncsets_store::{ListQuery, ObjectKey};
use syncsets_write::{Change, Plain, Proposal, Write, WriteError};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::handlers::{Ctx, deletion};

pub(crate) const CRD_RESOURCE: &str = "customresourcedefinitions.apiextensions.k8s.io";
const DEFAULT_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

fn is_crd(ctx: &Ctx) -> bool {
    ctx.kind.group_resource() == CRD_RESOURCE
}

/// Loads the CRDs stored in a cluster and creates its default namespaces.
pub async fn prepare_cluster(state: &AppState, cluster: &str) -> ApiResult<()> {
    let q = ListQuery {
        cluster: cluster.to_string(),
        resource: CRD_RESOURCE.to_string(),
        ..Default::default()
    };
    let crds = state
        .store
        .list(&q)
        .await
        .map_err(|e| ApiError::internal("loading CustomResourceDefinitions", &e))?;
    for raw in crds.items {
        let crd = raw
            .parse()
            .map_err(|e| ApiError::internal("reading CustomResourceDefinitions", &e))?;
        if let Err(e) = state.registry.install_crd(cluster, &crd.object) {
            tracing::warn!(cluster, crd = %raw.name, error = %syncsets_store::Chain(&e), "stored CRD does not compile; not served");
        }
    }
    let kinds = state.registry.kinds(cluster);
    let now = meta::now();
    if state.config.authenticator.is_some() {
        let (roles, bindings) = crate::rbac::bootstrap();
        for (plural, objects) in [("clusterroles", roles), ("clusterrolebindings", bindings)] {
            let kind = kinds
                .get(crate::authz::RBAC_GROUP, "v1", plural)
                .expect("RBAC kinds are built in");
            create_missing(state, cluster, kind, &now, objects).await?;
        }
        state.rbac.invalidate(cluster);
    }
    let ns_kind = kinds
        .get("", "v1", "namespaces")
        .expect("namespaces are built in");
    let namespaces = DEFAULT_NAMESPACES
        .iter()
        .map(|name| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .collect();
    create_missing(state, cluster, ns_kind, &now, namespaces).await
}

/// Creates those of a cluster's default objects (of one cluster-scoped kind) that are
/// missing, as kube-apiserver does at start; existing ones, maybe edited, are kept: the
/// default namespaces, and with authentication the bootstrap ClusterRoles and bindings.
async fn create_missing(
    state: &AppState,
    cluster: &str,
    kind: &KindInfo,
    now: &str,
    objects: Vec<Value>,
) -> ApiResult<()> {
    let wctx = WriteContext {
        kind,
        meta_schema: state.registry.meta_schema(),
        namespace: None,
        now,
        field_validation: FieldValidation::Strict,
        ownership: Ownership::Update("syncsets".into()),
        status: false,
    };
    for object in objects {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = ObjectKey::new(cluster, &kind.group_resource(), "", &name);
        Write::new(state.store.as_ref(), key, wctx.clone())
            .run(&Plain, |current| {
                Ok(match current {
                    Some(_) => Proposal::Keep,
                    None => Proposal::Write(object.clone()),
                })
            })
            .await
            .map_err(|e| internal_write_error("creating default objects", kind, &name, e))?;
    }
    Ok(())
}

/// A failed write the server made itself.
fn internal_write_error(
    doing: &str,
    kind: &KindInfo,
    name: &str,
    e: WriteError<Infallible>,
) -> ApiError {
    match e {
        WriteError::Invalid(e) => ApiError::from_machinery(e, kind, name),
        WriteError::Store(e) => ApiError::internal(doing, &e),
        WriteError::Conflict => ApiError::conflict(kind, name),
        WriteError::Refused(never) => match never {},
    }
}

/// Keeps the registry in step with a written CRD, and the RBAC policy with RBAC objects.
pub async fn after_write(ctx: &Ctx, obj: &Value) {
    if crate::authz::is_rbac(&ctx.kind.group_resource()) {
        ctx.state.rbac.invalidate(&ctx.info.cluster);
    }
    if is_crd(ctx)
        && let Err(e) = ctx.state.registry.install_crd(&ctx.info.cluster, obj)
    {
        tracing::warn!(crd = %obj["metadata"]["name"], error = %syncsets_store::Chain(&e), "CRD stored but not served");
    }
}

/// After an object is gone: a deleted CRD takes its custom resources with it; a deleted
/// RBAC object changes the policy.
pub async fn after_delete(ctx: &Ctx, obj: &Value) {
    if crate::authz::is_rbac(&ctx.kind.group_resource()) {
        ctx.state.rbac.invalidate(&ctx.info.cluster);
    }
    if !is_crd(ctx) {
        return;
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let cluster = &ctx.info.cluster;
    let q = ListQuery {
        cluster: cluster.clone(),
        resource: name.to_string(),
        ..Default::default()
    };
    match ctx.state.store.list(&q).await {
        Ok(page) => {
            for item in page.items {
                let key = ObjectKey::new(cluster, name, &item.namespace, &item.name);
                // From the listed version (no second read); a later one is read again.
                let listed = item.parse().ok();
                if let Err(e) = Write::removal(ctx.state.store.as_ref(), key)
                    .run_from(listed.map(Some), &Plain, |current| {
                        Ok(current.map_or(Proposal::Keep, |_| Proposal::Delete))
                    })
                    .await
                {
                    tracing::warn!(error = %syncsets_store::Chain(&e), "deleting a custom resource of a deleted CRD");
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %syncsets_store::Chain(&e), "listing custom resources of a deleted CRD")
        }
    }
    let rv = obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ctx.state.registry.remove_crd(cluster, name, rv);
}

/// Deletes a terminating namespace's contents; once none are left, the namespace itself.
/// Objects with finalizers are marked and waited for in the background.
pub async fn finalize_namespace(ctx: &Ctx, namespace: &str) {
    finalize(&ctx.state, &ctx.info.cluster, namespace).await;
}

/// Resumes termination of namespaces that were terminating when the server stopped.
pub async fn resume_namespace_finalizers(state: &Arc<AppState>, cluster: &str) -> ApiResult<()> {
    let q = ListQuery {
        cluster: cluster.to_string(),
        resource: "namespaces".into(),
        ..Default::default()
    };
    let page = state
        .store
        .list(&q)
        .await
        .map_err(|e| ApiError::internal("listing namespaces", &e))?;
    for raw in page.items {
        let ns = raw
            .parse()
            .map_err(|e| ApiError::internal("reading namespaces", &e))?;
        if ns.object["metadata"].get("deletionTimestamp").is_some() {
            finalize(state, cluster, &raw.name).await;
        }
    }
    Ok(())
}

/// One pass over a terminating namespace. Returns true when the namespace is gone.
async fn finalize_pass(state: &Arc<AppState>, cluster: &str, namespace: &str) -> bool {
    let kinds = state.registry.kinds(cluster);
    let mut remaining = false;
    let mut seen = std::collections::HashSet::new();
    let now = meta::now();
    for kind in kinds.all().iter().filter(|k| k.namespaced) {
        let resource = kind.group_resource();
        if !seen.insert(resource.clone()) {
            continue;
        }
        let q = ListQuery {
            cluster: cluster.to_string(),
            resource: resource.clone(),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        };
        let Ok(page) = state.store.list(&q).await else {
            remaining = true;
            continue;
        };
        let ctx = Ctx::internal(state, kind.clone(), cluster, Some(namespace));
        for raw in page.items {
            // As a delete request would: objects with finalizers are marked and wait for
            // their owners, the others go; from the listed version (no second read).
            let Ok(listed) = raw.parse() else {
                remaining = true;
                continue;
            };
            let written = ctx
                .write_from(&raw.name, None, &[], Some(Some(listed)), |current| {
                    Ok(current.map_or(Proposal::Keep, |c| deletion(&ctx, c, &now)))
                })
                .await;
            match written {
                Ok(w) if w.change == Change::Deleted || w.object.is_null() => {}
                _ => remaining = true,
            }
        }
    }
    if remaining {
        return false;
    }
    let ctx = Ctx::internal(
        state,
        kinds
            .get("", "v1", "namespaces")
            .cloned()
            .expect("namespaces are built in"),
        cluster,
        None,
    );
    match ctx
        .write(namespace, None, &[], |_| Ok(Proposal::Delete))
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(namespace, error = %e.message, "removing a finalized namespace");
            false
        }
    }
}

async fn finalize(state: &Arc<AppState>, cluster: &str, namespace: &str) {
    if finalize_pass(state, cluster, namespace).await {
        return;
    }
    let key = (cluster.to_string(), namespace.to_string());
    if !state
        .finalizing
        .lock()
        .expect("finalizer lock")
        .insert(key.clone())
    {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let mut pause = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            pause.wait().await;
            if finalize_pass(&state, &key.0, &key.1).await {
                break;
            }
        }
        state
            .finalizing
            .lock()
            .expect("finalizer lock")
            .remove(&key);
    });
}
