//! Talking to a target cluster through the Kubernetes API with kube-rs: resolving kinds
//! (one discovery request per group-version, cached), server-side apply, create, merge
//! update, patches and deletes, under a per-cluster rate limit. Nothing here knows whether
//! the cluster is real or simulated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use kube::api::{ApiResource, DynamicObject, PatchParams};
use kube::core::{GroupVersion, Request, Resource as _};
use kube::discovery::Scope;
use serde_json::Value;

use crate::kstatus::{self, Health};
use crate::model::ObjRef;
use crate::plan::{Behavior, PatchType};

/// The field manager of everything syncsets applies to clusters.
pub const FIELD_MANAGER: &str = "syncsets";

/// Why a request to a cluster failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The cluster could not be reached (connection refused or reset, DNS, TLS, timeout).
    Unreachable,
    /// The cluster refused our credentials (401) or their permissions (403).
    Unauthorized,
    /// The object (or its kind) does not exist.
    NotFound,
    /// The cluster refused the request otherwise.
    Rejected,
    /// The kubeconfig cannot be used.
    Config,
}

/// A failed request, with a message safe to show (no credentials).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    /// What kind of failure.
    pub failure: Failure,
    /// The HTTP status the cluster answered with (0: no answer).
    pub code: u16,
    /// What happened.
    pub message: String,
}

impl TargetError {
    /// A kubeconfig problem.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Failure::Config, message)
    }

    fn new(failure: Failure, message: impl Into<String>) -> Self {
        Self {
            failure,
            code: 0,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(Failure::NotFound, message)
    }

    /// The HTTP status the cluster answered with (`403 Forbidden`), without its message —
    /// or the whole message when there was no answer.
    pub fn status(&self) -> String {
        match self.message.split_once(": ") {
            Some((status, _)) if self.code != 0 => status.to_string(),
            _ => self.message.clone(),
        }
    }

    /// Classifies a kube-rs error and renders it without credentials or response dumps.
    pub fn from_kube(e: &kube::Error) -> Self {
        use std::io::ErrorKind;
        let code = match e {
            kube::Error::Api(s) => s.code,
            _ => 0,
        };
        let (failure, message) = match e {
            kube::Error::Api(s) => {
                let failure = match s.code {
                    401 | 403 => Failure::Unauthorized,
                    404 => Failure::NotFound,
                    _ => Failure::Rejected,
                };
                let mut message: String = s.message.chars().take(512).collect();
                if message.is_empty() {
                    message = s.reason.clone();
                }
                (failure, format!("{} {}: {message}", s.code, s.reason))
            }
            kube::Error::Service(_) | kube::Error::HyperError(_) => {
                let mut chain = Vec::new();
                let mut failure = Failure::Unreachable;
                let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
                while let Some(err) = cur {
                    if let Some(io) = err.downcast_ref::<std::io::Error>()
                        && io.kind() == ErrorKind::InvalidData
                    {
                        failure = Failure::Unreachable; // TLS: this cluster cannot be talked to
                    }
                    let text = err.to_string();
                    if !chain.iter().any(|c: &String| c.contains(&text)) {
                        chain.push(text);
                    }
                    cur = err.source();
                }
                (failure, chain.join(": "))
            }
            kube::Error::Auth(_) => (
                Failure::Config,
                "the kubeconfig's credentials cannot be used".into(),
            ),
            kube::Error::InferKubeconfig(_) => (Failure::Config, "invalid kubeconfig".into()),
            kube::Error::RustlsTls(t) => (Failure::Config, format!("TLS configuration: {t}")),
            other => (Failure::Rejected, other.to_string()),
        };
        Self {
            failure,
            code,
            message,
        }
    }
}

