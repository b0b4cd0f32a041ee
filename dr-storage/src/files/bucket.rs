//! Buckets: an object-store prefix (S3/MinIO, GCS, Azure, a local directory) backed up into
//! the repository as a tar of its objects plus the same per-file index as directories,
//! incrementally by size and ETag (or last-modified); restored into a bucket (the same or
//! another, a prefix or one object) with every object checked against its SHA-256.

use std::collections::BTreeMap;
use std::sync::Arc;

use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, WriteMultipart};
use dr_core::{
    ArtifactWriter, Backup, BackupReader, BackupWriter, Error, Result, SourceInfo, async_trait,
};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::backup::{FILES_KIND, TAR_ARTIFACT, write_index};
use super::index::{EntryKind, FileEntry, FileIndex};
use super::tar_stream::TarStream;

/// Objects fetched at once.
const CONCURRENCY: usize = 4;

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
            prefix: prefix.filter(|p| !p.is_empty()).map(ObjectPath::from),
            parent: None,
        }
    }

    /// Incremental over backup `id` with `index`: objects with the same size and ETag (or
    /// last-modified time, for stores without ETags) are referenced, not copied again.
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

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut objects: Vec<ObjectMeta> = self
            .store
            .list(self.prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| Error::store("listing the bucket", e))?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        let parent: BTreeMap<String, FileEntry> = self
            .parent
            .iter()
            .flat_map(|(_, index)| index.entries.iter())
            .filter_map(|e| e.path.clone().map(|p| (p, e.clone())))
            .collect();
        let id = out.id().to_owned();
        let mut tar = out.artifact(TAR_ARTIFACT)?;
        let mut entries = Vec::with_capacity(objects.len());
        let mut to_fetch = Vec::new();
        for meta in &objects {
            let mut entry = object_entry(meta, &self.relative(&meta.location));
            match entry.path.as_ref().and_then(|p| parent.get(p)) {
                Some(earlier) if same_object(&entry, earlier) => {
                    entry.sha256 = earlier.sha256.clone();
                    entry.stored_in = earlier.stored_in.clone();
                }
                _ => {
                    entry.stored_in = Some(id.clone());
                    to_fetch.push(entries.len());
                }
            }
            entries.push(entry);
        }
        // Fetch a few objects ahead; bodies are streamed into the tar one after another.
        let jobs: Vec<(usize, ObjectPath)> = to_fetch
            .iter()
            .map(|&i| (i, objects[i].location.clone()))
            .collect();
        let store = self.store.clone();
        let mut fetches = futures::stream::iter(jobs)
            .map(move |(i, location): (usize, ObjectPath)| {
                let store = store.clone();
                async move { (i, store.get(&location).await) }
            })
            .buffered(CONCURRENCY);
        let mut stored_bytes = 0u64;
        let mut vanished = Vec::new();
        while let Some((i, fetched)) = fetches.next().await {
            let result = match fetched {
                Ok(result) => result,
                // Deleted since the listing: not part of this backup.
                Err(dr_core::object_store::Error::NotFound { .. }) => {
                    vanished.push(i);
                    continue;
                }
                Err(e) => return Err(Error::store("reading an object of the bucket", e)),
            };
            let entry = &mut entries[i];
            let sha = append_object(&mut tar, entry, result.into_stream()).await?;
            stored_bytes += entry.size;
            entry.sha256 = Some(sha);
        }
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
        };
        write_index(out, &index).await?;
        let mut info = SourceInfo::new();
        info.insert("objects".into(), (index.entries.len() as u64).into());
        info.insert("files".into(), (index.entries.len() as u64).into());
        info.insert(
            "bytes".into(),
            index.entries.iter().map(|e| e.size).sum::<u64>().into(),
        );
        info.insert("stored_files".into(), (to_fetch.len() as u64).into());
        info.insert("stored_bytes".into(), stored_bytes.into());
        if let Some((id, _)) = &self.parent {
            info.insert("parent".into(), id.clone().into());
        }
        if !vanished.is_empty() {
            info.insert("vanished_during_backup".into(), vanished.into());
        }
        Ok(info)
    }
}

fn object_entry(meta: &ObjectMeta, relative: &str) -> FileEntry {
    FileEntry {
        path: Some(relative.to_owned()),
        path_hex: None,
        kind: EntryKind::File,
        size: meta.size,
        mtime_ns: i128::from(meta.last_modified.timestamp()) * 1_000_000_000
            + i128::from(meta.last_modified.timestamp_subsec_nanos()),
        mode: 0o644,
        uid: None,
        gid: None,
        inode: 0,
        sha256: None,
        target: None,
        etag: meta.e_tag.clone(),
        stored_in: None,
        changed_during_backup: false,
    }
}

