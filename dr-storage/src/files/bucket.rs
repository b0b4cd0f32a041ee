//! Buckets: an object-store prefix (S3/MinIO, GCS, Azure, a local directory) backed up into
//! the repository as a tar of its objects plus the same per-file index as directories,
//! with each object's metadata (Content-Type and the other standard headers, user metadata),
//! incrementally by size, ETag and last-modified time (size and time for objects without an
//! ETag; a local
//! directory's ETag is object_store's inode-size-mtime, so there a same-size rewrite with its
//! mtime put back is missed: back such trees up as a directory source).
//!
//! Keys are taken exactly as object_store lists them and written back exactly so. Keys it
//! cannot address (an empty segment `a//b`, a `.` or `..` segment, a control character, a
//! leading or trailing `/`) fail the backup with an error naming the key: nothing is left
//! out silently. An object is "vanished" only when a second listing no longer shows it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use dr_core::{ArtifactWriter, Backup, BackupWriter, Error, Result, SourceInfo, async_trait};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::backup::{FILES_KIND, TAR_ARTIFACT, write_index};
use super::index::{EntryKind, FileEntry, FileIndex};

/// Objects of at most this size are read whole ahead of the tar writer.
const SMALL_OBJECT: u64 = 1024 * 1024;

/// Small objects read at most at once: against a store 50 ms away, 256 objects of 64 KiB in
/// flight keep about 300 MB/s coming.
const SMALL_OBJECTS_AT_ONCE: usize = 256;

/// Bytes of small objects held at most at once, read ahead of the tar writer (in KiB, the
/// unit of the semaphore's permits).
const SMALL_OBJECTS_BUDGET_KIB: u32 = 32 * 1024;

/// The permits a small object of `size` bytes holds while read and until written.
fn budget_kib(size: u64) -> u32 {
    u32::try_from(size.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, SMALL_OBJECTS_BUDGET_KIB)
}

/// An object's body as one chunk, with its attributes.
type Body = futures::stream::BoxStream<'static, dr_core::object_store::Result<bytes::Bytes>>;

async fn read_whole(
    store: &dyn ObjectStore,
    location: &ObjectPath,
) -> dr_core::object_store::Result<(dr_core::object_store::Attributes, Body)> {
    let result = store.get(location).await?;
    let attributes = result.attributes.clone();
    let bytes = result.bytes().await?;
    Ok((
        attributes,
        futures::stream::once(async move { Ok(bytes) }).boxed(),
    ))
}

/// A bucket or prefix to back up.
#[derive(Clone)]
pub struct BucketSource {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    parent: Option<(String, FileIndex)>,
}

impl BucketSource {
    /// Every object of `store` under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Option<&str>) -> Self {
        BucketSource {
            store,
            prefix: prefix.filter(|p| !p.is_empty()).map(exact_path),
            parent: None,
        }
    }

    /// Incremental over backup `id` with `index`: objects with the same size, ETag and
    /// last-modified time are referenced, not copied again. The backup declares `id` and
    /// the backups holding those objects through [`Backup::depends_on`].
    pub fn with_parent(mut self, id: impl Into<String>, index: FileIndex) -> Self {
        self.parent = Some((id.into(), index));
        self
    }

    fn relative(&self, location: &ObjectPath) -> String {
        let full = location.as_ref();
        match &self.prefix {
            Some(p) => full
                .strip_prefix(p.as_ref())
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(full)
                .to_owned(),
            None => full.to_owned(),
        }
    }
}

