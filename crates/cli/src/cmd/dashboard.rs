//! `syncsets dashboard`: the fleet in a browser. It serves the dashboard's page on a
//! loopback port and passes the page's reads to the hub with the kubeconfig's credentials,
//! the way `kubectl proxy` does — so the page sees exactly what RBAC lets that user see.
//!
//! Only the browser that opened the address it prints gets at the hub: the address carries
//! a random token in its fragment (never sent to a server, nor in a `Referer`), which the
//! page keeps in its own origin's storage and sends in a header with every read — a header
//! another site's page cannot send without a CORS preflight, which is never granted, and
//! which no other port of 127.0.0.1 receives, as it would a cookie. Requests naming another
//! host are refused (DNS rebinding). Only the reads the page makes reach the hub: `GET` of
//! the four collections it shows and a cluster's Events, answered as JSON.
//!
//! A browser opens at most six HTTP/1.1 connections to a host, across all its tabs, so the
//! page follows every collection through one multiplexed stream (`/watch`) rather than a
//! watch each. The page's assets are compiled into the binary.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use serde_json::json;
use syncsets_api::ApiError;
use syncsets_types::names::validate_dns1123_label;

use crate::hub_args::HubArgs;

/// Arguments of `dashboard`.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    hub: HubArgs,

    /// Loopback address to serve the dashboard on (port 0: any free port)
    #[arg(long, default_value = "127.0.0.1:7080")]
    listen: SocketAddr,

    /// Namespace to show when the user may not list across namespaces [default: the
    /// kubeconfig context's]
    #[arg(long, short)]
    namespace: Option<String>,
}

/// Runs `dashboard` until SIGINT or SIGTERM.
pub async fn run(args: DashboardArgs) -> anyhow::Result<()> {
    let client = args.hub.client().await?;
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let dashboard = Dashboard::bind(args.listen, client, namespace).await?;
    println!("syncsets dashboard on {}", dashboard.url());
    println!("Open that address in a browser (it lets that browser in); Ctrl-C stops it.");
    dashboard.serve(super::serve::shutdown_signal()).await
}

/// The header the page sends its token in.
const TOKEN_HEADER: &str = "x-syncsets-dashboard-token";

/// What every request handler shares.
struct Shared {
    client: kube::Client,
    namespace: String,
    token: String,
    hosts: [String; 2],
}

/// A dashboard bound to its port, not serving yet.
pub struct Dashboard {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    url: String,
}

impl Dashboard {
    /// Binds `listen` (127.0.0.1 or ::1) to serve the hub `client` reaches.
    pub async fn bind(
        listen: SocketAddr,
        client: kube::Client,
        namespace: String,
    ) -> anyhow::Result<Self> {
        if !listen.ip().is_loopback() {
            bail!(
                "the dashboard serves the hub with your credentials: it listens on loopback only, not {listen}"
            );
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let bound = listener.local_addr()?;
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let url = format!("http://{bound}/#token={token}");
        let shared = Arc::new(Shared {
            client,
            namespace,
            token,
            hosts: [bound.to_string(), format!("localhost:{}", bound.port())],
        });
        Ok(Self {
            listener,
            shared,
            url,
        })
    }

    /// The address to open: it carries the token that lets a browser in.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until `stop` completes; open watch streams end then too.
    pub async fn serve(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shared = self.shared;
        let app = axum::Router::new()
            .route("/api/{*rest}", axum::routing::any(proxy))
            .route("/apis/{*rest}", axum::routing::any(proxy))
            .route("/watch", axum::routing::any(watch))
            .route("/config.json", axum::routing::any(config))
            .fallback(asset)
            .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
            .with_state(shared);
        // Not a graceful shutdown: a browser's watch would hold it open for as long as the
        // hub lets a watch last. The page reconnects to the next dashboard by itself.
        tokio::select! {
            served = axum::serve(self.listener, app) => served.context("serving the dashboard"),
            () = stop => Ok(()),
        }
    }
}

/// A plain-text answer.
fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.to_string(),
    )
        .into_response()
}

