//! Restoring a directory backup: the whole tree or selected paths, into a new directory or
//! over the original through a staging directory swapped in only after every file matched
//! its SHA-256. Paths come from the index and are checked to stay inside the target; the
//! tar's own names are only used to find the index entry.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dr_core::untar::{Unpacker, inside};
use dr_core::{
    BackupReader, BackupSelector, Error, Repository, Restore, RestoreOptions, RestoreReport,
    Result, SparseFile, async_trait,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::backup::{INDEX_ARTIFACT, TAR_ARTIFACT};
use super::index::{EntryKind, FileEntry, FileIndex};
use super::walk::glob_match;

/// What a tree restore wrote, beyond [`RestoreReport`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct TreeReport {
    /// Files written (each matched its SHA-256).
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Directories and symlinks created.
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Files of size zero (the seeds check these after a restore).
    pub zero_size: Vec<String>,
    /// Files that had changed while they were backed up (their bytes may be torn).
    pub changed_during_backup: Vec<String>,
}

/// Restores directory backups; needs the repository to reach the earlier backups an
/// incremental one references.
#[derive(Clone)]
pub struct DirectoryTarget {
    root: PathBuf,
    repo: Repository,
    select: Vec<String>,
    owners: bool,
}

impl DirectoryTarget {
    /// Restores into `root` (the source's own tree by default; `RestoreOptions::target`
    /// overrides it).
    pub fn new(root: impl Into<PathBuf>, repo: Repository) -> Self {
        DirectoryTarget {
            root: root.into(),
            repo,
            select: Vec::new(),
            owners: false,
        }
    }

    /// Also give every path its recorded owner and group (needs root).
    pub fn with_owners(mut self, owners: bool) -> Self {
        self.owners = owners;
        self
    }

    /// Only these paths or globs (a directory selects everything under it).
    pub fn with_selection(mut self, select: Vec<String>) -> Self {
        self.select = select;
        self
    }

    fn selected(&self, path: &Path) -> bool {
        self.select.is_empty()
            || self
                .select
                .iter()
                .any(|s| selects(s, path.as_os_str().as_bytes()))
    }

    /// Restores and returns the detailed report with the generic one.
    ///
    /// # Errors
    /// A damaged or missing backup, a file whose SHA-256 does not match, an index entry
    /// outside the target, I/O errors. The target is left as it was.
    pub async fn restore_tree(
        &self,
        backup: &BackupReader,
        opts: &RestoreOptions,
    ) -> Result<(RestoreReport, TreeReport)> {
        let started = Instant::now();
        let target = opts.target.clone().unwrap_or_else(|| self.root.clone());
        let index = read_index(backup).await?;
        let paths: Vec<Vec<u8>> = index
            .entries
            .iter()
            .map(|e| e.relative_path().as_os_str().as_bytes().to_vec())
            .collect();
        require_matches(&self.select, &paths, backup.id())?;
        let entries: Vec<FileEntry> = index
            .entries
            .into_iter()
            .filter(|e| self.selected(&e.relative_path()))
            .collect();
        let occupied = std::fs::read_dir(&target)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let staging = if occupied {
            dr_core::sibling_path(&target, &format!(".dr-staging-{stamp}"))
        } else {
            target.clone()
        };
        std::fs::create_dir_all(&staging)
            .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
        let written = self.write_tree(backup, &entries, &staging).await;
        let tree = match written {
            Ok(tree) => tree,
            Err(e) => {
                let _ = if occupied {
                    std::fs::remove_dir_all(&staging)
                } else {
                    empty(&staging)
                };
                return Err(e);
            }
        };
        let mut report = RestoreReport::default();
        if occupied {
            let kept = dr_core::sibling_path(&target, &format!(".pre-restore-{stamp}"));
            std::fs::rename(&target, &kept).map_err(|e| {
                Error::Restore(format!(
                    "the restored tree is complete and checked in {}, but {} could not be moved aside ({e}; a mount point?): swap them yourself",
                    staging.display(),
                    target.display()
                ))
            })?;
            std::fs::rename(&staging, &target).map_err(|e| {
                Error::io(
                    format!("moving the restored tree to {}", target.display()),
                    e,
                )
            })?;
            report.previous_kept_at = Some(kept.display().to_string());
        }
        report.backup_id = backup.id().to_owned();
        report.target = format!("{} ({} files)", target.display(), tree.files);
        report.restored_bytes = tree.bytes;
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok((report, tree))
    }

