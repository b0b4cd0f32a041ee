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

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{ObjectStore, ObjectStoreExt};
use dr_core::{
    ArtifactWriter, Backup, BackupReader, BackupWriter, Error, Result, SourceInfo, async_trait,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::backup::{FILES_KIND, INDEX_ARTIFACT, TAR_ARTIFACT};
use super::bucket_listing::{Listed, SortedListing, list_sorted};
use super::index::{EntryKind, FileEntry, FileIndex};
use super::index_stream::AsyncIndexWriter;
use super::parent::{Parent, ParentFiles, dependencies, lock_holders, note_holder};

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
    parent: Option<Parent>,
    /// The backups holding the objects of the last backup written (its dependencies).
    holders: Arc<Mutex<Option<Vec<String>>>>,
}

impl BucketSource {
    /// Every object of `store` under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Option<&str>) -> Self {
        BucketSource {
            store,
            prefix: prefix.filter(|p| !p.is_empty()).map(exact_path),
            parent: None,
            holders: Arc::default(),
        }
    }

    /// Incremental over backup `id` with `index`: objects with the same size, ETag and
    /// last-modified time are referenced, not copied again. The backup declares `id` and
    /// the backups holding those objects through [`Backup::depends_on`].
    /// [`BucketSource::with_parent_backup`] does the same without the whole index in memory.
    pub fn with_parent(mut self, id: impl Into<String>, index: FileIndex) -> Self {
        self.parent = Some(Parent::Loaded {
            id: id.into(),
            index: Arc::new(index),
        });
        self
    }

    /// Incremental over the backup `parent` reads, whose index is read entry by entry
    /// beside the listing (both in key order). A damaged parent index fails the backup.
    pub fn with_parent_backup(mut self, parent: BackupReader) -> Self {
        self.parent = Some(Parent::Streamed { reader: parent });
        self
    }
}

/// `location` relative to `prefix`.
fn relative_key(prefix: Option<&ObjectPath>, location: &str) -> String {
    match prefix {
        Some(p) => location
            .strip_prefix(p.as_ref())
            .map(|r| r.trim_start_matches('/'))
            .unwrap_or(location)
            .to_owned(),
        None => location.to_owned(),
    }
}

#[async_trait]
impl Backup for BucketSource {
    fn kind(&self) -> &'static str {
        FILES_KIND
    }

    /// After a backup: the backups holding its unchanged objects, then its parent.
    fn depends_on(&self) -> Vec<String> {
        dependencies(self.parent.as_ref(), &self.holders)
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let listing = list_sorted(&self.store, self.prefix.as_ref()).await?;
        let parent = ParentFiles::open(self.parent.as_ref(), |e: &FileEntry| {
            e.path.clone().unwrap_or_default()
        })?;
        let planned = plan(listing, parent, self.prefix.clone(), out.id().to_owned());
        let mut tar = out.artifact(TAR_ARTIFACT)?;
        let mut index = AsyncIndexWriter::start(out.artifact(INDEX_ARTIFACT)?);
        let mut tally = Tally::new(out.id());
        self.store_objects(&mut tar, &mut index, planned, &mut tally)
            .await?;
        let vanished = self.confirm_vanished(&tally.not_found).await?;
        let io = |e| Error::from_io("writing the tar", e);
        tar.write_all(&[0u8; 1024]).await.map_err(io)?;
        tar.finish().await?;
        index.end(&vanished).await?.finish().await?;
        *lock_holders(&self.holders) =
            Some(std::mem::take(&mut tally.holders).into_iter().collect());
        Ok(self.info(&tally, vanished.len()))
    }
}

/// One listed object, compared with the parent: referenced, or to fetch.
struct Planned {
    entry: FileEntry,
    location: ObjectPath,
    fetch: bool,
}