/// Equal without telling how much of `a` matched, by timing.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a request may read fleet data: it carries the token, and the browser does not
/// say it comes from another site's page.
fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| same(t, &shared.token));
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("same-origin");
    token && matches!(site, "same-origin" | "none")
}

/// Lets in requests naming the dashboard's own host (a page of another site resolving its
/// name to 127.0.0.1 names its own), and to fleet data only the page holding the token.
/// Every answer carries headers that keep it out of other sites' frames and caches.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let path = request.uri().path();
    let data = path == "/config.json"
        || path == "/watch"
        || path.starts_with("/api/")
        || path.starts_with("/apis/");
    let mut response = if !shared.hosts.iter().any(|h| h == host) {
        text(
            StatusCode::FORBIDDEN,
            "the dashboard answers only to the address it printed (or localhost) on its own port",
        )
    } else if data && !authorized(&shared, request.headers()) {
        ApiError::status_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "open the address `syncsets dashboard` printed: it carries the token that lets a browser in",
        )
        .into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let csp = if data {
        "sandbox; default-src 'none'"
    } else {
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    response
}

/// The page's assets, compiled in.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../dashboard/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/app.js"),
    ),
    (
        "/fleet.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/fleet.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../dashboard/style.css"),
    ),
];

/// Serves an asset.
async fn asset(method: Method, uri: axum::http::Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "the dashboard only reads");
    }
    match ASSETS.iter().find(|(path, _, _)| *path == uri.path()) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => text(StatusCode::NOT_FOUND, "no such page"),
    }
}

/// What the page needs to know before it reads: the namespace to fall back to.
async fn config(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(json!({"namespace": shared.namespace})).into_response()
}

/// The collections the page reads, as (API prefix, resource, namespaced only).
const READABLE: &[(&str, &str, bool)] = &[
    ("/apis/hive.openshift.io/v1", "clusterdeployments", false),
    ("/apis/hive.openshift.io/v1", "syncsets", false),
    ("/apis/hive.openshift.io/v1", "selectorsyncsets", false),
    (
        "/apis/hiveinternal.openshift.io/v1alpha1",
        "clustersyncs",
        false,
    ),
    ("/api/v1", "events", true),
];

/// The query parameters of the page's lists and watches.
const PARAMETERS: &[&str] = &[
    "watch",
    "allowWatchBookmarks",
    "resourceVersion",
    "fieldSelector",
    "labelSelector",
    "sendInitialEvents",
    "resourceVersionMatch",
];

/// Whether `path_and_query` is a read the page makes: a list or watch of a collection it
/// shows (across namespaces, or in one), with the parameters it uses.
fn readable(path_and_query: &str) -> Result<(), String> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let known = READABLE.iter().any(|(prefix, resource, namespaced)| {
        let Some(rest) = path.strip_prefix(prefix) else {
            return false;
        };
        if !*namespaced && rest == format!("/{resource}") {
            return true;
        }
        rest.strip_prefix("/namespaces/")
            .and_then(|r| r.strip_suffix(&format!("/{resource}")))
            .is_some_and(|ns| validate_dns1123_label(ns).is_empty())
    });
    if !known {
        return Err(format!(
            "the dashboard reads only the collections it shows, not {path}"
        ));
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !PARAMETERS.contains(&name) {
            return Err(format!(
                "the dashboard does not pass the parameter {name:?}"
            ));
        }
    }
    Ok(())
}

/// Sends `target` (a read [`readable`] allows) to the hub with the kubeconfig's
/// credentials.
async fn send(
    shared: &Shared,
    target: &str,
) -> Result<http::Response<kube::client::Body>, ApiError> {
    readable(target)
        .map_err(|why| ApiError::status_error(StatusCode::FORBIDDEN, "Forbidden", why))?;
    let upstream = http::Request::get(target)
        .header(header::ACCEPT, "application/json")
        .body(kube::client::Body::empty())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    shared.client.send(upstream).await.map_err(|e| {
        ApiError::status_error(
            StatusCode::BAD_GATEWAY,
            "ServiceUnavailable",
            format!("the hub did not answer: {e}"),
        )
    })
}

