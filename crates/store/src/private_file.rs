//! Files that hold secrets — encryption keys, private keys, kubeconfigs with client keys —
//! are written one way: into a new temporary file beside the target, created mode 0600,
//! synced, then moved into place and the directory synced. A reader sees the old file or
//! the new one, never a part of either; a file that existed with a wider mode (say 0644)
//! is replaced, never rewritten in place, so it cannot keep that mode.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells this process's temporary files apart.
static TEMPORARIES: AtomicU64 = AtomicU64::new(0);

/// Creates the directory `path` (and its parents) if missing and makes it its owner's
/// only (0700), whatever mode it had and whatever the umask.
pub fn private_dir(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes an existing file its owner's only (0600); a missing one is left missing.
pub fn restrict(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates an empty file at `path`, mode 0600, unless one exists (then made 0600).
pub fn touch(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?;
    restrict(path)
}

/// Writes `contents` to `path`, replacing any file there, readable by its owner only.
pub fn replace(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = write_temporary(path, contents)?;
    let moved = std::fs::rename(&tmp, path);
    if moved.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    moved?;
    sync_directory(path)
}

/// Creates `path` holding `contents`, readable by its owner only, unless a file is there
/// already: then `false`, and that file is left as it is (two processes creating one file
/// at once cannot replace each other's).
pub fn create(path: &Path, contents: &[u8]) -> io::Result<bool> {
    let tmp = write_temporary(path, contents)?;
    // A hard link fails if the target exists: creation and content arrive at once.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_directory(path).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// A new file beside `path` (mode 0600) holding `contents`, synced.
fn write_temporary(path: &Path, contents: &[u8]) -> io::Result<PathBuf> {
    let dir = directory(path);
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMPORARIES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| tmp)
}

fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Syncs the directory holding `path`, so that a file created, linked or moved there
/// survives a crash.
pub fn sync_directory(path: &Path) -> io::Result<()> {
    std::fs::File::open(directory(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_file_is_replaced_by_a_private_one() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        replace(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keys");
        assert!(create(&path, b"first").unwrap());
        assert!(!create(&path, b"second").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