/// Same size, and the same ETag, or the same time when the store has no ETags.
fn same_object(now: &FileEntry, earlier: &FileEntry) -> bool {
    now.size == earlier.size
        && earlier.sha256.is_some()
        && earlier.stored_in.is_some()
        && match (&now.etag, &earlier.etag) {
            (Some(a), Some(b)) => a == b,
            _ => now.mtime_ns == earlier.mtime_ns,
        }
}

/// One tar entry: header (GNU long name when needed), the body as it streams, padding.
async fn append_object(
    tar: &mut ArtifactWriter,
    entry: &FileEntry,
    mut body: futures::stream::BoxStream<'static, dr_core::object_store::Result<bytes::Bytes>>,
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
        return Err(Error::Source(format!(
            "{name} changed while it was backed up ({} bytes listed, {written} read): run the backup again",
            entry.size
        )));
    }
    let padding = (512 - (written % 512) as usize) % 512;
    tar.write_all(&vec![0u8; padding]).await.map_err(io)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Restores a bucket backup into `store` under `prefix`.
pub struct BucketTarget {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    repo: dr_core::Repository,
}

impl BucketTarget {
    /// Objects go to `store` under `prefix`; `repo` reaches earlier backups.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: Option<&str>,
        repo: dr_core::Repository,
    ) -> Self {
        BucketTarget {
            store,
            prefix: prefix.filter(|p| !p.is_empty()).map(ObjectPath::from),
            repo,
        }
    }

    /// Restores the objects whose relative key matches `select` (all when empty); returns
    /// how many objects and bytes were written.
    ///
    /// # Errors
    /// A damaged backup, an object whose SHA-256 does not match (its upload is aborted),
    /// store errors.
    pub async fn restore_objects(
        &self,
        backup: &BackupReader,
        select: &[String],
    ) -> Result<(u64, u64)> {
        let index = super::restore::read_index(backup).await?;
        let wanted: Vec<&FileEntry> = index
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .filter(|e| {
                let p = e.path.clone().unwrap_or_default();
                select.is_empty()
                    || select.iter().any(|s| {
                        super::walk::glob_match(s.as_bytes(), p.as_bytes())
                            || p.starts_with(&format!("{}/", s.trim_end_matches('/')))
                    })
            })
            .collect();
        let mut by_holder: BTreeMap<String, BTreeMap<String, &FileEntry>> = BTreeMap::new();
        for e in wanted {
            let holder = e
                .stored_in
                .clone()
                .unwrap_or_else(|| backup.id().to_owned());
            by_holder
                .entry(holder)
                .or_default()
                .insert(e.path.clone().unwrap_or_default(), e);
        }
        let (mut objects, mut bytes) = (0, 0);
        for (holder, entries) in by_holder {
            let reader = if holder == backup.id() {
                backup.clone()
            } else {
                let selector = dr_core::BackupSelector::Id(holder.clone());
                self.repo
                    .open_backup(&backup.manifest().source, &selector)
                    .await?
            };
            let (n, b) = self.upload_from(&reader, &entries).await?;
            if n != entries.len() as u64 {
                return Err(Error::Restore(format!(
                    "backup {holder} holds {n} of the {} objects its index names",
                    entries.len()
                )));
            }
            objects += n;
            bytes += b;
        }
        Ok((objects, bytes))
    }

    async fn upload_from(
        &self,
        reader: &BackupReader,
        entries: &BTreeMap<String, &FileEntry>,
    ) -> Result<(u64, u64)> {
        let mut tar = TarStream::new(reader.artifact(TAR_ARTIFACT)?);
        let (mut objects, mut bytes) = (0, 0);
        while let Some((name, size)) = tar.next_header().await? {
            let Some(entry) = entries.get(&name) else {
                tar.skip(size).await?;
                continue;
            };
            // Index keys are object_store paths already (encoded where it encodes).
            let raw = match &self.prefix {
                Some(p) => format!("{p}/{name}"),
                None => name.clone(),
            };
            let key = ObjectPath::parse(&raw)
                .map_err(|e| Error::Restore(format!("{raw} is not a valid object key: {e}")))?;
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| Error::store(format!("writing {key}"), e))?;
            let mut writer = WriteMultipart::new(upload);
            let mut hasher = Sha256::new();
            tar.body(size, |chunk| {
                hasher.update(chunk);
                writer.write(chunk);
            })
            .await?;
            let actual = hex::encode(hasher.finalize());
            if entry.sha256.as_deref() != Some(actual.as_str()) {
                let _ = writer.abort().await;
                return Err(Error::Restore(format!(
                    "{name} does not match its SHA-256: not restored"
                )));
            }
            writer
                .finish()
                .await
                .map_err(|e| Error::store(format!("writing {key}"), e))?;
            objects += 1;
            bytes += size;
        }
        Ok((objects, bytes))
    }
}