/// Anything but a `GET` is refused: the dashboard only reads.
fn read_only() -> Response {
    ApiError {
        allow: Some("GET".into()),
        ..ApiError::status_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the dashboard only reads: use kubectl to change the hub",
        )
    }
    .into_response()
}

/// Passes one of the page's reads to the hub and streams the answer back, as JSON.
async fn proxy(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if request.method() != Method::GET {
        return read_only();
    }
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    match send(&shared, &target).await {
        Ok(answer) => {
            let (parts, body) = answer.into_parts();
            let json = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if !json {
                return ApiError::status_error(
                    StatusCode::BAD_GATEWAY,
                    "InternalError",
                    "the hub did not answer with JSON",
                )
                .into_response();
            }
            let mut response = Response::new(Body::new(body));
            *response.status_mut() = parts.status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(refused) => refused.into_response(),
    }
}

/// One line of the multiplexed stream: `{"i":N,` then `rest`.
fn line(i: usize, rest: &str) -> Bytes {
    Bytes::from(format!("{{\"i\":{i},{rest}}}\n"))
}

/// The page's watches in one stream: each `w` or `s` parameter a watch the page makes
/// ([`readable`]), opened at the hub with the kubeconfig's credentials; each event comes
/// back as a line `{"i":N,"e":EVENT}` (N: the watch's place among the `w`s and `s`s), its
/// object whole for a `w`, its [`Overview`] for an `s`. A watch the hub refuses comes back
/// as `{"i":N,"status":CODE,"e":STATUS}`, one that ends as `{"i":N,"end":true}`, and either
/// ends the stream: the page opens it again, from where each watch was.
async fn watch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if request.method() != Method::GET {
        return read_only();
    }
    let (targets, overviews): (Vec<String>, Vec<bool>) =
        url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .filter_map(|(k, v)| match &*k {
                "w" => Some((v.into_owned(), false)),
                "s" => Some((v.into_owned(), true)),
                _ => None,
            })
            .unzip();
    if targets.is_empty() || targets.len() > 16 {
        return ApiError::bad_request(
            "give between 1 and 16 watches, as w=PATH?QUERY or s=PATH?QUERY",
        )
        .into_response();
    }
    if let Some(target) = targets
        .iter()
        .find(|t| !t.contains("watch=1") && !t.contains("watch=true"))
    {
        return ApiError::bad_request(format!("{target} is not a watch")).into_response();
    }
    // Opened together: one slow to answer holds the others back no longer than itself.
    let answers =
        futures::future::join_all(targets.iter().map(|target| send(&shared, target))).await;
    let mut streams = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let opened = match answer {
            Ok(answer) if answer.status().is_success() => {
                events(i, answer.into_body(), overviews[i]).boxed()
            }
            Ok(answer) => {
                let code = answer.status();
                let body = answer
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let status =
                    serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_else(|_| {
                        ApiError::status_error(code, "Unknown", "the hub refused the watch")
                            .status()
                    });
                futures::stream::iter([(
                    line(i, &format!("\"status\":{},\"e\":{status}", code.as_u16())),
                    true,
                )])
                .boxed()
            }
            // A watch the page does not make refuses the whole stream.
            Err(refused) if refused.code == StatusCode::FORBIDDEN => {
                return refused.into_response();
            }
            Err(failed) => futures::stream::iter([(
                line(
                    i,
                    &format!(
                        "\"status\":{},\"e\":{}",
                        failed.code.as_u16(),
                        failed.status()
                    ),
                ),
                true,
            )])
            .boxed(),
        };
        streams.push(opened);
    }
    // Every line as it comes; the first that ends a watch ends the stream, at once (the
    // other watches are dropped with it).
    let merged = futures::stream::unfold(
        (futures::stream::select_all(streams), false),
        |(mut lines, ended)| async move {
            if ended {
                return None;
            }
            let (line, last) = lines.next().await?;
            Some((line, (lines, last)))
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(
            merged.map(Ok::<_, std::convert::Infallible>),
        ))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "streaming"))
}

