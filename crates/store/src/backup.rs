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
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};

use crate::{Result, StoreError};

/// How far [`mark_restored`] moves resourceVersions by default: etcd's advice for
/// `--bump-revision`, more writes than any store makes between a backup and its restore.
pub const DEFAULT_BUMP: u64 = 1_000_000_000;

/// Takes a consistent snapshot of the SQLite database at `url` (`sqlite://PATH`) into
/// `file`, which must not exist, while writes go on. The snapshot is its owner's only
/// (0600) and checked (`PRAGMA quick_check`). Returns its resourceVersion: every write
/// acknowledged before the snapshot began is in it. On any failure the file is removed.
pub async fn backup_sqlite(url: &str, file: &Path) -> Result<u64> {
    let opts = SqliteConnectOptions::from_str(url)?.read_only(true);
    if !opts.get_filename().exists() {
        return Err(StoreError::config(format!(
            "no database at {}",
            opts.get_filename().display()
        )));
    }
    // SQLite writes into an existing file if it is empty: made first (and only if nothing
    // is there, not even a dangling link), so that it is never readable by others.
    new_private_file(file).map_err(|e| {
        StoreError::config(match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("{} exists: a backup goes to a new file", file.display())
            }
            _ => format!("creating {}: {e}", file.display()),
        })
    })?;
    let taken = snapshot_into(&opts, file).await;
    if taken.is_err() {
        let _ = std::fs::remove_file(file);
    }
    taken
}

/// Creates `path`, which must not exist, readable by its owner only.
fn new_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

async fn snapshot_into(source: &SqliteConnectOptions, file: &Path) -> Result<u64> {
    let path = file
        .to_str()
        .ok_or_else(|| StoreError::config("the backup file's name is not UTF-8"))?;
    let mut conn = SqliteConnection::connect_with(source).await?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(path)
        .execute(&mut conn)
        .await;
    conn.close().await?;
    copied?;
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

/// Restores a snapshot (from [`backup_sqlite`]) to where `url` (`sqlite://PATH`) keeps its
/// database, which must not exist yet (nor its `-wal`, `-shm` or `-journal`), ready to
/// serve: the copy is made beside it under another name, synced, readied by
/// [`mark_restored`] with `bump`, and only then renamed into place. A restore that fails
/// leaves no database behind. The directory is made its owner's only (0700), the database
/// 0600. Returns the new resourceVersion.
pub async fn restore_sqlite(file: &Path, url: &str, bump: u64) -> Result<u64> {
    let opts = SqliteConnectOptions::from_str(url)?;
    let db = opts.get_filename().to_path_buf();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.clone().into_os_string();
        name.push(suffix);
        if std::path::Path::new(&name).exists() {
            return Err(StoreError::config(format!(
                "{} exists: restore into a data directory without a database",
                name.to_string_lossy()
            )));
        }
    }
    let dir = match db.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            crate::private_file::private_dir(dir)
                .map_err(|e| StoreError::config(format!("preparing {}: {e}", dir.display())))?;
            dir
        }
        None => Path::new("."),
    };
    let name = db.file_name().unwrap_or_default().to_string_lossy();
    let staging = dir.join(format!(".{name}.restoring.{}", std::process::id()));
    let restored = stage(file, &staging, bump).await;
    let placed = restored.and_then(|rv| {
        // Renamed into place only if nothing appeared there meanwhile.
        std::fs::hard_link(&staging, &db)
            .map_err(|e| {
                StoreError::config(format!(
                    "placing the restored database at {}: {e}",
                    db.display()
                ))
            })
            .map(|()| rv)
    });
    for suffix in ["", "-wal", "-shm"] {
        let mut name = staging.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(&name);
    }
    let rv = placed?;
    crate::private_file::sync_directory(&db)
        .map_err(|e| StoreError::config(format!("syncing {}: {e}", dir.display())))?;
    Ok(rv)
}

/// Copies the snapshot to `staging` (0600, synced) and readies it there.
async fn stage(file: &Path, staging: &Path, bump: u64) -> Result<u64> {
    let mut snapshot = std::fs::File::open(file)
        .map_err(|e| StoreError::config(format!("reading {}: {e}", file.display())))?;
    let mut target = new_private_file(staging)
        .map_err(|e| StoreError::config(format!("creating {}: {e}", staging.display())))?;
    std::io::copy(&mut snapshot, &mut target)
        .and_then(|_| target.sync_all())
        .map_err(|e| {
            StoreError::config(format!(
                "copying {} to {}: {e}",
                file.display(),
                staging.display()
            ))
        })?;
    let url = format!("sqlite://{}", staging.display());
    mark_restored(&url, bump).await
}

/// Prepares a database restored from a backup to serve (see the module documentation):
/// migrations run, the resourceVersion counter moves `bump` past the highest version the
/// database holds, and every change event before it is compacted away. Returns the new
/// resourceVersion. Run it before any server uses the database; for SQLite,
/// [`restore_sqlite`] runs it on the copy before the copy is put in place.
pub async fn mark_restored(url: &str, bump: u64) -> Result<u64> {
    let bump = i64::try_from(bump).map_err(|_| StoreError::config("the bump is too large"))?;
    if url.starts_with("sqlite:") {
        // No WAL beside the file while it is readied: a restore renames the file alone.
        let opts = SqliteConnectOptions::from_str(url)?.journal_mode(SqliteJournalMode::Delete);
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
        // Run before any server uses the database (the README's order): the lock keeps
        // writers out of these tables while it runs, but not a server's nextval().
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