/// Requests to one cluster: `qps` a second on average, bursts of `burst` (`governor`'s
/// GCRA, as the API server limits its clients); `qps` ≤ 0 is no limit.
pub struct RateLimiter(Option<governor::DefaultDirectRateLimiter>);

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter with its whole burst available.
    pub fn new(qps: f64, burst: u32) -> Self {
        // One clock for every limiter: making one probes the CPU, which cost 2% of the
        // controllers' time when each new cluster client made its own.
        static CLOCK: std::sync::LazyLock<governor::clock::DefaultClock> =
            std::sync::LazyLock::new(Default::default);
        Self(
            syncsets_retry::quota(qps, burst)
                .map(|q| governor::RateLimiter::direct_with_clock(q, CLOCK.clone())),
        )
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        if let Some(limiter) = &self.0 {
            limiter.until_ready().await;
        }
    }
}

/// A resolved kind.
#[derive(Clone, Debug)]
struct Resolved {
    resource: ApiResource,
    namespaced: bool,
}

/// A group-version's kinds as the cluster serves them.
type GroupVersionKinds = Arc<HashMap<String, Arc<Resolved>>>;

/// How many times a throttled request is sent again before its 429 counts as a failure
/// (client-go: 10, each after the server's `Retry-After`).
const THROTTLED_RETRIES: u32 = 5;

/// How long to wait before sending a request the cluster throttled (429) again: its
/// `Retry-After` (1 s when it gives none, 10 s at most); `None` for other errors.
fn throttled(e: &kube::Error) -> Option<Duration> {
    match e {
        kube::Error::Api(s) if s.code == 429 => {
            let seconds = s.details.as_ref().map_or(0, |d| d.retry_after_seconds);
            Some(Duration::from_secs(u64::from(seconds.clamp(1, 10))))
        }
        _ => None,
    }
}

/// How long a group-version that lacks a kind is trusted before asking again (a CRD may
/// have been installed since).
const MISSING_KIND_RECHECK: Duration = Duration::from_secs(10);

/// One target cluster's client.
pub struct Target {
    client: kube::Client,
    limiter: RateLimiter,
    request_timeout: Duration,
    discovery: Mutex<HashMap<String, (GroupVersionKinds, Instant)>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").finish_non_exhaustive()
    }
}

/// What a write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// Created or changed (or asserted, for server-side apply): how it is doing, as the
    /// cluster answered.
    Applied(Health),
    /// Left as it was (CreateOnly on an existing object).
    Unchanged,
}

impl Target {
    /// A target reached through `client`.
    pub fn new(client: kube::Client, qps: f64, burst: u32, request_timeout: Duration) -> Self {
        Self {
            client,
            limiter: RateLimiter::new(qps, burst),
            request_timeout,
            discovery: Mutex::new(HashMap::new()),
        }
    }

    /// Calls the cluster (rate limited) until it answers other than 429 Too Many
    /// Requests, waiting as it asks before each new attempt, as client-go does (at most
    /// [`THROTTLED_RETRIES`] more); `None` when `deadline` passes first.
    async fn call<T, F>(
        &self,
        deadline: Instant,
        mut call: impl FnMut() -> F,
    ) -> Option<Result<T, kube::Error>>
    where
        F: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let mut attempt = 0;
        loop {
            self.limiter.acquire().await;
            let result = tokio::time::timeout_at(deadline, call()).await.ok()?;
            match result.as_ref().err().and_then(throttled) {
                Some(wait) if attempt < THROTTLED_RETRIES && Instant::now() + wait < deadline => {
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => return Some(result),
            }
        }
    }

    /// Sends a request (rate limited, throttling obeyed, with a deadline), returning the
    /// response body.
    async fn send(&self, request: http::Request<Vec<u8>>) -> Result<String, TargetError> {
        let (parts, body) = request.into_parts();
        let again = || {
            let mut request = http::Request::new(body.clone());
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = parts.uri.clone();
            *request.headers_mut() = parts.headers.clone();
            self.client.request_text(request)
        };
        match self
            .call(Instant::now() + self.request_timeout, again)
            .await
        {
            Some(Ok(text)) => Ok(text),
            Some(Err(e)) => Err(TargetError::from_kube(&e)),
            None => Err(TargetError::new(
                Failure::Unreachable,
                format!("no answer within {:?}", self.request_timeout),
            )),
        }
    }