/// The events of watch `i`'s answer as lines of the multiplexed stream (those of each
/// frame together), their objects as [`Overview`]s if `overview`, then its end; each chunk
/// with whether it ends the watch.
fn events(
    i: usize,
    body: kube::client::Body,
    overview: bool,
) -> futures::stream::BoxStream<'static, (Bytes, bool)> {
    let frames = http_body_util::BodyStream::new(body);
    futures::stream::unfold(
        (frames, Vec::<u8>::new(), false),
        move |(mut frames, mut buffer, done)| async move {
            if done {
                return None;
            }
            loop {
                match frames.next().await {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        // Only the new data can hold the last line's end.
                        let before = buffer.len();
                        buffer.extend_from_slice(&data);
                        let Some(end) =
                            data.iter().rposition(|b| *b == b'\n').map(|at| before + at)
                        else {
                            continue;
                        };
                        let mut lines = Vec::with_capacity(end + 64);
                        for event in buffer[..end].split(|b| *b == b'\n') {
                            let event = event.trim_ascii();
                            if event.is_empty() {
                                continue;
                            }
                            lines.extend_from_slice(format!("{{\"i\":{i},\"e\":").as_bytes());
                            match overview.then(|| summarize(event)).flatten() {
                                Some(summary) => lines.extend_from_slice(&summary),
                                None => lines.extend_from_slice(event),
                            }
                            lines.extend_from_slice(b"}\n");
                        }
                        buffer.drain(..=end);
                        if !lines.is_empty() {
                            return Some(((Bytes::from(lines), false), (frames, buffer, false)));
                        }
                    }
                    // Ended (the hub's timeout) or broken: the page opens it again.
                    Some(Err(_)) | None => {
                        return Some(((line(i, "\"end\":true"), true), (frames, buffer, true)));
                    }
                }
            }
        },
    )
    .boxed()
}

/// What the fleet's overviews (Sets, Fleet map, Failures) read of a ClusterDeployment or a
/// ClusterSync: of 10,000 of them, a few MB rather than tens. A cluster's own page reads
/// its objects whole.
#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Overview {
    metadata: OverviewMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<OverviewSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<OverviewStatus>,
}

#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct OverviewMeta {
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    resource_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<std::collections::BTreeMap<String, String>>,
    /// Only those that decide whether the controllers sync to a cluster.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deciding_annotations"
    )]
    annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_timestamp: Option<String>,
}

/// The annotations by which the controllers skip a cluster or limit its sets.
const DECIDING_ANNOTATIONS: &[&str] = &[
    "hive.openshift.io/syncset-pause",
    "hive.openshift.io/reconcile-pause",
    "hive.openshift.io/relocate",
    "syncsets.io/usable-selectorsyncsets",
];

fn deciding_annotations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::collections::BTreeMap<String, String>>, D::Error> {
    let all: Option<std::collections::BTreeMap<String, String>> =
        serde::Deserialize::deserialize(d)?;
    let kept: std::collections::BTreeMap<_, _> = all
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| DECIDING_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    Ok((!kept.is_empty()).then_some(kept))
}

#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(default)]
struct OverviewSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    installed: Option<bool>,
}

#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct OverviewStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    sync_sets: Option<Vec<OverviewResult>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    selector_sync_sets: Option<Vec<OverviewResult>>,
}

/// A set's result on a cluster, without the resources it lists.
#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct OverviewResult {
    name: String,
    observed_generation: i64,
    result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<String>,
}