#[async_trait]
impl Backup for BucketSource {
    fn kind(&self) -> &'static str {
        FILES_KIND
    }

    fn depends_on(&self) -> Vec<String> {
        super::backup::parent_dependencies(
            self.parent.as_ref().map(|(id, index)| (id.as_str(), index)),
        )
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let objects = list_objects(&self.store, self.prefix.as_ref()).await?;
        let parent: BTreeMap<String, FileEntry> = self
            .parent
            .iter()
            .flat_map(|(_, index)| index.entries.iter())
            .filter_map(|e| e.path.clone().map(|p| (p, e.clone())))
            .collect();
        let id = out.id().to_owned();
        let mut entries = Vec::with_capacity(objects.len());
        let mut to_fetch = Vec::new();
        for meta in &objects {
            let mut entry = object_entry(meta, &self.relative(&meta.location));
            match entry.path.as_ref().and_then(|p| parent.get(p)) {
                Some(earlier) if same_object(&entry, earlier) => {
                    entry.sha256 = earlier.sha256.clone();
                    entry.attributes = earlier.attributes.clone();
                    entry.stored_in = earlier.stored_in.clone();
                }
                _ => {
                    entry.stored_in = Some(id.clone());
                    to_fetch.push(entries.len());
                }
            }
            entries.push(entry);
        }
        let mut tar = out.artifact(TAR_ARTIFACT)?;
        let (stored_bytes, not_found) = self
            .store_objects(&mut tar, &objects, &mut entries, &to_fetch)
            .await?;
        let vanished = self.confirm_vanished(&objects, &not_found).await?;
        let io = |e| Error::from_io("writing the tar", e);
        tar.write_all(&[0u8; 1024]).await.map_err(io)?;
        tar.finish().await?;
        let vanished: Vec<String> = vanished
            .iter()
            .filter_map(|&i| entries[i].path.clone())
            .collect();
        entries.retain(|e| e.sha256.is_some());
        let index = FileIndex {
            version: 1,
            entries,
            vanished,
            root: None,
        };
        let index = write_index(out, index).await?;
        let stored_files = (to_fetch.len() - index.vanished.len()) as u64;
        Ok(self.info(&index, stored_files, stored_bytes))
    }
}

impl BucketSource {
    /// Streams the objects at `to_fetch` into the tar, a few fetched ahead; returns the bytes
    /// stored and which objects the store no longer had.
    async fn store_objects(
        &self,
        tar: &mut ArtifactWriter,
        objects: &[ObjectMeta],
        entries: &mut [FileEntry],
        to_fetch: &[usize],
    ) -> Result<(u64, Vec<usize>)> {
        let jobs: Vec<(usize, ObjectPath, u64)> = to_fetch
            .iter()
            .map(|&i| (i, objects[i].location.clone(), objects[i].size))
            .collect();
        let store = self.store.clone();
        // Small objects are read whole, many at once: against a far store each costs a round
        // trip, and one after the other a bucket of small objects would take a round trip
        // each. What they hold is bounded by a budget of bytes (the semaphore is fair and
        // its permits are asked for in the tar's order, so the next object to write always
        // gets its permits first). A large one is opened only when its turn comes: its body
        // streams into the tar, and a response left waiting behind others could time out.
        let budget = Arc::new(tokio::sync::Semaphore::new(
            SMALL_OBJECTS_BUDGET_KIB as usize,
        ));
        let mut fetches = futures::stream::iter(jobs)
            .map(move |(i, location, size)| {
                let (store, budget) = (store.clone(), budget.clone());
                async move {
                    if size > SMALL_OBJECT {
                        return (i, location, Ok(None), None);
                    }
                    let held = budget.acquire_many_owned(budget_kib(size)).await.ok();
                    let whole = read_whole(store.as_ref(), &location).await.map(Some);
                    (i, location, whole, held)
                }
            })
            .buffered(SMALL_OBJECTS_AT_ONCE);
        let mut stored_bytes = 0u64;
        let mut not_found = Vec::new();
        while let Some((i, location, fetched, _held)) = fetches.next().await {
            let opened = match fetched {
                Ok(Some(whole)) => Ok(whole),
                Ok(None) => self.store.get(&location).await.map(|result| {
                    let attributes = result.attributes.clone();
                    (attributes, result.into_stream())
                }),
                Err(e) => Err(e),
            };
            let (attributes, body) = match opened {
                Ok(opened) => opened,
                Err(dr_core::object_store::Error::NotFound { .. }) => {
                    not_found.push(i);
                    continue;
                }
                Err(e) => return Err(Error::store("reading an object of the bucket", e)),
            };
            let entry = &mut entries[i];
            entry.attributes = super::bucket_meta::to_index(&attributes);
            let sha = append_object(tar, entry, body).await?;
            stored_bytes += entry.size;
            entry.sha256 = Some(sha);
        }
        Ok((stored_bytes, not_found))
    }

