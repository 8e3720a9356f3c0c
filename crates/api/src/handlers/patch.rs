//! `PATCH`: JSON patch, JSON merge patch, strategic merge patch and server-side apply.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use syncsets_machinery::apply::{self, Managers, Schemas, Writer};
use syncsets_machinery::meta::{self, Ownership};
use syncsets_machinery::patch::{self as patches, StrategicSchemas};
use syncsets_machinery::{FieldError, decode};
use syncsets_write::{Change, Proposal};

use super::{Ctx, body_rv};
use crate::error::{ApiError, ApiResult};
use crate::negotiate;

pub(super) const JSON_PATCH: &str = "application/json-patch+json";
pub(super) const MERGE_PATCH: &str = "application/merge-patch+json";
pub(super) const STRATEGIC: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Merge,
    Strategic,
    Apply,
}

fn patch_options_invalid(error: FieldError) -> ApiError {
    ApiError::invalid(
        "PatchOptions.meta.k8s.io",
        "meta.k8s.io",
        "PatchOptions",
        "",
        &[error],
    )
}

/// Patches an object (apply may create it).
pub(crate) async fn patch(ctx: &Ctx, name: &str, status: bool, body: Bytes) -> ApiResult<Response> {
    let kind = match negotiate::patch_type(&ctx.headers).as_str() {
        JSON_PATCH => Kind::Json,
        MERGE_PATCH => Kind::Merge,
        STRATEGIC => Kind::Strategic,
        APPLY | "application/apply-patch+json" => Kind::Apply,
        _ => {
            let mut accepted = vec![JSON_PATCH, MERGE_PATCH, APPLY];
            if ctx.kind.strategic_merge {
                accepted.push(STRATEGIC);
            }
            return Err(ApiError::unsupported_media_type(&accepted));
        }
    };
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if kind != Kind::Apply && ctx.query.force.is_some() {
        return Err(patch_options_invalid(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        )));
    }
    if kind == Kind::Apply {
        return apply_patch(ctx, name, status, &body).await;
    }
    let now = meta::now();
    let wctx = ctx.write_context(&now, Ownership::Update(ctx.manager()?), status)?;
    let written = ctx
        .write(name, Some(wctx), &[], |current| {
            let current = current.ok_or_else(|| ApiError::not_found(&ctx.kind, name))?;
            let base = ctx.served(current.object.clone());
            let patched = match kind {
                Kind::Json => patches::json_patch(&base, &body),
                Kind::Merge => patches::merge_patch(&base, &body),
                Kind::Strategic => patches::strategic_merge_patch(
                    &base,
                    &body,
                    StrategicSchemas {
                        root: &ctx.kind.schema,
                        meta: ctx.state.registry.meta_schema(),
                        lists: ctx.kind.strategic_merge,
                    },
                ),
                Kind::Apply => unreachable!("handled above"),
            }
            .map_err(|e| ApiError::from_machinery(e, &ctx.kind, name))?;
            // A resourceVersion in the patch is a precondition.
            let precondition = body_rv(&patched, ctx, name)?;
            if precondition.is_some_and(|rv| rv != current.rv) {
                return Err(ApiError::conflict(&ctx.kind, name));
            }
            Ok(Proposal::Write(patched))
        })
        .await?;
    ctx.respond(StatusCode::OK, written.object, &written.warnings)
}

/// Server-side apply: merges the applied configuration, tracks field ownership, reports
/// conflicts (409) unless forced, and creates the object if it does not exist (201).
async fn apply_patch(ctx: &Ctx, name: &str, status: bool, body: &[u8]) -> ApiResult<Response> {
    if ctx
        .query
        .field_manager
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(patch_options_invalid(FieldError::required(
            "fieldManager",
            "is required for apply patch",
        )));
    }
    let manager = ctx.manager()?;
    let decoded = decode::yaml(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !decoded.duplicates.is_empty()
        && meta::FieldValidation::parse(&ctx.query.field_validation).ok()
            == Some(meta::FieldValidation::Strict)
    {
        let dups: Vec<String> = decoded
            .duplicates
            .iter()
            .map(|d| format!("duplicate field \"{d}\""))
            .collect();
        return Err(ApiError::bad_request(format!(
            "error strict decoding YAML: {}",
            dups.join(", ")
        )));
    }
    let config = decoded.value;
    check_apply_config(ctx, name, &config)?;
    let precondition = body_rv(&config, ctx, name)?;
    let force = ctx.query.force.unwrap_or(false);
    let now = meta::now();
    let wctx = ctx.write_context(&now, Ownership::Applied, status)?;
    let ignored = wctx.ignored_fields();
    let api_version = ctx.kind.api_version();
    let schemas = Schemas {
        root: &ctx.kind.schema,
        meta: ctx.state.registry.meta_schema(),
    };
    let writer = Writer {
        manager: &manager,
        api_version: &api_version,
        subresource: if status { "status" } else { "" },
        now: &now,
        ignored: &ignored,
    };
    let written = ctx
        .write(name, Some(wctx), &[], |current| {
            if let (Some(rv), Some(cur)) = (precondition, current)
                && rv != cur.rv
            {
                return Err(ApiError::conflict(&ctx.kind, name));
            }
            let (live, managers) = match current {
                Some(cur) => {
                    let mut live = ctx.served(cur.object.clone());
                    let managers = Managers::decode(&live).map_err(ApiError::bad_request)?;
                    if let Some(m) = live["metadata"].as_object_mut() {
                        m.remove("managedFields");
                        m.remove("resourceVersion");
                    }
                    (live, managers)
                }
                None if status => return Err(ApiError::not_found(&ctx.kind, name)),
                None => (serde_json::json!({}), Managers::default()),
            };
            let (mut merged, managers) =
                apply::apply(&live, &config, managers, &schemas, writer, force)
                    .map_err(|e| ApiError::from_machinery(e, &ctx.kind, name))?;
            managers.encode_into(&mut merged);
            Ok(Proposal::Write(merged))
        })
        .await?;
    let code = match written.change {
        Change::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    ctx.respond(code, written.object, &written.warnings)
}

fn check_apply_config(ctx: &Ctx, name: &str, config: &Value) -> ApiResult<()> {
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration must be an object",
        ));
    }
    let api_version = config["apiVersion"].as_str().unwrap_or_default();
    let kind = config["kind"].as_str().unwrap_or_default();
    if api_version != ctx.kind.api_version() || kind != ctx.kind.kind {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        return Err(ApiError::bad_request(format!(
            "invalid object type: {group}/{version}, Kind={kind}"
        )));
    }
    if config["metadata"]
        .get("managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    match config["metadata"]["name"].as_str() {
        Some(n) if n == name => Ok(()),
        Some(n) => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        None => Err(ApiError::bad_request(
            "metadata.name is required in an applied configuration",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_option_errors_are_invalid_statuses() {
        let e = patch_options_invalid(FieldError::required(
            "fieldManager",
            "is required for apply patch",
        ));
        assert_eq!(e.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            e.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
    }
}
