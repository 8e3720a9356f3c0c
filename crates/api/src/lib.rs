//! # syncsets-api
//!
//! A Kubernetes-compatible API server over a [`Store`], driven by the kind [`Registry`]:
//!
//! ```text
//!  request ─▶ [/clusters/{c}] ─▶ route ─┬─ discovery  /api /apis /version /openapi/*
//!                                       ├─ resources  get list create update patch delete
//!                                       │              └─ machinery (admission, patch, apply)
//!                                       │                   └─ Store (object + outbox event)
//!                                       ├─ /v1/clusters  (seed: register a cluster)
//!                                       └─ /docs         (Swagger UI, offline)
//! ```
//!
//! [`run`] takes a bound listener and a shutdown future, so tests serve on port 0.

mod attach;
pub mod authn;
pub mod authz;
mod clusters;
mod discovery;
pub mod error;
mod expiry;
mod governance;
mod handlers;
pub mod hub;
mod lifecycle;
pub mod limits;
pub mod metrics;
mod negotiate;
mod openapi;
pub mod rbac;
pub mod request;
pub mod serve;
pub mod tls;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use std::time::Duration;
use syncsets_machinery::registry::{Kinds, Registry};

use syncsets_bus::relay::{Relay, RelayConfig};
use syncsets_bus::{Bus, LocalBus};
use syncsets_store::Store;

use crate::hub::Hub;
use tokio::net::TcpListener;

pub use discovery::health;
pub use error::{ApiError, ApiResult};
pub use request::parse_go_duration;

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest request body accepted (Kubernetes: 3 MiB).
    pub body_limit: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Objects a watch's initial state reads from the store at a time: its first events
    /// leave while later ones are read (a streaming list of 10,000 objects starts at once).
    pub initial_events_page: usize,
    /// The outbox relay this server runs (`None`: another process relays).
    pub relay: Option<RelayConfig>,
    /// Who may call (`None`: no authentication, for servers only this process talks to:
    /// tests, benchmarks, the fleet simulator's members).
    pub authenticator: Option<Arc<authn::Authenticator>>,
    /// Request timeout, per-client rate and watch limits.
    pub limits: limits::Limits,
    /// How long an Event is kept after it last happened (kube-apiserver's `--event-ttl`).
    pub event_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            body_limit: 3 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(60),
            initial_events_page: 500,
            relay: Some(RelayConfig::default()),
            authenticator: None,
            limits: limits::Limits::default(),
            event_ttl: Duration::from_secs(3600),
        }
    }
}

/// How far a server is in stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Serving, ready.
    Serving,
    /// Not ready, still serving everything.
    Stopping,
    /// Watches end; connections drain.
    Draining,
}

/// State shared by all requests.
pub struct AppState {
    /// Object storage.
    pub store: Arc<dyn Store>,
    /// Kinds served.
    pub registry: Arc<Registry>,
    /// Settings.
    pub config: Config,
    /// The event bus.
    pub bus: Arc<dyn Bus>,
    /// This replica's fan-out of change events to its watches.
    pub hub: Hub,
    /// The outbox relay, when this server runs it.
    pub relay: Option<Relay>,
    /// Each logical cluster's RBAC policy.
    pub rbac: Arc<authz::RbacCache>,
    /// Per-client request rates and open watches.
    pub limits: limits::Tracker,
    /// How far the server is in stopping.
    phase: tokio::sync::watch::Sender<Phase>,
    ready_clusters: tokio::sync::Mutex<HashSet<String>>,
    openapi_cache: Mutex<HashMap<String, (std::sync::Weak<Kinds>, bytes::Bytes)>>,
    finalizing: Mutex<HashSet<(String, String)>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .finish()
    }
}

impl AppState {
    /// State over a store with the in-process bus.
    pub async fn new(store: Arc<dyn Store>, config: Config) -> ApiResult<Arc<Self>> {
        Self::with_bus(store, Arc::new(LocalBus::new()), config).await
    }

