//! `syncsets resync`: reapply every set to clusters now, instead of at their next full
//! reapply — drift corrected on demand. It deletes the clusters' ClusterSyncLeases (the
//! record of their last full apply, as in Hive); the controllers see that and reapply.
//! `kubectl delete clustersynclease` does the same.

use anyhow::bail;
use kube::api::{Api, DeleteParams, ListParams};
use syncsets_types::hive::{ClusterDeployment, ClusterSyncLease};

use crate::hub_args::HubArgs;

/// Arguments of `resync`.
#[derive(Debug, clap::Args)]
pub struct ResyncArgs {
    /// Clusters, as NAMESPACE/NAME (or NAME with --namespace)
    clusters: Vec<String>,

    /// Namespace of clusters given by name
    #[arg(long, short = 'n', default_value = "fleet")]
    namespace: String,

    /// Every cluster
    #[arg(long)]
    all: bool,

    #[command(flatten)]
    hub: HubArgs,
}

/// Runs `resync`.
pub async fn run(args: ResyncArgs) -> anyhow::Result<()> {
    if args.all != args.clusters.is_empty() {
        bail!("name clusters (NAMESPACE/NAME) or pass --all");
    }
    let client = args.hub.client().await?;
    let targets: Vec<(String, String)> = if args.all {
        Api::<ClusterSyncLease>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .into_iter()
            .map(|l| {
                (
                    l.metadata.namespace.unwrap_or_default(),
                    l.metadata.name.unwrap_or_default(),
                )
            })
            .collect()
    } else {
        args.clusters
            .iter()
            .map(|c| match c.split_once('/') {
                Some((ns, name)) => (ns.to_string(), name.to_string()),
                None => (args.namespace.clone(), c.clone()),
            })
            .collect()
    };
    let mut unknown = Vec::new();
    for (ns, name) in &targets {
        let api: Api<ClusterSyncLease> = Api::namespaced(client.clone(), ns);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => println!("{ns}/{name}: full reapply requested"),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                // No lease: a cluster not yet applied in full, or no cluster at all.
                let clusters: Api<ClusterDeployment> = Api::namespaced(client.clone(), ns);
                if clusters.get_opt(name).await?.is_some() {
                    println!("{ns}/{name}: no full apply recorded yet (one is pending already)")
                } else {
                    eprintln!(
                        "error: clusterdeployments.hive.openshift.io \"{name}\" not found in namespace \"{ns}\""
                    );
                    unknown.push(format!("{ns}/{name}"));
                }
            }
            Err(e) => bail!("{ns}/{name}: {e}"),
        }
    }
    if !unknown.is_empty() {
        bail!("no such cluster: {}", unknown.join(", "));
    }
    Ok(())
}
