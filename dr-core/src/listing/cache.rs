//! A local cache of manifests. Manifests are immutable (written once with `PutMode::Create`
//! under a unique id), so a listing only needs to GET the ones it has not seen before.
//!
//! Entries live under `<cache dir>/manifests/<repository key>/<source>/<id>.json`, where the
//! repository key hashes the repository's location and `dr-repo.json`'s `created_at`: a copy
//! or a re-created repository never shares entries. Each entry records the size, ETag and
//! modification time the LIST reported for the manifest object; it is used only when the
//! LIST reports the same again, parses, and names the source and id of its key. Anything else
//! is a miss and the manifest is fetched again. Nothing here ever writes to the repository,
//! and a cache that cannot be read or written only costs requests, never a wrong listing.

use std::path::{Path as FsPath, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, check_name};
use crate::pipeline::sha256_hex;

/// Disables the manifest cache when set to anything but empty or `0`.
pub const NO_CACHE_ENV: &str = "DR_NO_CACHE";
/// Overrides the cache directory (`off` disables the cache too).
pub const CACHE_DIR_ENV: &str = "DR_CACHE_DIR";

/// The default cache directory: `$DR_CACHE_DIR`, else `$XDG_CACHE_HOME/dr`, else
/// `$HOME/.cache/dr`; `None` when `DR_NO_CACHE` is set, `DR_CACHE_DIR` is `off`, or no
/// directory can be found.
pub fn default_cache_dir() -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if set(NO_CACHE_ENV).is_some_and(|v| v != "0") {
        return None;
    }
    if let Some(dir) = set(CACHE_DIR_ENV) {
        return (dir != "off").then(|| PathBuf::from(dir));
    }
    if let Some(xdg) = set("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("dr"));
    }
    set("HOME").map(|home| PathBuf::from(home).join(".cache").join("dr"))
}

/// What the cache keeps for one manifest.
#[derive(Serialize, Deserialize)]
struct Entry {
    size: u64,
    e_tag: Option<String>,
    last_modified: DateTime<Utc>,
    manifest: String,
}

impl Entry {
    fn matches(&self, meta: &ObjectMeta) -> bool {
        self.size == meta.size
            && self.e_tag == meta.e_tag
            && self.last_modified == meta.last_modified
    }
}

/// The manifest cache of one repository.
#[derive(Debug, Clone)]
pub(crate) struct ManifestCache {
    dir: PathBuf,
}

impl ManifestCache {
    /// The cache of the repository at `location` created at `created_at`, under `root`.
    pub(crate) fn new(root: &FsPath, location: &str, created_at: &DateTime<Utc>) -> Self {
        let stamp = created_at.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let key = sha256_hex(format!("{location}\n{stamp}").as_bytes());
        ManifestCache {
            dir: root.join("manifests").join(&key[..32]),
        }
    }

    /// `<dir>/<source>/<id>.json` for a manifest key `backups/<source>/<id>/manifest.json`;
    /// `None` for a key whose parts are not valid names (they become file names).
    fn entry_path(&self, key: &str) -> Option<PathBuf> {
        let (source, id) = source_and_id(key)?;
        check_name("source name", source).ok()?;
        check_name("backup id", id).ok()?;
        Some(self.dir.join(source).join(format!("{id}.json")))
    }

    /// The cached manifest of each listed object, `None` where it is missing, stale or
    /// does not check. Runs on the blocking pool.
    pub(crate) async fn load(&self, metas: Vec<ObjectMeta>) -> Vec<(ObjectMeta, Option<Manifest>)> {
        let cache = self.clone();
        let fallback = metas.clone();
        tokio::task::spawn_blocking(move || {
            metas
                .into_iter()
                .map(|meta| {
                    let hit = cache.load_one(&meta);
                    (meta, hit)
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "manifest cache lookup failed; fetching every manifest");
            fallback.into_iter().map(|m| (m, None)).collect()
        })
    }

    fn load_one(&self, meta: &ObjectMeta) -> Option<Manifest> {
        let key = meta.location.as_ref();
        let path = self.entry_path(key)?;
        let bytes = std::fs::read(&path).ok()?;
        let checked = serde_json::from_slice::<Entry>(&bytes)
            .ok()
            .filter(|entry| entry.matches(meta))
            .and_then(|entry| Manifest::from_json(entry.manifest.as_bytes(), key).ok())
            .filter(|m| source_and_id(key) == Some((m.source.as_str(), m.id.as_str())));
        if checked.is_none() {
            tracing::debug!(%key, path = %path.display(), "manifest cache entry is stale or damaged; fetching it");
        }
        checked
    }

    /// Keeps freshly fetched manifests, each written to a temporary file and renamed into
    /// place. Runs on the blocking pool; failures are logged and otherwise ignored.
    pub(crate) async fn store(&self, fetched: Vec<(ObjectMeta, Bytes)>) {
        if fetched.is_empty() {
            return;
        }
        let cache = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            for (meta, bytes) in fetched {
                if let Err(e) = cache.store_one(&meta, &bytes) {
                    tracing::debug!(key = %meta.location, error = %e, "could not cache a manifest");
                }
            }
        })
        .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "manifest cache write failed");
        }
    }

    fn store_one(&self, meta: &ObjectMeta, bytes: &[u8]) -> std::io::Result<()> {
        let Some(path) = self.entry_path(meta.location.as_ref()) else {
            return Ok(());
        };
        let manifest = String::from_utf8(bytes.to_vec()).map_err(std::io::Error::other)?;
        let entry = Entry {
            size: meta.size,
            e_tag: meta.e_tag.clone(),
            last_modified: meta.last_modified,
            manifest,
        };
        let json = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        let temp = parent.join(format!(".tmp-{:016x}", rand::random::<u64>()));
        std::fs::write(&temp, json)?;
        std::fs::rename(&temp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
    }

    /// Removes the entries of backups no longer listed (`listed` holds every manifest key
    /// of the repository). Runs on the blocking pool.
    pub(crate) async fn forget_except(&self, listed: std::collections::HashSet<String>) {
        let cache = self.clone();
        let _ = tokio::task::spawn_blocking(move || cache.forget_blocking(&listed)).await;
    }

    fn forget_blocking(&self, listed: &std::collections::HashSet<String>) {
        let Ok(sources) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for source in sources.flatten() {
            let Ok(entries) = std::fs::read_dir(source.path()) else {
                continue;
            };
            let source_name = source.file_name().to_string_lossy().into_owned();
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = file.strip_suffix(".json") else {
                    continue;
                };
                if !listed.contains(&format!("backups/{source_name}/{id}/manifest.json")) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// `(source, id)` of `backups/<source>/<id>/manifest.json`.
fn source_and_id(key: &str) -> Option<(&str, &str)> {
    let mut parts = key.split('/');
    let (backups, source, id, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (backups == "backups" && name == "manifest.json" && parts.next().is_none())
        .then_some((source, id))
}