    /// The kinds of a group-version, discovered once.
    async fn kinds(
        &self,
        api_version: &str,
        refresh: bool,
    ) -> Result<GroupVersionKinds, TargetError> {
        if let Some((kinds, at)) = self
            .discovery
            .lock()
            .expect("discovery lock")
            .get(api_version)
            .cloned()
            && (!refresh || at.elapsed() < MISSING_KIND_RECHECK)
        {
            return Ok(kinds);
        }
        let gv: GroupVersion = api_version
            .parse()
            .map_err(|_| TargetError::not_found(format!("invalid apiVersion {api_version:?}")))?;
        let discover = || kube::discovery::pinned_group(&self.client, &gv);
        let group = match self
            .call(Instant::now() + self.request_timeout, discover)
            .await
        {
            Some(Ok(group)) => group,
            Some(Err(e)) => {
                let e = TargetError::from_kube(&e);
                return Err(match e.failure {
                    Failure::NotFound => {
                        TargetError::not_found(format!("the server does not serve {api_version}"))
                    }
                    _ => e,
                });
            }
            None => {
                return Err(TargetError::new(
                    Failure::Unreachable,
                    format!("discovery: no answer within {:?}", self.request_timeout),
                ));
            }
        };
        let kinds: HashMap<String, Arc<Resolved>> = group
            .versioned_resources(&gv.version)
            .into_iter()
            .map(|(resource, caps)| {
                let namespaced = caps.scope == Scope::Namespaced;
                (
                    resource.kind.clone(),
                    Arc::new(Resolved {
                        resource,
                        namespaced,
                    }),
                )
            })
            .collect();
        let kinds = Arc::new(kinds);
        self.discovery
            .lock()
            .expect("discovery lock")
            .insert(api_version.to_string(), (kinds.clone(), Instant::now()));
        Ok(kinds)
    }

    /// Resolves a kind, rediscovering its group-version if the kind is missing.
    async fn resolve(&self, api_version: &str, kind: &str) -> Result<Arc<Resolved>, TargetError> {
        for refresh in [false, true] {
            if let Some(r) = self.kinds(api_version, refresh).await?.get(kind) {
                return Ok(r.clone());
            }
        }
        Err(TargetError::not_found(format!(
            "no matches for kind {kind:?} in version {api_version:?}"
        )))
    }

    /// The collection path of a kind, in a namespace (a namespaced object without one goes
    /// to `default`, as kubectl would put it; a cluster-scoped one has none).
    fn collection(resolved: &Resolved, namespace: &str) -> (String, String) {
        let ns = if resolved.namespaced {
            if namespace.is_empty() {
                "default"
            } else {
                namespace
            }
        } else {
            ""
        };
        let encoded = segment(ns);
        let path = DynamicObject::url_path(
            &resolved.resource,
            (!ns.is_empty()).then_some(encoded.as_ref()),
        );
        (path, ns.to_string())
    }

