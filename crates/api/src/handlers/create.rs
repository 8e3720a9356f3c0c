//! `POST` to a collection.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use syncsets_machinery::meta::{self, Ownership};
use syncsets_store::StoreError;

use super::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::lifecycle;

/// Creates an object.
pub(crate) async fn create(ctx: &Ctx, body: Bytes) -> ApiResult<Response> {
    if ctx.kind.namespaced && ctx.info.namespace.is_none() {
        return Err(ApiError::method_not_allowed_here());
    }
    let decoded = ctx.decode_object(&body)?;
    let name = decoded.value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let now = meta::now();
    let wctx = ctx.write_context(&now, Ownership::Update(ctx.manager()?), false)?;
    let admitted = meta::admit_create(&wctx, decoded.value, &decoded.duplicates)
        .map_err(|e| ApiError::from_machinery(e, &ctx.kind, &name))?;
    let (object, warnings) = (admitted.object, admitted.warnings);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let stored = store_new(ctx, &name, object).await?;
    ctx.respond(StatusCode::CREATED, stored, &warnings)
}

/// Stores an admitted new object (or pretends to, for dry runs).
pub(crate) async fn store_new(ctx: &Ctx, name: &str, mut object: Value) -> ApiResult<Value> {
    crate::authz::check_write(ctx, None, &mut object).await?;
    ctx.to_storage(&mut object);
    if ctx.query.dry_run {
        ctx.require_namespace(name).await?;
        if ctx.current(name).await?.is_some() {
            return Err(ApiError::already_exists(&ctx.kind, name));
        }
        return Ok(object);
    }
    // The namespace check happens in the same transaction as the write.
    let stored = match ctx
        .state
        .store
        .create(&ctx.key(name), &object, ctx.kind.namespaced)
        .await
    {
        Ok(stored) => stored,
        Err(StoreError::NamespaceNotFound | StoreError::NamespaceTerminating) => {
            // Either way, the namespace read explains it the way Kubernetes does.
            ctx.require_namespace(name).await?;
            return Err(ApiError::conflict(&ctx.kind, name));
        }
        Err(e) => return Err(ApiError::from_store(e, &ctx.kind, name)),
    };
    lifecycle::after_write(ctx, &stored.object).await;
    Ok(stored.object)
}
