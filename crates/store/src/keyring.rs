//! Encryption of Secrets at rest: AES-256-GCM (ring), a random 96-bit nonce per value, the
//! key id stored with each value so keys can rotate, and the object's key as associated data
//! so a sealed value cannot be moved to another object.
//!
//! Sealed value: `0x01 | len(key id) | key id | nonce (12) | ciphertext ‖ tag (16)`.
//! Key file: one `<id> <base64 key>` line per key, the first line being the key used to seal.

use std::path::Path;

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Result, StoreError};

const FORMAT: u8 = 1;

/// The encryption keys of a store.
pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

fn crypto(msg: impl Into<String>) -> StoreError {
    StoreError::Crypto(msg.into())
}

impl Keyring {
    /// A keyring from `(id, 32-byte key)` pairs; the first one seals.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Result<Self> {
        if keys.is_empty() {
            return Err(crypto("a keyring needs at least one key"));
        }
        let keys = keys
            .into_iter()
            .map(|(id, bytes)| {
                if id.is_empty() || id.len() > 255 || id.contains(char::is_whitespace) {
                    return Err(crypto(format!("invalid key id {id:?}")));
                }
                let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
                    .map_err(|_| crypto(format!("key {id:?} must be 32 bytes")))?;
                Ok((id, LessSafeKey::new(unbound)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            keys,
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
            let line = format!(
                "k1 {}\n",
                base64::engine::general_purpose::STANDARD.encode(&key)
            );
            write_private(path, line.as_bytes())?;
        }
        Self::load(path)
    }

    /// Loads a key file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crypto(format!("reading key file {}: {e}", path.display())))?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, key) = line.split_once(char::is_whitespace).ok_or_else(|| {
                crypto(format!(
                    "{}:{}: expected `<id> <base64 key>`",
                    path.display(),
                    n + 1
                ))
            })?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| crypto(format!("{}:{}: key is not base64", path.display(), n + 1)))?;
            keys.push((id.to_string(), key));
        }
        Self::new(keys)
    }

    /// The id of the key that seals new values.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Encrypts with the primary key.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let (id, key) = &self.keys[0];
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
        let key = &self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| crypto(format!("value sealed with unknown key {id:?}")))?
            .1;
        let mut buf = rest[id_len + NONCE_LEN..].to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| crypto("decryption failed (wrong key or tampered value)"))?;
        Ok(plain.to_vec())
    }

    /// The key id a sealed value names.
    pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
        let id_len = *sealed.get(1)? as usize;
        std::str::from_utf8(sealed.get(2..2 + id_len)?).ok()
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| crypto(format!("creating {}: {e}", dir.display())))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| crypto(format!("creating {}: {e}", path.display())))?;
    f.write_all(contents)
        .map_err(|e| crypto(format!("writing {}: {e}", path.display())))?;
    f.sync_all()
        .map_err(|e| crypto(format!("syncing {}: {e}", path.display())))
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
}
