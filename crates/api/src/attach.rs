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
//! administrator can grant it cluster-wide or to one namespace. A write attaches when,
//! after it:
//!
//! - a ClusterDeployment is new, or its labels changed, or it names another kubeconfig
//!   Secret: it may then be attached only to sets its writer may use. Those it matches
//!   now and may not use are refused (403, naming them); for sets made later, the server
//!   records the writer's sets in [`USABLE_SETS_ANNOTATION`] and the controllers attach
//!   the cluster to no other (an administrator's write removes the annotation);
//! - a Secret's `kubeconfig`, that a ClusterDeployment matching a set uses, is written:
//!   refused likewise. The Secret records its writer's sets too, and a cluster is attached
//!   only to sets both records allow — an editor can neither make a Secret ahead of an
//!   administrator's ClusterDeployment that names it, nor rewrite one before a set exists.
//!
//! Every SelectorSyncSet counts, with or without secretMappings: its resources are the
//! administrator's too. `system:masters`, the server's own writes and servers without
//! authentication are exempt; `cluster-admin` passes through RBAC (`*` verbs). Users
//! cannot set the annotation themselves. SyncSets need no such rule: a SyncSet only
//! reaches ClusterDeployments of its own namespace, and only Secrets of that namespace.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use syncsets_store::{ListQuery, ObjectKey};
use syncsets_types::hive::{SelectorSyncSetSpec, USABLE_SETS_ANNOTATION, UsableSets};

use crate::authn::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;
use crate::rbac::{Attributes, Policy};

const HIVE: &str = "hive.openshift.io";
const SELECTOR_SYNCSETS: &str = "selectorsyncsets";
const KUBECONFIG_KEY: &str = "kubeconfig";

/// Checks a write of a ClusterDeployment or Secret (`old` → `new`; `old` is `None` for a
/// create) for attaching a cluster to a SelectorSyncSet its writer may not `use`, and
/// records on a ClusterDeployment which sets it may be attached to.
pub(crate) async fn check(ctx: &Ctx, old: Option<&Value>, new: &mut Value) -> ApiResult<()> {
    let writer = crate::authz::checked_user(ctx);
    match (ctx.kind.group.as_str(), ctx.kind.kind.as_str()) {
        (HIVE, "ClusterDeployment") => cluster_deployment(ctx, writer, old, new).await,
        ("", "Secret") => kubeconfig_secret(ctx, writer, old, new).await,
        _ => Ok(()),
    }
}

async fn cluster_deployment(
    ctx: &Ctx,
    writer: Option<&UserInfo>,
    old: Option<&Value>,
    new: &mut Value,
) -> ApiResult<()> {
    let repointed = !kubeconfig_ref(new).is_null()
        && old.is_none_or(|o| kubeconfig_ref(o) != kubeconfig_ref(new));
    let relabelled = old.is_none_or(|o| labels(o) != labels(new));
    if !repointed && !relabelled {
        // Nothing attaches: the record stays as it was, unless an administrator edits it.
        keep_record(writer, old, new);
        return Ok(());
    }
    // A kubeconfig Secret written by a user bounds what the cluster may be attached to,
    // whoever writes the ClusterDeployment (an administrator's may name a Secret that an
    // editor made first): the controllers read its record as well; here a set it does not
    // allow is refused, to say so at once.
    let secret = kubeconfig_record(ctx, new).await?;
    let usable = match writer {
        Some(user) => usable_sets(&*crate::authz::policy(ctx).await?, user, ctx.namespace()),
        None => UsableSets::Any,
    };
    if usable == UsableSets::Any && secret == UsableSets::Any {
        // Any set may be attached: nothing to refuse, and nothing to record.
        record(new, &UsableSets::Any);
        return Ok(());
    }
    // Sets it was attached to, under the same kubeconfig, stay attached while they match.
    let attached_before = |name: &str, selector: &syncsets_types::Selector| {
        !repointed && old.is_some_and(|o| selector.matches(&labels(o)) && recorded(o).allows(name))
    };
    let (mut kept, mut by_writer, mut by_secret) = (BTreeSet::new(), Vec::new(), Vec::new());
    for (name, spec) in selector_sync_sets(ctx).await? {
        let selector = spec.selector();
        if !selector.matches(&labels(new)) {
            continue;
        }
        if attached_before(&name, &selector) {
            kept.insert(name);
        } else if !usable.allows(&name) {
            by_writer.push(name);
        } else if !secret.allows(&name) {
            by_secret.push(name);
        }
    }
    if let Some(user) = writer
        && !by_writer.is_empty()
    {
        return Err(forbidden(
            ctx,
            user,
            new,
            "this ClusterDeployment would be matched by",
            &by_writer,
        ));
    }
    if !by_secret.is_empty() {
        let secret_name = kubeconfig_ref(new).as_str().unwrap_or_default();
        return Err(ApiError::forbidden(
            &ctx.kind,
            name(new),
            &format!(
                "its kubeconfig Secret {secret_name:?} was written by a user who may not use SelectorSyncSet {} (annotation {USABLE_SETS_ANNOTATION} on the Secret): write the Secret again as someone who may, or remove that annotation, to attach this cluster",
                quoted(&by_secret)
            ),
        ));
    }
    let record_of = match usable {
        UsableSets::Any => UsableSets::Any,
        UsableSets::Only(names) => UsableSets::Only(names.into_iter().chain(kept).collect()),
    };
    record(new, &record_of);
    Ok(())
}

