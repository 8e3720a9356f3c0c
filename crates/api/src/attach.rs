//! Attaching a cluster to a SelectorSyncSet is an authorised act.
//!
//! A SelectorSyncSet is an administrator's: whatever it carries (secretMappings of platform
//! credentials, Secrets and RBAC in its resources) goes to every cluster its selector
//! matches, through the admin kubeconfig the hub holds for that cluster. In Hive, whoever
//! may label a ClusterDeployment decides which sets reach it — and so, by pointing the
//! ClusterDeployment at a cluster of their own, who receives those credentials.
//!
//! Here a user may attach a cluster to a SelectorSyncSet only with the RBAC verb `use` on
//! that set (`selectorsyncsets.hive.openshift.io`, by name), evaluated in the
//! ClusterDeployment's namespace — as Kubernetes once did for PodSecurityPolicies — so an
//! administrator can grant it cluster-wide or to one namespace. A write attaches a cluster
//! to a set when, after it:
//!
//! - a ClusterDeployment matches the set and did not before (it is created, or relabelled);
//! - a ClusterDeployment that matches the set points at another kubeconfig Secret;
//! - a Secret's `kubeconfig` that a matching ClusterDeployment uses is created or changed.
//!
//! Otherwise the write is refused with 403 naming the sets. Every SelectorSyncSet counts,
//! with or without secretMappings: its resources are the administrator's too. The checks do
//! not apply to `system:masters` (the hub's own admin), to the server's own writes, or on a
//! server without authentication; `cluster-admin` passes them through RBAC (`*` verbs).
//! SyncSets need no such rule: a SyncSet only reaches ClusterDeployments of its own
//! namespace, and only Secrets of that namespace.

use std::collections::BTreeMap;

use serde_json::Value;
use syncsets_store::ListQuery;
use syncsets_types::hive::SelectorSyncSetSpec;

use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;
use crate::rbac::{self, Attributes};

const HIVE: &str = "hive.openshift.io";
const SELECTOR_SYNCSETS: &str = "selectorsyncsets";
const KUBECONFIG_KEY: &str = "kubeconfig";

/// Refuses a write of a ClusterDeployment or Secret (`old` → `new`; `old` is `None` for a
/// create) that attaches a cluster to a SelectorSyncSet the writer may not `use`.
pub(crate) async fn check(ctx: &Ctx, old: Option<&Value>, new: &Value) -> ApiResult<()> {
    let Some(user) = &ctx.user else { return Ok(()) };
    if ctx.state.config.authenticator.is_none() || user.groups.iter().any(|g| g == rbac::MASTERS) {
        return Ok(());
    }
    let attached: Vec<Value> = match (ctx.kind.group.as_str(), ctx.kind.kind.as_str()) {
        (HIVE, "ClusterDeployment") => {
            let relabelled_only = old.is_some_and(|o| kubeconfig_ref(o) == kubeconfig_ref(new));
            let sets = selector_sync_sets(ctx).await?;
            sets.into_iter()
                .filter(|(_, spec)| {
                    let selector = spec.selector();
                    selector.matches(&labels(new))
                        && !(relabelled_only && old.is_some_and(|o| selector.matches(&labels(o))))
                })
                .map(|(name, _)| Value::String(name))
                .collect()
        }
        ("", "Secret") => {
            let data = |o: &Value| o["data"][KUBECONFIG_KEY].clone();
            if old.is_some_and(|o| data(o) == data(new)) || data(new).is_null() {
                return Ok(());
            }
            let users = kubeconfig_users(ctx, name(new)).await?;
            if users.is_empty() {
                return Ok(());
            }
            let sets = selector_sync_sets(ctx).await?;
            sets.into_iter()
                .filter(|(_, spec)| {
                    let selector = spec.selector();
                    users.iter().any(|cd| selector.matches(&labels(cd)))
                })
                .map(|(name, _)| Value::String(name))
                .collect()
        }
        _ => return Ok(()),
    };
    if attached.is_empty() {
        return Ok(());
    }
    let policy = crate::authz::policy(ctx).await?;
    let refused: Vec<&str> = attached
        .iter()
        .filter_map(Value::as_str)
        .filter(|set| {
            !policy
                .authorize(
                    user,
                    &Attributes {
                        verb: "use".into(),
                        namespace: ctx.namespace().to_string(),
                        api_group: HIVE.into(),
                        resource: SELECTOR_SYNCSETS.into(),
                        name: (*set).to_string(),
                        ..Attributes::default()
                    },
                )
                .allowed
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let what = if ctx.kind.kind == "Secret" {
        "this kubeconfig would be used for clusters matched by"
    } else {
        "this ClusterDeployment would be matched by"
    };
    let sets = refused
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ApiError::forbidden(
        &ctx.kind,
        name(new),
        &format!(
            "User {:?} cannot use resource \"selectorsyncsets\" in API group \"{HIVE}\" in the namespace {:?}: {what} SelectorSyncSet {sets}, and attaching a cluster to a set needs the verb \"use\" on it",
            user.name,
            ctx.namespace(),
        ),
    ))
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// The kubeconfig Secret a ClusterDeployment names (in its own namespace).
fn kubeconfig_ref(cd: &Value) -> &Value {
    &cd["spec"]["clusterMetadata"]["adminKubeconfigSecretRef"]["name"]
}

/// The SelectorSyncSets of the request's logical cluster that still apply (not being
/// deleted), by name.
async fn selector_sync_sets(ctx: &Ctx) -> ApiResult<Vec<(String, SelectorSyncSetSpec)>> {
    let items = list(ctx, "selectorsyncsets.hive.openshift.io", None).await?;
    Ok(items
        .into_iter()
        .filter(|s| {
            s["metadata"]
                .get("deletionTimestamp")
                .is_none_or(Value::is_null)
        })
        .filter_map(|s| {
            let spec = serde_json::from_value(s["spec"].clone()).ok()?;
            Some((name(&s).to_string(), spec))
        })
        .collect())
}

/// The ClusterDeployments of the request's namespace whose admin kubeconfig is `secret`.
async fn kubeconfig_users(ctx: &Ctx, secret: &str) -> ApiResult<Vec<Value>> {
    let items = list(
        ctx,
        "clusterdeployments.hive.openshift.io",
        Some(ctx.namespace()),
    )
    .await?;
    Ok(items
        .into_iter()
        .filter(|cd| kubeconfig_ref(cd).as_str() == Some(secret))
        .collect())
}

async fn list(ctx: &Ctx, resource: &str, namespace: Option<&str>) -> ApiResult<Vec<Value>> {
    let query = ListQuery {
        cluster: ctx.info.cluster.clone(),
        resource: resource.into(),
        namespace: namespace.map(String::from),
        ..ListQuery::default()
    };
    let failed = |e| ApiError::internal("reading what the write attaches", &e);
    let page = ctx.state.store.list(&query).await.map_err(failed)?;
    page.items
        .iter()
        .map(|r| r.parse().map(|s| s.object).map_err(failed))
        .collect()
}
