//! `syncsets demo`: what a newcomer runs first. The embedded hub (SQLite, in-process bus,
//! controllers), a simulated fleet registered with it, an example SelectorSyncSet, and
//! the rollout converging live, in the terminal and on the dashboard. It keeps serving
//! afterwards, for kubectl and the browser.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use syncsets_api::{AppState, Config};

use super::fleet_sim::{register_all, start_member};
use super::serve::{SecurityArgs, kubeconfig, shutdown_signal};
use crate::StoreArgs;
use crate::pki::write_private;

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Simulated clusters
    #[arg(long, default_value_t = 25)]
    clusters: usize,

    /// Address of the hub
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,

    /// Address of the dashboard (loopback)
    #[arg(long, default_value = "127.0.0.1:7080")]
    dashboard: SocketAddr,

    /// The demo's data directory (emptied first)
    #[arg(long, default_value = "data/demo")]
    data_dir: PathBuf,
}

/// The example SelectorSyncSet: a namespace and a templated ConfigMap on every simulated
/// cluster, tracked (Sync) so that removing them from the set removes them from the fleet.
fn example() -> serde_json::Value {
    json!({
        "apiVersion": "hive.openshift.io/v1",
        "kind": "SelectorSyncSet",
        "metadata": {"name": "demo-baseline"},
        "spec": {
            "clusterDeploymentSelector": {"matchLabels": {"fleet.syncsets.io/simulated": "true"}},
            "resourceApplyMode": "Sync",
            "enableResourceTemplates": true,
            "resources": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "platform"}},
                {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "fleet-settings", "namespace": "platform"},
                 "data": {"owner": "platform-team", "group": "{{ fromCDLabel \"fleet.syncsets.io/group\" }}"}}
            ]
        }
    })
}

/// Runs the demo until SIGINT or SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("emptying {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let store_args = StoreArgs {
        store: None,
        postgres_params: None,
        data_dir: args.data_dir.clone(),
        encryption_key_file: None,
    };
    let security = SecurityArgs {
        insecure_http: false,
        tls_cert_file: None,
        tls_private_key_file: None,
        client_ca_file: None,
        token_auth_file: None,
        tls_sans: Vec::new(),
    };
    let store = store_args.open().await?;
    let config = Config {
        authenticator: security.authenticator()?,
        ..Config::default()
    };
    let bound = security
        .bind(&args.data_dir, args.listen)
        .await
        .with_context(|| format!("is `syncsets serve` running on {}?", args.listen))?;
    let state = AppState::new(store, config)
        .await
        .map_err(|e| anyhow::anyhow!("preparing the hub: {}", e.message))?;
    let _controllers = syncsets_controller::Controller::start(
        state.store.clone(),
        state.bus.clone(),
        syncsets_controller::Config::default(),
    )
    .await
    .context("starting the controllers")?;
    let hub = bound.url.clone();
    let hub_kubeconfig = args.data_dir.join("kubeconfig");
    write_private(&hub_kubeconfig, &bound.kubeconfig)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let serving = tokio::spawn(bound.serve(state, stopped(stop_rx.clone())));
    let client = super::status::client(&hub_kubeconfig).await?;

    println!(
        "syncsets demo — hub on {hub} (SQLite under {})",
        args.data_dir.display()
    );
    let dashboard =
        super::dashboard::Dashboard::bind(args.dashboard, client.clone(), "default".into()).await?;
    println!(
        "dashboard on {} (open it to watch the rollout)",
        dashboard.url()
    );
    let dashboard_serving = tokio::spawn(dashboard.serve(stopped(stop_rx.clone())));
    let (member, member_serving) = start_member(
        "127.0.0.1:0".parse()?,
        std::time::Duration::from_secs(1),
        super::faults::Faults::new("sim", args.clusters, &[])?,
        stopped(stop_rx),
    )
    .await?;
    let (registered, _) =
        register_all(&client, &member, ("sim", "fleet", &[]), args.clusters, 16).await?;
    println!("{registered} simulated clusters registered (member server {member})");
    let member_kubeconfig = args.data_dir.join("sim-00000.kubeconfig");
    write_private(
        &member_kubeconfig,
        &kubeconfig(&format!("{member}/clusters/sim-00000")),
    )?;

    let sets: kube::Api<syncsets_types::hive::SelectorSyncSet> = kube::Api::all(client.clone());
    let example: syncsets_types::hive::SelectorSyncSet = serde_json::from_value(example())?;
    sets.create(&kube::api::PostParams::default(), &example)
        .await
        .context("creating the example set")?;
    println!(
        "SelectorSyncSet demo-baseline created: a namespace and a templated ConfigMap for every cluster\n"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    super::status::watch(
        &client,
        Duration::from_millis(300),
        Duration::from_secs(300),
        10,
    )
    .await?;
    let hub_kc = hub_kubeconfig.display();
    let member_kc = member_kubeconfig.display();
    println!(
        "\nConverged. Try, in another shell:\n\
         \n  kubectl --kubeconfig {hub_kc} get sss                         # the rollout, as columns\
         \n  kubectl --kubeconfig {hub_kc} -n fleet get clustersyncs       # per-cluster status\
         \n  kubectl --kubeconfig {member_kc} -n platform get cm fleet-settings -o yaml\
         \n  kubectl --kubeconfig {member_kc} -n platform edit cm fleet-settings   # drift…\
         \n  syncsets resync --data-dir {} fleet/sim-00000                 # …corrected now\
         \n  kubectl --kubeconfig {hub_kc} edit sss demo-baseline         # change the set, then:\
         \n  syncsets status --data-dir {} --watch\
         \n\nCtrl-C stops the demo.",
        args.data_dir.display(),
        args.data_dir.display(),
    );
    shutdown_signal().await;
    stop_tx.send_replace(true);
    let _ = serving.await;
    let _ = member_serving.await;
    let _ = dashboard_serving.await;
    Ok(())
}
