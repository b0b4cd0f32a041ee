//! A local cache of manifests, so that `list`, `open_backup(latest)`, `status` and `prune`
//! LIST the repository but GET only the manifests they have not seen.
//!
//! Safe because a manifest is immutable: it is written once with `PutMode::Create` under a
//! unique id, and never rewritten. What exists is still decided by the LIST on every call (a
//! deleted backup vanishes from the listing; one committed by a concurrent writer is fetched
//! once). Entries are keyed by the repository (its location and `dr-repo.json`'s creation
//! time, so a copy or a re-created repository never shares entries), checked when read (they
//! must parse and name the source and id of their key; anything else is refetched), written
//! atomically (temporary file, then rename) and never into the repository. Unreadable
//! manifests are never cached. Verification reads manifests from the store, not from here.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::manifest::Manifest;

/// The environment variable that moves the cache (`DR_CACHE_DIR=/var/cache/dr`) or turns it
/// off (`DR_CACHE_DIR=off`).
pub const CACHE_DIR_ENV: &str = "DR_CACHE_DIR";

/// The default cache directory: `$DR_CACHE_DIR`, else `$XDG_CACHE_HOME/dr`, else
/// `$HOME/.cache/dr`; `None` when turned off or when no home is known.
pub fn default_cache_dir() -> Option<PathBuf> {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(v) if v == "off" || v.is_empty() => return None,
        Some(v) => return Some(PathBuf::from(v)),
        None => {}
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("dr"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("dr"))
}

/// The manifests of one repository cached in a local directory.
#[derive(Debug, Clone)]
pub(crate) struct ManifestCache {
    dir: PathBuf,
}

impl ManifestCache {
    /// The cache of the repository at `location` created at `created_at`, under `base`.
    pub(crate) fn new(base: &Path, location: &str, created_at: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(location.as_bytes());
        hash.update([0]);
        hash.update(created_at.as_bytes());
        let key = hex::encode(&hash.finalize()[..12]);
        ManifestCache {
            dir: base.join("manifests").join(key),
        }
    }

    fn entry(&self, source: &str, id: &str) -> PathBuf {
        self.dir.join(source).join(format!("{id}.json"))
    }

    /// The cached manifest of `source`/`id` whose store key is `key`, if a sound entry is
    /// there.
    pub(crate) async fn get(&self, source: &str, id: &str, key: &str) -> Option<Manifest> {
        let bytes = tokio::fs::read(self.entry(source, id)).await.ok()?;
        let manifest = Manifest::from_json(&bytes, key).ok()?;
        (manifest.source == source && manifest.id == id).then_some(manifest)
    }

    /// Stores `bytes`, the manifest of `source`/`id`; failures only cost a refetch later.
    pub(crate) async fn put(&self, source: &str, id: &str, bytes: &[u8]) {
        let path = self.entry(source, id);
        let Some(dir) = path.parent() else { return };
        let temp = dir.join(format!(".{id}.{}.tmp", std::process::id()));
        let written = async {
            tokio::fs::create_dir_all(dir).await?;
            tokio::fs::write(&temp, bytes).await?;
            tokio::fs::rename(&temp, &path).await
        }
        .await;
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), error = %e, "manifest not cached");
            let _ = tokio::fs::remove_file(&temp).await;
        }
    }

    /// Forgets the entry of `source`/`id` (its backup was deleted).
    pub(crate) async fn remove(&self, source: &str, id: &str) {
        let _ = tokio::fs::remove_file(self.entry(source, id)).await;
    }
}
