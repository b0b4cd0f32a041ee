//! Bucket restores: every backup holding an object to restore is checked whole (stored and
//! plain SHA-256 of every part) before the first write into the target; a restore that still
//! fails midway names how many objects it wrote and lists their keys in a file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use dr_core::{BackupReader, Error, Result, VerifyLevel};
use sha2::{Digest, Sha256};

use super::backup::TAR_ARTIFACT;
use super::bucket::exact_path;
use super::bucket_meta::from_index;
use super::index::{EntryKind, FileEntry};
use super::index_stream::IndexStream;
use super::restore::SelectionCheck;
use super::tar_stream::TarStream;
use tokio::io::AsyncWriteExt;

/// Objects up to this size are buffered, checked and written with one put.
const SINGLE_PUT_BYTES: u64 = 8 << 20;

/// Restores a bucket backup into `store` under `prefix`.
pub struct BucketTarget {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    repo: dr_core::Repository,
    journal_dir: PathBuf,
}

/// What a bucket restore wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct BucketRestored {
    /// Objects written.
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Objects whose recorded metadata (Content-Type, user metadata, ...) the target store
    /// cannot hold (a local directory): their bytes were restored without it.
    pub metadata_dropped: u64,
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
            prefix: prefix.filter(|p| !p.is_empty()).map(exact_path),
            repo,
            journal_dir: std::env::temp_dir(),
        }
    }

    /// Where the list of written keys goes when a restore fails after writing some objects
    /// (the system's temporary directory by default).
    pub fn with_journal_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.journal_dir = dir.into();
        self
    }

    /// Restores the objects whose relative key matches `select` (all when empty); returns
    /// how many objects and bytes were written. Every part of every backup involved is read
    /// and checked first: a damaged backup fails before anything is written.
    ///
    /// # Errors
    /// A damaged backup (nothing written), store errors. A failure after the first object
    /// was written says how many were, and names the file listing their keys.
    pub async fn restore_objects(
        &self,
        backup: &BackupReader,
        select: &[String],
    ) -> Result<BucketRestored> {
        let holders = selected_holders(backup, select).await?;
        let mut readers = Vec::with_capacity(holders.len());
        for holder in &holders {
            let reader = self.holder(backup, holder).await?;
            check_whole(&reader).await?;
            readers.push(reader);
        }
        let mut written = Written::new().await?;
        for reader in &readers {
            if let Err(e) = self.upload_from(backup, reader, select, &mut written).await {
                return Err(self.failed_midway(backup.id(), e, written).await);
            }
        }
        Ok(BucketRestored {
            objects: written.count,
            bytes: written.bytes,
            metadata_dropped: written.metadata_dropped,
        })
    }

    async fn holder(&self, backup: &BackupReader, holder: &str) -> Result<BackupReader> {
        if holder == backup.id() {
            return Ok(backup.clone());
        }
        let selector = dr_core::BackupSelector::Id(holder.to_owned());
        self.repo
            .open_backup(&backup.manifest().source, &selector)
            .await
            .map_err(|e| {
                Error::restore("bucket", format!(
                    "backup {holder}, which holds objects of {}, cannot be read: {e}; nothing was written",
                    backup.id()
                ))
            })
    }

    /// Streams one holder's tar beside the restored backup's index (both in key order),
    /// writing the wanted objects the holder holds (each hash-checked before its upload
    /// completes); fails when the tar lacks one of them.
    async fn upload_from(
        &self,
        backup: &BackupReader,
        holder: &BackupReader,
        select: &[String],
        written: &mut Written,
    ) -> Result<()> {
        let mut index = IndexStream::open(backup)?;
        let mut tar = TarStream::new(holder.artifact(TAR_ARTIFACT)?);
        while let Some(entry) = index.next().await? {
            let name = entry.path.clone().unwrap_or_default();
            let stored = entry.stored_in.as_deref().unwrap_or(backup.id());
            if entry.kind != EntryKind::File || stored != holder.id() || !selected(select, &name) {
                continue;
            }
            let size = next_object(&mut tar, &name, holder.id()).await?;
            let key = self.key(&name)?;
            if self.upload_one(&mut tar, &key, &entry, size).await? {
                written.metadata_dropped += 1;
            }
            written.add(key.as_ref(), size).await?;
        }
        Ok(())
    }

    /// The target key: the prefix, then the key exactly as backed up (never re-encoded).
    fn key(&self, name: &str) -> Result<ObjectPath> {
        let raw = match &self.prefix {
            Some(p) => format!("{p}/{name}"),
            None => name.to_owned(),
        };
        ObjectPath::parse(&raw)
            .map_err(|e| Error::restore("bucket", format!("{raw} is not a valid object key: {e}")))
    }

    /// Writes one object: up to [`SINGLE_PUT_BYTES`] buffered, checked, then one put (a
    /// mismatch never reaches the target); larger ones by multipart upload, aborted on a
    /// mismatch. True when its recorded metadata could not be given.
    async fn upload_one(
        &self,
        tar: &mut TarStream,
        key: &ObjectPath,
        entry: &FileEntry,
        size: u64,
    ) -> Result<bool> {
        let mismatch = || {
            Error::restore(
                "bucket",
                format!("{key} does not match its SHA-256: not restored"),
            )
        };
        let mut hasher = Sha256::new();
        if size <= SINGLE_PUT_BYTES {
            let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            tar.body(size, |chunk| {
                hasher.update(chunk);
                body.extend_from_slice(chunk);
            })
            .await?;
            if entry.sha256.as_deref() != Some(hex::encode(hasher.finalize()).as_str()) {
                return Err(mismatch());
            }
            return self.put(key, PutPayload::from(body), entry).await;
        }
        let (upload, dropped) = self.start_multipart(key, entry).await?;
        let mut writer = WriteMultipart::new(upload);
        let streamed = tar
            .body(size, |chunk| {
                hasher.update(chunk);
                writer.write(chunk);
            })
            .await;
        let matched = entry.sha256.as_deref() == Some(hex::encode(hasher.finalize()).as_str());
        if streamed.is_err() || !matched {
            let _ = writer.abort().await;
            return Err(streamed.err().unwrap_or_else(mismatch));
        }
        writer
            .finish()
            .await
            .map(|_| dropped)
            .map_err(|e| Error::store(format!("writing {key}"), e))
    }

    /// One put with the object's recorded metadata. A store that cannot hold metadata (a
    /// local directory) gets the bytes without it: true then, and the caller reports it.
    async fn put(&self, key: &ObjectPath, body: PutPayload, entry: &FileEntry) -> Result<bool> {
        let mut dropped = false;
        let opts = PutOptions {
            attributes: from_index(&entry.attributes),
            ..PutOptions::default()
        };
        let result = match self.store.put_opts(key, body.clone(), opts).await {
            Err(dr_core::object_store::Error::NotImplemented { .. }) => {
                dropped = metadata_dropped(key, entry);
                self.store.put(key, body).await
            }
            other => other,
        };
        result
            .map(|_| dropped)
            .map_err(|e| Error::store(format!("writing {key}"), e))
    }

    async fn start_multipart(
        &self,
        key: &ObjectPath,
        entry: &FileEntry,
    ) -> Result<(Box<dyn dr_core::object_store::MultipartUpload>, bool)> {
        let mut dropped = false;
        let opts = PutMultipartOptions {
            attributes: from_index(&entry.attributes),
            ..PutMultipartOptions::default()
        };
        let result = match self.store.put_multipart_opts(key, opts).await {
            Err(dr_core::object_store::Error::NotImplemented { .. }) => {
                dropped = metadata_dropped(key, entry);
                self.store.put_multipart(key).await
            }
            other => other,
        };
        result
            .map(|upload| (upload, dropped))
            .map_err(|e| Error::store(format!("writing {key}"), e))
    }

    /// The error of a restore that failed after writing `written`: what failed, how many
    /// objects were written, the file listing their keys, and what to run next.
    async fn failed_midway(&self, id: &str, error: Error, written: Written) -> Error {
        if written.count == 0 {
            return Error::restore(
                "bucket",
                format!("{error}; nothing was written into the target"),
            );
        }
        let n = written.count;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let path = self
            .journal_dir
            .join(format!("dr-restore-{id}-{stamp}-written.txt"));
        let listed = match written.journal(&path).await {
            Ok(()) => format!("their keys are listed in {}", path.display()),
            Err(e) => format!("listing their keys in {} failed too ({e})", path.display()),
        };
        Error::restore(
            "bucket",
            format!(
                "{error}; {n} objects were written into the target before the failure and {listed}. \
             Run the same restore again to finish (it writes every object again); to undo, \
             delete those keys from the target (objects they replaced are gone unless the \
             bucket keeps versions)"
            ),
        )
    }
}

