//! Backups of the embedded store, and what a restored database needs before it serves.
//!
//! A snapshot of SQLite is taken online with `VACUUM INTO`: one read transaction copies
//! the database as it stood when that transaction began, while the writer goes on (WAL
//! readers never block it). A database restored from a snapshot (or, for PostgreSQL, from
//! `pg_dump`/`pg_restore`) is behind what clients have seen; [`mark_restored`] makes sure
//! resourceVersions never go backwards for them, as etcd's `snapshot restore
//! --bump-revision --mark-compacted` does: the counter jumps, and every change before the
//! jump is compacted away, so a watch from any version a client held gets 410 Gone and the
//! client relists.

use std::path::Path;
use std::str::FromStr as _;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::{Result, StoreError};

/// How far [`mark_restored`] moves resourceVersions by default: etcd's advice for
/// `--bump-revision`, more writes than any store makes between a backup and its restore.
pub const DEFAULT_BUMP: u64 = 1_000_000_000;

/// Takes a consistent snapshot of the SQLite database at `url` (`sqlite://PATH`) into
/// `file`, which must not exist, while writes go on. The snapshot is its owner's only
/// (0600) and checked (`PRAGMA quick_check`). Returns its resourceVersion: every write
/// acknowledged before the snapshot began is in it.
pub async fn backup_sqlite(url: &str, file: &Path) -> Result<u64> {
    let opts = SqliteConnectOptions::from_str(url)?.read_only(true);
    if !opts.get_filename().exists() {
        return Err(StoreError::config(format!(
            "no database at {}",
            opts.get_filename().display()
        )));
    }
    if file.exists() {
        return Err(StoreError::config(format!(
            "{} exists: a backup goes to a new file",
            file.display()
        )));
    }
    let path = file
        .to_str()
        .ok_or_else(|| StoreError::config("the backup file's name is not UTF-8"))?;
    // SQLite writes into an existing file if it is empty: made first, so that it is never
    // readable by others, whatever the umask.
    crate::private_file::touch(file)
        .map_err(|e| StoreError::config(format!("creating {}: {e}", file.display())))?;
    let mut source = SqliteConnection::connect_with(&opts).await?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(path)
        .execute(&mut source)
        .await;
    source.close().await?;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(file);
        return Err(e.into());
    }
    let snapshot = SqliteConnectOptions::new().filename(file).read_only(true);
    let mut conn = SqliteConnection::connect_with(&snapshot).await?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await?;
    if check != "ok" {
        return Err(StoreError::write_failed(format!(
            "the snapshot {} does not check: {check}",
            file.display()
        )));
    }
    let rv: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'rv'")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(rv as u64)
}

/// Copies a snapshot (from [`backup_sqlite`]) to where `url` (`sqlite://PATH`) keeps its
/// database, which must not exist yet; its directory is made its owner's only (0700) and
/// the copy 0600. Then [`mark_restored`] readies it.
pub fn restore_sqlite(file: &Path, url: &str) -> Result<()> {
    let opts = SqliteConnectOptions::from_str(url)?;
    let db = opts.get_filename();
    if let Some(dir) = db.parent()
        && !dir.as_os_str().is_empty()
    {
        crate::private_file::private_dir(dir)
            .map_err(|e| StoreError::config(format!("preparing {}: {e}", dir.display())))?;
    }
    let mut snapshot = std::fs::File::open(file)
        .map_err(|e| StoreError::config(format!("reading {}: {e}", file.display())))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut target = options.open(db).map_err(|e| {
        StoreError::config(match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} exists: restore into a data directory without a database",
                db.display()
            ),
            _ => format!("creating {}: {e}", db.display()),
        })
    })?;
    let copied = std::io::copy(&mut snapshot, &mut target).and_then(|_| target.sync_all());
    if let Err(e) = copied {
        let _ = std::fs::remove_file(db);
        return Err(StoreError::config(format!(
            "copying {} to {}: {e}",
            file.display(),
            db.display()
        )));
    }
    Ok(())
}

/// Prepares a database restored from a backup to serve (see the module documentation):
/// migrations run, the resourceVersion counter moves `bump` past the highest version the
/// database holds, and every change event before it is compacted away. Returns the new
/// resourceVersion. Run it once, before any server uses the database.
pub async fn mark_restored(url: &str, bump: u64) -> Result<u64> {
    let bump = i64::try_from(bump).map_err(|_| StoreError::config("the bump is too large"))?;
    if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)?;
        if !opts.get_filename().exists() {
            return Err(StoreError::config(format!(
                "no database at {}",
                opts.get_filename().display()
            )));
        }
        let mut conn = SqliteConnection::connect_with(&opts).await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        let mut tx = conn.begin().await?;
        let rv: i64 = sqlx::query_scalar(
            "UPDATE counters SET value = max(value, \
               (SELECT coalesce(max(rv), 0) FROM objects), \
               (SELECT coalesce(max(rv), 0) FROM events)) + ? \
             WHERE name = 'rv' RETURNING value",
        )
        .bind(bump)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM events").execute(&mut *tx).await?;
        sqlx::query("UPDATE outbox_state SET published = ?1, compacted = ?1")
            .bind(rv)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        conn.close().await?;
        Ok(rv as u64)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut conn)
            .await?;
        let mut tx = conn.begin().await?;
        // Nothing else may write meanwhile: the database is not in service yet, and the
        // lock makes sure.
        sqlx::query("LOCK TABLE objects, events, outbox_state IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let rv: i64 = sqlx::query_scalar(
            "SELECT setval('rv_seq', GREATEST( \
               (SELECT last_value FROM rv_seq), \
               (SELECT coalesce(max(rv), 0) FROM objects), \
               (SELECT coalesce(max(rv), 0) FROM events)) + $1)",
        )
        .bind(bump)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM events").execute(&mut *tx).await?;
        sqlx::query("UPDATE outbox_state SET published = $1, compacted = $1")
            .bind(rv)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        conn.close().await?;
        Ok(rv as u64)
    } else {
        Err(StoreError::config(format!(
            "cannot restore into {url:?}: expected sqlite:// or postgres://"
        )))
    }
}
