//! Prune on a bucket with Object Lock: a forgotten backup still under retention is kept (and
//! said so) until a prune after its date; what retention keeps has its lock extended, so a
//! kept backup never becomes deletable by whoever holds the backup host's credentials.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::listing::Listing;
use crate::manifest::Manifest;
use crate::points::RecoveryPoint;
use crate::repository::Repository;
use crate::retention::Decision;

fn manifest_of<'a>(listing: &'a Listing, d: &Decision) -> Option<&'a Manifest> {
    listing
        .backups
        .iter()
        .find(|m| m.id == d.id && m.source == d.source)
}

/// Turns every forgotten backup whose manifest is locked past `now` into a kept one, with
/// the date as its reason. Returns their ids.
///
/// # Errors
/// The lock control plane's error (prune then deletes nothing).
pub(crate) async fn keep_locked(
    repo: &Repository,
    listing: &Listing,
    decisions: &mut [Decision],
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    if repo.bucket_lock().await?.is_none() {
        return Ok(Vec::new());
    }
    let mut held = Vec::new();
    for d in decisions.iter_mut().filter(|d| !d.keep) {
        let Some(manifest) = manifest_of(listing, d) else {
            continue;
        };
        if let Some(retention) = repo.manifest_retention(manifest).await?
            && retention.until > now
        {
            d.keep = true;
            d.reasons = vec![format!(
                "locked until {} (Object Lock, {}): a prune after that deletes it",
                retention.until.to_rfc3339(),
                retention.mode
            )];
            held.push(d.id.clone());
        }
    }
    Ok(held)
}

/// Extends the lock of every backup retention keeps to `now` plus the repository's lock
/// margin. Returns how many objects got a longer retention.
///
/// # Errors
/// The lock control plane's error.
pub(super) async fn extend_kept(
    repo: &Repository,
    listing: &Listing,
    decisions: &[Decision],
    now: DateTime<Utc>,
) -> Result<usize> {
    if repo.bucket_lock().await?.is_none() {
        return Ok(0);
    }
    let until = now + chrono::TimeDelta::from_std(repo.lock_margin()).unwrap_or_default();
    let mut extended = 0;
    for d in decisions.iter().filter(|d| d.keep) {
        if let Some(manifest) = manifest_of(listing, d) {
            extended += repo.lock_backup(manifest, until).await?;
        }
    }
    Ok(extended)
}

/// Extends the lock of every recovery point with a member retention keeps, as
/// [`extend_kept`] does for backups. Returns how many records got a longer retention.
///
/// # Errors
/// The lock control plane's error.
pub(super) async fn extend_points(
    repo: &Repository,
    points: &[RecoveryPoint],
    decisions: &[Decision],
    now: DateTime<Utc>,
) -> Result<usize> {
    if repo.bucket_lock().await?.is_none() {
        return Ok(0);
    }
    let until = now + chrono::TimeDelta::from_std(repo.lock_margin()).unwrap_or_default();
    let mut extended = 0;
    for point in points {
        if point_is_kept(point, decisions) {
            extended += repo.lock_point(&point.id, until).await?;
        }
    }
    Ok(extended)
}

/// Whether retention keeps a member of `point`.
pub(crate) fn point_is_kept(point: &RecoveryPoint, decisions: &[Decision]) -> bool {
    point
        .backup_ids()
        .any(|id| decisions.iter().any(|d| d.keep && d.id == id))
}
