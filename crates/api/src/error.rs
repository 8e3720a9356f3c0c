//! The API's one error type, rendered as a Kubernetes `metav1.Status` with the code, reason,
//! message and details Kubernetes uses for the same failure.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use syncsets_machinery::errors::aggregate;
use syncsets_machinery::registry::KindInfo;
use syncsets_machinery::{Error as MachineryError, FieldError};
use syncsets_store::StoreError;

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub code: StatusCode,
    /// `Status.reason`.
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`.
    pub details: Option<Value>,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
    /// The methods the resource allows (405), for the `Allow` header.
    pub allow: Option<String>,
}

/// Result with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

fn details(name: &str, kind: &KindInfo) -> Value {
    let mut d = json!({"name": name, "kind": kind.plural});
    if !kind.group.is_empty() {
        d["group"] = json!(kind.group);
    }
    d
}

impl ApiError {
    /// An error of any code, with its Kubernetes reason (`Invalid`, `NotFound`…).
    pub fn status_error(
        code: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::new(code, reason, message)
    }

    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
            allow: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 404 for an object.
    pub fn not_found(kind: &KindInfo, name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", kind.group_resource()),
        );
        e.details = Some(details(name, kind));
        e
    }

    /// 404 for a resource or path the server does not serve.
    pub fn no_route() -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
        e.details = Some(json!({}));
        e
    }

    /// 404 for a namespace that does not exist.
    pub fn namespace_not_found(namespace: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        );
        e.details = Some(json!({"name": namespace, "kind": "namespaces"}));
        e
    }

    /// 409 AlreadyExists.
    pub fn already_exists(kind: &KindInfo, name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.group_resource()),
        );
        e.details = Some(details(name, kind));
        e
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn conflict(kind: &KindInfo, name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                kind.group_resource()
            ),
        );
        e.details = Some(details(name, kind));
        e
    }

    /// 409 Conflict with a custom message (preconditions).
    pub fn conflict_message(kind: &KindInfo, name: &str, message: String) -> Self {
        let mut e = Self::new(StatusCode::CONFLICT, "Conflict", message);
        e.details = Some(details(name, kind));
        e
    }

    /// 422 Invalid with field causes.
    pub fn invalid(
        qualified_kind: &str,
        group: &str,
        kind: &str,
        name: &str,
        errors: &[FieldError],
    ) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "{qualified_kind} \"{name}\" is invalid: {}",
                aggregate(errors)
            ),
        );
        let causes: Vec<Value> = errors
            .iter()
            .map(|f| json!({"reason": f.kind.reason(), "message": f.body(), "field": f.field}))
            .collect();
        let mut d = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        e.details = Some(d);
        e
    }

    /// 403 Forbidden.
    pub fn forbidden(kind: &KindInfo, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", kind.group_resource()),
        );
        e.details = Some(details(name, kind));
        e
    }

    /// 403 Forbidden with a message and details of one's own (authorization denials).
    pub fn forbidden_with(message: String, details: Value) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "Forbidden", message);
        e.details = Some(details);
        e
    }

    /// The same error with another message.
    pub fn with_message(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    /// 405 for a method the path does not allow; `allowed` are those it does.
    pub fn method_not_allowed_here(allowed: &[&str]) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
        e.details = Some(json!({}));
        e.allow = Some(allowed.join(", "));
        e
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 410 Gone (Expired).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    /// 500 InternalError; the cause is logged, not returned.
    /// A store that is full or cannot be reached is said so: 507 (reads still work; writes
    /// again once space is freed), or 503 with Retry-After.
    pub fn internal(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %syncsets_store::Chain(err), "{context}");
        match syncsets_store::fault(err) {
            Some(syncsets_store::Fault::Full) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "InternalError",
                format!(
                    "Internal error occurred: {context}: the store's disk is full; writes are refused until space is freed"
                ),
            ),
            Some(syncsets_store::Fault::Unavailable) => {
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    format!("{context}: the store is unavailable; try again shortly"),
                );
                e.retry_after = Some(1);
                e
            }
            None => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("Internal error occurred: {context}"),
            ),
        }
    }

    /// 429 TooManyRequests, to retry after `seconds`.
    pub fn too_many_requests(message: impl Into<String>, seconds: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
        e.retry_after = Some(seconds.max(1));
        e
    }

    /// 504 Timeout: the request ran past its deadline (it may still complete).
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            "Timeout: request did not complete within the allotted timeout",
        )
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// Maps a machinery error about object `name` of `kind`.
    pub fn from_machinery(err: MachineryError, kind: &KindInfo, name: &str) -> Self {
        match err {
            MachineryError::Invalid(errors) => Self::invalid(
                &kind.qualified_kind(),
                &kind.group,
                &kind.kind,
                name,
                &errors,
            ),
            MachineryError::BadRequest(m) => Self::bad_request(m),
            MachineryError::Conflict { message, causes } => {
                let mut e = Self::new(StatusCode::CONFLICT, "Conflict", message);
                let causes: Vec<Value> = causes
                    .into_iter()
                    .map(|(reason, message, field)| json!({"reason": reason, "message": message, "field": field}))
                    .collect();
                e.details = Some(json!({"causes": causes}));
                e
            }
            MachineryError::UnsupportedMediaType(m) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                m,
            ),
            MachineryError::Unprocessable(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", m)
            }
            MachineryError::Forbidden(m) => Self::forbidden(kind, name, &m),
            MachineryError::TooLarge(m) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("Request entity too large: {m}"),
            ),
        }
    }

    /// Maps a storage error about object `name` of `kind`.
    pub fn from_store(err: StoreError, kind: &KindInfo, name: &str) -> Self {
        match err {
            StoreError::AlreadyExists => Self::already_exists(kind, name),
            StoreError::NotFound => Self::not_found(kind, name),
            StoreError::Conflict => Self::conflict(kind, name),
            other => Self::internal("storage failure", &other),
        }
    }

    /// The Status object.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        if let Some(r) = self.retry_after {
            s["details"]["retryAfterSeconds"] = json!(r);
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.code, axum::Json(self.status())).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(r) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(r));
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            res.headers_mut().insert(header::ALLOW, allow);
        }
        res
    }
}
