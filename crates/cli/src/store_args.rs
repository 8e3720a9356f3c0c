//! Where objects are stored, shared by every command that opens the store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use syncsets_store::{Keyring, Store};

/// Store selection.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Store URL: sqlite://PATH, postgres://USER@HOST/DB or memory:// [default: sqlite under the data directory]
    #[arg(long = "store", env = "SYNCSETS_STORE")]
    pub store: Option<String>,

    /// PostgreSQL connection in libpq keyword form, e.g. "user=postgres dbname=syncsets host=localhost sslmode=disable"; used when --store is not given
    #[arg(long, env = "POSTGRES_PARAMS", hide_env_values = true)]
    pub postgres_params: Option<String>,

    /// Data directory: the default SQLite file, the Secret encryption key, the kubeconfig
    #[arg(long, env = "SYNCSETS_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// The Secret encryption keys [default: <data-dir>/encryption.keys, made with one new key
    /// on first start]. A file named here (a mounted Kubernetes Secret, shared by every
    /// replica) must exist; it is only read, and changes to it are followed
    #[arg(long, env = "SYNCSETS_ENCRYPTION_KEY_FILE")]
    pub encryption_key_file: Option<PathBuf>,
}

impl StoreArgs {
    /// The store URL these arguments select.
    pub fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.store {
            return Ok(url.clone());
        }
        if let Some(params) = &self.postgres_params {
            return Ok(syncsets_store::postgres_url_from_params(params)?);
        }
        Ok(format!(
            "sqlite://{}",
            self.data_dir.join("syncsets.db").display()
        ))
    }

    /// The file of Secret encryption keys.
    pub fn key_file(&self) -> PathBuf {
        self.encryption_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("encryption.keys"))
    }

    /// The Secret encryption keys: the named file's, or the data directory's (created with
    /// a new key on first start). The data directory is made first, its owner's only (0700).
    pub fn keyring(&self) -> anyhow::Result<Arc<Keyring>> {
        syncsets_store::private_file::private_dir(&self.data_dir)
            .with_context(|| format!("preparing {}", self.data_dir.display()))?;
        let path = self.key_file();
        let keyring = match &self.encryption_key_file {
            Some(_) => Keyring::load(&path),
            None => Keyring::load_or_create(&path),
        };
        Ok(Arc::new(
            keyring.with_context(|| format!("loading {}", path.display()))?,
        ))
    }

    /// Opens the store (running migrations).
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        self.open_with(self.keyring()?).await
    }

    /// Opens the store (running migrations) with a keyring already loaded.
    pub async fn open_with(&self, keyring: Arc<Keyring>) -> anyhow::Result<Arc<dyn Store>> {
        let url = self.url()?;
        syncsets_store::open(&url, Some(keyring))
            .await
            .with_context(|| format!("opening the store {}", redact(&url)))
    }
}

/// A URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn a_named_key_file_is_read_never_made() {
        let dir = tempfile::tempdir().unwrap();
        let args = |file: Option<PathBuf>| StoreArgs {
            store: None,
            postgres_params: None,
            data_dir: dir.path().join("data"),
            encryption_key_file: file,
        };
        let named = dir.path().join("mounted.keys");
        let err = args(Some(named.clone())).keyring().unwrap_err();
        assert!(format!("{err:#}").contains("mounted.keys"), "{err:#}");
        assert!(!named.exists(), "a named key file is never made");
        // The data directory's own is made on first start, and the named one read as is.
        args(None).keyring().unwrap();
        let made = dir.path().join("data/encryption.keys");
        std::fs::copy(&made, &named).unwrap();
        let ring = args(Some(named)).keyring().unwrap();
        let own = args(None).keyring().unwrap();
        let sealed = own.seal(b"x", b"aad").unwrap();
        assert_eq!(ring.open(&sealed, b"aad").unwrap(), b"x");
    }
}
