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
        "/list-worker.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/list-worker.js"),
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
    "limit",
    "continue",
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

/// The page's watches in one stream: each `w` parameter a watch the page makes ([`readable`]),
/// opened at the hub with the kubeconfig's credentials; each event comes back as a line
/// `{"i":N,"e":EVENT}` (N: the watch's place among the `w`s). A watch the hub refuses
/// comes back as `{"i":N,"status":CODE,"e":STATUS}`, one that ends as `{"i":N,"end":true}`,
/// and either ends the stream: the page opens it again, from where each watch was.
async fn watch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if request.method() != Method::GET {
        return read_only();
    }
    let targets: Vec<String> =
        url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .filter(|(k, _)| k == "w")
            .map(|(_, v)| v.into_owned())
            .collect();
    if targets.is_empty() || targets.len() > 16 {
        return ApiError::bad_request("give between 1 and 16 watches, as w=PATH?QUERY")
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
            Ok(answer) if answer.status().is_success() => events(i, answer.into_body()).boxed(),
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

/// The events of watch `i`'s answer as lines of the multiplexed stream, then its end
/// (each line with whether it ends the watch).
fn events(
    i: usize,
    body: kube::client::Body,
) -> futures::stream::BoxStream<'static, (Bytes, bool)> {
    let frames = http_body_util::BodyStream::new(body);
    futures::stream::unfold(
        (frames, Vec::<u8>::new(), false),
        move |(mut frames, mut buffer, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(nl) = buffer.iter().position(|b| *b == b'\n') {
                    let event: Vec<u8> = buffer.drain(..=nl).collect();
                    let event = String::from_utf8_lossy(&event);
                    let event = event.trim();
                    if event.is_empty() {
                        continue;
                    }
                    let event = line(i, &format!("\"e\":{event}"));
                    return Some(((event, false), (frames, buffer, false)));
                }
                match frames.next().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buffer.extend_from_slice(&data);
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

#[cfg(test)]
mod tests {
    use super::*;

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
            "/apis/hiveinternal.openshift.io/v1alpha1/namespaces/team-a/clustersyncs?limit=500&continue=abc",
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
        ] {
            assert!(readable(refused).is_err(), "{refused}");
        }
    }
}
