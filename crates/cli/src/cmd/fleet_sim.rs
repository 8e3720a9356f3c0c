//! `syncsets fleet-sim`: a member server hosting N simulated clusters, registered with a hub.
//!
//! ```text
//!   hub (syncsets serve)                       member server (this command, memory store)
//!   ClusterDeployment sim-00001  ──kubeconfig──▶  http://127.0.0.1:7071/clusters/sim-00001
//!   Secret sim-00001-admin-kubeconfig             (a whole Kubernetes API per cluster)
//! ```
//!
//! Each simulated cluster is a logical cluster of the member server: its own namespaces,
//! discovery and objects. Whoever reads the kubeconfig sees an ordinary API server.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde_json::{Value, json};
use syncsets_api::{AppState, Config};

use super::serve::kubeconfig;

/// Arguments of `fleet-sim`.
#[derive(Debug, clap::Args)]
pub struct FleetSimArgs {
    /// The hub that adopts the simulated clusters
    #[arg(long, env = "SYNCSETS_HUB", default_value = "http://127.0.0.1:7070")]
    hub: String,

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
}

/// The registration of cluster `i`.
fn registration(
    prefix: &str,
    namespace: &str,
    labels: &[String],
    server: &str,
    i: usize,
) -> anyhow::Result<Value> {
    let name = format!("{prefix}-{i:05}");
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

/// A member server on `listen` (memory store): returns its URL and the serving task,
/// which stops when `shutdown` completes.
pub async fn start_member(
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    if !listen.ip().is_loopback() {
        bail!("refusing to serve plain HTTP on {listen}: only loopback addresses are allowed");
    }
    let store = syncsets_store::open("memory://", None).await?;
    let state = AppState::new(store, Config::default())
        .await
        .map_err(|e| anyhow::anyhow!("preparing the member server: {}", e.message))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let server = format!("http://{}", listener.local_addr()?);
    Ok((
        server,
        tokio::spawn(syncsets_api::run(state, listener, shutdown)),
    ))
}

/// Registers simulated clusters `0..count` of a member server with a hub; returns how
/// many were new and how many were registered already.
pub async fn register_all(
    hub: &str,
    server: &str,
    (prefix, namespace, labels): (&str, &str, &[String]),
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(usize, usize)> {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/clusters", hub.trim_end_matches('/'));
    let bodies = (0..count)
        .map(|i| registration(prefix, namespace, labels, server, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut results = futures::stream::iter(bodies.into_iter().map(|body| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let res = client.post(&url).json(&body).send().await?;
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            Ok::<_, anyhow::Error>((
                body["name"].as_str().unwrap_or_default().to_string(),
                status,
                text,
            ))
        }
    }))
    .buffer_unordered(concurrency.max(1));
    let (mut registered, mut existing) = (0, 0);
    while let Some(result) = results.next().await {
        let (name, status, text) = result.with_context(|| format!("registering with {url}"))?;
        match status.as_u16() {
            201 => registered += 1,
            409 => existing += 1,
            _ => bail!("registering {name}: {status} {text}"),
        }
    }
    Ok((registered, existing))
}

/// Runs the member server and registers its clusters; serves until SIGINT or SIGTERM.
pub async fn run(args: FleetSimArgs) -> anyhow::Result<()> {
    let (server, serving) = start_member(args.listen, super::serve::shutdown_signal()).await?;
    let started = Instant::now();
    let (registered, existing) = register_all(
        &args.hub,
        &server,
        (&args.prefix, &args.namespace, &args.labels),
        args.clusters,
        args.concurrency,
    )
    .await?;
    println!(
        "fleet-sim serving {} clusters on {server}: {registered} registered with {} ({existing} already were) in {:.1}s",
        args.clusters,
        args.hub,
        started.elapsed().as_secs_f64()
    );
    serving.await??;
    Ok(())
}
