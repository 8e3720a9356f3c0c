//! How the commands that talk to a running hub (`status`, `resync`, `plan`) find it.

use std::path::PathBuf;

/// Where the hub is.
#[derive(Debug, clap::Args)]
pub struct HubArgs {
    /// Kubeconfig of the hub [default: the one `serve` writes, <data-dir>/kubeconfig]
    #[arg(long, env = "SYNCSETS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Data directory of the hub whose kubeconfig to use
    #[arg(long, env = "SYNCSETS_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

impl HubArgs {
    /// The kubeconfig to use.
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig
            .clone()
            .unwrap_or_else(|| self.data_dir.join("kubeconfig"))
    }

    /// A client of the hub, with the kubeconfig's credentials.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        crate::cmd::status::client(&self.kubeconfig()).await
    }
}
