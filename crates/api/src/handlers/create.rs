//! `POST` to a collection.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use syncsets_machinery::meta::{self, Ownership};

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
    ctx.require_namespace(&name).await?;
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
    ctx.to_storage(&mut object);
    if ctx.query.dry_run {
        if ctx.current(name).await?.is_some() {
            return Err(ApiError::already_exists(&ctx.kind, name));
        }
        return Ok(object);
    }
    let stored = ctx
        .state
        .store
        .create(&ctx.key(name), &object)
        .await
        .map_err(|e| ApiError::from_store(e, &ctx.kind, name))?;
    lifecycle::after_write(ctx, &stored.object).await;
    Ok(stored.object)
}
