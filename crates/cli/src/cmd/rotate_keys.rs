//! `syncsets rotate-keys`: a new Secret encryption key, and every stored Secret sealed with
//! it, while servers run.
//!
//! 1. A new random key goes first in `encryption.keys` (the old ones stay, to open what
//!    they sealed). Running servers and controllers sharing the file seal with it within
//!    [`REFRESH`], and open values sealed with it at once.
//! 2. Every Secret, in the objects and in the outbox, is sealed again with it. Values a
//!    server sealed with the old key before it noticed the new one are caught by passes
//!    repeated until none is left (or the passes run out).
//! 3. With `--drop-old`, keys that no stored value uses any more leave the file.

use std::time::Duration;

use anyhow::{Context as _, bail};
use syncsets_store::Keyring;
use syncsets_store::keyring::REFRESH;

use crate::StoreArgs;
use crate::store_args::redact;

/// Arguments of `rotate-keys`.
#[derive(Debug, clap::Args)]
pub struct RotateKeysArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// Do not add a key: seal everything with the file's first key (after putting a key
    /// first by hand, or in a copy of the file every server reads)
    #[arg(long)]
    reseal_only: bool,

    /// Then remove from the key file every key that no stored value uses
    #[arg(long)]
    drop_old: bool,

    /// Passes over the store at most, REFRESH apart, until every value uses the new key
    #[arg(long, default_value_t = 5)]
    passes: u32,
}

/// Rotates.
pub async fn run(args: RotateKeysArgs) -> anyhow::Result<()> {
    let path = args.store.key_file();
    if !path.exists() {
        bail!(
            "no key file at {} (it is made when the server first starts)",
            path.display()
        );
    }
    if !args.reseal_only {
        let id = Keyring::add_primary(&path)
            .with_context(|| format!("adding a key to {}", path.display()))?;
        println!("new key {id} is first in {}", path.display());
    }
    let keyring = args.store.keyring()?;
    let store = args.store.open_with(keyring.clone()).await?;
    let primary = keyring.primary_id();
    println!(
        "sealing every Secret in {} with key {primary}",
        redact(&args.store.url()?)
    );
    // Before an old key is dropped, every server must have moved to the new one (they look
    // at the file every REFRESH) and what they sealed before must have been found: the file
    // must have been as it is for a while (whoever changed it, this command or an operator).
    let changed = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading {}", path.display()))?;
    let settled = || !args.drop_old || changed.elapsed().is_ok_and(|age| age > 2 * REFRESH);
    let mut left;
    let mut pass = 0;
    loop {
        pass += 1;
        let done = store.reseal().await.context("resealing")?;
        left = store
            .sealed_keys()
            .await
            .context("counting sealed values")?;
        let others: u64 = left
            .iter()
            .filter(|(id, _)| **id != primary)
            .map(|(_, n)| n)
            .sum();
        println!(
            "pass {pass}: {} objects and {} outbox events sealed again; {others} values under other keys",
            done.objects, done.events
        );
        if (others == 0 && settled()) || pass >= args.passes.max(1) {
            break;
        }
        tokio::time::sleep(REFRESH + Duration::from_millis(500)).await;
    }
    for (id, n) in &left {
        println!("  key {id}: {n} values");
    }
    let stale: Vec<&String> = left.keys().filter(|id| **id != primary).collect();
    if !stale.is_empty() {
        bail!(
            "values are still sealed with {stale:?}: is a server running with another key file? Run again once it reads this one"
        );
    }
    if !settled() {
        bail!("not dropping old keys: give --passes enough to wait for running servers");
    }
    if args.drop_old {
        let dropped = Keyring::retain(&path, std::slice::from_ref(&primary))
            .with_context(|| format!("rewriting {}", path.display()))?;
        if dropped.is_empty() {
            println!("no old keys to drop");
        } else {
            println!(
                "dropped keys {} from {}",
                dropped.join(", "),
                path.display()
            );
        }
    }
    Ok(())
}
