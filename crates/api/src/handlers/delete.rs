//! `DELETE` of an object or a collection. Objects with finalizers are only marked
//! (`deletionTimestamp`); the last finalizer's removal deletes them. Namespaces terminate:
//! their contents go first.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use syncsets_machinery::meta;
use syncsets_store::Stored;
use syncsets_write::{Change, Proposal};

use super::Ctx;
use super::list::{fields, store_query};
use crate::error::{ApiError, ApiResult};
use crate::lifecycle;
use crate::negotiate;

/// `DeleteOptions`, from the body or the query.
#[derive(Default)]
pub(crate) struct DeleteOptions {
    uid: Option<String>,
    resource_version: Option<String>,
    /// The body's `dryRun: ["All"]` (client libraries send it there; the query's is in
    /// the request context already).
    dry_run: bool,
}

impl DeleteOptions {
    /// The request's context, a dry run if the options say so.
    fn context(&self, ctx: &Ctx) -> Ctx {
        let mut ctx = ctx.clone();
        ctx.query.dry_run |= self.dry_run;
        ctx
    }
}

fn options(ctx: &Ctx, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut policy = ctx.query.propagation_policy.clone();
    let mut opts = DeleteOptions::default();
    if !body.is_empty() {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions: {e}"
            ))
        })?;
        if !v.is_object() {
            return Err(ApiError::bad_request("DeleteOptions must be an object"));
        }
        if let Some(p) = v["propagationPolicy"].as_str() {
            policy = Some(p.to_string());
        }
        if v.get("orphanDependents").is_some_and(|o| !o.is_null())
            && v.get("propagationPolicy").is_some_and(|p| !p.is_null())
        {
            return Err(invalid_options(syncsets_machinery::FieldError::invalid(
                "propagationPolicy",
                v["propagationPolicy"].clone(),
                "orphanDependents and deletionPropagation cannot be both set",
            )));
        }
        match &v["dryRun"] {
            Value::Null => {}
            Value::Array(values) => {
                for value in values {
                    if value != "All" {
                        return Err(invalid_options(
                            syncsets_machinery::FieldError::not_supported(
                                "dryRun",
                                value.clone(),
                                &[json!("All")],
                            ),
                        ));
                    }
                    opts.dry_run = true;
                }
            }
            _ => {
                return Err(ApiError::bad_request(
                    "DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions: dryRun: expected a list of strings",
                ));
            }
        }
        opts.uid = v["preconditions"]["uid"].as_str().map(String::from);
        opts.resource_version = v["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from);
    }
    if let Some(p) = policy
        && !matches!(p.as_str(), "Foreground" | "Background" | "Orphan")
    {
        return Err(invalid_options(
            syncsets_machinery::FieldError::not_supported(
                "propagationPolicy",
                p.as_str(),
                &[json!("Foreground"), json!("Background"), json!("Orphan")],
            ),
        ));
    }
    Ok(opts)
}

fn invalid_options(e: syncsets_machinery::FieldError) -> ApiError {
    ApiError::invalid(
        "DeleteOptions.meta.k8s.io",
        "meta.k8s.io",
        "DeleteOptions",
        "",
        &[e],
    )
}

fn check_preconditions(
    ctx: &Ctx,
    name: &str,
    current: &Stored,
    opts: &DeleteOptions,
) -> ApiResult<()> {
    let resource = ctx.kind.group_resource();
    if let Some(uid) = &opts.uid {
        let actual = current.object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default();
        if uid != actual {
            return Err(ApiError::conflict_message(
                &ctx.kind,
                name,
                format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the UID in the precondition ({uid}) does not match the UID in record ({actual}). The object might have been deleted and then recreated"
                ),
            ));
        }
    }
    if let Some(rv) = &opts.resource_version
        && *rv != current.rv.to_string()
    {
        return Err(ApiError::conflict_message(
            &ctx.kind,
            name,
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                current.rv
            ),
        ));
    }
    Ok(())
}

/// What a deletion did.
pub(crate) enum Deleted {
    /// The object is gone; the value is its last state.
    Gone(Value),
    /// The object has finalizers (or is a namespace with contents): it is terminating.
    Terminating(Value),
}

