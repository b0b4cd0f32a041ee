//! A repository as it was at an earlier time, read from a versioned bucket's object versions:
//! objects deleted or overwritten since (by an attacker holding the backup host's keys, say)
//! are read as they were.
//!
//! [`AsOfStore`] lists every version once, keeps for each key the newest version written at
//! or before the time (none when that is a delete marker), and serves `list` from that view and
//! `get` with the version id. New objects (`PutMode::Create`, e.g. a restore's safety backup)
//! go to the live store; deletes and overwrites are refused, so the view cannot destroy.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dr_core::locks::{ObjectLocks, ObjectVersion};
use dr_core::object_store::path::Path;
use dr_core::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use futures::StreamExt;
use futures::stream::BoxStream;

/// One object as it was at the view's time.
#[derive(Debug, Clone)]
struct Seen {
    version: String,
    modified: DateTime<Utc>,
    size: u64,
}

/// A read view of `inner` as it was at `at`.
#[derive(Debug)]
pub struct AsOfStore {
    inner: Arc<dyn ObjectStore>,
    at: DateTime<Utc>,
    objects: Arc<BTreeMap<String, Seen>>,
}

impl AsOfStore {
    /// Lists every version under the repository and builds the view at `at`.
    ///
    /// # Errors
    /// The version listing's error.
    pub async fn snapshot(
        inner: Arc<dyn ObjectStore>,
        locks: &dyn ObjectLocks,
        at: DateTime<Utc>,
    ) -> dr_core::Result<AsOfStore> {
        let versions = locks.versions(None).await?;
        Ok(AsOfStore {
            inner,
            at,
            objects: Arc::new(view_at(versions, at)),
        })
    }

    /// How many objects the view holds.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the view holds no object (nothing existed at that time).
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    fn meta(key: &str, seen: &Seen) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(key),
            last_modified: seen.modified,
            size: seen.size,
            e_tag: None,
            version: Some(seen.version.clone()),
        }
    }

    /// The view's keys under `prefix` (whole path segments, as object_store lists).
    fn under<'a>(&'a self, prefix: Option<&Path>) -> impl Iterator<Item = (&'a String, &'a Seen)> {
        let start = prefix.map(|p| format!("{p}/")).unwrap_or_default();
        self.objects
            .range(start.clone()..)
            .take_while(move |(key, _)| key.starts_with(&start))
    }

    fn read_only(&self, what: &str) -> dr_core::object_store::Error {
        dr_core::object_store::Error::NotSupported {
            source: format!(
                "{what}: the repository as of {} is read-only (open it without --as-of to change it)",
                self.at.to_rfc3339()
            )
            .into(),
        }
    }
}

/// For each key, the newest version written at or before `at`; keys whose newest is a delete
/// marker, or that did not exist yet, are left out.
fn view_at(versions: Vec<ObjectVersion>, at: DateTime<Utc>) -> BTreeMap<String, Seen> {
    let mut newest: BTreeMap<String, ObjectVersion> = BTreeMap::new();
    for version in versions.into_iter().filter(|v| v.modified <= at) {
        let key = version.key.to_string();
        // Newer wins; at the same second (S3's resolution) the key's current version wins.
        let newer = |kept: &ObjectVersion| {
            version.modified > kept.modified
                || (version.modified == kept.modified && version.latest)
        };
        if newest.get(&key).is_none_or(newer) {
            newest.insert(key, version);
        }
    }
    newest
        .into_iter()
        .filter(|(_, v)| !v.deleted)
        .map(|(key, v)| {
            let seen = Seen {
                version: v.version,
                modified: v.modified,
                size: v.size,
            };
            (key, seen)
        })
        .collect()
}

impl std::fmt::Display for AsOfStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AsOf({}, {})", self.inner, self.at.to_rfc3339())
    }
}