/// Whether `select` (all when empty) takes the key `name`.
fn selected(select: &[String], name: &str) -> bool {
    select.is_empty()
        || select
            .iter()
            .any(|s| super::restore::selects(s, name.as_bytes()))
}

/// The backups holding the selected objects of `backup` (one pass over its index); every
/// pattern of `select` must match an object.
async fn selected_holders(backup: &BackupReader, select: &[String]) -> Result<BTreeSet<String>> {
    let mut index = IndexStream::open(backup)?;
    let mut check = SelectionCheck::new(select);
    let mut holders = BTreeSet::new();
    while let Some(entry) = index.next().await? {
        if entry.kind != EntryKind::File {
            continue;
        }
        let name = entry.path.clone().unwrap_or_default();
        if check.see(name.as_bytes()) {
            let holder = entry.stored_in.as_deref().unwrap_or(backup.id());
            if !holders.contains(holder) {
                holders.insert(holder.to_owned());
            }
        }
    }
    check.finish(backup.id())?;
    Ok(holders)
}

/// Moves `tar` to the object `name` (objects before it are passed over: the tar and the
/// index are both in key order); returns its size.
async fn next_object(tar: &mut TarStream, name: &str, holder: &str) -> Result<u64> {
    while let Some((found, size)) = tar.next_header().await? {
        match found.as_str().cmp(name) {
            std::cmp::Ordering::Less => tar.skip(size).await?,
            std::cmp::Ordering::Equal => return Ok(size),
            std::cmp::Ordering::Greater => break,
        }
    }
    Err(Error::restore(
        "bucket",
        format!("backup {holder} lacks the object {name} its index names"),
    ))
}