/// What deleting `current` comes to: objects with finalizers (and namespaces, whose
/// contents go first) are marked deleted and wait, once; the others go.
pub(crate) fn deletion(ctx: &Ctx, current: &Stored, now: &str) -> Proposal {
    let is_namespace = ctx.kind.is_namespace();
    let finalizers = current.object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if !(finalizers || is_namespace) {
        return Proposal::Delete;
    }
    if current.object["metadata"]
        .get("deletionTimestamp")
        .is_some()
    {
        return Proposal::Keep;
    }
    let mut obj = current.object.clone();
    meta::mark_deleting(&mut obj, now, ctx.kind.tracks_generation);
    if is_namespace {
        obj["status"]["phase"] = json!("Terminating");
    }
    Proposal::Mark(obj)
}

/// Namespaces that exist for the life of a cluster (kube-apiserver's NamespaceLifecycle).
const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// Deletes or marks one object, retrying races.
pub(crate) async fn delete_one(ctx: &Ctx, name: &str, opts: &DeleteOptions) -> ApiResult<Deleted> {
    if ctx.kind.is_namespace() && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            &ctx.kind,
            name,
            "this namespace may not be deleted",
        ));
    }
    let now = meta::now();
    let written = ctx
        .write(name, None, &[], |current| {
            let current = current.ok_or_else(|| ApiError::not_found(&ctx.kind, name))?;
            check_preconditions(ctx, name, current, opts)?;
            Ok(deletion(ctx, current, &now))
        })
        .await?;
    if written.change == Change::Deleted {
        return Ok(Deleted::Gone(written.object));
    }
    if ctx.kind.is_namespace() && !ctx.query.dry_run {
        lifecycle::finalize_namespace(ctx, name).await;
    }
    Ok(Deleted::Terminating(written.object))
}

/// Deletes one object.
pub(crate) async fn delete(ctx: &Ctx, name: &str, body: Bytes) -> ApiResult<Response> {
    let opts = options(ctx, &body)?;
    let ctx = &opts.context(ctx);
    match delete_one(ctx, name, &opts).await? {
        Deleted::Terminating(obj) => ctx.respond(StatusCode::OK, obj, &[]),
        Deleted::Gone(obj) => {
            let mut details =
                json!({"name": name, "kind": ctx.kind.plural, "uid": obj["metadata"]["uid"]});
            if !ctx.kind.group.is_empty() {
                details["group"] = json!(ctx.kind.group);
            }
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details});
            Ok(negotiate::respond(
                StatusCode::OK,
                &status,
                negotiate::Output::Json,
                &[],
            ))
        }
    }
}

/// Deletes every object a list selects; answers with the list as it was.
pub(crate) async fn delete_collection(ctx: &Ctx, body: Bytes) -> ApiResult<Response> {
    let opts = options(ctx, &body)?;
    let ctx = &opts.context(ctx);
    let fields = fields(ctx)?;
    let (mut q, _) = store_query(ctx, &fields)?;
    q.limit = None;
    let page = ctx
        .state
        .store
        .list(&q)
        .await
        .map_err(|e| ApiError::internal("listing objects", &e))?;
    let mut items = Vec::new();
    for raw in page.items {
        let obj = ctx.served(
            raw.parse()
                .map_err(|e| ApiError::internal("reading listed objects", &e))?
                .object,
        );
        if !fields.matches(&obj) {
            continue;
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Across all namespaces, each item is deleted in its own namespace.
        let item_ctx = if ctx.kind.namespaced {
            ctx.in_namespace(&ns)
        } else {
            ctx.clone()
        };
        match delete_one(&item_ctx, &name, &opts).await {
            Ok(_) => items.push(obj),
            Err(e) if e.reason == "NotFound" => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": ctx.kind.list_kind,
        "apiVersion": ctx.kind.api_version(),
        "metadata": {"resourceVersion": page.rv.to_string()},
        "items": items,
    });
    Ok(negotiate::respond(
        StatusCode::OK,
        &list,
        negotiate::Output::Json,
        &[],
    ))
}
