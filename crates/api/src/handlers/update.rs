//! `PUT` of an object or its status.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use syncsets_machinery::meta::{self, Ownership};

use super::{Ctx, MAX_ATTEMPTS, body_rv};
use crate::error::{ApiError, ApiResult};

/// Replaces an object. With `metadata.resourceVersion` set, a stale version is a 409;
/// without it the update is unconditional (retried if another writer races it).
pub(crate) async fn update(
    ctx: &Ctx,
    name: &str,
    status: bool,
    body: Bytes,
) -> ApiResult<Response> {
    let decoded = ctx.decode_object(&body)?;
    let precondition = body_rv(&decoded.value, ctx, name)?;
    let now = meta::now();
    let wctx = ctx.write_context(&now, Ownership::Update(ctx.manager()?), status)?;
    for _ in 0..MAX_ATTEMPTS {
        let current = ctx
            .current(name)
            .await?
            .ok_or_else(|| ApiError::not_found(&ctx.kind, name))?;
        if precondition.is_some_and(|rv| rv != current.rv) {
            return Err(ApiError::conflict(&ctx.kind, name));
        }
        let admitted = meta::admit_update(
            &wctx,
            decoded.value.clone(),
            &current.object,
            &decoded.duplicates,
        )
        .map_err(|e| ApiError::from_machinery(e, &ctx.kind, name))?;
        let warnings = admitted.warnings.clone();
        match ctx.commit_update(name, &current, admitted).await? {
            Some(obj) => return ctx.respond(StatusCode::OK, obj, &warnings),
            None if precondition.is_some() => return Err(ApiError::conflict(&ctx.kind, name)),
            None => continue,
        }
    }
    Err(ApiError::conflict(&ctx.kind, name))
}