#[async_trait]
impl ObjectStore for AsOfStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if opts.mode != PutMode::Create {
            return Err(self.read_only(&format!("overwriting {location}")));
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(self.read_only(&format!("uploading {location} in parts")))
    }

    async fn get_opts(&self, location: &Path, mut options: GetOptions) -> Result<GetResult> {
        let Some(seen) = self.objects.get(location.as_ref()) else {
            return Err(dr_core::object_store::Error::NotFound {
                path: location.to_string(),
                source: format!("no such object as of {}", self.at.to_rfc3339()).into(),
            });
        };
        options.version = Some(seen.version.clone());
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let at = self.at.to_rfc3339();
        locations
            .map(move |location| {
                let location = location?;
                Err(dr_core::object_store::Error::NotSupported {
                    source: format!("deleting {location}: the repository as of {at} is read-only")
                        .into(),
                })
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let metas: Vec<Result<ObjectMeta>> = self
            .under(prefix)
            .map(|(key, seen)| Ok(Self::meta(key, seen)))
            .collect();
        futures::stream::iter(metas).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let depth = prefix.map_or(0, |p| p.parts().count());
        let mut common = std::collections::BTreeSet::new();
        let mut objects = Vec::new();
        for (key, seen) in self.under(prefix) {
            let path = Path::from(key.as_str());
            let parts: Vec<_> = path.parts().collect();
            if parts.len() == depth + 1 {
                objects.push(Self::meta(key, seen));
            } else {
                common.insert(Path::from_iter(parts.into_iter().take(depth + 1)));
            }
        }
        Ok(ListResult {
            common_prefixes: common.into_iter().collect(),
            objects,
            extensions: Default::default(),
        })
    }

    async fn copy_opts(&self, _from: &Path, to: &Path, _options: CopyOptions) -> Result<()> {
        Err(self.read_only(&format!("copying to {to}")))
    }
}

/// Opens the repository at `url` as it was at `at`, from the bucket's object versions.
///
/// # Errors
/// [`dr_core::Error::Usage`] for a store without versions (anything but `s3://`); the version
/// listing's error; [`dr_core::Repository::open`]'s (e.g. no `dr-repo.json` at that time).
pub async fn open_repository_as_of(
    url: &str,
    options: &[(&str, &str)],
    at: DateTime<Utc>,
) -> dr_core::Result<dr_core::Repository> {
    let location = crate::open_store(url, options, false)?;
    let Some(locks) = location.locks() else {
        return Err(dr_core::Error::Usage(format!(
            "--as-of reads object versions, which only an s3:// repository on a versioned bucket has ({} has none)",
            location.url()
        )));
    };
    if !locks.versioning().await? {
        return Err(dr_core::Error::Usage(format!(
            "--as-of reads object versions, and the bucket of {} has versioning off: what was deleted or overwritten there is gone (turn versioning on, or use Object Lock, for the next time)",
            location.url()
        )));
    }
    let view = AsOfStore::snapshot(location.store(), locks.as_ref(), at).await?;
    let shown = format!("{} as of {}", location.url(), at.to_rfc3339());
    tracing::info!(objects = view.len(), repository = %shown, "read from object versions");
    let view_locks = AsOfLocks {
        inner: locks,
        objects: view.objects.clone(),
        at,
    };
    let repo = dr_core::Repository::open(Arc::new(view), &shown).await?;
    Ok(repo
        .with_cache_dir(None)
        .with_object_locks(Arc::new(view_locks)))
}

/// The lock control plane seen through the view: the retention of the version the view
/// holds (what protects the past backups), never a new one.
#[derive(Debug)]
struct AsOfLocks {
    inner: Arc<dyn ObjectLocks>,
    objects: Arc<BTreeMap<String, Seen>>,
    at: DateTime<Utc>,
}

#[async_trait]
impl ObjectLocks for AsOfLocks {
    async fn bucket_lock(&self) -> dr_core::Result<Option<dr_core::locks::BucketLock>> {
        self.inner.bucket_lock().await
    }

    async fn set_retention(
        &self,
        key: &Path,
        _retention: dr_core::locks::Retention,
    ) -> dr_core::Result<()> {
        Err(dr_core::Error::Usage(format!(
            "locking {key}: the repository as of {} is read-only",
            self.at.to_rfc3339()
        )))
    }

    async fn retention(&self, key: &Path) -> dr_core::Result<Option<dr_core::locks::Retention>> {
        match self.objects.get(key.as_ref()) {
            Some(seen) => self.inner.version_retention(key, &seen.version).await,
            None => Ok(None),
        }
    }

    async fn version_retention(
        &self,
        key: &Path,
        version: &str,
    ) -> dr_core::Result<Option<dr_core::locks::Retention>> {
        self.inner.version_retention(key, version).await
    }

    async fn versioning(&self) -> dr_core::Result<bool> {
        self.inner.versioning().await
    }

    async fn versions(&self, prefix: Option<&Path>) -> dr_core::Result<Vec<ObjectVersion>> {
        self.inner.versions(prefix).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(key: &str, id: &str, secs: i64, deleted: bool) -> ObjectVersion {
        ObjectVersion {
            key: Path::from(key),
            version: id.into(),
            modified: DateTime::from_timestamp(secs, 0).unwrap(),
            deleted,
            size: 1,
            latest: false,
        }
    }

    #[test]
    fn at_the_same_second_the_current_version_wins_whatever_the_order() {
        let overwrite = version("m", "ransom", 27, false);
        let marker = ObjectVersion {
            latest: true,
            ..version("m", "marker", 27, true)
        };
        let at = DateTime::from_timestamp(30, 0).unwrap();
        for order in [
            vec![overwrite.clone(), marker.clone()],
            vec![marker.clone(), overwrite.clone()],
        ] {
            assert!(
                view_at(order, at).is_empty(),
                "the delete marker is current"
            );
        }
    }

    #[test]
    fn the_view_holds_the_newest_version_at_or_before_the_time() {
        let versions = vec![
            version("a", "a1", 10, false),
            version("a", "a2", 30, false),
            version("b", "b1", 10, false),
            version("b", "b-gone", 20, true),
            version("c", "c-later", 40, false),
        ];
        let view = view_at(versions.clone(), DateTime::from_timestamp(25, 0).unwrap());
        let ids: Vec<(&str, &str)> = view
            .iter()
            .map(|(k, s)| (k.as_str(), s.version.as_str()))
            .collect();
        assert_eq!(ids, [("a", "a1")], "b was deleted at 20, c not yet written");
        let before = view_at(versions, DateTime::from_timestamp(15, 0).unwrap());
        assert_eq!(before.len(), 2, "a and b both there at 15");
    }
}
