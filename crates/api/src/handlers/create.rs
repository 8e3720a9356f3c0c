//! `POST` to a collection.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use syncsets_machinery::meta::{self, Ownership, WriteContext};
use syncsets_write::{Proposal, Written};

use super::Ctx;
use crate::error::{ApiError, ApiResult};

/// Creates an object.
pub(crate) async fn create(ctx: &Ctx, body: Bytes) -> ApiResult<Response> {
    let decoded = ctx.decode_object(&body)?;
    let mut object = decoded.value;
    // The name is known before admission (generateName picks one now).
    let name = meta::name_for_create(&mut object);
    let now = meta::now();
    let wctx = ctx.write_context(&now, Ownership::Update(ctx.manager()?), false)?;
    let written = store_new(ctx, &name, wctx, &decoded.duplicates, object).await?;
    ctx.respond(StatusCode::CREATED, written.object, &written.warnings)
}

/// Admits and stores a new object (or pretends to, for dry runs); an existing one of that
/// name is a conflict.
pub(crate) async fn store_new(
    ctx: &Ctx,
    name: &str,
    admission: WriteContext<'_>,
    duplicates: &[String],
    object: Value,
) -> ApiResult<Written> {
    // Assumed absent: the store refuses a second object of that name, and the write then
    // reads what is there.
    ctx.write_from(
        name,
        Some(admission),
        duplicates,
        Some(None),
        |current| match current {
            Some(_) => Err(ApiError::already_exists(&ctx.kind, name)),
            None => Ok(Proposal::Write(object.clone())),
        },
    )
    .await
}