/// What the kubeconfig Secret a ClusterDeployment names records (any, if it has no record
/// or does not exist yet: then writing it is checked against this ClusterDeployment).
async fn kubeconfig_record(ctx: &Ctx, cd: &Value) -> ApiResult<UsableSets> {
    let Some(secret) = kubeconfig_ref(cd).as_str() else {
        return Ok(UsableSets::Any);
    };
    let key = ObjectKey::new(&ctx.info.cluster, "secrets", ctx.namespace(), secret);
    let stored = ctx
        .state
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::internal("reading the kubeconfig Secret", &e))?;
    Ok(stored.map_or(UsableSets::Any, |s| recorded(&s.object)))
}

async fn kubeconfig_secret(
    ctx: &Ctx,
    writer: Option<&UserInfo>,
    old: Option<&Value>,
    new: &mut Value,
) -> ApiResult<()> {
    let data = |o: &Value| o["data"][KUBECONFIG_KEY].clone();
    if data(new).is_null() || old.is_some_and(|o| data(o) == data(new)) {
        // No kubeconfig written: the record stays as it was (none, for a Secret without
        // one), unless an administrator edits it.
        keep_record(writer, old, new);
        return Ok(());
    }
    let Some(user) = writer else {
        record(new, &UsableSets::Any);
        return Ok(());
    };
    let usable = usable_sets(&*crate::authz::policy(ctx).await?, user, ctx.namespace());
    if usable == UsableSets::Any {
        record(new, &usable);
        return Ok(());
    }
    let users = kubeconfig_users(ctx, name(new)).await?;
    let refused: Vec<String> = if users.is_empty() {
        Vec::new()
    } else {
        selector_sync_sets(ctx)
            .await?
            .into_iter()
            .filter(|(name, spec)| {
                let selector = spec.selector();
                !usable.allows(name)
                    && users
                        .iter()
                        .any(|cd| selector.matches(&labels(cd)) && recorded(cd).allows(name))
            })
            .map(|(name, _)| name)
            .collect()
    };
    if !refused.is_empty() {
        return Err(forbidden(
            ctx,
            user,
            new,
            "this kubeconfig would be used for clusters matched by",
            &refused,
        ));
    }
    record(new, &usable);
    Ok(())
}

/// The SelectorSyncSets `user` may `use` in `namespace`: any (a rule without
/// `resourceNames`), or those its rules name.
fn usable_sets(policy: &Policy, user: &UserInfo, namespace: &str) -> UsableSets {
    let asked = Attributes {
        verb: "use".into(),
        namespace: namespace.into(),
        api_group: HIVE.into(),
        resource: SELECTOR_SYNCSETS.into(),
        ..Default::default()
    };
    match policy.allowed_names(user, &asked) {
        None => UsableSets::Any,
        Some(names) => UsableSets::Only(names),
    }
}

/// What an object records of the sets it may be attached to.
fn recorded(obj: &Value) -> UsableSets {
    UsableSets::of(&obj["metadata"]["annotations"])
}

/// A write that attaches nothing: the record stays as it was (none, for a new object),
/// whatever a user wrote; an exempt writer's edit of it is taken as written.
fn keep_record(writer: Option<&UserInfo>, old: Option<&Value>, new: &mut Value) {
    if writer.is_some() {
        record(new, &old.map_or(UsableSets::Any, recorded));
    }
}

/// Sets (or removes) the record of the sets a ClusterDeployment (or one using this
/// kubeconfig Secret) may be attached to.
fn record(cd: &mut Value, usable: &UsableSets) {
    let meta = &mut cd["metadata"];
    match usable.annotation() {
        Some(value) => {
            // Admission has refused annotations that are not a map.
            if !meta["annotations"].is_object() {
                meta["annotations"] = Value::Object(serde_json::Map::new());
            }
            meta["annotations"][USABLE_SETS_ANNOTATION] = Value::String(value);
        }
        None => {
            // (`get_mut`: indexing would insert a null `annotations`.)
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove(USABLE_SETS_ANNOTATION);
                if annotations.is_empty() {
                    meta.as_object_mut().map(|m| m.remove("annotations"));
                }
            }
        }
    }
}

/// Set names, quoted, for a message.
fn quoted(sets: &[String]) -> String {
    sets.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn forbidden(ctx: &Ctx, user: &UserInfo, obj: &Value, what: &str, sets: &[String]) -> ApiError {
    let sets = quoted(sets);
    ApiError::forbidden(
        &ctx.kind,
        name(obj),
        &format!(
            "User {:?} cannot use resource \"{SELECTOR_SYNCSETS}\" in API group \"{HIVE}\" in the namespace {:?}: {what} SelectorSyncSet {sets}, and attaching a cluster to a set needs the verb \"use\" on it",
            user.name,
            ctx.namespace(),
        ),
    )
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
    stored(ctx, resource, namespace, "reading what the write attaches").await
}

/// Every stored object of `resource` (in `namespace`, if given) in the request's logical
/// cluster, for a write's admission checks; `why` says what failed if the store does.
pub(crate) async fn stored(
    ctx: &Ctx,
    resource: &str,
    namespace: Option<&str>,
    why: &str,
) -> ApiResult<Vec<Value>> {
    let query = ListQuery {
        cluster: ctx.info.cluster.clone(),
        resource: resource.into(),
        namespace: namespace.map(String::from),
        ..ListQuery::default()
    };
    let failed = |e| ApiError::internal(why, &e);
    let page = ctx.state.store.list(&query).await.map_err(failed)?;
    page.items
        .iter()
        .map(|r| r.parse().map(|s| s.object).map_err(failed))
        .collect()
}
