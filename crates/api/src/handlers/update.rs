//! `PUT` of an object or its status.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use syncsets_machinery::meta::{self, Ownership};
use syncsets_write::Proposal;

use super::{Ctx, body_rv};
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
    let written = ctx
        .write(name, Some(wctx), &decoded.duplicates, |current| {
            let current = current.ok_or_else(|| ApiError::not_found(&ctx.kind, name))?;
            if precondition.is_some_and(|rv| rv != current.rv) {
                return Err(ApiError::conflict(&ctx.kind, name));
            }
            Ok(Proposal::Write(decoded.value.clone()))
        })
        .await?;
    ctx.respond(StatusCode::OK, written.object, &written.warnings)
}
