//! `syncsets backup FILE` and `syncsets restore [FILE]`: an online snapshot of the embedded
//! store, and a data directory (or a PostgreSQL database restored with pg_restore) made
//! ready to serve from one.

use std::path::PathBuf;

use anyhow::bail;
use syncsets_store::backup::{DEFAULT_BUMP, backup_sqlite, mark_restored};

use crate::StoreArgs;
use crate::store_args::redact;

/// Arguments of `backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where the snapshot goes (a new file; SQLite's own format)
    file: PathBuf,

    #[command(flatten)]
    store: StoreArgs,
}

/// Takes the snapshot.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let url = args.store.url()?;
    if !url.starts_with("sqlite:") {
        bail!(
            "backup takes snapshots of the embedded SQLite store; back up {} with pg_dump, \
             restore it with pg_restore, then run `syncsets restore --store URL` (README)",
            redact(&url)
        );
    }
    let rv = backup_sqlite(&url, &args.file).await?;
    println!(
        "backed up {} at resourceVersion {rv} to {} (Secrets stay sealed: keep {} with it)",
        redact(&url),
        args.file.display(),
        args.store.key_file().display()
    );
    Ok(())
}

/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A snapshot from `syncsets backup`, restored into the data directory (which must
    /// hold no database yet). Without it: a PostgreSQL database (--store) just restored
    /// with pg_restore is made ready to serve.
    file: Option<PathBuf>,

    /// How far resourceVersions move past the restored ones, so that they never go
    /// backwards for clients (as etcd's `snapshot restore --bump-revision`)
    #[arg(long, default_value_t = DEFAULT_BUMP)]
    bump_revision: u64,

    #[command(flatten)]
    store: StoreArgs,
}

/// Restores.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let url = args.store.url()?;
    let rv = match (&args.file, url.starts_with("sqlite:")) {
        (Some(file), true) => {
            syncsets_store::backup::restore_sqlite(file, &url, args.bump_revision).await?
        }
        (None, true) => bail!(
            "restore into the embedded store needs the snapshot: syncsets restore FILE --data-dir DIR"
        ),
        (Some(_), false) => bail!(
            "a snapshot restores into SQLite; for PostgreSQL use pg_restore, then `syncsets restore --store URL` without a file"
        ),
        (None, false) => mark_restored(&url, args.bump_revision).await?,
    };
    println!(
        "restored {}: resourceVersions continue from {rv}; watches from before it get 410 Gone and clients relist",
        redact(&url)
    );
    if url.starts_with("sqlite:") && !args.store.key_file().exists() {
        eprintln!(
            "warning: {} is missing: put the source's encryption.keys there, or the restored Secrets cannot be read",
            args.store.key_file().display()
        );
    }
    Ok(())
}
