//! Request dispatch and the context every resource handler works with.

pub(crate) mod create;
mod delete;
mod get;
mod list;
mod patch;
mod scale;
mod update;
mod watch;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use syncsets_machinery::decode::{self, Decoded};
use syncsets_machinery::meta::{FieldValidation, Ownership, WriteContext};
use syncsets_machinery::registry::KindInfo;
use syncsets_store::{ObjectKey, StoreError, Stored};
use syncsets_write::{Effects, Proposal, Write, WriteError, Written};

use crate::AppState;
use crate::authn::UserInfo;
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::lifecycle;
use crate::negotiate::{self, BodyFormat, Output};
use crate::request::{Parsed, Query, RequestInfo, Route};

/// Entry point for everything but `/v1/clusters` and `/docs`.
pub async fn dispatch(
    State(state): State<Arc<AppState>>,
    user: Option<axum::Extension<UserInfo>>,
    axum::Extension(parsed): axum::Extension<Arc<Parsed>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let user = user.map(|axum::Extension(u)| u);
    match handle(&state, user, &parsed, method, headers, body).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &Arc<AppState>,
    user: Option<UserInfo>,
    parsed: &Parsed,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let cluster = &parsed.cluster;
    match parsed.route.clone()? {
        Route::Discovery {
            group,
            version,
            core,
        } => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed_here(&["GET"]));
            }
            let kinds = state.kinds(cluster).await?;
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            discovery::serve(
                &kinds,
                &headers,
                host,
                group.as_deref(),
                version.as_deref(),
                core,
            )
        }
        Route::Other(p) => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed_here(&["GET"]));
            }
            match p.trim_end_matches('/') {
                "/version" => Ok(discovery::version()),
                "/healthz" | "/livez" => Ok(discovery::health(true)),
                "/readyz" => Ok(discovery::health(
                    !state.stopping() && state.store.ready().await.is_ok(),
                )),
                other => {
                    let kinds = state.kinds(cluster).await?;
                    crate::openapi::serve(state, cluster, &kinds, other, &headers)
                        .unwrap_or_else(|| Err(ApiError::no_route()))
                }
            }
        }
        Route::Resource(mut info) => {
            let mut query = parsed.query.clone()?;
            if info.watch {
                // The legacy watch path watches whatever the query says; with a name, that
                // one object (as authorization reads it: `watch` on that name).
                query.watch = true;
                if let Some(name) = info.name.take() {
                    let one = format!("metadata.name={name}");
                    query.field_selector = if query.field_selector.is_empty() {
                        one
                    } else {
                        format!("{},{one}", query.field_selector)
                    };
                }
            }
            let kinds = state.kinds(&info.cluster).await?;
            let kind = kinds
                .get(&info.group, &info.version, &info.resource)
                .cloned()
                .ok_or_else(ApiError::no_route)?;
            let ctx = Ctx {
                state: state.clone(),
                output: negotiate::output(&headers)?,
                kind,
                info,
                query,
                headers,
                user,
            };
            ctx.check_scope()?;
            route_resource(&ctx, method, body).await
        }
    }
}

/// The methods a resource path allows (kube-apiserver's routes): a namespaced kind's
/// collection across namespaces is only read; namespaces cannot be deleted as a collection.
fn allowed_methods(kind: &KindInfo, info: &RequestInfo) -> &'static [&'static str] {
    if kind.review {
        return if info.name.is_none() { &["POST"] } else { &[] };
    }
    match (info.name.is_some(), info.subresource.is_some()) {
        (false, _) if kind.namespaced && info.namespace.is_none() => &["GET"],
        (false, _) if kind.verbs().contains(&"deletecollection") => &["DELETE", "GET", "POST"],
        (false, _) => &["GET", "POST"],
        (true, false) => &["DELETE", "GET", "PATCH", "PUT"],
        (true, true) => &["GET", "PATCH", "PUT"],
    }
}

async fn route_resource(ctx: &Ctx, method: Method, body: Body) -> ApiResult<Response> {
    let info = &ctx.info;
    let allowed = allowed_methods(&ctx.kind, info);
    if !allowed.contains(&method.as_str()) {
        return Err(ApiError::method_not_allowed_here(allowed));
    }
    if ctx.kind.review {
        return crate::authz::review(ctx, &ctx.read_body(body).await?).await;
    }
    match (info.name.as_deref(), info.subresource.as_deref(), method) {
        (None, None, Method::GET) if ctx.query.watch => watch::watch(ctx).await,
        (None, None, Method::GET) => list::list(ctx).await,
        (None, None, Method::POST) => create::create(ctx, ctx.read_body(body).await?).await,
        (None, None, Method::DELETE) => {
            delete::delete_collection(ctx, ctx.read_body(body).await?).await
        }
        (Some(name), Some("scale"), Method::GET) => scale::get(ctx, name).await,
        (Some(name), Some("scale"), method @ (Method::PUT | Method::PATCH)) => {
            scale::write(
                ctx,
                name,
                method == Method::PATCH,
                ctx.read_body(body).await?,
            )
            .await
        }
        (Some(name), sub, Method::GET) => get::get(ctx, name, sub.is_some()).await,
        (Some(name), sub, Method::PUT) => {
            update::update(ctx, name, sub.is_some(), ctx.read_body(body).await?).await
        }
        (Some(name), sub, Method::PATCH) => {
            patch::patch(ctx, name, sub.is_some(), ctx.read_body(body).await?).await
        }
        (Some(name), None, Method::DELETE) => {
            delete::delete(ctx, name, ctx.read_body(body).await?).await
        }
        _ => Err(ApiError::method_not_allowed_here(allowed)),
    }
}

