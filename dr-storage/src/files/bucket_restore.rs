//! Bucket restores: every backup holding an object to restore is checked whole (stored and
//! plain SHA-256 of every part) before the first write into the target; a restore that still
//! fails midway names how many objects it wrote and lists their keys in a file.

use std::collections::BTreeMap;
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
use super::tar_stream::TarStream;

/// Objects up to this size are buffered, checked and written with one put.
const SINGLE_PUT_BYTES: u64 = 8 << 20;

/// Index entries to restore, by relative key, grouped by the backup whose tar holds them.
type ByHolder<'a> = BTreeMap<String, BTreeMap<String, &'a FileEntry>>;

/// Restores a bucket backup into `store` under `prefix`.
pub struct BucketTarget {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    repo: dr_core::Repository,
    journal_dir: PathBuf,
}

/// The objects written so far.
#[derive(Default)]
struct Written {
    keys: Vec<String>,
    bytes: u64,
    metadata_dropped: u64,
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
        let index = super::restore::read_index(backup).await?;
        let keys: Vec<Vec<u8>> = index
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.path.clone().unwrap_or_default().into_bytes())
            .collect();
        super::restore::require_matches(select, &keys, backup.id())?;
        let by_holder = select_entries(&index.entries, select, backup.id());
        let mut readers = Vec::with_capacity(by_holder.len());
        for holder in by_holder.keys() {
            let reader = self.holder(backup, holder).await?;
            check_whole(&reader).await?;
            readers.push(reader);
        }
        let mut written = Written::default();
        for (reader, entries) in readers.iter().zip(by_holder.values()) {
            if let Err(e) = self.upload_from(reader, entries, &mut written).await {
                return Err(self.failed_midway(backup.id(), e, &written).await);
            }
        }
        Ok(BucketRestored {
            objects: written.keys.len() as u64,
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

    /// Streams one backup's tar, writing the wanted objects (each hash-checked before its
    /// upload completes); fails when the tar lacks one of them.
    async fn upload_from(
        &self,
        reader: &BackupReader,
        entries: &BTreeMap<String, &FileEntry>,
        written: &mut Written,
    ) -> Result<()> {
        let mut tar = TarStream::new(reader.artifact(TAR_ARTIFACT)?);
        let mut found = 0usize;
        while let Some((name, size)) = tar.next_header().await? {
            let Some(entry) = entries.get(&name) else {
                tar.skip(size).await?;
                continue;
            };
            let key = self.key(&name)?;
            if self.upload_one(&mut tar, &key, entry, size).await? {
                written.metadata_dropped += 1;
            }
            written.keys.push(key.to_string());
            written.bytes += size;
            found += 1;
        }
        if found != entries.len() {
            return Err(Error::restore(
                "bucket",
                format!(
                    "backup {} holds {found} of the {} objects its index names",
                    reader.id(),
                    entries.len()
                ),
            ));
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
    async fn failed_midway(&self, id: &str, error: Error, written: &Written) -> Error {
        if written.keys.is_empty() {
            return Error::restore(
                "bucket",
                format!("{error}; nothing was written into the target"),
            );
        }
        let n = written.keys.len();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let path = self
            .journal_dir
            .join(format!("dr-restore-{id}-{stamp}-written.txt"));
        let (at, keys) = (path.clone(), written.keys.clone());
        let journal = super::blocking::blocking("listing the written keys", move || {
            write_journal(&at, &keys).map_err(|e| Error::io(format!("writing {}", at.display()), e))
        });
        let listed = match journal.await {
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

/// The wanted files of `entries` (all when `select` is empty), grouped by holder.
fn select_entries<'a>(entries: &'a [FileEntry], select: &[String], id: &str) -> ByHolder<'a> {
    let mut by_holder = ByHolder::new();
    for e in entries.iter().filter(|e| e.kind == EntryKind::File) {
        let p = e.path.clone().unwrap_or_default();
        let wanted = select.is_empty()
            || select
                .iter()
                .any(|s| super::restore::selects(s, p.as_bytes()));
        if wanted {
            let holder = e.stored_in.clone().unwrap_or_else(|| id.to_owned());
            by_holder.entry(holder).or_default().insert(p, e);
        }
    }
    by_holder
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

/// One key a line, readable by the owner only (keys are names).
fn write_journal(path: &Path, keys: &[String]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    for key in keys {
        writeln!(file, "{key}")?;
    }
    file.sync_all()
}
