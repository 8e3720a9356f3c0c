//! `syncsets fleet-sim`: a member server hosting N simulated clusters, registered with a hub.
//!
//! ```text
//!   hub (syncsets serve)                       member server (this command, memory store)
//!   ClusterDeployment sim-00001  ──kubeconfig──▶  http://127.0.0.1:7071/clusters/sim-00001
//!   Secret sim-00001-admin-kubeconfig             (a whole Kubernetes API per cluster)
//! ```
//!
//! Each simulated cluster is a logical cluster of the member server: its own namespaces,
//! discovery and objects. Whoever reads the kubeconfig sees an ordinary API server. The
//! member server is a simulator: it serves plain HTTP, on loopback only, and asks for no
//! credentials. The hub is reached with its kubeconfig (TLS and the admin certificate).

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use syncsets_api::{AppState, Config};

use super::serve::kubeconfig;

/// Arguments of `fleet-sim`.
#[derive(Debug, clap::Args)]
pub struct FleetSimArgs {
    /// Kubeconfig of the hub that adopts the simulated clusters [default:
    /// <data-dir>/kubeconfig, the one `serve` writes]
    #[arg(long, env = "SYNCSETS_KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,

    /// Data directory of that hub
    #[arg(long, env = "SYNCSETS_DATA_DIR", default_value = "data")]
    data_dir: std::path::PathBuf,

    /// The hub's URL instead, for a hub serving plain HTTP (--insecure-http) without
    /// credentials
    #[arg(long, env = "SYNCSETS_HUB", conflicts_with = "kubeconfig")]
    hub: Option<String>,

    /// How many clusters to simulate
    #[arg(long, default_value_t = 10)]
    clusters: usize,

    /// Address of the member server hosting them
    #[arg(long, env = "SYNCSETS_FLEET_LISTEN", default_value = "127.0.0.1:7071")]
    listen: SocketAddr,

    /// Cluster names are this prefix and a number
    #[arg(long, default_value = "sim")]
    prefix: String,

    /// Hub namespace of the ClusterDeployments and their kubeconfig Secrets
    #[arg(long, default_value = "fleet")]
    namespace: String,

    /// Labels of every ClusterDeployment (`k=v,k2=v2`); each also gets
    /// `fleet.syncsets.io/simulated=true` and `fleet.syncsets.io/group=<number mod 10>`
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,

    /// Registrations sent at once
    #[arg(long, default_value_t = 16)]
    concurrency: usize,

    /// How long after a change a simulated cluster reports workloads ready (Deployments,
    /// StatefulSets, DaemonSets, ReplicaSets available, Jobs complete, Pods running; Go
    /// duration); objects annotated fleet.syncsets.io/never-ready=true never are
    #[arg(long, default_value = "1s", value_parser = crate::controller_args::parse_duration)]
    ready_after: std::time::Duration,

    /// Faults of simulated clusters, `<clusters>:<faults>` (repeatable): `<clusters>` is a
    /// name, `all` or a share (`10%`: every tenth cluster); `<faults>` any of
    /// `unreachable`, `latency=200ms`, `discovery-latency=2s`, `errors=10%` (answered
    /// 500), `throttle=5%` (answered 429). Changed while running at /fleet-sim/faults
    #[arg(long = "fault")]
    faults: Vec<super::faults::FaultArg>,
}

/// The name of simulated cluster `i`: `sim-00007`.
pub fn cluster_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:05}")
}

/// The registration of cluster `i`.
fn registration(
    prefix: &str,
    namespace: &str,
    labels: &[String],
    server: &str,
    i: usize,
) -> anyhow::Result<Value> {
    let name = cluster_name(prefix, i);
    let mut all = serde_json::Map::new();
    for l in labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("label {l:?} is not k=v"))?;
        all.insert(k.to_string(), json!(v));
    }
    all.insert("fleet.syncsets.io/simulated".into(), json!("true"));
    all.insert(
        "fleet.syncsets.io/group".into(),
        json!((i % 10).to_string()),
    );
    Ok(json!({
        "name": name,
        "namespace": namespace,
        "kubeconfig": kubeconfig(&format!("{server}/clusters/{name}")),
        "labels": all,
    }))
}