    /// State over a store and a bus: starts this replica's hub and (unless configured
    /// otherwise) the outbox relay, and prepares the hub cluster (default namespaces,
    /// stored CRDs).
    pub async fn with_bus(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        config: Config,
    ) -> ApiResult<Arc<Self>> {
        // This process's metrics, served at /metrics (installed once per process).
        metrics::install();
        let rbac = Arc::new(authz::RbacCache::default());
        let registry = Arc::new(Registry::new());
        let hub = Hub::start(store.clone(), bus.as_ref(), rbac.clone(), registry.clone())
            .await
            .map_err(|e| ApiError::internal("starting the event hub", &e))?;
        let relay = config
            .relay
            .map(|c| Relay::spawn(store.clone(), bus.clone(), c));
        let limits = limits::Tracker::new(&config.limits);
        let state = Arc::new(Self {
            store,
            registry,
            config,
            bus,
            hub,
            relay,
            rbac,
            limits,
            phase: tokio::sync::watch::Sender::new(Phase::Serving),
            ready_clusters: tokio::sync::Mutex::new(HashSet::new()),
            openapi_cache: Mutex::new(HashMap::new()),
            finalizing: Mutex::new(HashSet::new()),
        });
        state.kinds("").await?;
        lifecycle::resume_namespace_finalizers(&state, "").await?;
        tokio::spawn(expiry::run(Arc::downgrade(&state), state.config.event_ttl));
        Ok(state)
    }

    /// Begins stopping: `/readyz` fails from now on (load balancers and Services stop
    /// sending requests here), while everything is still served.
    pub fn stop(&self) {
        self.phase.send_if_modified(|p| {
            let was = *p;
            *p = (*p).max(Phase::Stopping);
            *p != was
        });
    }

    /// Ends every watch, cleanly — its response completes, and the client watches again
    /// from the last version it saw, elsewhere — and any watch begun from now on at once.
    pub fn end_watches(&self) {
        self.phase.send_replace(Phase::Draining);
    }

    /// Whether the server is stopping (`/readyz` fails).
    pub fn stopping(&self) -> bool {
        *self.phase.borrow() >= Phase::Stopping
    }

    /// Completes once watches are to end.
    pub async fn watches_ended(&self) {
        let mut phase = self.phase.subscribe();
        let _ = phase.wait_for(|p| *p == Phase::Draining).await;
    }

    /// The kinds of a logical cluster, preparing the cluster on first use.
    pub async fn kinds(&self, cluster: &str) -> ApiResult<Arc<Kinds>> {
        {
            let ready = self.ready_clusters.lock().await;
            if ready.contains(cluster) {
                return Ok(self.registry.kinds(cluster));
            }
        }
        let mut ready = self.ready_clusters.lock().await;
        if !ready.contains(cluster) {
            lifecycle::prepare_cluster(self, cluster).await?;
            ready.insert(cluster.to_string());
        }
        Ok(self.registry.kinds(cluster))
    }
}

/// The HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let docs: Router = utoipa_swagger_ui::SwaggerUi::new("/docs")
        .config(utoipa_swagger_ui::Config::from("/openapi/v2"))
        .into();
    Router::new()
        .route("/v1/clusters", post(clusters::register))
        .route("/metrics", axum::routing::get(metrics::serve))
        .fallback(handlers::dispatch)
        .with_state(state.clone())
        .merge(docs)
        // Outermost last: parsing, authentication, limits, then authorization.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authz::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            authn::authenticate,
        ))
        // First of all: the one parse of the request every layer after it reads.
        .layer(axum::middleware::from_fn(request::parse))
}

/// Serves plain HTTP until `shutdown` completes, then drains in-flight requests.
pub async fn run(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.limits.connections.clone();
    serve::serve(listener, None, router(state), limits, shutdown).await
}

/// Serves an application built on [`router`] (more routes, more layers) over plain HTTP
/// until `shutdown` completes, then drains in-flight requests.
pub async fn run_app(
    app: Router,
    limits: serve::ConnectionLimits,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::serve(listener, None, app, limits, shutdown).await
}

/// Serves HTTPS until `shutdown` completes, then drains in-flight requests. Client
/// certificates the acceptor verified authenticate their requests.
pub async fn run_tls(
    state: Arc<AppState>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.limits.connections.clone();
    serve::serve(listener, Some(acceptor), router(state), limits, shutdown).await
}
