//! Copies: committed backups (and WAL archives) replicated byte for byte from one repository
//! to another. Idempotent (what the destination already holds is checked, not copied again),
//! every object verified against its recorded SHA-256 on the way, the manifest written last
//! so that a half-copied backup is never listed at the destination.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::repository::{Repository, backup_dir};
use crate::store::{create_object, get_object, list_objects, with_retries};

/// WAL segments and records copied at once (16 MiB at most each).
const COPIES_OF_SMALL_OBJECTS: usize = 8;

/// What copying one backup did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CopyOutcome {
    /// The destination already had it (its manifest is identical).
    AlreadyThere,
    /// Copied now: parts and bytes.
    Copied {
        /// Objects written.
        objects: u64,
        /// Bytes written.
        bytes: u64,
    },
}

/// Opens `to`'s repository, creating it with `from`'s recipients when it does not exist.
///
/// # Errors
/// Store errors; a destination of another format version.
pub async fn open_or_init_like(
    from: &Repository,
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    location: &str,
) -> Result<Repository> {
    match Repository::open(store.clone(), location).await {
        Err(Error::NotInitialised { .. }) => {
            let recipients = from.recipients()?;
            Repository::init(store, location, &recipients).await
        }
        other => other,
    }
}

/// Copies one committed backup from `from` to `to`.
///
/// # Errors
/// A part whose bytes do not match the manifest (at the source or a leftover at the
/// destination), a destination holding a different manifest under the same id, store errors.
pub async fn copy_backup(
    from: &Repository,
    to: &Repository,
    manifest: &Manifest,
) -> Result<CopyOutcome> {
    from.check_pinned_recipients()?;
    to.check_pinned_recipients()?;
    let dir = backup_dir(&manifest.source, &manifest.id);
    let manifest_key = dir.clone().join("manifest.json");
    let json = manifest.to_json()?;
    match get_object(to.store().as_ref(), &manifest_key).await {
        Ok(existing) if existing.as_ref() == json.as_slice() => {
            return Ok(CopyOutcome::AlreadyThere);
        }
        Ok(_) => {
            return Err(Error::TargetExists {
                target: to.location().to_string(),
                found: format!(
                    "already holds a different backup {} of {}",
                    manifest.id, manifest.source
                ),
                hint: "nothing was copied over it (check what wrote it there)".into(),
            });
        }
        Err(Error::MissingObject { .. }) => {}
        Err(e) => return Err(e),
    }
    // One listing says what an interrupted copy left (one request, not one per part).
    let present = Arc::new(present_sizes(to, &dir).await?);
    let sums = Bytes::from(manifest.sha256sums());
    let mut objects: Vec<(Path, u64, String)> = manifest
        .parts()
        .map(|p| {
            (
                dir.clone().join(p.object.as_str()),
                p.stored_size,
                p.stored_sha256.clone(),
            )
        })
        .collect();
    let sums_key = dir.clone().join("SHA256SUMS");
    let at_once = copies_at_once(from, objects.iter().map(|o| o.1));
    objects.push((sums_key, sums.len() as u64, crate::sha256_hex(&sums)));
    let copied: Vec<u64> = futures::stream::iter(objects)
        .map(|(key, _, sha256)| {
            let (present, sums) = (present.clone(), sums.clone());
            async move {
                let data = if key.filename() == Some("SHA256SUMS") {
                    sums
                } else {
                    let data = get_object(from.store().as_ref(), &key).await?;
                    check(&key, &data, &sha256)?;
                    data
                };
                let size = data.len() as u64;
                put_checked(to, &key, data, &sha256, present.get(&key).copied()).await?;
                Ok::<u64, Error>(size)
            }
        })
        .buffer_unordered(at_once)
        .try_collect()
        .await?;
    let (objects, bytes) = (
        copied.len() as u64,
        copied.iter().sum::<u64>() - sums.len() as u64,
    );
    create_object(to.store().as_ref(), &manifest_key, json).await?;
    Ok(CopyOutcome::Copied {
        objects: objects + 1,
        bytes,
    })
}

