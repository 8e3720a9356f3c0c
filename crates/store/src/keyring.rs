//! Encryption of Secrets at rest: AES-256-GCM (ring), a random 96-bit nonce per value, the
//! key id stored with each value so keys can rotate, and the object's key as associated data
//! so a sealed value cannot be moved to another object.
//!
//! Sealed value: `0x01 | len(key id) | key id | nonce (12) | ciphertext ‖ tag (16)`.
//! Key file: one `<id> <base64 key>` line per key, the first line being the key used to seal.
//!
//! A keyring loaded from a file follows it: `syncsets rotate-keys` puts a new key first
//! while servers run, and each picks it up within [`REFRESH`] for sealing, at once for
//! opening (a value sealed with a key it does not know makes it read the file again).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Result, StoreError};

const FORMAT: u8 = 1;

/// How often a keyring looks at its file for a new primary key.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Keys in order, the first sealing.
struct Keys(Vec<(String, LessSafeKey)>);

/// The file a keyring follows, and what it last saw of it.
struct Source {
    path: PathBuf,
    seen: Mutex<(Instant, Option<(SystemTime, u64)>)>,
}

/// The encryption keys of a store.
pub struct Keyring {
    keys: RwLock<Arc<Keys>>,
    source: Option<Source>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.ids())
            .finish()
    }
}

