//! `syncsets migrate`: bring the store's schema up to date.

use crate::StoreArgs;
use crate::store_args::redact;

/// Arguments of `migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs migrations.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let url = args.store.url()?;
    syncsets_store::migrate(&url).await?;
    println!("migrated {}", redact(&url));
    Ok(())
}