/// A watch event with its object as an [`Overview`]; `None` for events that are not about
/// an object (bookmarks, errors) or do not parse, which pass whole.
fn summarize(event: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Event {
        #[serde(rename = "type")]
        kind: String,
        object: Overview,
    }
    let event: Event = serde_json::from_slice(event).ok()?;
    if !matches!(event.kind.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
        return None;
    }
    serde_json::to_vec(&event).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overviews_keep_what_the_overviews_read() {
        let sync = json!({"type": "MODIFIED", "object": {
            "apiVersion": "hiveinternal.openshift.io/v1alpha1", "kind": "ClusterSync",
            "metadata": {"name": "c1", "namespace": "fleet", "resourceVersion": "7",
                "managedFields": [{"manager": "syncsets-controller"}]},
            "status": {"conditions": [], "selectorSyncSets": [{"name": "agent",
                "observedGeneration": 2, "result": "Failure", "failureMessage": "forbidden",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "resourcesToDelete": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "a"}]}]}}});
        let summary: serde_json::Value =
            serde_json::from_slice(&summarize(sync.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(
            summary,
            json!({"type": "MODIFIED", "object": {
                "metadata": {"name": "c1", "namespace": "fleet", "resourceVersion": "7"},
                "status": {"selectorSyncSets": [{"name": "agent", "observedGeneration": 2,
                    "result": "Failure", "failureMessage": "forbidden"}]}}})
        );
        let cluster = json!({"type": "ADDED", "object": {"metadata": {
            "name": "c1", "namespace": "fleet", "uid": "u", "resourceVersion": "3",
            "labels": {"env": "prod"},
            "annotations": {"hive.openshift.io/syncset-pause": "true",
                "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"installed": true, "baseDomain": "example.com"}}});
        let summary: serde_json::Value =
            serde_json::from_slice(&summarize(cluster.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(
            summary["object"]["metadata"]["annotations"],
            json!({"hive.openshift.io/syncset-pause": "true"})
        );
        assert_eq!(summary["object"]["spec"], json!({"installed": true}));
        assert_eq!(
            summary["object"]["metadata"]["labels"],
            json!({"env": "prod"})
        );
        // Bookmarks (which end a streaming list) and errors pass whole.
        let bookmark = json!({"type": "BOOKMARK", "object": {"kind": "ClusterSync",
            "metadata": {"resourceVersion": "9", "annotations": {"k8s.io/initial-events-end": "true"}}}});
        assert!(summarize(bookmark.to_string().as_bytes()).is_none());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn only_the_pages_own_reads_pass() {
        for ok in [
            "/apis/hive.openshift.io/v1/clusterdeployments",
            "/apis/hive.openshift.io/v1/selectorsyncsets?watch=1&allowWatchBookmarks=true&resourceVersion=12",
            "/apis/hive.openshift.io/v1/namespaces/team-a/syncsets",
            "/apis/hiveinternal.openshift.io/v1alpha1/namespaces/team-a/clustersyncs?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
            "/api/v1/namespaces/fleet/events?fieldSelector=involvedObject.name%3Dsim-1",
        ] {
            assert_eq!(readable(ok), Ok(()), "{ok}");
        }
        for refused in [
            "/api/v1/secrets",
            "/api/v1/namespaces/fleet/secrets",
            "/api/v1/events",
            "/api/v1/namespaces/fleet/services/web/proxy/x.js",
            "/apis/hive.openshift.io/v1/namespaces/team-a/syncsets/x",
            "/apis/hive.openshift.io/v1/namespaces/../secrets/syncsets",
            "/apis/hive.openshift.io/v1/namespaces/Team/syncsets",
            "/apis/hive.openshift.io/v1/namespaces/a/selectorsyncsets/../syncsets",
            "/apis/hive.openshift.io/v1/syncsets?dryRun=All",
            "/apis/hive.openshift.io/v1/syncsets?watch=1&timeoutSeconds=1",
            "/apis/hive.openshift.io/v1/syncsets?limit=500&continue=abc",
        ] {
            assert!(readable(refused).is_err(), "{refused}");
        }
    }
}