/// A member server on `listen` (memory store), its clusters' workloads reported ready
/// `ready_after` each change ([`super::kwok`]), with `faults` ([`super::faults`]): returns
/// its URL and the serving task, which stops when `shutdown` completes.
pub async fn start_member(
    listen: SocketAddr,
    ready_after: std::time::Duration,
    faults: std::sync::Arc<super::faults::Faults>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    if !listen.ip().is_loopback() {
        bail!("refusing to serve plain HTTP on {listen}: only loopback addresses are allowed");
    }
    let store = syncsets_store::open("memory://", None).await?;
    // Every controller replica reaches all its simulated clusters through this one server,
    // as many real API servers: no bound on connections from one address.
    let mut config = Config::default();
    config.limits.connections.max_per_address = 0;
    let state = AppState::new(store, config)
        .await
        .map_err(|e| anyhow::anyhow!("preparing the member server: {}", e.message))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let server = format!("http://{}", listener.local_addr()?);
    let workloads = super::kwok::start(
        state.store.clone(),
        &*state.bus,
        server.clone(),
        ready_after,
    )
    .await?;
    let limits = state.config.limits.connections.clone();
    let app = faults.wrap(syncsets_api::router(state));
    let serving = tokio::spawn(async move {
        let served = syncsets_api::run_app(app, limits, listener, shutdown).await;
        workloads.abort();
        served
    });
    Ok((server, serving))
}

/// A client of the hub: from its kubeconfig, or a plain URL.
pub async fn hub_client(
    url: Option<&str>,
    kubeconfig: &std::path::Path,
) -> anyhow::Result<kube::Client> {
    match url {
        Some(url) => {
            let config =
                kube::Config::new(url.parse().with_context(|| format!("hub URL {url:?}"))?);
            Ok(kube::Client::try_from(config)?)
        }
        None => super::status::client(kubeconfig).await,
    }
}

/// Registers simulated clusters `0..count` of a member server with a hub
/// (`POST /v1/clusters`); returns how many were new and how many were registered already.
pub async fn register_all(
    hub: &kube::Client,
    server: &str,
    (prefix, namespace, labels): (&str, &str, &[String]),
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(usize, usize)> {
    let bodies = (0..count)
        .map(|i| registration(prefix, namespace, labels, server, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut results = futures::stream::iter(bodies.into_iter().map(|body| async move {
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let request = http::Request::post("/v1/clusters")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(kube::client::Body::from(serde_json::to_vec(&body)?))?;
        let response = hub
            .send(request)
            .await
            .with_context(|| format!("registering {name} with the hub"))?;
        let status = response.status();
        if status.is_success() || status == http::StatusCode::CONFLICT {
            return Ok::<_, anyhow::Error>(status == http::StatusCode::CREATED);
        }
        let body = response.into_body().collect().await?.to_bytes();
        bail!(
            "registering {name} with the hub: {status}: {}",
            String::from_utf8_lossy(&body)
        )
    }))
    .buffer_unordered(concurrency.max(1));
    // 201: registered now; 200 (the same registration again) or 409 (another one of that
    // name): registered already.
    let (mut registered, mut existing) = (0, 0);
    while let Some(new) = results.next().await {
        if new? {
            registered += 1;
        } else {
            existing += 1;
        }
    }
    Ok((registered, existing))
}

/// Runs the member server and registers its clusters; serves until SIGINT or SIGTERM.
pub async fn run(args: FleetSimArgs) -> anyhow::Result<()> {
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| args.data_dir.join("kubeconfig"));
    let faults = super::faults::Faults::new(&args.prefix, args.clusters, &args.faults)?;
    let hub = hub_client(args.hub.as_deref(), &kubeconfig).await?;
    let (server, serving) = start_member(
        args.listen,
        args.ready_after,
        faults,
        super::serve::shutdown_signal(),
    )
    .await?;
    let started = Instant::now();
    let (registered, existing) = register_all(
        &hub,
        &server,
        (&args.prefix, &args.namespace, &args.labels),
        args.clusters,
        args.concurrency,
    )
    .await?;
    println!(
        "fleet-sim serving {} clusters on {server}: {registered} registered with the hub ({existing} already were) in {:.1}s",
        args.clusters,
        started.elapsed().as_secs_f64()
    );
    serving.await??;
    Ok(())
}