    /// Objects the store answered "not found" for are vanished only when a second listing
    /// no longer shows them. One still listed is an object object_store lists under a name
    /// it cannot read back (a key beginning or ending with `/`): the backup fails.
    async fn confirm_vanished(
        &self,
        objects: &[ObjectMeta],
        not_found: &[usize],
    ) -> Result<Vec<usize>> {
        if not_found.is_empty() {
            return Ok(Vec::new());
        }
        let now: BTreeSet<ObjectPath> = list_objects(&self.store, self.prefix.as_ref())
            .await?
            .into_iter()
            .map(|m| m.location)
            .collect();
        if let Some(&i) = not_found
            .iter()
            .find(|&&i| now.contains(&objects[i].location))
        {
            return Err(Error::backend(
                "bucket",
                "backup",
                format!(
                    "The bucket lists an object as `{}` but reading `{0}` finds nothing: its real key \
                 most likely begins or ends with `/` (a folder marker such as `{0}/`), and \
                 object_store, the library dr reads buckets with, cannot address such keys. \
                 Nothing was committed: rename or delete that object (or back up a prefix \
                 without it) and run the backup again",
                    objects[i].location
                ),
            ));
        }
        Ok(not_found.to_vec())
    }

    /// The manifest's facts: counts and how changes are detected, never a key.
    fn info(&self, index: &FileIndex, stored_files: u64, stored_bytes: u64) -> SourceInfo {
        let mut info = SourceInfo::new();
        let count = index.entries.len() as u64;
        info.insert("objects".into(), count.into());
        info.insert("files".into(), count.into());
        info.insert(
            "bytes".into(),
            index.entries.iter().map(|e| e.size).sum::<u64>().into(),
        );
        info.insert("stored_files".into(), stored_files.into());
        info.insert("stored_bytes".into(), stored_bytes.into());
        let by_etag = index.entries.iter().all(|e| e.etag.is_some());
        let detection = if by_etag {
            "size, ETag and last-modified time"
        } else {
            "size, ETag and last-modified time (size and time for objects without an ETag)"
        };
        info.insert("change_detection".into(), detection.into());
        if let Some((id, _)) = &self.parent {
            info.insert("parent".into(), id.clone().into());
        }
        if !index.vanished.is_empty() {
            info.insert(
                "vanished_during_backup".into(),
                (index.vanished.len() as u64).into(),
            );
        }
        info
    }
}

/// Every object under `prefix`, sorted by key. Fails clearly on keys object_store cannot
/// represent (it refuses a listing page holding one) and on two objects it lists under one
/// name (keys differing only by a leading or trailing `/`).
async fn list_objects(
    store: &Arc<dyn ObjectStore>,
    prefix: Option<&ObjectPath>,
) -> Result<Vec<ObjectMeta>> {
    let mut objects: Vec<ObjectMeta> = store
        .list(prefix)
        .try_collect()
        .await
        .map_err(listing_error)?;
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    if let Some(pair) = objects.windows(2).find(|w| w[0].location == w[1].location) {
        return Err(Error::backend(
            "bucket",
            "backup",
            format!(
                "The bucket lists two objects as `{}`: their real keys differ by a leading or \
             trailing `/`, which object_store, the library dr reads buckets with, drops. \
             Nothing was committed: rename one of them (or back up a prefix without them) and \
             run the backup again",
                pair[0].location
            ),
        ));
    }
    Ok(objects)
}

