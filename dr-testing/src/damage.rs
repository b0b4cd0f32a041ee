//! The one way tests damage a stored object: flip a byte, truncate, delete, or replace it
//! with invalid JSON; in an object store or in a local repository's file. Composite damages
//! (parts swapped, a foreign part) build on these in the tests that need them.

use std::path::Path as FsPath;

use bytes::Bytes;
use dr_core::Manifest;
use dr_core::object_store::path::Path;
use dr_core::object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// One way of damaging an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// One bit of the middle byte inverted (a stored hash, or age's MAC, must catch it).
    Flip,
    /// One bit of byte 60 inverted: inside an age header's recipient stanza, where damage
    /// must read as damage, not as a wrong key.
    FlipHeader,
    /// Cut to half its length.
    Truncate,
    /// The last byte cut off.
    TruncateTail,
    /// Gone.
    Delete,
    /// Replaced by the start of a JSON document (for manifests and records).
    InvalidJson,
}

impl Damage {
    /// Every byte-level damage but `InvalidJson`, which only manifests and records are
    /// given.
    pub const BYTES: [Damage; 3] = [Damage::Flip, Damage::Truncate, Damage::Delete];

    /// The damaged form of `bytes`; `None` for [`Damage::Delete`].
    pub fn apply(self, bytes: &[u8]) -> Option<Vec<u8>> {
        match self {
            Damage::Flip => {
                let mut damaged = bytes.to_vec();
                if let Some(b) = damaged.get_mut(bytes.len() / 2) {
                    *b ^= 0x40;
                }
                Some(damaged)
            }
            Damage::FlipHeader => {
                let mut damaged = bytes.to_vec();
                if let Some(b) = damaged.get_mut(60.min(bytes.len().saturating_sub(1))) {
                    *b ^= 0x01;
                }
                Some(damaged)
            }
            Damage::Truncate => Some(bytes[..bytes.len() / 2].to_vec()),
            Damage::TruncateTail => Some(bytes[..bytes.len().saturating_sub(1)].to_vec()),
            Damage::Delete => None,
            Damage::InvalidJson => Some(b"{\"format_version\": 1, \"id\": ".to_vec()),
        }
    }
}

/// Damages the file `path` (an object of a local repository) as `how` says.
///
/// # Panics
/// When the file cannot be read or written: the test is broken, not the code under test.
pub fn damage_file(path: &FsPath, how: Damage) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match how.apply(&bytes) {
        Some(damaged) => std::fs::write(path, damaged),
        None => std::fs::remove_file(path),
    }
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Damages the object `key` in `store` as `how` says; returns its original bytes (to put
/// back with [`restore_object`]).
///
/// # Panics
/// When the object cannot be read or written.
pub async fn damage_object(store: &dyn ObjectStore, key: &Path, how: Damage) -> Bytes {
    let original = store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    match how.apply(&original) {
        Some(damaged) => store.put(key, PutPayload::from(damaged)).await.map(drop),
        None => store.delete(key).await,
    }
    .unwrap_or_else(|e| panic!("{key}: {e}"));
    original
}

/// Puts `original` back at `key`.
///
/// # Panics
/// When the object cannot be written.
pub async fn restore_object(store: &dyn ObjectStore, key: &Path, original: Bytes) {
    store
        .put(key, PutPayload::from(original))
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
}

/// The key of `object` (a part, `SHA256SUMS`, `manifest.json`) of the backup `manifest`
/// describes.
pub fn backup_object(manifest: &Manifest, object: &str) -> Path {
    Path::from(format!(
        "backups/{}/{}/{object}",
        manifest.source, manifest.id
    ))
}

/// The key of data part `index` of `artifact` (the last part when `index` is past the end).
///
/// # Panics
/// When the backup has no such artifact or it has no parts.
pub fn part_of(manifest: &Manifest, artifact: &str, index: usize) -> Path {
    let parts = &manifest
        .artifact(artifact)
        .unwrap_or_else(|e| panic!("{e}"))
        .parts;
    let part = &parts[index.min(parts.len() - 1)];
    backup_object(manifest, &part.object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_damage_changes_the_bytes() {
        let bytes = b"0123456789".to_vec();
        let all = [
            Damage::FlipHeader,
            Damage::TruncateTail,
            Damage::InvalidJson,
        ];
        for how in Damage::BYTES.into_iter().chain(all) {
            assert_ne!(how.apply(&bytes).as_deref(), Some(&bytes[..]), "{how:?}");
        }
        assert_eq!(Damage::Truncate.apply(&bytes).unwrap().len(), 5);
        assert_eq!(Damage::Delete.apply(&bytes), None);
    }
}