/// Reads the listing in order on the blocking pool, each object compared with the
/// parent's entry for its key (merge-joined: both in key order).
fn plan(
    listing: SortedListing,
    mut parent: ParentFiles<String>,
    prefix: Option<ObjectPath>,
    id: String,
) -> futures::stream::BoxStream<'static, Result<Planned>> {
    let (send, receive) = tokio::sync::mpsc::channel::<Result<Planned>>(1024);
    tokio::task::spawn_blocking(move || {
        for listed in listing {
            let planned = listed.and_then(|listed| {
                let location = exact_path(&listed.key);
                let mut entry = object_entry(&listed, &relative_key(prefix.as_ref(), &listed.key));
                let earlier = parent.get(entry.path.as_ref().unwrap_or(&String::new()))?;
                let fetch = match earlier {
                    Some(earlier) if same_object(&entry, &earlier) => {
                        entry.sha256 = earlier.sha256;
                        entry.attributes = earlier.attributes;
                        entry.stored_in = earlier.stored_in;
                        false
                    }
                    _ => {
                        entry.stored_in = Some(id.clone());
                        true
                    }
                };
                Ok(Planned {
                    entry,
                    location,
                    fetch,
                })
            });
            let failed = planned.is_err();
            if send.blocking_send(planned).is_err() || failed {
                return;
            }
        }
    });
    futures::stream::unfold(receive, |mut receive| async move {
        receive.recv().await.map(|item| (item, receive))
    })
    .boxed()
}

/// What the objects written so far add up to.
struct Tally {
    id: String,
    objects: u64,
    bytes: u64,
    stored_files: u64,
    stored_bytes: u64,
    all_have_etags: bool,
    holders: BTreeSet<String>,
    /// Objects the store no longer had when read: (whole key, relative key).
    not_found: Vec<(ObjectPath, String)>,
}

impl Tally {
    fn new(id: &str) -> Self {
        Tally {
            id: id.to_owned(),
            objects: 0,
            bytes: 0,
            stored_files: 0,
            stored_bytes: 0,
            all_have_etags: true,
            holders: BTreeSet::new(),
            not_found: Vec::new(),
        }
    }

    fn count(&mut self, entry: &FileEntry) {
        self.objects += 1;
        self.bytes += entry.size;
        self.all_have_etags &= entry.etag.is_some();
        note_holder(&mut self.holders, entry, &self.id);
    }
}

/// A planned object, with its body when it was read ahead.
enum Fetched {
    /// Referenced from an earlier backup.
    Unchanged,
    /// Read whole, ahead of the tar.
    Whole(dr_core::object_store::Result<(dr_core::object_store::Attributes, Body)>),
    /// Large: opened when its turn comes.
    Later,
}

impl BucketSource {
    /// Streams the changed objects into the tar in key order, a few fetched ahead, and every
    /// object's entry into the index.
    async fn store_objects(
        &self,
        tar: &mut ArtifactWriter,
        index: &mut AsyncIndexWriter,
        planned: futures::stream::BoxStream<'static, Result<Planned>>,
        tally: &mut Tally,
    ) -> Result<()> {
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
        let mut fetches = planned
            .map(move |planned| {
                let (store, budget) = (store.clone(), budget.clone());
                async move {
                    let planned = match planned {
                        Ok(planned) => planned,
                        Err(e) => return (Err(e), Fetched::Unchanged, None),
                    };
                    let size = planned.entry.size;
                    if !planned.fetch {
                        return (Ok(planned), Fetched::Unchanged, None);
                    }
                    if size > SMALL_OBJECT {
                        return (Ok(planned), Fetched::Later, None);
                    }
                    let held = budget.acquire_many_owned(budget_kib(size)).await.ok();
                    let whole = read_whole(store.as_ref(), &planned.location).await;
                    (Ok(planned), Fetched::Whole(whole), held)
                }
            })
            .buffered(SMALL_OBJECTS_AT_ONCE);
        while let Some((planned, fetched, _held)) = fetches.next().await {
            let Planned {
                mut entry,
                location,
                ..
            } = planned?;
            let opened = match fetched {
                Fetched::Unchanged => {
                    tally.count(&entry);
                    index.push(&entry).await?;
                    continue;
                }
                Fetched::Whole(whole) => whole,
                Fetched::Later => self.store.get(&location).await.map(|result| {
                    let attributes = result.attributes.clone();
                    (attributes, result.into_stream())
                }),
            };
            let (attributes, body) = match opened {
                Ok(opened) => opened,
                Err(dr_core::object_store::Error::NotFound { .. }) => {
                    tally
                        .not_found
                        .push((location, entry.path.clone().unwrap_or_default()));
                    continue;
                }
                Err(e) => return Err(Error::store("reading an object of the bucket", e)),
            };
            entry.attributes = super::bucket_meta::to_index(&attributes);
            entry.sha256 = Some(append_object(tar, &entry, body).await?);
            tally.stored_files += 1;
            tally.stored_bytes += entry.size;
            tally.count(&entry);
            index.push(&entry).await?;
        }
        Ok(())
    }