fn crypto(msg: impl Into<String>) -> StoreError {
    StoreError::crypto(msg.into())
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn build(keys: Vec<(String, Vec<u8>)>) -> Result<Keys> {
    if keys.is_empty() {
        return Err(crypto("a keyring needs at least one key"));
    }
    let mut built: Vec<(String, LessSafeKey)> = Vec::with_capacity(keys.len());
    for (id, bytes) in keys {
        if id.is_empty() || id.len() > 255 || id.contains(char::is_whitespace) {
            return Err(crypto(format!("invalid key id {id:?}")));
        }
        if built.iter().any(|(k, _)| *k == id) {
            return Err(crypto(format!("key id {id:?} appears twice")));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| crypto(format!("key {id:?} must be 32 bytes")))?;
        built.push((id, LessSafeKey::new(unbound)));
    }
    Ok(Keys(built))
}

/// The `(id, key)` pairs of a key file, in order.
fn read_file(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crypto(format!("reading key file {}: {e}", path.display())))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let (id, key) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| crypto(format!("{}: expected `<id> <base64 key>`", at())))?;
        let key = b64()
            .decode(key.trim())
            .map_err(|_| crypto(format!("{}: key is not base64", at())))?;
        keys.push((id.to_string(), key));
    }
    Ok(keys)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Keyring {
    /// A keyring from `(id, 32-byte key)` pairs; the first one seals.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Result<Self> {
        Ok(Self {
            keys: RwLock::new(Arc::new(build(keys)?)),
            source: None,
            rng: SystemRandom::new(),
        })
    }

    /// A fresh random 32-byte key.
    pub fn generate_key() -> Result<Vec<u8>> {
        let mut key = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| crypto("no randomness available"))?;
        Ok(key)
    }

    /// Loads the key file, creating it (mode 0600) with one new key if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if !path.exists() {
            let key = Self::generate_key()?;
            let line = format!("k1 {}\n", b64().encode(&key));
            // Another process creating it at the same moment wins: its key is loaded.
            crate::private_file::create(path, line.as_bytes())
                .map_err(|e| crypto(format!("creating {}: {e}", path.display())))?;
        }
        Self::load(path)
    }

    /// Loads a key file, and follows it from then on.
    pub fn load(path: &Path) -> Result<Self> {
        let seen = stamp(path);
        let keys = build(read_file(path)?)?;
        Ok(Self {
            keys: RwLock::new(Arc::new(keys)),
            source: Some(Source {
                path: path.to_path_buf(),
                seen: Mutex::new((Instant::now(), seen)),
            }),
            rng: SystemRandom::new(),
        })
    }

    /// Puts a new random key first in a key file (atomically, mode 0600) and returns its id;
    /// the others stay, to open what they sealed.
    pub fn add_primary(path: &Path) -> Result<String> {
        let _lock = lock_file(path)?;
        let keys = read_file(path)?;
        let next = keys
            .iter()
            .filter_map(|(id, _)| id.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = format!("k{next}");
        let mut all = vec![(id.clone(), Self::generate_key()?)];
        all.extend(keys);
        build(all.clone())?;
        replace_file(path, &all)?;
        Ok(id)
    }

    /// Removes from a key file every key but `keep` (atomically). The first key stays first.
    pub fn retain(path: &Path, keep: &[String]) -> Result<Vec<String>> {
        let _lock = lock_file(path)?;
        let keys = read_file(path)?;
        let (kept, dropped): (Vec<_>, Vec<_>) = keys
            .into_iter()
            .enumerate()
            .partition(|(n, (id, _))| *n == 0 || keep.contains(id));
        let kept: Vec<_> = kept.into_iter().map(|(_, k)| k).collect();
        build(kept.clone())?;
        replace_file(path, &kept)?;
        Ok(dropped.into_iter().map(|(_, (id, _))| id).collect())
    }

    fn current(&self) -> Arc<Keys> {
        self.keys.read().expect("keyring").clone()
    }

    /// Reads the key file again if it changed, looking at most once per [`REFRESH`]
    /// (`force`: now, whatever its time stamp says).
    fn refresh(&self, force: bool) {
        let Some(source) = &self.source else { return };
        // Held across look, read and swap, so two refreshes never install keys out of order.
        let mut seen = source.seen.lock().expect("keyring source");
        let now = Instant::now();
        if now.duration_since(seen.0) < REFRESH && !force {
            return;
        }
        seen.0 = now;
        let stamp = stamp(&source.path);
        if stamp == seen.1 && !force {
            return;
        }
        match read_file(&source.path).and_then(build) {
            Ok(keys) => {
                *self.keys.write().expect("keyring") = Arc::new(keys);
                // Only a file read whole counts as seen; a failed read is tried again.
                seen.1 = stamp;
            }
            Err(e) => {
                tracing::warn!(error = %crate::Chain(&e), "key file unreadable; keeping the keys loaded")
            }
        }
    }

    /// Reads the key file now (keyrings made from a file).
    pub fn reload(&self) {
        self.refresh(true);
    }

    /// The ids of the keys, the sealing one first.
    pub fn ids(&self) -> Vec<String> {
        self.current().0.iter().map(|(id, _)| id.clone()).collect()
    }

    /// The id of the key that seals new values.
    pub fn primary_id(&self) -> String {
        self.refresh(false);
        self.current().0[0].0.clone()
    }

    /// Encrypts with the primary key.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.refresh(false);
        let keys = self.current();
        let (id, key) = &keys.0[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| crypto("no randomness available"))?;
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| crypto("encryption failed"))?;
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + buf.len());
        out.push(FORMAT);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts a value sealed with any key of the ring.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let (&format, rest) = sealed
            .split_first()
            .ok_or_else(|| crypto("empty sealed value"))?;
        if format != FORMAT {
            return Err(crypto(format!("unknown sealed format {format}")));
        }
        let (&id_len, rest) = rest
            .split_first()
            .ok_or_else(|| crypto("truncated sealed value"))?;
        let id_len = id_len as usize;
        if rest.len() < id_len + NONCE_LEN {
            return Err(crypto("truncated sealed value"));
        }
        let id = std::str::from_utf8(&rest[..id_len]).map_err(|_| crypto("bad key id"))?;
        let nonce: [u8; NONCE_LEN] = rest[id_len..id_len + NONCE_LEN]
            .try_into()
            .expect("length checked");
        let find = |keys: &Keys| keys.0.iter().position(|(k, _)| k == id);
        let mut keys = self.current();
        if find(&keys).is_none() {
            // Another process may have rotated the keys.
            self.refresh(true);
            keys = self.current();
        }
        let n =
            find(&keys).ok_or_else(|| crypto(format!("value sealed with unknown key {id:?}")))?;
        let mut buf = rest[id_len + NONCE_LEN..].to_vec();
        let plain = keys.0[n]
            .1
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| crypto("decryption failed (wrong key or tampered value)"))?;
        Ok(plain.to_vec())
    }

    /// The same value sealed with the primary key, or `None` if it already is.
    pub fn reseal(&self, sealed: &[u8], aad: &[u8]) -> Result<Option<Vec<u8>>> {
        let primary = self.primary_id();
        if Self::key_id_of(sealed) == Some(primary.as_str()) {
            return Ok(None);
        }
        let plain = self.open(sealed, aad)?;
        self.seal(&plain, aad).map(Some)
    }

    /// The key id a sealed value names.
    pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
        let id_len = *sealed.get(1)? as usize;
        std::str::from_utf8(sealed.get(2..2 + id_len)?).ok()
    }
}

