//! The WAL archive: `archive_command` pushes each WAL file (segments, history and backup
//! label files) as one zstd frame in one age file, `restore_command` fetches them back.
//!
//! Layout under the repository: `wal/<source>/archive.json` (the cluster's system identifier,
//! written by the first push), `wal/<source>/<timeline>/<file>.zst.age` and, written after
//! it as its commit point, `wal/<source>/<timeline>/<file>.json` with its hashes.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

use dr_core::Refusal;
use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{
    Error as StoreError, ObjectStore, ObjectStoreExt, PutMode, PutPayload,
};
use dr_core::store::{create_object, delete_object, get_object, list_objects};
use dr_core::{
    Error, ExpectedPart, Repository, Result, check_name, decode_part, encode_part, sha256_hex,
};
use serde::{Deserialize, Serialize};

use crate::lsn::{TimelineSwitch, history_file_name, parse_history};
use crate::walscan::{self, SegmentSummary};

/// One committed file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFile {
    /// The WAL file name.
    pub name: String,
    /// Bytes stored (compressed and encrypted).
    pub stored_size: u64,
    /// When its record was written: every change in a segment happened before this.
    pub archived_at: DateTime<Utc>,
}

/// What the archive of one source holds.
#[derive(Debug, Clone, Default)]
pub struct ArchiveContents {
    /// Committed files by name.
    pub files: BTreeMap<String, ArchivedFile>,
}

impl ArchiveContents {
    /// The highest timeline with an archived history file (1 when there is none).
    pub fn newest_timeline(&self) -> u32 {
        self.files
            .keys()
            .filter_map(|n| n.strip_suffix(".history"))
            .filter_map(|t| u32::from_str_radix(t, 16).ok())
            .max()
            .unwrap_or(1)
    }
}

const ARCHIVE_FORMAT_VERSION: u32 = 1;

/// What `archive.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct ArchiveInfo {
    format_version: u32,
    system_identifier: String,
}

/// What each file's `.json` commit record holds.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct WalRecord {
    plain_size: u64,
    plain_sha256: String,
    stored_size: u64,
    stored_sha256: String,
    /// What recovery can reach in the segment (absent for other files, for segments this
    /// reader does not understand, and in records of older versions of dr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<SegmentSummary>,
}

/// The outcome of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored now.
    Stored,
    /// The identical file was already archived (PostgreSQL may retry a push).
    AlreadyArchived,
}

/// The WAL archive of one source in a repository.
pub struct WalArchive<'a> {
    repo: &'a Repository,
    source: String,
}

impl<'a> WalArchive<'a> {
    /// The archive of `source`.
    ///
    /// # Errors
    /// [`Error::InvalidName`].
    pub fn new(repo: &'a Repository, source: &str) -> Result<Self> {
        check_name("source name", source)?;
        Ok(WalArchive {
            repo,
            source: source.to_owned(),
        })
    }