    async fn write_tree(
        &self,
        backup: &BackupReader,
        entries: &[FileEntry],
        dir: &Path,
    ) -> Result<TreeReport> {
        let mut tree = TreeReport::default();
        let mut unpacker = Unpacker::new(dir);
        for entry in entries.iter().filter(|e| e.kind == EntryKind::Dir) {
            let path = dir.join(inside(&entry.relative_path())?);
            std::fs::create_dir_all(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            tree.directories += 1;
        }
        // Files, grouped by the backup whose tar holds them.
        let mut by_holder: BTreeMap<&str, BTreeMap<PathBuf, &FileEntry>> = BTreeMap::new();
        for entry in entries.iter().filter(|e| e.kind == EntryKind::File) {
            let holder = entry.stored_in.as_deref().unwrap_or(backup.id());
            by_holder
                .entry(holder)
                .or_default()
                .insert(entry.relative_path(), entry);
            if entry.changed_during_backup {
                tree.changed_during_backup
                    .push(entry.relative_path().display().to_string());
            }
        }
        for (holder, wanted) in by_holder {
            let reader = if holder == backup.id() {
                backup.clone()
            } else {
                let selector = BackupSelector::Id(holder.to_owned());
                self.repo
                    .open_backup(&backup.manifest().source, &selector)
                    .await
                    .map_err(|e| {
                        Error::Restore(format!(
                            "backup {holder}, which holds files of {}, cannot be read: {e}",
                            backup.id()
                        ))
                    })?
            };
            let (found, unpacker_back) =
                extract(&reader, wanted.clone(), dir.to_owned(), unpacker).await?;
            unpacker = unpacker_back;
            let missing: Vec<String> = wanted
                .keys()
                .filter(|p| !found.contains(*p))
                .map(|p| p.display().to_string())
                .collect();
            if !missing.is_empty() {
                return Err(Error::Restore(format!(
                    "backup {holder} lacks {} files of the index: {}",
                    missing.len(),
                    missing.join(", ")
                )));
            }
            for entry in wanted.values() {
                tree.files += 1;
                tree.bytes += entry.size;
                if entry.size == 0 {
                    tree.zero_size
                        .push(entry.relative_path().display().to_string());
                }
            }
        }
        for entry in entries.iter().filter(|e| e.kind == EntryKind::Symlink) {
            let path = dir.join(inside(&entry.relative_path())?);
            if let Some(parent) = path.parent() {
                unpacker.ensure_dir(parent, &entry.relative_path())?;
            }
            std::os::unix::fs::symlink(entry.target.clone().unwrap_or_default(), &path)
                .map_err(|e| Error::io(format!("creating the link {}", path.display()), e))?;
            tree.symlinks += 1;
        }
        for entry in entries.iter().filter(|e| e.kind == EntryKind::Dir).rev() {
            let path = dir.join(inside(&entry.relative_path())?);
            set_metadata(&path, entry)?;
        }
        if self.owners {
            for entry in entries {
                let path = dir.join(inside(&entry.relative_path())?);
                std::os::unix::fs::lchown(&path, entry.uid, entry.gid).map_err(|e| {
                    Error::io(
                        format!("giving {} its owner (this needs root)", path.display()),
                        e,
                    )
                })?;
            }
        }
        Ok(tree)
    }
}

#[async_trait]
impl Restore for DirectoryTarget {
    async fn restore(&self, backup: &BackupReader, opts: &RestoreOptions) -> Result<RestoreReport> {
        self.restore_tree(backup, opts)
            .await
            .map(|(report, _)| report)
    }
}

/// Reads a backup's index.
///
/// # Errors
/// A damaged index or backup.
pub async fn read_index(backup: &BackupReader) -> Result<FileIndex> {
    let mut json = Vec::new();
    backup
        .artifact(INDEX_ARTIFACT)?
        .read_to_end(&mut json)
        .await
        .map_err(|e| Error::from_io("reading the file index", e))?;
    serde_json::from_slice(&json).map_err(|e| Error::BadManifest {
        key: format!("{} {INDEX_ARTIFACT}", backup.id()),
        detail: e.to_string(),
    })
}

/// Streams one backup's tar, writing the wanted files (hash-checked); returns which were found.
async fn extract(
    reader: &BackupReader,
    wanted: BTreeMap<PathBuf, &FileEntry>,
    dir: PathBuf,
    mut unpacker: Unpacker,
) -> Result<(BTreeSet<PathBuf>, Unpacker)> {
    let wanted: BTreeMap<PathBuf, FileEntry> =
        wanted.into_iter().map(|(p, e)| (p, e.clone())).collect();
    let artifact = reader.artifact(TAR_ARTIFACT)?;
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(artifact, handle);
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, bridge));
        let mut found = BTreeSet::new();
        let mut buffer = vec![0u8; 1 << 20];
        for item in archive
            .entries()
            .map_err(|e| Error::from_io("reading the tar", e))?
        {
            let mut item = item.map_err(|e| Error::from_io("reading the tar", e))?;
            if !item.header().entry_type().is_file() {
                continue;
            }
            let name = item
                .path()
                .map_err(|e| Error::from_io("reading the tar", e))?
                .into_owned();
            let Some(entry) = wanted.get(&name) else {
                continue;
            };
            let relative = inside(&name)?;
            let path = dir.join(&relative);
            if let Some(parent) = path.parent() {
                unpacker.ensure_dir(parent, &relative)?;
            }
            write_checked(&mut item, &path, entry, &mut buffer)?;
            set_metadata(&path, entry)?;
            found.insert(name);
        }
        Ok((found, unpacker))
    })
    .await
    .map_err(|e| Error::Restore(format!("the tar reader failed: {e}")))?
}

