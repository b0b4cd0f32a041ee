//! Manifests: the plain JSON record that commits a backup.
//!
//! A manifest holds no secret and no file name of the source: only the backup's identity,
//! its recipients (public keys), the artifacts with their parts and hashes, and the
//! kind-specific [`SourceInfo`]. See FORMAT.md for the field-by-field description.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest format version this build writes and reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// Kind-specific facts recorded at backup time (server version, LSN, row counts...).
pub type SourceInfo = BTreeMap<String, serde_json::Value>;

/// One committed backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Manifest format version.
    pub format_version: u32,
    /// Backup id: `YYYYMMDDTHHMMSSZ-xxxx`, sorting by start time.
    pub id: String,
    /// Source name, as configured.
    pub source: String,
    /// Kind of backup, e.g. `sqlite`, `postgres.logical`.
    pub kind: String,
    /// When the backup started (UTC); retention orders by this.
    pub started_at: DateTime<Utc>,
    /// When the data was complete (UTC).
    pub finished_at: DateTime<Utc>,
    /// Version of dr that wrote the backup.
    pub tool_version: String,
    /// How artifacts are framed.
    pub encoding: Encoding,
    /// Public keys every part is encrypted to.
    pub recipients: Vec<String>,
    /// The byte streams of this backup, in the order they were opened.
    pub artifacts: Vec<ArtifactRecord>,
    /// Ids of backups whose data this one needs for a restore (incremental parents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Free-form labels (e.g. `pre-migration`), usable by retention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Kind-specific facts.
    #[serde(default)]
    pub source_info: SourceInfo,
}

/// How parts are framed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Encoding {
    /// `zstd` (one frame per part).
    pub compression: String,
    /// The zstd level used.
    pub level: i32,
    /// `age-x25519` (one age file per part).
    pub encryption: String,
    /// Plain bytes per part (the last part may be shorter).
    pub part_size: u64,
}

/// One logical byte stream of a backup, stored as parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArtifactRecord {
    /// Artifact name, e.g. `db`, `dump`, `globals`.
    pub name: String,
    /// Total plain size in bytes.
    pub plain_size: u64,
    /// Total stored size in bytes.
    pub stored_size: u64,
    /// Parts in order; concatenating their plain bytes gives the artifact.
    pub parts: Vec<PartRecord>,
}

/// One stored object: an age file holding one zstd frame.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartRecord {
    /// Position in the artifact, from 0.
    pub index: u32,
    /// Object name inside the backup's directory, e.g. `db.000000.zst.age`.
    pub object: String,
    /// Size of the decoded bytes.
    pub plain_size: u64,
    /// SHA-256 of the decoded bytes (hex).
    pub plain_sha256: String,
    /// Size of the stored object.
    pub stored_size: u64,
    /// SHA-256 of the stored object (hex); checkable without the key.
    pub stored_sha256: String,
}

/// The `source_info` key of what a backup wants its user to know (a list of sentences, no
/// secrets, no paths): printed by `dr backup` after its summary line, e.g. that sockets
/// were passed over or that roles were stored without their passwords.
pub const NOTES_KEY: &str = "notes";

/// The notes a backup recorded under [`NOTES_KEY`].
pub fn backup_notes(info: &SourceInfo) -> Vec<String> {
    info.get(NOTES_KEY)
        .and_then(|v| v.as_array())
        .map(|notes| {
            notes
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The label of a safety backup: the target as it was just before a restore replaced it
/// (`dr restore --in-place`, Redis `--force`). [`crate::BackupSelector::Latest`] and
/// [`crate::BackupSelector::AtOrBefore`] pass over such backups: the next "restore latest"
/// must not bring back the damage the restore repaired. Selected by id, it restores as any.
pub const SAFETY_LABEL: &str = "pre-restore";

impl Manifest {
    /// Whether this is a restore's safety backup ([`SAFETY_LABEL`]).
    pub fn is_safety_backup(&self) -> bool {
        self.labels.iter().any(|l| l == SAFETY_LABEL)
    }

    /// Parses and checks a manifest.
    ///
    /// # Errors
    /// [`Error::BadManifest`] for invalid JSON, [`Error::UnsupportedFormat`] for a newer format.
    pub fn from_json(bytes: &[u8], key: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let bad = |e: serde_json::Error| Error::BadManifest {
            key: key.to_owned(),
            detail: e.to_string(),
        };
        let version: VersionOnly = serde_json::from_slice(bytes).map_err(bad)?;
        if version.format_version != MANIFEST_FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                what: "manifest",
                found: version.format_version,
                supported: MANIFEST_FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(bad)?;
        manifest
            .check_hashes()
            .map_err(|detail| Error::BadManifest {
                key: key.to_owned(),
                detail,
            })?;
        Ok(manifest)
    }

    /// Every recorded SHA-256 is 64 lowercase hex digits: one that is not proves the manifest
    /// damaged (a restore must not rely on the rest of it), even where the part it describes
    /// is intact.
    fn check_hashes(&self) -> std::result::Result<(), String> {
        let is_sha256 =
            |h: &str| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        for part in self.parts() {
            for (what, hash) in [
                ("plain", &part.plain_sha256),
                ("stored", &part.stored_sha256),
            ] {
                if !is_sha256(hash) {
                    return Err(format!(
                        "the {what} SHA-256 of part {} is not a SHA-256 ({hash:?}): the manifest is damaged",
                        part.object
                    ));
                }
            }
        }
        Ok(())
    }

    /// Serialises the manifest as pretty JSON.
    ///
    /// # Errors
    /// Never in practice; serialisation errors are reported as [`Error::Usage`].
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Usage(format!("serialising manifest: {e}")))
    }

    /// The artifact with this name.
    ///
    /// # Errors
    /// [`Error::NoSuchArtifact`].
    pub fn artifact(&self, name: &str) -> Result<&ArtifactRecord> {
        self.artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::NoSuchArtifact {
                backup: self.id.clone(),
                artifact: name.to_owned(),
            })
    }

    /// Total plain bytes over all artifacts.
    pub fn plain_size(&self) -> u64 {
        self.artifacts.iter().map(|a| a.plain_size).sum()
    }

    /// Total stored bytes over all artifacts.
    pub fn stored_size(&self) -> u64 {
        self.artifacts.iter().map(|a| a.stored_size).sum()
    }

    /// Every part of every artifact, in order.
    pub fn parts(&self) -> impl Iterator<Item = &PartRecord> {
        self.artifacts.iter().flat_map(|a| a.parts.iter())
    }

    /// The `SHA256SUMS` text for the stored objects, as `sha256sum -c` reads it.
    pub fn sha256sums(&self) -> String {
        self.parts()
            .map(|p| format!("{}  {}\n", p.stored_sha256, p.object))
            .collect()
    }
}

/// Checks a source, artifact or label name: 1-100 characters of `[A-Za-z0-9._-]`, not
/// starting with `.` or `-`. Names end up in object keys, so nothing else is allowed.
///
/// # Errors
/// [`Error::InvalidName`].
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '-'])
        && name.chars().all(valid_char);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}