    /// Archives the WAL file at `path` from the cluster with `system_identifier`.
    ///
    /// # Errors
    /// Refuses a cluster whose system identifier differs from the archive's, and a file whose
    /// name is already archived with different content; store and key errors.
    pub async fn push(&self, path: &Path, system_identifier: u64) -> Result<PushOutcome> {
        let name = wal_name(path)?;
        self.check_cluster(system_identifier).await?;
        let plain = tokio::fs::read(path)
            .await
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let plain_sha256 = sha256_hex(&plain);
        if let Some(existing) = self.record(&name).await? {
            if existing.plain_sha256 == plain_sha256 {
                return Ok(PushOutcome::AlreadyArchived);
            }
            return Err(Error::TargetExists {
                target: format!("{name} in the WAL archive of {}", self.source),
                found: "is already archived, with a different content".into(),
                hint: "is another cluster using this source name? Give each cluster its own".into(),
            });
        }
        let recipients = self.repo.recipients()?;
        let level = self.repo.pipeline().zstd_level;
        let plain_size = plain.len() as u64;
        let is_segment = name.len() == 24;
        let (encoded, summary) = tokio::task::spawn_blocking(move || {
            let summary = is_segment.then(|| walscan::summarize(&plain)).flatten();
            encode_part(&plain, &recipients, level).map(|e| (e, summary))
        })
        .await
        .map_err(|e| Error::Usage(format!("encoder task failed: {e}")))??;
        if is_segment && summary.is_none() {
            tracing::warn!(file = %name, "could not read the records of this WAL segment: recovery times will not count it");
        }
        let record = WalRecord {
            plain_size,
            plain_sha256,
            stored_size: encoded.stored.len() as u64,
            stored_sha256: encoded.stored_sha256,
            summary,
        };
        // Data first (replacing leftovers of an interrupted push), the record last.
        self.store()
            .put(
                &self.key(&name, "zst.age"),
                PutPayload::from(encoded.stored),
            )
            .await
            .map_err(|e| Error::store(format!("archiving {name}"), e))?;
        let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::Usage(e.to_string()))?;
        create_object(self.store().as_ref(), &self.key(&name, "json"), json).await?;
        Ok(PushOutcome::Stored)
    }

    /// Restores the archived file `name` to `dest`; `Ok(false)` when it is not archived
    /// (recovery then knows it reached the end of the archive).
    ///
    /// # Errors
    /// A damaged file, a wrong or missing key, store errors.
    pub async fn fetch(&self, name: &str, dest: &Path) -> Result<bool> {
        let Some(plain) = self.fetch_bytes(name).await? else {
            return Ok(false);
        };
        write_whole(dest, &plain).await?;
        Ok(true)
    }

    /// The archived file `name`, decoded and checked; `None` when it is not archived.
    ///
    /// # Errors
    /// A damaged file, a wrong or missing key, store errors.
    pub async fn fetch_bytes(&self, name: &str) -> Result<Option<Vec<u8>>> {
        check_name("WAL file name", name)?;
        let identities = self.repo.identities().clone();
        let key = self.key(name, "zst.age");
        // The record and the data at once (one round trip, not two); the data only counts
        // when the record, the commit point, is there.
        let (record, stored) =
            futures::join!(self.record(name), get_object(self.store().as_ref(), &key));
        let Some(record) = record? else {
            return Ok(None);
        };
        if identities.is_empty() {
            return Err(Error::NoIdentity);
        }
        let stored = stored?;
        let recipients = self.repo.config().recipients.clone();
        let key_text = key.to_string();
        let plain = tokio::task::spawn_blocking(move || {
            let expected = ExpectedPart {
                key: &key_text,
                plain_size: record.plain_size,
                plain_sha256: &record.plain_sha256,
                stored_sha256: &record.stored_sha256,
                recipients: &recipients,
            };
            // The stored hash too: a record altered in it would otherwise pass unnoticed.
            let actual = dr_core::sha256_hex(&stored);
            if actual != record.stored_sha256 {
                return Err(Error::CorruptPart {
                    key: key_text.clone(),
                    what: "stored",
                    expected: record.stored_sha256.clone(),
                    actual,
                });
            }
            decode_part(&stored, &identities, expected)
        })
        .await
        .map_err(|e| Error::Usage(format!("decoder task failed: {e}")))??;
        Ok(Some(plain))
    }

    /// Compares the summary recorded for segment `name` (what "recoverable until" is read
    /// from) with a fresh reading of its decoded bytes `plain`; a problem naming the segment
    /// when they differ (the record was altered: the advertised limit would be wrong).
    ///
    /// # Errors
    /// A damaged record, store errors.
    pub async fn check_recorded_summary(
        &self,
        name: &str,
        plain: Vec<u8>,
    ) -> Result<Option<String>> {
        let key = self.key(name, "json");
        let stored = match get_object(self.store().as_ref(), &key).await {
            Ok(stored) => stored,
            Err(Error::MissingObject { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let record: WalRecord =
            serde_json::from_slice(&stored).map_err(|e| Error::BadManifest {
                key: key.to_string(),
                detail: e.to_string(),
            })?;
        // dr writes records in one canonical form: anything else (a renamed or unknown
        // field, an altered value that still parses) was changed after the push.
        if serde_json::to_vec_pretty(&record).ok().as_deref() != Some(stored.as_ref()) {
            return Ok(Some(format!(
                "the record of WAL file {name} ({key}) is not as dr wrote it: it was altered after the push"
            )));
        }
        let Some(recorded) = record.summary else {
            return Ok(None);
        };
        let actual = tokio::task::spawn_blocking(move || walscan::summarize(&plain))
            .await
            .map_err(|e| Error::Usage(format!("WAL reader task failed: {e}")))?;
        if actual == Some(recorded) {
            return Ok(None);
        }
        Ok(Some(format!(
            "the record of WAL file {name} ({}) does not describe the segment it commits (recorded {recorded:?}, read {actual:?}): the record is damaged and the recoverable limit read from it is wrong",
            self.key(name, "json")
        )))
    }

    /// What recovery can reach in the archived segment `name`: from its record, or (for a
    /// segment archived by an older dr) read from the segment itself when the identity is
    /// loaded; `None` when not archived or not known.
    ///
    /// # Errors
    /// A damaged record or file, store errors.
    pub async fn summary(&self, name: &str) -> Result<Option<SegmentSummary>> {
        let Some(record) = self.record(name).await? else {
            return Ok(None);
        };
        if record.summary.is_some() || self.repo.identities().is_empty() {
            return Ok(record.summary);
        }
        let Some(plain) = self.fetch_bytes(name).await? else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || walscan::summarize(&plain))
            .await
            .map_err(|e| Error::Usage(format!("WAL reader task failed: {e}")))
    }

    /// Every committed file of the archive (those whose record exists), by name.
    ///
    /// # Errors
    /// Store errors.
    pub async fn contents(&self) -> Result<ArchiveContents> {
        let prefix = ObjectPath::from(format!("wal/{}", self.source));
        let objects = list_objects(self.store().as_ref(), &prefix).await?;
        let mut stored_sizes = BTreeMap::new();
        let mut committed = BTreeMap::new();
        for object in objects {
            let Some(file) = object.location.filename() else {
                continue;
            };
            if let Some(name) = file.strip_suffix(".zst.age") {
                stored_sizes.insert(name.to_owned(), object.size);
            } else if let Some(name) = file.strip_suffix(".json") {
                committed.insert(name.to_owned(), object.last_modified);
            }
        }
        let files = committed
            .into_iter()
            .filter_map(|(name, archived_at)| {
                let stored_size = *stored_sizes.get(&name)?;
                Some((
                    name.clone(),
                    ArchivedFile {
                        name,
                        stored_size,
                        archived_at,
                    },
                ))
            })
            .collect();
        Ok(ArchiveContents { files })
    }

    /// The timeline history of `timeline` (empty for timeline 1 or when not archived).
    ///
    /// # Errors
    /// A damaged history file, key and store errors.
    pub async fn history(&self, timeline: u32) -> Result<Vec<TimelineSwitch>> {
        if timeline <= 1 {
            return Ok(Vec::new());
        }
        match self.fetch_bytes(&history_file_name(timeline)).await? {
            Some(bytes) => parse_history(&String::from_utf8_lossy(&bytes)),
            None => Ok(Vec::new()),
        }
    }

    /// Deletes the archived files named in `names` (record first, so a file is never listed
    /// without its data).
    ///
    /// # Errors
    /// Store errors; files deleted before the error stay deleted.
    pub async fn delete(&self, names: &[String]) -> Result<()> {
        for name in names {
            delete_object(self.store().as_ref(), &self.key(name, "json")).await?;
            delete_object(self.store().as_ref(), &self.key(name, "zst.age")).await?;
        }
        Ok(())
    }

    /// The source name.
    pub fn source(&self) -> &str {
        &self.source
    }

    async fn check_cluster(&self, system_identifier: u64) -> Result<()> {
        let key = ObjectPath::from(format!("wal/{}/archive.json", self.source));
        let ours = system_identifier.to_string();
        let info = ArchiveInfo {
            format_version: ARCHIVE_FORMAT_VERSION,
            system_identifier: ours.clone(),
        };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| Error::Usage(e.to_string()))?;
        let created = self
            .store()
            .put_opts(&key, PutPayload::from(json), PutMode::Create.into())
            .await;
        match created {
            Ok(_) => return Ok(()),
            Err(StoreError::AlreadyExists { .. } | StoreError::Precondition { .. }) => {}
            Err(e) => return Err(Error::store("creating the WAL archive", e)),
        }
        let bytes = get_object(self.store().as_ref(), &key).await?;
        let existing: ArchiveInfo =
            serde_json::from_slice(&bytes).map_err(|e| Error::BadManifest {
                key: key.to_string(),
                detail: e.to_string(),
            })?;
        if existing.system_identifier != ours {
            return Err(Error::refused(
                Refusal::Conflict,
                format!(
                    "refusing to archive WAL of cluster {ours} into the archive of cluster {} (source {}): two clusters must never share one archive; give this cluster its own source name",
                    existing.system_identifier, self.source
                ),
            ));
        }
        Ok(())
    }

    async fn record(&self, name: &str) -> Result<Option<WalRecord>> {
        match get_object(self.store().as_ref(), &self.key(name, "json")).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::BadManifest {
                    key: self.key(name, "json").to_string(),
                    detail: e.to_string(),
                }),
            Err(Error::MissingObject { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The objects an archived file `name` is stored as (the data, then its record).
    pub fn object_keys(&self, name: &str) -> [ObjectPath; 2] {
        [self.key(name, "zst.age"), self.key(name, "json")]
    }

    fn key(&self, name: &str, suffix: &str) -> ObjectPath {
        self.timeline_dir(name)
            .join(format!("{name}.{suffix}").as_str())
    }

    /// Where the files of `name`'s timeline are: `wal/<source>/<timeline>`.
    pub(crate) fn timeline_dir(&self, name: &str) -> ObjectPath {
        let timeline = &name[..8.min(name.len())];
        ObjectPath::from(format!("wal/{}/{timeline}", self.source))
    }

    pub(crate) fn store(&self) -> &std::sync::Arc<dyn ObjectStore> {
        self.repo.store()
    }
}

/// Writes `plain` to `dest` under a temporary name, then renames it: PostgreSQL never sees
/// half a file.
pub(crate) async fn write_whole(dest: &Path, plain: &[u8]) -> Result<()> {
    let partial = dest.with_extension("dr-partial");
    tokio::fs::write(&partial, plain)
        .await
        .and(tokio::fs::rename(&partial, dest).await)
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e))
}

/// The file name of a WAL file PostgreSQL hands to `archive_command`.
fn wal_name(path: &Path) -> Result<String> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::refused(
            Refusal::InvalidInput,
            format!("{} is not a WAL file path", path.display()),
        )
    })?;
    check_name("WAL file name", name)?;
    if name.len() < 8 || !name[..8].chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::refused(
            Refusal::InvalidInput,
            format!("{name} is not a WAL file name"),
        ));
    }
    Ok(name.to_owned())
}

/// Reads the system identifier from `global/pg_control` of a data directory (its first
/// 8 bytes, in the machine's byte order, as PostgreSQL writes it).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn system_identifier(data_dir: &Path) -> Result<u64> {
    let path = data_dir.join("global/pg_control");
    let bytes =
        std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let first: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::invalid_data(path.display().to_string(), "it is too short"))?;
    Ok(u64::from_ne_bytes(first))
}