fn write_checked(
    input: &mut impl Read,
    path: &Path,
    entry: &FileEntry,
    buffer: &mut [u8],
) -> Result<()> {
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    let mut file = SparseFile::new(file);
    let mut hasher = Sha256::new();
    loop {
        let n = input
            .read(buffer)
            .map_err(|e| Error::from_io("reading the tar", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        file.write(&buffer[..n]).map_err(io)?;
    }
    file.finish().map_err(io)?;
    let actual = hex::encode(hasher.finalize());
    if entry.sha256.as_deref() != Some(actual.as_str()) {
        return Err(Error::Restore(format!(
            "{} does not match its SHA-256 (index {}, restored {actual})",
            entry.relative_path().display(),
            entry.sha256.as_deref().unwrap_or("none")
        )));
    }
    Ok(())
}

fn set_metadata(path: &Path, entry: &FileEntry) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e| {
        Error::io(
            format!("setting the mode and time of {}", path.display()),
            e,
        )
    };
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::from_nanos(u64::try_from(entry.mtime_ns).unwrap_or(0));
    std::fs::File::open(path)
        .and_then(|file| file.set_modified(mtime))
        .map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode)).map_err(io)
}

fn empty(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Whether selection `pattern` (a path, a glob, or a directory selecting what is under it)
/// selects `path`.
pub(crate) fn selects(pattern: &str, path: &[u8]) -> bool {
    let s = pattern.trim_end_matches('/').as_bytes();
    glob_match(s, path) || path.starts_with(s) && path.get(s.len()) == Some(&b'/')
}

/// A selection pattern that matches nothing is an error naming it and what the backup holds
/// at its top level: a restore of nothing must never pass for a restore.
///
/// # Errors
/// [`Error::Refused`] (a usage error).
pub(crate) fn require_matches(select: &[String], paths: &[Vec<u8>], id: &str) -> Result<()> {
    let unmatched: Vec<&str> = select
        .iter()
        .filter(|s| !paths.iter().any(|p| selects(s, p)))
        .map(String::as_str)
        .collect();
    if unmatched.is_empty() {
        return Ok(());
    }
    let mut top: Vec<String> = paths
        .iter()
        .map(|p| {
            let first = p.split(|b| *b == b'/').next().unwrap_or_default();
            String::from_utf8_lossy(first).into_owned()
        })
        .collect();
    top.sort();
    top.dedup();
    let shown = top.len().min(10);
    Err(Error::Refused(format!(
        "--only {} matches nothing in backup {id}; it holds {} at its top level{}{}",
        unmatched.join(", --only "),
        if top.is_empty() {
            "nothing".to_owned()
        } else {
            top[..shown].join(", ")
        },
        if top.len() > shown {
            format!(" and {} more", top.len() - shown)
        } else {
            String::new()
        },
        "; nothing was restored"
    )))
}