/// How many objects a copy moves at once: enough to hide a far store's round trips, with at
/// most the source's read-ahead budget of stored bytes in memory (at least two, at most 16).
fn copies_at_once(from: &Repository, sizes: impl Iterator<Item = u64>) -> usize {
    let largest = sizes.max().unwrap_or(1).max(1);
    let fit = from.pipeline().read_ahead_bytes / largest;
    usize::try_from(fit).unwrap_or(usize::MAX).clamp(2, 16)
}

/// The sizes of the objects already under `dir` at the destination (left by an
/// interrupted copy; usually none).
async fn present_sizes(to: &Repository, dir: &Path) -> Result<BTreeMap<Path, u64>> {
    Ok(list_objects(to.store().as_ref(), dir)
        .await?
        .into_iter()
        .map(|meta| (meta.location, meta.size))
        .collect())
}

/// Writes `data` at `key` unless an identical object is there (`present`: the size listed
/// there before the copy began). A leftover of an interrupted copy is read back and replaced
/// only when it is not what it should be.
async fn put_checked(
    to: &Repository,
    key: &Path,
    data: Bytes,
    sha256: &str,
    present: Option<u64>,
) -> Result<()> {
    if present != Some(data.len() as u64) {
        return overwrite(to, key, data).await;
    }
    match get_object(to.store().as_ref(), key).await {
        Ok(existing) if crate::sha256_hex(&existing) == sha256 => return Ok(()),
        Ok(_) | Err(Error::MissingObject { .. }) => {}
        Err(e) => return Err(e),
    }
    overwrite(to, key, data).await
}

/// Writes `data` at `key` (replacing what is there), retrying transient failures.
async fn overwrite(to: &Repository, key: &Path, data: Bytes) -> Result<()> {
    with_retries(&format!("copying {key}"), |_| {
        to.store().put(key, data.clone().into())
    })
    .await
    .map(drop)
    .map_err(|e| Error::store(format!("copying {key}"), e))
}

fn check(key: &Path, data: &[u8], expected: &str) -> Result<()> {
    let actual = crate::sha256_hex(data);
    if actual == expected {
        Ok(())
    } else {
        Err(Error::CorruptPart {
            key: key.to_string(),
            what: "stored",
            expected: expected.to_owned(),
            actual,
        })
    }
}

/// Copies every WAL archive object the destination lacks (data before its `.json` record);
/// returns how many objects were copied.
///
/// # Errors
/// Store errors.
pub async fn copy_wal(from: &Repository, to: &Repository) -> Result<u64> {
    copy_missing(from, to, "wal").await
}

/// Copies the recovery points the destination lacks (run after their backups, so that a
/// point is never copied before what it names); returns how many were copied.
///
/// # Errors
/// Store errors.
pub async fn copy_points(from: &Repository, to: &Repository) -> Result<u64> {
    copy_missing(from, to, "points").await
}

/// Copies the objects under `prefix` that the destination lacks, `.json` records last.
async fn copy_missing(from: &Repository, to: &Repository, prefix: &str) -> Result<u64> {
    from.check_pinned_recipients()?;
    to.check_pinned_recipients()?;
    let objects = list_objects(from.store().as_ref(), &Path::from(prefix)).await?;
    let present: std::collections::BTreeSet<Path> =
        list_objects(to.store().as_ref(), &Path::from(prefix))
            .await?
            .into_iter()
            .map(|o| o.location)
            .collect();
    let keys: Vec<Path> = objects
        .into_iter()
        .map(|o| o.location)
        .filter(|k| !present.contains(k))
        .collect();
    // Data objects first, commit records (.json) after all of them.
    let (records, data): (Vec<Path>, Vec<Path>) = keys
        .into_iter()
        .partition(|k| k.as_ref().ends_with(".json"));
    let copied = copy_all(from, to, data).await? + copy_all(from, to, records).await?;
    Ok(copied)
}

/// Copies `keys` from `from` to `to`, several at once (their order is not kept).
async fn copy_all(from: &Repository, to: &Repository, keys: Vec<Path>) -> Result<u64> {
    let count = keys.len() as u64;
    futures::stream::iter(keys)
        .map(|key: Path| async move {
            let data = get_object(from.store().as_ref(), &key).await?;
            overwrite(to, &key, data).await
        })
        .buffer_unordered(COPIES_OF_SMALL_OBJECTS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(count)
}
