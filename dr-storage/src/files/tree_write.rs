//! Writing a restored tree into a directory: directories, files (hash-checked, sparse where
//! zero), hard links, symbolic links, FIFOs and device nodes, then every entry's recorded
//! attributes, directories last and deepest first so their mtimes stay as recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::untar::{Unpacker, inside};
use dr_core::{BackupReader, BackupSelector, Error, Repository, Result, SparseFile};
use sha2::{Digest, Sha256};

use super::attrs::{apply, make_special};
use super::backup::TAR_ARTIFACT;
use super::blocking::blocking;
use super::index::{EntryKind, FileEntry};
use super::restore::TreeReport;

/// By tar name (the first path of a hard-link group), the entries (indexes into the plan's
/// entries: no copy of a million-entry index) to give those bytes.
type Wanted = BTreeMap<PathBuf, Vec<usize>>;

/// What to restore and how (cheap to clone: the work runs on the blocking pool).
#[derive(Clone)]
pub(crate) struct Plan {
    /// The backup restored.
    pub backup: BackupReader,
    /// Reaches the backups holding files of an incremental one; `None`: the backup must
    /// hold every file itself.
    pub repo: Option<Repository>,
    /// The selected entries, in index order.
    pub entries: Arc<Vec<FileEntry>>,
    /// The first path of each hard-link group of the whole index.
    pub primaries: Arc<BTreeMap<u64, PathBuf>>,
    /// Give recorded owners.
    pub owners: bool,
}

impl Plan {
    /// Writes the selected entries under `dir` and gives them their attributes; every
    /// file-system call runs on the blocking pool.
    ///
    /// # Errors
    /// A backup that lacks a file of the index, a SHA-256 mismatch, an entry outside `dir`,
    /// I/O errors.
    pub(crate) async fn write(&self, dir: &Path) -> Result<TreeReport> {
        let (entries, at) = (self.entries.clone(), dir.to_owned());
        let (directories, mut unpacker) = blocking("creating the directories", move || {
            create_dirs(&at, &entries)
        })
        .await?;
        let mut tree = TreeReport {
            directories,
            ..TreeReport::default()
        };
        for (holder, wanted) in self.by_holder(&mut tree) {
            let reader = self.reader(&holder).await?;
            let entries = self.entries.clone();
            let (found, wanted, back) =
                extract(&reader, entries, wanted, dir.to_owned(), unpacker).await?;
            unpacker = back;
            count_files(&holder, &self.entries, &wanted, &found, &mut tree)?;
        }
        let (entries, at, owners) = (self.entries.clone(), dir.to_owned(), self.owners);
        blocking("giving the restored entries their attributes", move || {
            finish_entries(&at, &entries, owners, &mut unpacker, &mut tree)?;
            Ok(tree)
        })
        .await
    }

    /// Files grouped by the backup whose tar holds them, then by tar name.
    fn by_holder(&self, tree: &mut TreeReport) -> BTreeMap<String, Wanted> {
        let mut by_holder: BTreeMap<String, Wanted> = BTreeMap::new();
        let files = self.entries.iter().enumerate();
        for (at, entry) in files.filter(|(_, e)| e.kind == EntryKind::File) {
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
                .push(at);
            if entry.changed_during_backup {
                tree.changed_during_backup
                    .push(entry.relative_path().display().to_string());
            }
        }
        by_holder
    }

    async fn reader(&self, holder: &str) -> Result<BackupReader> {
        holder_reader(&self.backup, self.repo.as_ref(), holder).await
    }
}

/// The reader of `holder`, a backup holding files of `backup` (`backup` itself, or one
/// found through `repo`).
///
/// # Errors
/// No repository to find it in, or a holder that cannot be read.
pub(crate) async fn holder_reader(
    backup: &BackupReader,
    repo: Option<&Repository>,
    holder: &str,
) -> Result<BackupReader> {
    if holder == backup.id() {
        return Ok(backup.clone());
    }
    let Some(repo) = repo else {
        return Err(Error::restore(
            "files",
            format!(
                "backup {} is incremental (its unchanged files are in backup {holder}), and this \
                 restorer was given no repository to read {holder} from: restore it through its \
                 source, or verify it at restore level",
                backup.id()
            ),
        ));
    };
    let selector = BackupSelector::Id(holder.to_owned());
    repo.open_backup(&backup.manifest().source, &selector)
        .await
        .map_err(|e| {
            Error::restore(
                "files",
                format!(
                    "backup {holder}, which holds files of {}, cannot be read: {e}",
                    backup.id()
                ),
            )
        })
}

