//! `syncsets dashboard`: the fleet in a browser. It serves the dashboard's page on a
//! loopback port and passes the page's reads to the hub with the kubeconfig's credentials,
//! the way `kubectl proxy` does — so the page sees exactly what RBAC lets that user see.
//!
//! Only the browser that opened the address it prints gets in: the address carries a
//! random token, exchanged once for a cookie (`HttpOnly`, `SameSite=Strict`) that every
//! later request must present; requests naming another host are refused (DNS rebinding),
//! and only reads (`GET`) reach the hub. The page's assets are compiled into the binary.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use serde_json::json;

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
    println!("Open that address in a browser (it lets this browser in); Ctrl-C stops it.");
    dashboard.serve(super::serve::shutdown_signal()).await
}

/// What every request handler shares.
struct Shared {
    client: kube::Client,
    namespace: String,
    token: String,
    cookie: String,
    hosts: [String; 3],
}

/// A dashboard bound to its port, not serving yet.
pub struct Dashboard {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    url: String,
}

impl Dashboard {
    /// Binds `listen` (a loopback address) to serve the hub `client` reaches.
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
        let port = bound.port();
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let url = format!("http://{bound}/?token={token}");
        let shared = Arc::new(Shared {
            client,
            namespace,
            token,
            cookie: format!("syncsets-dashboard-{port}"),
            hosts: [
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ],
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

    /// Serves until `stop` completes.
    pub async fn serve(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shared = self.shared;
        let app = axum::Router::new()
            .route("/api/{*rest}", axum::routing::any(proxy))
            .route("/apis/{*rest}", axum::routing::any(proxy))
            .route("/config.json", axum::routing::get(config))
            .fallback(asset)
            .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
            .with_state(shared);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(stop)
            .await
            .context("serving the dashboard")
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

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Lets in the browser that opened the printed address, and nobody else: the right Host
/// (a page of another site resolving its name to 127.0.0.1 names its own), then the
/// token (exchanged for a cookie) or the cookie. Every answer carries headers that keep
/// it out of other sites' frames and caches.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let mut response = if !shared.hosts.iter().any(|h| h == host) {
        text(
            StatusCode::FORBIDDEN,
            "the dashboard answers only to 127.0.0.1, localhost or [::1] on its own port",
        )
    } else if let Some(token) = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(str::to_string)
    }) {
        if same(&token, &shared.token) {
            let set_cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                shared.cookie, shared.token
            );
            Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, "/")
                .header(header::SET_COOKIE, set_cookie)
                .body(Body::empty())
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "redirecting"))
        } else {
            text(
                StatusCode::UNAUTHORIZED,
                "this token is not the dashboard's: open the address `syncsets dashboard` printed",
            )
        }
    } else if cookie(request.headers(), &shared.cookie).is_some_and(|c| same(c, &shared.token)) {
        next.run(request).await
    } else {
        text(
            StatusCode::UNAUTHORIZED,
            "open the address `syncsets dashboard` printed: it carries the token that lets this browser in",
        )
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
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

/// A Kubernetes `Status` answer.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": reason, "message": message, "code": code.as_u16(),
        })),
    )
        .into_response()
}

/// Passes a read to the hub with the kubeconfig's credentials and streams the answer back
/// (a watch included). Anything but `GET` is refused: the dashboard only reads.
async fn proxy(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if request.method() != Method::GET {
        let mut response = status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the dashboard only reads: use kubectl to change the hub",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .filter(|a| a.to_str().is_ok_and(|a| a.contains("json")))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let upstream = match http::Request::get(target)
        .header(header::ACCEPT, accept)
        .body(kube::client::Body::empty())
    {
        Ok(r) => r,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    match shared.client.send(upstream).await {
        Ok(answer) => {
            let (parts, body) = answer.into_parts();
            let mut response = Response::new(Body::new(body));
            *response.status_mut() = parts.status;
            if let Some(kind) = parts.headers.get(header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, kind.clone());
            }
            response
        }
        Err(e) => status(
            StatusCode::BAD_GATEWAY,
            "ServiceUnavailable",
            &format!("the hub did not answer: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_its_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("syncsets-dashboard-7080=xyz"),
        );
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "syncsets-dashboard-7080"), Some("xyz"));
        assert_eq!(cookie(&headers, "syncsets-dashboard-7081"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}
