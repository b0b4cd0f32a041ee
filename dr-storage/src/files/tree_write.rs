//! Writing a restored tree into a directory: directories, files (hash-checked, sparse where
//! zero), hard links, symbolic links, FIFOs and device nodes, then every entry's recorded
//! attributes, directories last and deepest first so their mtimes stay as recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use dr_core::untar::{Unpacker, inside};
use dr_core::{BackupReader, BackupSelector, Error, Repository, Result, SparseFile};
use sha2::{Digest, Sha256};

use super::attrs::{apply, make_special};
use super::backup::TAR_ARTIFACT;
use super::index::{EntryKind, FileEntry};
use super::restore::TreeReport;

/// By tar name (the first path of a hard-link group), the paths to give those bytes.
type Wanted = BTreeMap<PathBuf, Vec<FileEntry>>;

/// What to restore and how.
pub(crate) struct Plan<'a> {
    /// The backup restored.
    pub backup: &'a BackupReader,
    /// Reaches the backups holding files of an incremental one.
    pub repo: &'a Repository,
    /// The selected entries, in index order.
    pub entries: &'a [FileEntry],
    /// The first path of each hard-link group of the whole index.
    pub primaries: &'a BTreeMap<u64, PathBuf>,
    /// Give recorded owners.
    pub owners: bool,
}

impl Plan<'_> {
    /// Writes the selected entries under `dir` and gives them their attributes.
    ///
    /// # Errors
    /// A backup that lacks a file of the index, a SHA-256 mismatch, an entry outside `dir`,
    /// I/O errors.
    pub(crate) async fn write(&self, dir: &Path) -> Result<TreeReport> {
        let mut tree = TreeReport::default();
        let mut unpacker = Unpacker::new(dir);
        for entry in self.entries.iter().filter(|e| e.kind == EntryKind::Dir) {
            let path = dir.join(inside(&entry.relative_path())?);
            std::fs::create_dir_all(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            tree.directories += 1;
        }
        for (holder, wanted) in self.by_holder(&mut tree) {
            let reader = self.reader(&holder).await?;
            let (found, back) = extract(&reader, wanted.clone(), dir.to_owned(), unpacker).await?;
            unpacker = back;
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
            for entry in wanted.values().flatten() {
                tree.files += 1;
                if entry.size == 0 {
                    tree.zero_size
                        .push(entry.relative_path().display().to_string());
                }
            }
            for paths in wanted.values() {
                tree.bytes += paths.first().map_or(0, |e| e.size);
                tree.hard_links += paths.len().saturating_sub(1) as u64;
            }
        }
        for entry in self.entries {
            let relative = inside(&entry.relative_path())?;
            let path = dir.join(&relative);
            if (entry.kind == EntryKind::Symlink || entry.kind.is_special())
                && let Some(parent) = path.parent()
            {
                unpacker.ensure_dir(parent, &relative)?;
            }
            if entry.kind == EntryKind::Symlink {
                std::os::unix::fs::symlink(entry.link_target(), &path)
                    .map_err(|e| Error::io(format!("creating the link {}", path.display()), e))?;
                tree.symlinks += 1;
            } else if entry.kind.is_special() {
                match make_special(&path, entry)? {
                    None => tree.special += 1,
                    Some(why) => {
                        tracing::warn!(path = %relative.display(), "{why}");
                        tree.special_not_created
                            .push(format!("{} ({why})", relative.display()));
                        continue;
                    }
                }
            }
            if entry.kind != EntryKind::Dir {
                apply(&path, entry, self.owners)?;
            }
        }
        for entry in self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .rev()
        {
            apply(
                &dir.join(inside(&entry.relative_path())?),
                entry,
                self.owners,
            )?;
        }
        Ok(tree)
    }

    /// Files grouped by the backup whose tar holds them, then by tar name.
    fn by_holder(&self, tree: &mut TreeReport) -> BTreeMap<String, Wanted> {
        let mut by_holder: BTreeMap<String, Wanted> = BTreeMap::new();
        for entry in self.entries.iter().filter(|e| e.kind == EntryKind::File) {
            let holder = entry
                .stored_in
                .clone()
                .unwrap_or_else(|| self.backup.id().to_owned());
            let name = entry
                .link_group
                .and_then(|g| self.primaries.get(&g).cloned())
                .unwrap_or_else(|| entry.relative_path());
            by_holder
                .entry(holder)
                .or_default()
                .entry(name)
                .or_default()
                .push(entry.clone());
            if entry.changed_during_backup {
                tree.changed_during_backup
                    .push(entry.relative_path().display().to_string());
            }
        }
        by_holder
    }

    async fn reader(&self, holder: &str) -> Result<BackupReader> {
        if holder == self.backup.id() {
            return Ok(self.backup.clone());
        }
        let selector = BackupSelector::Id(holder.to_owned());
        self.repo
            .open_backup(&self.backup.manifest().source, &selector)
            .await
            .map_err(|e| {
                Error::Restore(format!(
                    "backup {holder}, which holds files of {}, cannot be read: {e}",
                    self.backup.id()
                ))
            })
    }
}

/// Streams one backup's tar, writing the wanted files (hash-checked) and their hard links;
/// returns which tar names were found.
async fn extract(
    reader: &BackupReader,
    wanted: Wanted,
    dir: PathBuf,
    mut unpacker: Unpacker,
) -> Result<(BTreeSet<PathBuf>, Unpacker)> {
    let artifact = reader.artifact(TAR_ARTIFACT)?;
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(artifact, handle);
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, bridge));
        let mut found = BTreeSet::new();
        let mut buffer = vec![0u8; 1 << 20];
        let tar_error = |e| Error::from_io("reading the tar", e);
        for item in archive.entries().map_err(tar_error)? {
            let mut item = item.map_err(tar_error)?;
            if !item.header().entry_type().is_file() {
                continue;
            }
            let name = item.path().map_err(tar_error)?.into_owned();
            let Some(paths) = wanted.get(&name) else {
                continue;
            };
            let mut first: Option<PathBuf> = None;
            for entry in paths {
                let relative = inside(&entry.relative_path())?;
                let path = dir.join(&relative);
                if let Some(parent) = path.parent() {
                    unpacker.ensure_dir(parent, &relative)?;
                }
                match &first {
                    None => write_checked(&mut item, &path, entry, &mut buffer)?,
                    Some(first) => std::fs::hard_link(first, &path).map_err(|e| {
                        Error::io(
                            format!("linking {} to {}", path.display(), first.display()),
                            e,
                        )
                    })?,
                }
                first.get_or_insert(path);
            }
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