    /// Objects the store answered "not found" for are vanished only when a second listing
    /// no longer shows them; returns their relative keys. One still listed is an object
    /// object_store lists under a name it cannot read back (a key beginning or ending with
    /// `/`): the backup fails.
    async fn confirm_vanished(&self, not_found: &[(ObjectPath, String)]) -> Result<Vec<String>> {
        if not_found.is_empty() {
            return Ok(Vec::new());
        }
        let missing: HashSet<&ObjectPath> = not_found.iter().map(|(l, _)| l).collect();
        let mut listing = self.store.list(self.prefix.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(listing_error)?;
            if missing.contains(&meta.location) {
                return Err(Error::backend(
                    "bucket",
                    "backup",
                    format!(
                        "The bucket lists an object as `{}` but reading `{0}` finds nothing: its real key \
                 most likely begins or ends with `/` (a folder marker such as `{0}/`), and \
                 object_store, the library dr reads buckets with, cannot address such keys. \
                 Nothing was committed: rename or delete that object (or back up a prefix \
                 without it) and run the backup again",
                        meta.location
                    ),
                ));
            }
        }
        Ok(not_found.iter().map(|(_, key)| key.clone()).collect())
    }

    /// The manifest's facts: counts and how changes are detected, never a key.
    fn info(&self, tally: &Tally, vanished: usize) -> SourceInfo {
        let mut info = SourceInfo::new();
        info.insert("objects".into(), tally.objects.into());
        info.insert("files".into(), tally.objects.into());
        info.insert("bytes".into(), tally.bytes.into());
        info.insert("stored_files".into(), tally.stored_files.into());
        info.insert("stored_bytes".into(), tally.stored_bytes.into());
        let detection = if tally.all_have_etags {
            "size, ETag and last-modified time"
        } else {
            "size, ETag and last-modified time (size and time for objects without an ETag)"
        };
        info.insert("change_detection".into(), detection.into());
        if let Some(parent) = &self.parent {
            info.insert("parent".into(), parent.id().into());
        }
        if vanished > 0 {
            info.insert("vanished_during_backup".into(), (vanished as u64).into());
        }
        info
    }
}

/// `raw` as a path unchanged when object_store can hold it (`Path::from` would
/// percent-encode `%`, `#` and others, naming another key).
pub(crate) fn exact_path(raw: &str) -> ObjectPath {
    ObjectPath::parse(raw).unwrap_or_else(|_| ObjectPath::from(raw))
}

pub(crate) fn listing_error(e: dr_core::object_store::Error) -> Error {
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

fn object_entry(listed: &Listed, relative: &str) -> FileEntry {
    let mut entry = FileEntry::empty(EntryKind::File);
    entry.path = Some(relative.to_owned());
    entry.size = listed.size;
    entry.mtime_ns = listed.mtime_ns;
    entry.mode = 0o644;
    entry.etag = listed.etag.clone();
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
