//! `syncsets serve`: the API server on the embedded default or a configured store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use syncsets_api::{AppState, Config};

use crate::{BusArgs, ControllerArgs, StoreArgs};

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,

    #[command(flatten)]
    bus: BusArgs,

    /// Address to listen on
    #[arg(long, env = "SYNCSETS_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,

    /// Where to write a kubeconfig for this server [default: <data-dir>/kubeconfig]
    #[arg(long, env = "SYNCSETS_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Run the SyncSet controllers in this process (false: API server only, with
    /// `syncsets controller` processes elsewhere)
    #[arg(long, env = "SYNCSETS_CONTROLLERS", default_value_t = true, action = clap::ArgAction::Set)]
    controllers: bool,

    #[command(flatten)]
    controller: ControllerArgs,
}

/// A kubeconfig that points kubectl at this server.
pub fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: syncsets\n  cluster:\n    server: {server}\ncontexts:\n- name: syncsets\n  context:\n    cluster: syncsets\n    namespace: default\n    user: syncsets\ncurrent-context: syncsets\nusers:\n- name: syncsets\n  user: {{}}\n"
    )
}

/// Writes a kubeconfig (mode 0600).
pub fn write_kubeconfig(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve plain HTTP on {}: only loopback addresses are allowed",
            args.listen
        );
    }
    let store = args.store.open().await?;
    let bus = args.bus.open().await?;
    let config = Config {
        relay: Some(args.bus.relay()),
        ..Config::default()
    };
    let state = AppState::with_bus(store, bus, config)
        .await
        .map_err(|e| anyhow::anyhow!("preparing the server: {}", e.message))?;
    let _controllers = if args.controllers {
        Some(
            syncsets_controller::Controller::start(
                state.store.clone(),
                state.bus.clone(),
                args.controller.config(),
            )
            .await
            .context("starting the controllers")?,
        )
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let server = format!("http://{addr}");
    let path = args
        .kubeconfig
        .unwrap_or_else(|| args.store.data_dir.join("kubeconfig"));
    write_kubeconfig(&path, &kubeconfig(&server))
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(%server, kubeconfig = %path.display(), store = state.store.backend(), "serving");
    println!(
        "syncsets serving on {server} (store: {}, bus: {}); kubectl --kubeconfig {} get ns",
        state.store.backend(),
        state.bus.backend(),
        path.display()
    );
    syncsets_api::run(state, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