/// One request on a resource.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub state: Arc<AppState>,
    pub kind: Arc<KindInfo>,
    pub info: RequestInfo,
    pub query: Query,
    pub headers: HeaderMap,
    pub output: Output,
    /// Who asked (`None`: the server itself, or a server without authentication).
    pub user: Option<UserInfo>,
}

impl Ctx {
    /// A context for writes the server makes itself (no query options, JSON output).
    pub fn internal(
        state: &Arc<AppState>,
        kind: Arc<KindInfo>,
        cluster: &str,
        namespace: Option<&str>,
    ) -> Self {
        Ctx {
            state: state.clone(),
            info: RequestInfo {
                cluster: cluster.to_string(),
                group: kind.group.clone(),
                version: kind.version.clone(),
                namespace: namespace.map(String::from),
                resource: kind.plural.clone(),
                name: None,
                subresource: None,
                watch: false,
            },
            kind,
            query: Query::default(),
            headers: HeaderMap::new(),
            output: Output::Json,
            user: None,
        }
    }

    /// The same request, in another namespace.
    pub fn in_namespace(&self, namespace: &str) -> Self {
        let mut c = self.clone();
        c.info.namespace = Some(namespace.to_string());
        c
    }

    /// Namespaced kinds are addressed inside a namespace (lists may span all of them);
    /// cluster-scoped kinds never are. `status` and `scale` are the subresources.
    fn check_scope(&self) -> ApiResult<()> {
        let info = &self.info;
        if self.kind.namespaced && info.namespace.is_none() && info.name.is_some() {
            return Err(ApiError::no_route());
        }
        if !self.kind.namespaced && info.namespace.is_some() {
            return Err(ApiError::no_route());
        }
        match info.subresource.as_deref() {
            None => Ok(()),
            Some("status") if self.kind.status_subresource => Ok(()),
            Some("scale") if self.kind.scale.is_some() => Ok(()),
            Some(_) => Err(ApiError::no_route()),
        }
    }

    /// The request's namespace (`""` for cluster-scoped kinds).
    pub fn namespace(&self) -> &str {
        self.info.namespace.as_deref().unwrap_or("")
    }

