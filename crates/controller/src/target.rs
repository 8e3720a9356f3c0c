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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Created or changed (or asserted, for server-side apply).
    Applied,
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
        let path = DynamicObject::url_path(&resolved.resource, (!ns.is_empty()).then_some(ns));
        (path, ns.to_string())
    }

    /// Writes an object the way `behavior` says. Returns the object's effective reference.
    pub async fn write(
        &self,
        mut object: Value,
        behavior: Behavior,
    ) -> Result<(Written, ObjRef), TargetError> {
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
        let req = Request::new(&path);
        let build =
            |e: kube::core::request::Error| TargetError::new(Failure::Rejected, e.to_string());
        match behavior {
            Behavior::Apply => {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                let request = req
                    .patch(&r.name, &params, &kube::api::Patch::Apply(&object))
                    .map_err(build)?;
                self.send(request).await?;
                Ok((Written::Applied, r))
            }
            Behavior::CreateOnly | Behavior::CreateOrUpdate => {
                let create = req
                    .create(
                        &kube::api::PostParams {
                            dry_run: false,
                            field_manager: Some(FIELD_MANAGER.into()),
                        },
                        serde_json::to_vec(&object).expect("objects serialise"),
                    )
                    .map_err(build)?;
                match self.send(create).await {
                    Ok(_) => Ok((Written::Applied, r)),
                    Err(e) if e.code == 409 => {
                        if behavior == Behavior::CreateOnly {
                            return Ok((Written::Unchanged, r));
                        }
                        // Update the declared fields; fields others set stay.
                        let patch = merge_patch_body(&object);
                        let request = raw_patch(&path, &r.name, PatchType::Merge, patch)?;
                        self.send(request).await?;
                        Ok((Written::Applied, r))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Applies a patch to an existing object (a missing object is a failure).
    pub async fn patch(
        &self,
        target: &ObjRef,
        patch: &str,
        patch_type: PatchType,
    ) -> Result<(), TargetError> {
        let resolved = self.resolve(&target.api_version, &target.kind).await?;
        let (path, _) = Self::collection(&resolved, &target.namespace);
        let request = raw_patch(&path, &target.name, patch_type, patch.as_bytes().to_vec())?;
        self.send(request).await.map(drop)
    }

    /// Deletes an object; one that does not exist (or whose kind is not served) is gone
    /// already.
    pub async fn delete(&self, target: &ObjRef) -> Result<(), TargetError> {
        let resolved = match self.resolve(&target.api_version, &target.kind).await {
            Ok(r) => r,
            Err(e) if e.failure == Failure::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let (path, _) = Self::collection(&resolved, &target.namespace);
        let request = Request::new(&path)
            .delete(&target.name, &kube::api::DeleteParams::background())
            .map_err(|e| TargetError::new(Failure::Rejected, e.to_string()))?;
        match self.send(request).await {
            Ok(_) => Ok(()),
            Err(e) if e.failure == Failure::NotFound => Ok(()),
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
) -> Result<http::Request<Vec<u8>>, TargetError> {
    let uri = format!("{path}/{name}?fieldManager={FIELD_MANAGER}");
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