/// Reads every part of `reader`'s backup, comparing stored and plain SHA-256s.
async fn check_whole(reader: &BackupReader) -> Result<()> {
    let report = reader.verify_objects(VerifyLevel::Checksums).await?;
    if !report.problems.is_empty() {
        return Err(Error::restore(
            "bucket",
            format!(
                "backup {} is damaged ({}); nothing was written into the target",
                reader.id(),
                report.problems_text()
            ),
        ));
    }
    if !report.decoded {
        reader.decode_all().await.map_err(|e| {
            Error::restore(
                "bucket",
                format!(
                    "backup {} is damaged ({e}); nothing was written into the target",
                    reader.id()
                ),
            )
        })?;
    }
    Ok(())
}

/// Whether `entry` had metadata to lose (logged per key; counted by the caller).
fn metadata_dropped(key: &ObjectPath, entry: &FileEntry) -> bool {
    if entry.attributes.is_empty() {
        return false;
    }
    tracing::warn!(%key, "the target store cannot hold object metadata (Content-Type, user metadata): restored without it");
    true
}

/// The objects written so far; their keys are spooled to an unlinked temporary file (a
/// million keys are not kept in memory) and copied into the journal if the restore fails.
struct Written {
    count: u64,
    bytes: u64,
    metadata_dropped: u64,
    keys: tokio::io::BufWriter<tokio::fs::File>,
}

impl Written {
    async fn new() -> Result<Self> {
        let file = super::blocking::blocking("creating the list of written keys", || {
            tempfile::tempfile()
                .map_err(|e| Error::io("creating the list of written keys (TMPDIR)", e))
        })
        .await?;
        Ok(Written {
            count: 0,
            bytes: 0,
            metadata_dropped: 0,
            keys: tokio::io::BufWriter::new(tokio::fs::File::from_std(file)),
        })
    }

    async fn add(&mut self, key: &str, size: u64) -> Result<()> {
        let io = |e| Error::io("listing the written keys (TMPDIR)", e);
        self.keys.write_all(key.as_bytes()).await.map_err(io)?;
        self.keys.write_all(b"\n").await.map_err(io)?;
        self.count += 1;
        self.bytes += size;
        Ok(())
    }

    /// Copies the written keys, one a line, into a new file readable by the owner only
    /// (keys are names).
    async fn journal(mut self, path: &Path) -> Result<()> {
        let io = |e| Error::io(format!("writing {}", path.display()), e);
        self.keys.flush().await.map_err(io)?;
        let mut spool = self.keys.into_inner().into_std().await;
        let at = path.to_owned();
        super::blocking::blocking("listing the written keys", move || {
            use std::io::Seek;
            use std::os::unix::fs::OpenOptionsExt;
            let io = |e| Error::io(format!("writing {}", at.display()), e);
            spool.rewind().map_err(io)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&at)
                .map_err(io)?;
            std::io::copy(&mut spool, &mut file).map_err(io)?;
            file.sync_all().map_err(io)
        })
        .await
    }
}
