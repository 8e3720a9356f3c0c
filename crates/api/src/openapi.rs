//! `/openapi/v2` (JSON or gnostic protobuf) and `/openapi/v3[/…]`, cached per registry
//! snapshot: a document is rebuilt only when the kinds of its cluster change.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use syncsets_machinery::openapi;
use syncsets_machinery::registry::Kinds;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn cached(
    state: &AppState,
    cluster: &str,
    key: &str,
    kinds: &Arc<Kinds>,
    build: impl FnOnce() -> Option<Bytes>,
) -> Option<Bytes> {
    let cache_key = format!("{cluster}\u{0}{key}");
    // A document is good for the very kinds it was built from. The weak reference keeps
    // their allocation, so no later registry can be mistaken for them by address.
    if let Some((built_from, doc)) = state
        .openapi_cache
        .lock()
        .expect("cache lock")
        .get(&cache_key)
        && std::ptr::eq(built_from.as_ptr(), Arc::as_ptr(kinds))
    {
        return Some(doc.clone());
    }
    let doc = build()?;
    state
        .openapi_cache
        .lock()
        .expect("cache lock")
        .insert(cache_key, (Arc::downgrade(kinds), doc.clone()));
    Some(doc)
}

fn respond(body: Bytes, content_type: &'static str) -> Response {
    let mut res = Response::new(Body::from(body));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    res
}

/// Serves `/openapi/v2` and `/openapi/v3…`; `None` if the path is not an OpenAPI path.
pub fn serve(
    state: &AppState,
    cluster: &str,
    kinds: &Arc<Kinds>,
    path: &str,
    headers: &HeaderMap,
) -> Option<ApiResult<Response>> {
    let registry = &state.registry;
    if path == "/openapi/v2" {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let doc = cached(state, cluster, "v2", kinds, || {
            Some(Bytes::from(
                serde_json::to_vec(&openapi::v2(registry, kinds)).ok()?,
            ))
        })?;
        if accept.contains("protobuf") {
            let pb = cached(state, cluster, "v2.pb", kinds, || {
                let value: serde_json::Value = serde_json::from_slice(&doc).ok()?;
                Some(Bytes::from(openapi::proto::encode(&value)))
            })?;
            return Some(Ok(respond(pb, PROTOBUF)));
        }
        return Some(Ok(respond(doc, "application/json")));
    }
    if path == "/openapi/v3" {
        let doc = cached(state, cluster, "v3", kinds, || {
            Some(Bytes::from(
                serde_json::to_vec(&openapi::v3_root(registry, kinds)).ok()?,
            ))
        })?;
        return Some(Ok(respond(doc, "application/json")));
    }
    let rest = path.strip_prefix("/openapi/v3/")?;
    let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return Some(Err(ApiError::no_route())),
    };
    let doc = cached(state, cluster, rest, kinds, || {
        let doc = openapi::v3_group_version(registry, kinds, &group, &version)?;
        Some(Bytes::from(serde_json::to_vec(&doc).ok()?))
    });
    Some(
        doc.map(|d| respond(d, "application/json"))
            .ok_or_else(ApiError::no_route),
    )
}
