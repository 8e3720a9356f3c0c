//! `syncsets controller`: controllers only, as many replicas as wanted, sharing PostgreSQL
//! and RabbitMQ with the API servers. Work spreads over the replicas through RabbitMQ's
//! sharded queues (one consumer per shard); one replica at a time leads (a PostgreSQL
//! advisory lock) and turns changes into work.

use anyhow::{Context as _, bail};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use syncsets_store::Store;

use crate::controller_args::ShutdownArgs;
use crate::{BusArgs, ControllerArgs, StoreArgs};

/// Arguments of `controller`.
#[derive(Debug, clap::Args)]
pub struct ControllerCmdArgs {
    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    bus: BusArgs,

    #[command(flatten)]
    controller: ControllerArgs,

    /// Where to serve /metrics (Prometheus), /livez and /readyz over plain HTTP, without
    /// authentication — keep it on loopback, or reachable only by the scraper and the
    /// kubelet (a NetworkPolicy): HOST:PORT, :PORT (every address), or 0 (nowhere)
    /// [default: 127.0.0.1:8080, or nowhere (with a warning) if that port is taken]
    #[arg(long, env = "SYNCSETS_METRICS_BIND_ADDRESS", value_parser = parse_bind_address)]
    metrics_bind_address: Option<BindAddress>,

    #[command(flatten)]
    shutdown: ShutdownArgs,
}

/// Runs the controllers until SIGINT or SIGTERM.
pub async fn run(args: ControllerCmdArgs) -> anyhow::Result<()> {
    if !args.bus.bus.starts_with("amqp") {
        bail!(
            "`syncsets controller` needs a bus shared with the API servers (--bus amqp://…): the \
             in-process bus cannot reach another process. `syncsets serve` runs the controllers \
             in-process on the embedded default."
        );
    }
    let store = args.store.open().await?;
    let bus = args.bus.open().await?;
    let stopping = Arc::new(AtomicBool::new(false));
    let listener = match args.metrics_bind_address {
        Some(BindAddress(None)) => None,
        Some(BindAddress(Some(at))) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("listening on {at} (--metrics-bind-address)"))?,
        ),
        None => match tokio::net::TcpListener::bind(DEFAULT_METRICS_ADDRESS).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(address = DEFAULT_METRICS_ADDRESS, error = %e, "no /metrics, /livez or /readyz: the default address is taken (give this replica its own --metrics-bind-address)");
                None
            }
        },
    };
    let metrics = match listener {
        Some(ref l) => format!("; metrics on http://{}/metrics", l.local_addr()?),
        None => String::new(),
    };
    let probes = listener.map(|l| {
        tokio::spawn(axum::serve(l, probe_routes(store.clone(), stopping.clone())).into_future())
    });
    let config = args.controller.config();
    let replica = config.replica;
    let controllers = syncsets_controller::Controller::start(store.clone(), bus.clone(), config)
        .await
        .context("starting the controllers")?;
    println!(
        "syncsets controller replica {replica} running (store: {}, bus: {}){metrics}",
        store.backend(),
        bus.backend()
    );
    super::serve::shutdown_signal().await;
    super::serve::exit_on_second_signal();
    tracing::info!(grace = ?args.shutdown.shutdown_grace_period, "stopping: /readyz fails, no new work is taken");
    stopping.store(true, Ordering::Release);
    controllers
        .shutdown(args.shutdown.shutdown_grace_period)
        .await;
    super::serve::close_bus(bus.as_ref()).await;
    if let Some(probes) = probes {
        probes.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Where `controller` serves its metrics and probes unless told.
const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:8080";

/// A `--metrics-bind-address`: where, or nowhere (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BindAddress(Option<SocketAddr>);

/// `--metrics-bind-address`: `HOST:PORT`, `:PORT` (every address, as controller-runtime
/// reads it) or `0` (nowhere).
fn parse_bind_address(text: &str) -> anyhow::Result<BindAddress> {
    if text == "0" {
        return Ok(BindAddress(None));
    }
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_string(),
    };
    full.parse()
        .map(|at| BindAddress(Some(at)))
        .with_context(|| format!("{text:?} is not HOST:PORT, :PORT or 0"))
}

/// `/metrics`, `/livez`, `/readyz` (the store answers and the process is not stopping),
/// answered as the API server answers its own.
fn probe_routes(store: Arc<dyn Store>, stopping: Arc<AtomicBool>) -> axum::Router {
    use axum::routing::get;
    use syncsets_api::health;
    axum::Router::new()
        .route("/metrics", get(syncsets_api::metrics::serve))
        .route("/livez", get(|| async { health(true) }))
        .route(
            "/readyz",
            get(move || async move {
                health(!stopping.load(Ordering::Acquire) && store.ready().await.is_ok())
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_read_as_controller_runtime_reads_them() {
        let at = |s: &str| parse_bind_address(s).unwrap().0;
        assert_eq!(at("0"), None);
        assert_eq!(at(":8080"), Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(at("127.0.0.1:0"), Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(at("[::1]:9090"), Some("[::1]:9090".parse().unwrap()));
        assert!(parse_bind_address("8080").is_err());
        assert!(parse_bind_address("localhost:x").is_err());
    }
}