    /// The storage key of an object of this kind.
    pub fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(
            &self.info.cluster,
            &self.kind.group_resource(),
            self.namespace(),
            name,
        )
    }

    /// The field manager: `fieldManager`, else the User-Agent's product name.
    pub fn manager(&self) -> ApiResult<String> {
        let manager = match &self.query.field_manager {
            Some(m) => m.clone(),
            None => self
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .map(|s| {
                    s.chars()
                        .filter(|c| !c.is_control())
                        .take(128)
                        .collect::<String>()
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into()),
        };
        if manager.len() > 128 {
            return Err(ApiError::invalid(
                "PatchOptions.meta.k8s.io",
                "meta.k8s.io",
                "PatchOptions",
                "",
                &[syncsets_machinery::FieldError::too_long(
                    "fieldManager",
                    128,
                )],
            ));
        }
        Ok(manager)
    }

    /// The admission context of a write.
    pub fn write_context<'a>(
        &'a self,
        now: &'a str,
        ownership: Ownership,
        status: bool,
    ) -> ApiResult<WriteContext<'a>> {
        Ok(WriteContext {
            kind: &self.kind,
            meta_schema: self.state.registry.meta_schema(),
            namespace: self.info.namespace.as_deref(),
            now,
            field_validation: FieldValidation::parse(&self.query.field_validation)
                .map_err(|e| ApiError::from_machinery(e, &self.kind, ""))?,
            ownership,
            status,
        })
    }

    /// Reads the body, refusing more than the configured limit.
    async fn read_body(&self, body: Body) -> ApiResult<Bytes> {
        let limit = self.state.config.body_limit;
        if let Some(len) = self
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            && len > limit
        {
            return Err(ApiError::too_large(limit));
        }
        axum::body::to_bytes(body, limit).await.map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::too_large(limit)
            } else {
                ApiError::bad_request(format!("reading the request body: {e}"))
            }
        })
    }

    /// Decodes a create/update body.
    pub fn decode_object(&self, bytes: &[u8]) -> ApiResult<Decoded> {
        if bytes.is_empty() {
            return Err(ApiError::bad_request("the request body is empty"));
        }
        let decoded = match negotiate::body_format(&self.headers)? {
            BodyFormat::Json => decode::json(bytes),
            BodyFormat::Yaml => decode::yaml(bytes),
            BodyFormat::Protobuf => {
                syncsets_machinery::protobuf::decode(bytes).map(|value| Decoded {
                    value,
                    duplicates: Vec::new(),
                })
            }
        };
        decoded.map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                self.kind.kind, self.kind.version, self.kind.kind
            ))
        })
    }

    /// An object as served at this request's version.
    pub fn served(&self, mut obj: Value) -> Value {
        if obj.is_object() {
            obj["apiVersion"] = Value::String(self.kind.api_version());
        }
        obj
    }

    /// Why nothing can be created in this request's namespace: it is terminating.
    fn terminating(&self, name: &str) -> ApiError {
        let ns = self.namespace();
        let mut e = ApiError::forbidden(
            &self.kind,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        );
        if let Some(d) = e.details.as_mut() {
            d["causes"] = serde_json::json!([{"reason": "NamespaceTerminating",
                "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]);
        }
        e
    }

    /// Writes an object in the negotiated form.
    pub fn respond(
        &self,
        code: StatusCode,
        obj: Value,
        warnings: &[String],
    ) -> ApiResult<Response> {
        let served = self.served(obj);
        let body = match self.output {
            Output::Table => syncsets_machinery::table::render(
                &self.kind,
                std::slice::from_ref(&served),
                syncsets_machinery::table::IncludeObject::parse(&self.query.include_object)
                    .map_err(|e| ApiError::from_machinery(e, &self.kind, ""))?,
                serde_json::json!({"resourceVersion": served["metadata"]["resourceVersion"]}),
                true,
                jiff::Timestamp::now(),
            ),
            Output::Metadata => serde_json::json!({
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": served["metadata"]
            }),
            Output::Json | Output::Yaml => served,
        };
        Ok(negotiate::respond(code, &body, self.output, warnings))
    }

    /// Writes an object through the one write path, with this request's policy checks
    /// and after-write effects, retrying races; `propose` says what the object read
    /// should become.
    pub async fn write(
        &self,
        name: &str,
        admission: Option<WriteContext<'_>>,
        duplicates: &[String],
        propose: impl FnMut(Option<&Stored>) -> ApiResult<Proposal>,
    ) -> ApiResult<Written> {
        self.write_from(name, admission, duplicates, None, propose)
            .await
    }

    /// [`Self::write`], starting from `known` (`Some(None)`: assumed absent, as for a
    /// create, which then reaches the store only once admitted) instead of a first read.
    pub async fn write_from(
        &self,
        name: &str,
        admission: Option<WriteContext<'_>>,
        duplicates: &[String],
        known: Option<Option<Stored>>,
        propose: impl FnMut(Option<&Stored>) -> ApiResult<Proposal>,
    ) -> ApiResult<Written> {
        let key = self.key(name);
        let write = match admission {
            Some(admission) => Write::new(self.state.store.as_ref(), key, admission),
            None => Write::removal(self.state.store.as_ref(), key),
        };
        write
            .duplicates(duplicates)
            .dry_run(self.query.dry_run)
            .run_from(known, self, propose)
            .await
            .map_err(|e| self.write_error(name, e))
    }

    fn write_error(&self, name: &str, e: WriteError<ApiError>) -> ApiError {
        match e {
            WriteError::Refused(e) => e,
            WriteError::Invalid(e) => ApiError::from_machinery(e, &self.kind, name),
            WriteError::Store(StoreError::NamespaceNotFound) => {
                ApiError::namespace_not_found(self.namespace())
            }
            WriteError::Store(StoreError::NamespaceTerminating) => self.terminating(name),
            WriteError::Store(e) => ApiError::from_store(e, &self.kind, name),
            WriteError::Conflict => ApiError::conflict(&self.kind, name),
        }
    }

    /// Reads the current object.
    pub async fn current(&self, name: &str) -> ApiResult<Option<Stored>> {
        self.state
            .store
            .get(&self.key(name))
            .await
            .map_err(|e| ApiError::internal("reading the object", &e))
    }
}

/// `metadata.resourceVersion` of a request body, when the client set one.
pub(crate) fn body_rv(obj: &Value, ctx: &Ctx, name: &str) -> ApiResult<Option<u64>> {
    match obj["metadata"].get("resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
            ApiError::invalid(
                &ctx.kind.qualified_kind(),
                &ctx.kind.group,
                &ctx.kind.kind,
                name,
                &[syncsets_machinery::FieldError::invalid(
                    "metadata.resourceVersion",
                    s.as_str(),
                    "must be a number",
                )],
            )
        }),
        Some(other) => Err(ApiError::bad_request(format!(
            "metadata.resourceVersion must be a string, got {other}"
        ))),
    }
}

pub(crate) use create::store_new;
pub(crate) use delete::deletion;

/// An API request writes with its user's policy checks and the serving replica's
/// after-write effects (every replica also runs those from the change feed).
impl Effects for Ctx {
    type Error = ApiError;

    async fn check(&self, old: Option<&Value>, new: &mut Value) -> ApiResult<()> {
        crate::authz::check_write(self, old, new).await
    }

    async fn written(&self, object: &Value) {
        lifecycle::after_write(self, object).await;
    }

    async fn deleted(&self, object: &Value) {
        lifecycle::after_delete(self, object).await;
    }
}
