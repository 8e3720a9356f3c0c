//! What happens around writes: preparing a logical cluster on first use (its default
//! namespaces and stored CRDs), keeping the registry in step with CRD objects, and
//! terminating namespaces (contents first, then the namespace itself).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use syncsets_machinery::meta::{self, FieldValidation, Ownership, WriteContext};
use syncsets_machinery::registry::KindInfo;
use syncsets_retry::Backoff;
use syncsets_store::{ListQuery, ObjectKey, StoreError};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;

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
            tracing::warn!(cluster, crd = %raw.name, error = %e, "stored CRD does not compile; not served");
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
        let exists = state
            .store
            .get(&key)
            .await
            .map_err(|e| ApiError::internal("reading default objects", &e))?;
        if exists.is_some() {
            continue;
        }
        let admitted = meta::admit_create(&wctx, object, &[])
            .map_err(|e| ApiError::from_machinery(e, kind, &name))?;
        match state.store.create(&key, &admitted.object, false).await {
            Ok(_) | Err(StoreError::AlreadyExists) => {}
            Err(e) => return Err(ApiError::internal("creating default objects", &e)),
        }
    }
    Ok(())
}

/// Keeps the registry in step with a written CRD, and the RBAC policy with RBAC objects.
pub async fn after_write(ctx: &Ctx, obj: &Value) {
    if crate::authz::is_rbac(&ctx.kind.group_resource()) {
        ctx.state.rbac.invalidate(&ctx.info.cluster);
    }
    if is_crd(ctx)
        && let Err(e) = ctx.state.registry.install_crd(&ctx.info.cluster, obj)
    {
        tracing::warn!(crd = %obj["metadata"]["name"], error = %e, "CRD stored but not served");
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
                if let Err(e) = ctx.state.store.delete(&key, None).await {
                    tracing::warn!(error = %e, "deleting a custom resource of a deleted CRD");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing custom resources of a deleted CRD"),
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
async fn finalize_pass(state: &AppState, cluster: &str, namespace: &str) -> bool {
    let kinds = state.registry.kinds(cluster);
    let mut remaining = false;
    let mut seen = std::collections::HashSet::new();
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
        for raw in page.items {
            let Ok(item) = raw.parse() else {
                remaining = true;
                continue;
            };
            let key = ObjectKey::new(cluster, &resource, namespace, &raw.name);
            let has_finalizers = item.object["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            if has_finalizers {
                remaining = true;
                if item.object["metadata"].get("deletionTimestamp").is_none() {
                    let mut obj = item.object.clone();
                    meta::mark_deleting(&mut obj, &meta::now(), kind.tracks_generation);
                    let _ = state.store.update(&key, &obj, item.rv).await;
                }
            } else if let Err(e) = state.store.delete(&key, Some(item.rv)).await
                && !matches!(e, StoreError::NotFound)
            {
                remaining = true;
            }
        }
    }
    if remaining {
        return false;
    }
    let key = ObjectKey::new(cluster, "namespaces", "", namespace);
    match state.store.delete(&key, None).await {
        Ok(_) | Err(StoreError::NotFound) => true,
        Err(e) => {
            tracing::warn!(namespace, error = %e, "removing a finalized namespace");
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