/// `raw` as a path unchanged when object_store can hold it (`Path::from` would
/// percent-encode `%`, `#` and others, naming another key).
pub(crate) fn exact_path(raw: &str) -> ObjectPath {
    ObjectPath::parse(raw).unwrap_or_else(|_| ObjectPath::from(raw))
}

fn listing_error(e: dr_core::object_store::Error) -> Error {
    match e {
        dr_core::object_store::Error::InvalidPath { source } => Error::backend(
            "bucket",
            "listing the bucket",
            format!(
                "The bucket holds an object whose key object_store, the library dr reads buckets \
             with, cannot represent ({source}): keys with an empty segment (`a//b`), a `.` or \
             `..` segment, or a control character cannot be backed up. Nothing was committed: \
             rename those objects (or back up a prefix without them) and run the backup again"
            ),
        ),
        e => Error::store("listing the bucket", e),
    }
}

fn object_entry(meta: &ObjectMeta, relative: &str) -> FileEntry {
    let mut entry = FileEntry::empty(EntryKind::File);
    entry.path = Some(relative.to_owned());
    entry.size = meta.size;
    entry.mtime_ns = i128::from(meta.last_modified.timestamp()) * 1_000_000_000
        + i128::from(meta.last_modified.timestamp_subsec_nanos());
    entry.mode = 0o644;
    entry.etag = meta.e_tag.clone();
    entry
}

/// Same size, the same last-modified time, and the same ETag when the store has them. The
/// time matters even with an ETag: a copy in place that replaces an object's metadata keeps
/// its ETag (the MD5 of the same bytes) but not its time.
fn same_object(now: &FileEntry, earlier: &FileEntry) -> bool {
    now.size == earlier.size
        && earlier.sha256.is_some()
        && earlier.stored_in.is_some()
        && now.mtime_ns == earlier.mtime_ns
        && match (&now.etag, &earlier.etag) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

/// One tar entry: header (GNU long name when needed), the body as it streams, padding.
async fn append_object(
    tar: &mut ArtifactWriter,
    entry: &FileEntry,
    mut body: Body,
) -> Result<String> {
    let io = |e| Error::from_io("writing the tar", e);
    let name = entry.path.clone().unwrap_or_default();
    let mut header = tar::Header::new_gnu();
    header.set_size(entry.size);
    header.set_mode(entry.mode);
    header.set_mtime(u64::try_from(entry.mtime_ns / 1_000_000_000).unwrap_or(0));
    header.set_entry_type(tar::EntryType::Regular);
    if name.len() > 99 {
        let mut long = tar::Header::new_gnu();
        long.set_entry_type(tar::EntryType::GNULongName);
        if let Some(gnu) = long.as_gnu_mut() {
            gnu.name[..13].copy_from_slice(b"././@LongLink");
        }
        long.set_size(name.len() as u64 + 1);
        long.set_cksum();
        tar.write_all(long.as_bytes()).await.map_err(io)?;
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        data.resize(data.len().div_ceil(512) * 512, 0);
        tar.write_all(&data).await.map_err(io)?;
        header.as_old_mut().name[..99].copy_from_slice(&name.as_bytes()[..99]);
    } else {
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    }
    header.set_cksum();
    tar.write_all(header.as_bytes()).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::store(format!("reading {name}"), e))?;
        hasher.update(&chunk);
        written += chunk.len() as u64;
        tar.write_all(&chunk).await.map_err(io)?;
    }
    if written != entry.size {
        return Err(Error::backend(
            "bucket",
            "backup",
            format!(
                "{name} changed while it was backed up ({} bytes listed, {written} read): run the backup again",
                entry.size
            ),
        ));
    }
    let padding = (512 - (written % 512) as usize) % 512;
    tar.write_all(&vec![0u8; padding]).await.map_err(io)?;
    Ok(hex::encode(hasher.finalize()))
}