    /// An object to write as the cluster will take it: its kind resolved, its namespace
    /// the one it goes to (a namespaced object without one goes to `default`), server
    /// fields dropped. Returns the object, its effective reference and its collection path.
    async fn prepare(&self, mut object: Value) -> Result<(Value, ObjRef, String), TargetError> {
        let mut r = ObjRef::of(&object);
        let resolved = self.resolve(&r.api_version, &r.kind).await?;
        let (path, ns) = Self::collection(&resolved, &r.namespace);
        r.namespace = ns.clone();
        if let Some(meta) = object["metadata"].as_object_mut() {
            if ns.is_empty() {
                meta.remove("namespace");
            } else {
                meta.insert("namespace".into(), Value::String(ns));
            }
            for field in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "managedFields",
            ] {
                meta.remove(field);
            }
        }
        Ok((object, r, path))
    }

    /// Server-side apply (`dry_run`: as a dry run), returning the object the cluster holds
    /// (or would hold) after it.
    async fn apply(
        &self,
        path: &str,
        r: &ObjRef,
        object: &Value,
        dry_run: bool,
    ) -> Result<String, TargetError> {
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        let request = Request::new(path)
            .patch(&segment(&r.name), &params, &kube::api::Patch::Apply(object))
            .map_err(request_error)?;
        self.dispatch(request, dry_run).await
    }

    /// Creates an object (`dry_run`: as a dry run).
    async fn create(
        &self,
        path: &str,
        object: &Value,
        dry_run: bool,
    ) -> Result<String, TargetError> {
        let params = kube::api::PostParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        let body = serde_json::to_vec(object).expect("objects serialise");
        let request = Request::new(path)
            .create(&params, body)
            .map_err(request_error)?;
        self.dispatch(request, dry_run).await
    }

    /// Sends a write; one meant as a dry run is refused unless its query says so (a dry run
    /// must never change anything, whatever the object's name holds).
    async fn dispatch(
        &self,
        request: http::Request<Vec<u8>>,
        dry_run: bool,
    ) -> Result<String, TargetError> {
        let dry = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "dryRun=All"));
        if dry_run && !dry {
            return Err(TargetError::new(
                Failure::Rejected,
                format!(
                    "refusing to send {} {} as a dry run: it is not one",
                    request.method(),
                    request.uri().path()
                ),
            ));
        }
        self.send(request).await
    }

    /// Writes an object the way `behavior` says. Returns the object's effective reference.
    pub async fn write(
        &self,
        object: Value,
        behavior: Behavior,
    ) -> Result<(Written, ObjRef), TargetError> {
        let (object, r, path) = self.prepare(object).await?;
        match behavior {
            Behavior::Apply => {
                let answer = self.apply(&path, &r, &object, false).await?;
                Ok((Written::Applied(health_of(&r, &answer)), r))
            }
            Behavior::CreateOnly | Behavior::CreateOrUpdate => {
                match self.create(&path, &object, false).await {
                    Ok(answer) => Ok((Written::Applied(health_of(&r, &answer)), r)),
                    Err(e) if e.code == 409 => {
                        if behavior == Behavior::CreateOnly {
                            return Ok((Written::Unchanged, r));
                        }
                        // Update the declared fields; fields others set stay.
                        let patch = merge_patch_body(&object);
                        let request = raw_patch(&path, &r.name, PatchType::Merge, patch, false)?;
                        let answer = self.dispatch(request, false).await?;
                        Ok((Written::Applied(health_of(&r, &answer)), r))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// What [`Self::write`] would do, found by server-side dry run (nothing changes): the
    /// object as it is now is compared with what the cluster answers it would become.
    pub async fn preview_write(
        &self,
        object: Value,
        behavior: Behavior,
    ) -> Result<(Diff, ObjRef), TargetError> {
        let (object, r, path) = self.prepare(object).await?;
        let live = self.get(&path, &r.name).await?;
        let after = match (behavior, &live) {
            (Behavior::CreateOnly, Some(_)) => return Ok((Diff::Unchanged, r)),
            (Behavior::Apply, _) => self.apply(&path, &r, &object, true).await?,
            (_, None) => self.create(&path, &object, true).await?,
            (Behavior::CreateOrUpdate, Some(_)) => {
                let patch = merge_patch_body(&object);
                let request = raw_patch(&path, &r.name, PatchType::Merge, patch, true)?;
                self.dispatch(request, true).await?
            }
        };
        Ok((Diff::between(live.as_ref(), &after), r))
    }

    /// The object at `path/name`, if there is one.
    async fn get(&self, path: &str, name: &str) -> Result<Option<Value>, TargetError> {
        let request = Request::new(path)
            .get(&segment(name), &kube::api::GetParams::default())
            .map_err(request_error)?;
        match self.send(request).await {
            Ok(text) => Ok(Some(parse_object(&text)?)),
            Err(e) if e.failure == Failure::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies a patch to an existing object (a missing object is a failure).
    pub async fn patch(
        &self,
        target: &ObjRef,
        patch: &str,
        patch_type: PatchType,
    ) -> Result<Health, TargetError> {
        let path = self.path_of(target).await?;
        let answer = self
            .send_patch(&path, target, patch, patch_type, false)
            .await?;
        Ok(health_of(target, &answer))
    }

    /// The collection path of an existing object's kind, resolved.
    async fn path_of(&self, object: &ObjRef) -> Result<String, TargetError> {
        let resolved = self.resolve(&object.api_version, &object.kind).await?;
        Ok(Self::collection(&resolved, &object.namespace).0)
    }

    /// Sends a patch of `target` (`dry_run`: as a dry run); the cluster's answer.
    async fn send_patch(
        &self,
        path: &str,
        target: &ObjRef,
        patch: &str,
        patch_type: PatchType,
        dry_run: bool,
    ) -> Result<String, TargetError> {
        let body = patch.as_bytes().to_vec();
        let request = raw_patch(path, &target.name, patch_type, body, dry_run)?;
        self.dispatch(request, dry_run).await
    }

    /// How an object applied earlier is doing now (one that is gone, or whose kind is no
    /// longer served, is progressing: it is applied again at the next full reapply).
    pub async fn health(&self, object: &ObjRef) -> Result<Health, TargetError> {
        let path = match self.path_of(object).await {
            Ok(path) => path,
            Err(e) if e.failure == Failure::NotFound => {
                return Ok(Health::Progressing(format!("its kind is not served: {e}")));
            }
            Err(e) => return Err(e),
        };
        Ok(match self.get(&path, &object.name).await? {
            Some(live) => kstatus::health(&live),
            None => Health::Progressing(
                "it is no longer on the cluster (it is applied again at the next full reapply)"
                    .into(),
            ),
        })
    }

    /// What [`Self::patch`] would do, found by server-side dry run (nothing changes).
    pub async fn preview_patch(
        &self,
        target: &ObjRef,
        patch: &str,
        patch_type: PatchType,
    ) -> Result<Diff, TargetError> {
        let path = self.path_of(target).await?;
        let live = self.get(&path, &target.name).await?;
        let after = self
            .send_patch(&path, target, patch, patch_type, true)
            .await?;
        Ok(Diff::between(live.as_ref(), &after))
    }

    /// Deletes an object; one that does not exist (or whose kind is not served) is gone
    /// already.
    pub async fn delete(&self, target: &ObjRef) -> Result<(), TargetError> {
        self.delete_as(target, false).await.map(drop)
    }

    /// What [`Self::delete`] would do, found by server-side dry run (nothing changes):
    /// [`Diff::Delete`], or [`Diff::Unchanged`] when there is nothing to delete.
    pub async fn preview_delete(&self, target: &ObjRef) -> Result<Diff, TargetError> {
        Ok(if self.delete_as(target, true).await? {
            Diff::Delete
        } else {
            Diff::Unchanged
        })
    }

    /// Deletes an object (`dry_run`: as a dry run); whether there was one to delete.
    async fn delete_as(&self, target: &ObjRef, dry_run: bool) -> Result<bool, TargetError> {
        let path = match self.path_of(target).await {
            Ok(path) => path,
            Err(e) if e.failure == Failure::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        // The dry run in the query and in the DeleteOptions: servers read one or the other.
        let mut options = serde_json::json!({"apiVersion": "v1", "kind": "DeleteOptions",
            "propagationPolicy": "Background"});
        let query = if dry_run {
            options["dryRun"] = serde_json::json!(["All"]);
            "?dryRun=All"
        } else {
            ""
        };
        let request = http::Request::delete(format!("{path}/{}{query}", segment(&target.name)))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&options).expect("options serialise"))
            .map_err(|e| {
                TargetError::new(Failure::Rejected, format!("building the request: {e}"))
            })?;
        match self.dispatch(request, dry_run).await {
            Ok(_) => Ok(true),
            Err(e) if e.failure == Failure::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks that the cluster answers (a circuit breaker's probe): `GET /version`.
    pub async fn probe(&self) -> Result<(), TargetError> {
        let request = http::Request::get("/version")
            .body(Vec::new())
            .expect("a static request");
        self.send(request).await.map(drop)
    }
}

/// A name or namespace as one segment of a request's path: percent-encoded, so that
/// nothing in it (`/`, `?`, `#`, `%`…) can change what the request means.
pub fn segment(text: &str) -> std::borrow::Cow<'_, str> {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'/')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    percent_encoding::utf8_percent_encode(text, SEGMENT).into()
}

/// The health of the object a write answered with. Only kinds with their own rules, and
/// answers that hold a status, are read: a ConfigMap's answer is not parsed.
fn health_of(object: &ObjRef, answer: &str) -> Health {
    if !kstatus::has_rules(object.group(), &object.kind) && !answer.contains("\"status\"") {
        return Health::Healthy;
    }
    match serde_json::from_str::<Value>(answer) {
        Ok(live) if live.is_object() => kstatus::health(&live),
        _ => Health::Healthy,
    }
}

fn request_error(e: kube::core::request::Error) -> TargetError {
    TargetError::new(Failure::Rejected, e.to_string())
}

/// An object a cluster answered with.
fn parse_object(text: &str) -> Result<Value, TargetError> {
    match serde_json::from_str::<Value>(text) {
        Ok(object) if object.is_object() => Ok(object),
        Ok(_) => Err(TargetError::new(
            Failure::Rejected,
            "the answer is not an object",
        )),
        Err(e) => Err(TargetError::new(
            Failure::Rejected,
            format!("unreadable answer: {e}"),
        )),
    }
}

/// What a write would do to an object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Diff {
    /// Create it.
    Create,
    /// Change these fields (paths such as `.data.mode` or
    /// `.spec.template.spec.containers[0].image`).
    Change(Vec<String>),
    /// Delete it.
    Delete,
    /// Nothing.
    Unchanged,
    /// The cluster would not say (it refuses dry runs of it: why).
    NotPreviewable(String),
}

impl Diff {
    /// The effect of a write that turned `before` (absent: none) into `after` (the
    /// cluster's answer as text; an unreadable answer is a change of the whole object).
    fn between(before: Option<&Value>, after: &str) -> Self {
        let Some(before) = before else {
            return Self::Create;
        };
        let Ok(after) = parse_object(after) else {
            return Self::Change(vec![".".into()]);
        };
        let fields = changed_fields(before, &after);
        if fields.is_empty() {
            Self::Unchanged
        } else {
            Self::Change(fields)
        }
    }
}

/// The paths of the fields that differ between two forms of an object, leaving out what
/// the server keeps for itself (resourceVersion, generation, managedFields, uid,
/// creationTimestamp) and `status` (the cluster's, not ours). A field added or removed
/// is named, not what it holds; lists of different lengths are named whole.
pub fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    fn strip(object: &Value) -> Value {
        let mut object = object.clone();
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
        }
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "resourceVersion",
                "generation",
                "managedFields",
                "uid",
                "creationTimestamp",
                "selfLink",
            ] {
                meta.remove(field);
            }
        }
        object
    }
    fn segment(key: &str) -> String {
        let plain = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            format!(".{key}")
        } else {
            format!("[{}]", Value::String(key.into()))
        }
    }
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for key in keys {
                    let here = format!("{path}{}", segment(key));
                    match (a.get(key.as_str()), b.get(key.as_str())) {
                        (Some(x), Some(y)) => walk(&here, x, y, out),
                        _ => out.push(here),
                    }
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(&format!("{path}[{i}]"), x, y, out);
                }
            }
            _ if a != b => out.push(if path.is_empty() {
                ".".into()
            } else {
                path.into()
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", &strip(before), &strip(after), &mut out);
    out
}

/// A merge patch that sets what `object` declares (identity and server fields left out).
fn merge_patch_body(object: &Value) -> Vec<u8> {
    let mut patch = object.clone();
    if let Some(o) = patch.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
        o.remove("status");
    }
    if let Some(meta) = patch["metadata"].as_object_mut() {
        meta.remove("name");
        meta.remove("namespace");
    }
    serde_json::to_vec(&patch).expect("objects serialise")
}

fn raw_patch(
    path: &str,
    name: &str,
    patch_type: PatchType,
    body: Vec<u8>,
    dry_run: bool,
) -> Result<http::Request<Vec<u8>>, TargetError> {
    let dry_run = if dry_run { "&dryRun=All" } else { "" };
    let name = segment(name);
    let uri = format!("{path}/{name}?fieldManager={FIELD_MANAGER}{dry_run}");
    http::Request::patch(uri)
        .header(http::header::CONTENT_TYPE, patch_type.content_type())
        .body(body)
        .map_err(|e| TargetError::new(Failure::Rejected, format!("building the request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limiter_allows_a_burst_then_the_rate() {
        let clock = governor::clock::FakeRelativeClock::default();
        let limiter = governor::RateLimiter::direct_with_clock(
            syncsets_retry::quota(10.0, 5).unwrap(),
            clock.clone(),
        );
        assert!((0..5).all(|_| limiter.check().is_ok()), "the burst is free");
        let wait = limiter
            .check()
            .unwrap_err()
            .wait_time_from(governor::clock::Clock::now(&clock));
        assert_eq!(wait, Duration::from_millis(100));
        clock.advance(Duration::from_millis(100));
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err());
        assert!(syncsets_retry::quota(0.0, 5).is_none(), "0 is no limit");
    }

    #[tokio::test]
    async fn an_unlimited_or_bursting_target_does_not_wait() {
        for limiter in [RateLimiter::new(0.0, 1), RateLimiter::new(1.0, 100)] {
            for _ in 0..100 {
                tokio::time::timeout(Duration::from_secs(5), limiter.acquire())
                    .await
                    .unwrap();
            }
        }
    }

    #[test]
    fn changed_fields_name_what_differs_and_nothing_the_server_keeps() {
        let before = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "resourceVersion": "1", "generation": 1,
                         "labels": {"app.kubernetes.io/name": "x", "keep": "k"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "c", "image": "i:1"}, {"name": "d", "image": "j:1"}]}},
                     "gone": true},
            "status": {"readyReplicas": 1}});
        let after = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "resourceVersion": "2", "generation": 2,
                         "managedFields": [{"manager": "syncsets"}],
                         "labels": {"app.kubernetes.io/name": "y", "keep": "k"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "c", "image": "i:2"}, {"name": "d", "image": "j:1"}]}},
                     "paused": false},
            "status": {"readyReplicas": 0}});
        assert_eq!(
            changed_fields(&before, &after),
            [
                r#".metadata.labels["app.kubernetes.io/name"]"#,
                ".spec.gone",
                ".spec.paused",
                ".spec.template.spec.containers[0].image",
            ]
        );
        assert!(changed_fields(&before, &before).is_empty());
        let mut three = before.clone();
        three["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "e"}));
        assert_eq!(
            changed_fields(&before, &three),
            [".spec.template.spec.containers"]
        );
        assert_eq!(Diff::between(None, "{}"), Diff::Create);
        assert_eq!(
            Diff::between(Some(&before), &before.to_string()),
            Diff::Unchanged
        );
    }

    #[test]
    fn merge_updates_leave_identity_alone() {
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "n", "labels": {"x": "y"}}, "data": {"k": "v"}});
        let patch: Value = serde_json::from_slice(&merge_patch_body(&obj)).unwrap();
        assert_eq!(
            patch,
            serde_json::json!({"metadata": {"labels": {"x": "y"}}, "data": {"k": "v"}})
        );
    }
}
