//! Object Lock on a repository: locking what a backup wrote, extending what prune keeps, and
//! checking that kept backups are locked (`dr verify --locks`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::{Repository, backup_dir};
use crate::error::Result;
use crate::locks::{BucketLock, DEFAULT_LOCK_MARGIN, LockMode, ObjectLocks, Retention};
use crate::manifest::Manifest;
use crate::store::list_objects;

/// How many retention requests run at once.
const LOCKS_IN_FLIGHT: usize = 8;

/// The lock control plane attached to a repository, and what was learnt of the bucket.
#[derive(Clone)]
pub(super) struct Locks {
    control: Option<Arc<dyn ObjectLocks>>,
    mode: Option<LockMode>,
    margin: std::time::Duration,
    bucket: Arc<tokio::sync::OnceCell<Option<BucketLock>>>,
}

impl Default for Locks {
    fn default() -> Self {
        Locks {
            control: None,
            mode: None,
            margin: DEFAULT_LOCK_MARGIN,
            bucket: Arc::default(),
        }
    }
}

/// One object of a kept backup that is not locked long enough.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockProblem {
    /// Source of the backup.
    pub source: String,
    /// Backup id.
    pub id: String,
    /// The object's key.
    pub key: String,
    /// Its retention now (`None`: no lock at all).
    pub locked_until: Option<DateTime<Utc>>,
    /// The date it must be locked until.
    pub needed_until: DateTime<Utc>,
}

impl std::fmt::Display for LockProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.locked_until {
            None => write!(
                f,
                "{}/{}: {} is not locked (needed until {})",
                self.source, self.id, self.key, self.needed_until
            ),
            Some(until) => write!(
                f,
                "{}/{}: {} is locked only until {until} (needed until {})",
                self.source, self.id, self.key, self.needed_until
            ),
        }
    }
}

/// What `verify --locks` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LockReport {
    /// Whether the bucket has Object Lock at all (`false`: nothing was checked).
    pub bucket_locked: bool,
    /// Backups checked.
    pub backups_checked: usize,
    /// Objects checked.
    pub objects_checked: usize,
    /// Objects locked too briefly or not at all.
    pub problems: Vec<LockProblem>,
}

impl Repository {
    /// Attaches a store's lock control plane (S3 Object Lock): backups written from now on are
    /// locked when the bucket has Object Lock enabled (detected on first use).
    pub fn with_object_locks(mut self, control: Arc<dyn ObjectLocks>) -> Self {
        self.locks.control = Some(control);
        self
    }

    /// The retention mode dr sets; by default the bucket's default mode, else governance.
    pub fn with_lock_mode(mut self, mode: Option<LockMode>) -> Self {
        self.locks.mode = mode;
        self
    }

    /// How long past its guaranteed keep time a backup stays locked, and how far ahead prune
    /// extends the lock of what it keeps ([`DEFAULT_LOCK_MARGIN`] by default).
    pub fn with_lock_margin(mut self, margin: std::time::Duration) -> Self {
        self.locks.margin = margin;
        self
    }

    /// See [`Repository::with_lock_margin`].
    pub fn lock_margin(&self) -> std::time::Duration {
        self.locks.margin
    }

    /// The lock control plane, if the store has one.
    pub fn object_locks(&self) -> Option<&Arc<dyn ObjectLocks>> {
        self.locks.control.as_ref()
    }

    /// The bucket's Object Lock configuration, asked once per repository handle; `None` when
    /// the store has no control plane or the bucket has no Object Lock.
    ///
    /// # Errors
    /// The control plane's error (e.g. access denied to `GetObjectLockConfiguration`).
    pub async fn bucket_lock(&self) -> Result<Option<BucketLock>> {
        let Some(control) = &self.locks.control else {
            return Ok(None);
        };
        self.locks
            .bucket
            .get_or_try_init(|| control.bucket_lock())
            .await
            .copied()
    }

    /// The mode dr locks with on this bucket.
    fn lock_mode(&self, bucket: &BucketLock) -> LockMode {
        self.locks
            .mode
            .or(bucket.default_mode)
            .unwrap_or(LockMode::Governance)
    }

    /// Locks `keys` until `until`, never shortening a longer lock. Returns how many objects
    /// got a new retention (0 where the bucket has no Object Lock).
    ///
    /// # Errors
    /// The control plane's error for the first object that could not be locked.
    pub async fn lock_objects(&self, keys: &[Path], until: DateTime<Utc>) -> Result<usize> {
        let (Some(control), Some(bucket)) = (&self.locks.control, self.bucket_lock().await?) else {
            return Ok(0);
        };
        let wanted = Retention {
            mode: self.lock_mode(&bucket),
            until,
        };
        let set = futures::stream::iter(keys.to_vec())
            .map(|key| extend_one(control.clone(), key, wanted))
            .buffer_unordered(LOCKS_IN_FLIGHT)
            .try_collect::<Vec<usize>>()
            .await?;
        Ok(set.iter().sum())
    }