/// Creates the selected directories under `dir`; returns how many, and the unpacker that
/// creates the remaining parents safely.
fn create_dirs(dir: &Path, entries: &[FileEntry]) -> Result<(u64, Unpacker)> {
    let mut count = 0;
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Dir) {
        let path = dir.join(inside(&entry.relative_path())?);
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        count += 1;
    }
    Ok((count, Unpacker::new(dir)))
}

/// Counts the files of `wanted` found in `holder`'s tar, failing when some were not.
fn count_files(
    holder: &str,
    entries: &[FileEntry],
    wanted: &Wanted,
    found: &BTreeSet<PathBuf>,
    tree: &mut TreeReport,
) -> Result<()> {
    let missing: Vec<String> = wanted
        .keys()
        .filter(|p| !found.contains(*p))
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::restore(
            "files",
            format!(
                "backup {holder} lacks {} files of the index: {}",
                missing.len(),
                missing.join(", ")
            ),
        ));
    }
    for entry in wanted.values().flatten().map(|&at| &entries[at]) {
        tree.files += 1;
        if entry.size == 0 {
            tree.zero_size
                .push(entry.relative_path().display().to_string());
        }
    }
    for paths in wanted.values() {
        tree.bytes += paths.first().map_or(0, |&at| entries[at].size);
        tree.hard_links += paths.len().saturating_sub(1) as u64;
    }
    Ok(())
}

/// Creates the symlinks and special files, then gives every entry its recorded attributes,
/// directories last and deepest first.
fn finish_entries(
    dir: &Path,
    entries: &[FileEntry],
    owners: bool,
    unpacker: &mut Unpacker,
    tree: &mut TreeReport,
) -> Result<()> {
    for entry in entries {
        match entry.kind {
            EntryKind::Dir => {}
            EntryKind::File => apply(&dir.join(inside(&entry.relative_path())?), entry, owners)?,
            _ => finish_special(dir, entry, owners, unpacker, tree)?,
        }
    }
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Dir).rev() {
        apply(&dir.join(inside(&entry.relative_path())?), entry, owners)?;
    }
    Ok(())
}

/// Creates a symbolic link or special file with its recorded attributes (a special file
/// that cannot be created here is counted with why).
///
/// # Errors
/// An entry outside `dir`, I/O errors.
pub(crate) fn finish_special(
    dir: &Path,
    entry: &FileEntry,
    owners: bool,
    unpacker: &mut Unpacker,
    tree: &mut TreeReport,
) -> Result<()> {
    let relative = inside(&entry.relative_path())?;
    let path = dir.join(&relative);
    if let Some(parent) = path.parent() {
        unpacker.ensure_dir(parent, &relative)?;
    }
    if entry.kind == EntryKind::Symlink {
        std::os::unix::fs::symlink(entry.link_target(), &path)
            .map_err(|e| Error::io(format!("creating the link {}", path.display()), e))?;
        tree.symlinks += 1;
    } else if let Some(why) = make_special(&path, entry)? {
        tracing::warn!(path = %relative.display(), "{why}");
        tree.special_not_created
            .push(format!("{} ({why})", relative.display()));
        return Ok(());
    } else {
        tree.special += 1;
    }
    apply(&path, entry, owners)
}

/// Streams one backup's tar, writing the wanted files (hash-checked) and their hard links;
/// returns which tar names were found.
async fn extract(
    reader: &BackupReader,
    entries: Arc<Vec<FileEntry>>,
    wanted: Wanted,
    dir: PathBuf,
    mut unpacker: Unpacker,
) -> Result<(BTreeSet<PathBuf>, Wanted, Unpacker)> {
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
            for entry in paths.iter().map(|&at| &entries[at]) {
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
        Ok((found, wanted, unpacker))
    })
    .await
    .map_err(|e| Error::internal("reading the tar", e))?
}

/// Writes `input` to a new file at `path` (sparse where zero), failing unless it matches
/// the entry's SHA-256.
///
/// # Errors
/// An existing file, I/O errors, a mismatch.
pub(crate) fn write_checked(
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
        return Err(Error::restore(
            "files",
            format!(
                "{} does not match its SHA-256 (index {}, restored {actual})",
                entry.relative_path().display(),
                entry.sha256.as_deref().unwrap_or("none")
            ),
        ));
    }
    Ok(())
}