/// Holds an exclusive lock beside a key file while it is read, changed and replaced, so
/// that two rotations at once cannot lose a key (released when dropped).
fn lock_file(path: &Path) -> Result<std::fs::File> {
    let lock = path.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| crypto(format!("opening {}: {e}", lock.display())))?;
    file.lock()
        .map_err(|e| crypto(format!("locking {}: {e}", lock.display())))?;
    Ok(file)
}

/// Replaces a key file by one holding `keys` ([`crate::private_file::replace`]: the rename
/// is synced, since servers may seal with the new key at once).
fn replace_file(path: &Path, keys: &[(String, Vec<u8>)]) -> Result<()> {
    let text: String = keys
        .iter()
        .map(|(id, key)| format!("{id} {}\n", b64().encode(key)))
        .collect();
    crate::private_file::replace(path, text.as_bytes())
        .map_err(|e| crypto(format!("replacing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens() {
        let ring =
            Keyring::new(vec![("k2".into(), vec![7; 32]), ("k1".into(), vec![1; 32])]).unwrap();
        let sealed = ring.seal(b"top secret", b"a/b").unwrap();
        assert_eq!(Keyring::key_id_of(&sealed), Some("k2"));
        assert!(!sealed.windows(10).any(|w| w == b"top secret"));
        assert_eq!(ring.open(&sealed, b"a/b").unwrap(), b"top secret");
        assert!(ring.open(&sealed, b"a/c").is_err(), "bound to its object");
        let old = Keyring::new(vec![("k1".into(), vec![1; 32])]).unwrap();
        let by_old = old.seal(b"x", b"").unwrap();
        assert_eq!(
            ring.open(&by_old, b"").unwrap(),
            b"x",
            "older keys still open"
        );
        assert!(Keyring::new(vec![("k".into(), vec![1; 16])]).is_err());
    }

    #[test]
    fn key_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let ring = Keyring::load_or_create(&path).unwrap();
        assert_eq!(ring.primary_id(), "k1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let again = Keyring::load_or_create(&path).unwrap();
        let sealed = ring.seal(b"v", b"").unwrap();
        assert_eq!(again.open(&sealed, b"").unwrap(), b"v");
    }

    #[test]
    fn a_rotated_key_file_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let ring = Keyring::load_or_create(&path).unwrap();
        let old = ring.seal(b"old", b"x").unwrap();
        let k2 = Keyring::add_primary(&path).unwrap();
        assert_eq!(k2, "k2");
        // Another process seals with the new key: this one opens it at once.
        let other = Keyring::load(&path).unwrap();
        assert_eq!(other.primary_id(), "k2");
        let new = other.seal(b"new", b"x").unwrap();
        assert_eq!(ring.open(&new, b"x").unwrap(), b"new");
        assert_eq!(ring.primary_id(), "k2", "opening reloaded the file");
        // Resealing moves a value to the primary key.
        let moved = ring.reseal(&old, b"x").unwrap().unwrap();
        assert_eq!(Keyring::key_id_of(&moved), Some("k2"));
        assert_eq!(ring.open(&moved, b"x").unwrap(), b"old");
        assert!(ring.reseal(&moved, b"x").unwrap().is_none());
        // Dropping the old key: what it sealed no longer opens; the primary stays.
        assert_eq!(Keyring::retain(&path, &[]).unwrap(), vec!["k1".to_string()]);
        let fresh = Keyring::load(&path).unwrap();
        assert_eq!(fresh.ids(), vec!["k2".to_string()]);
        assert!(fresh.open(&old, b"x").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