    /// Locks every object of a committed backup until `until`.
    ///
    /// # Errors
    /// As [`Repository::lock_objects`]; listing the backup's objects.
    pub async fn lock_backup(&self, manifest: &Manifest, until: DateTime<Utc>) -> Result<usize> {
        if self.bucket_lock().await?.is_none() {
            return Ok(0);
        }
        // Every object is asked (one HEAD each): a part locked shorter than its manifest is
        // found and extended too. The manifest goes last, then `dr-repo.json`, which every
        // backup needs to be opened and so is locked as long as the longest-locked backup.
        let mut keys = self.backup_keys(manifest).await?;
        let manifest_key = backup_dir(&manifest.source, &manifest.id).join(super::MANIFEST_NAME);
        keys.retain(|k| *k != manifest_key);
        let parts = self.lock_objects(&keys, until).await?;
        let last = [manifest_key, Path::from(super::CONFIG_KEY)];
        Ok(parts + self.lock_objects(&last, until).await?)
    }

    /// After a commit: the backup is listed whatever happens here, so a failure to lock is
    /// logged and left to `dr verify --locks` and `dr status` to report.
    pub(super) async fn lock_new_backup(&self, manifest: &Manifest, until: Option<DateTime<Utc>>) {
        let until = until.unwrap_or_else(|| {
            Utc::now() + chrono::TimeDelta::from_std(self.locks.margin).unwrap_or_default()
        });
        match self.lock_backup(manifest, until).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(source = %manifest.source, id = %manifest.id, objects = n, %until, "backup locked");
            }
            Err(e) => tracing::warn!(
                source = %manifest.source, id = %manifest.id, error = %e,
                "the backup is committed but NOT locked; `dr verify --locks` lists what is unlocked"
            ),
        }
    }

    /// Checks that every object of each `(backup, needed_until)` is locked at least until
    /// that date.
    ///
    /// # Errors
    /// The control plane's or the listing's error.
    pub async fn check_locks(&self, wanted: &[(&Manifest, DateTime<Utc>)]) -> Result<LockReport> {
        let (Some(control), Some(_)) = (&self.locks.control, self.bucket_lock().await?) else {
            return Ok(LockReport::default());
        };
        let mut report = LockReport {
            bucket_locked: true,
            ..LockReport::default()
        };
        for (manifest, needed_until) in wanted {
            let keys = self.backup_keys(manifest).await?;
            report.backups_checked += 1;
            report.objects_checked += keys.len();
            let found = futures::stream::iter(keys)
                .map(|key| retention_of(control.clone(), key))
                .buffer_unordered(LOCKS_IN_FLIGHT)
                .try_collect::<Vec<_>>()
                .await?;
            for (key, retention) in found {
                let locked_until = retention.map(|r| r.until);
                if locked_until.is_none_or(|until| until < *needed_until) {
                    report.problems.push(LockProblem {
                        source: manifest.source.clone(),
                        id: manifest.id.clone(),
                        key: key.to_string(),
                        locked_until,
                        needed_until: *needed_until,
                    });
                }
            }
        }
        report.problems.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(report)
    }

    /// The retention of a backup's manifest (what prune looks at before deleting).
    ///
    /// # Errors
    /// The control plane's error.
    pub async fn manifest_retention(&self, manifest: &Manifest) -> Result<Option<Retention>> {
        let (Some(control), Some(_)) = (&self.locks.control, self.bucket_lock().await?) else {
            return Ok(None);
        };
        let key = backup_dir(&manifest.source, &manifest.id).join(super::MANIFEST_NAME);
        control.retention(&key).await
    }

    async fn backup_keys(&self, manifest: &Manifest) -> Result<Vec<Path>> {
        let dir = backup_dir(&manifest.source, &manifest.id);
        let objects = list_objects(self.store.as_ref(), &dir).await?;
        Ok(objects.into_iter().map(|meta| meta.location).collect())
    }
}

/// Sets `wanted` on `key` unless it is already locked at least that long; 1 when set.
/// (Owned arguments: borrowed ones in stream closures defeat `Send` inference in callers.)
async fn extend_one(control: Arc<dyn ObjectLocks>, key: Path, wanted: Retention) -> Result<usize> {
    let current = control.retention(&key).await?;
    if current.is_some_and(|r| r.until >= wanted.until) {
        return Ok(0);
    }
    control.set_retention(&key, wanted).await.map(|()| 1)
}

async fn retention_of(
    control: Arc<dyn ObjectLocks>,
    key: Path,
) -> Result<(Path, Option<Retention>)> {
    control.retention(&key).await.map(|r| (key, r))
}
