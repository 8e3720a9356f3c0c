//! `GET` of one object (or its `status` subresource).

use axum::http::StatusCode;
use axum::response::Response;

use super::Ctx;
use crate::error::{ApiError, ApiResult};

/// Reads one object.
pub(crate) async fn get(ctx: &Ctx, name: &str, _status: bool) -> ApiResult<Response> {
    let stored = ctx
        .current(name)
        .await?
        .ok_or_else(|| ApiError::not_found(&ctx.kind, name))?;
    ctx.respond(StatusCode::OK, stored.object, &[])
}
