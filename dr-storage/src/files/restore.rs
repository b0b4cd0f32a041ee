//! Restoring a directory backup: the whole tree or selected paths, into a new or empty
//! directory or over the original through [`dr_core::swap::Staging`] (swapped in only after
//! every file matched its SHA-256, the previous tree kept), every entry and the root with
//! the attributes the backup recorded. A selection restored into an existing tree is put
//! into it entry by entry (see [`super::merge`]), the rest of the tree left as it was. Paths
//! come from the index and are checked to stay inside the target; the tar's own names are
//! only used to find the index entry.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dr_core::swap::{Attributes, Inherit, Staging};
use dr_core::{
    BackupReader, Error, Refusal, Repository, Restore, RestoreOptions, RestoreReport, Result,
    async_trait,
};
use serde::{Deserialize, Serialize};

use super::attrs::{apply, set_mtime};
use super::backup::INDEX_ARTIFACT;
use super::blocking::{blocking, drop_blocking};
use super::index::{FileEntry, FileIndex};
use super::index_stream::KeepIoError;
use super::merge::{Merge, Merged, is_mount_point};
use super::tree_stream::StreamPlan;
use super::tree_write::Plan;
use super::walk::glob_match;

/// What a tree restore wrote, beyond [`RestoreReport`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TreeReport {
    /// Files written (each matched its SHA-256).
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Directories created.
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Second names of files, restored as hard links.
    pub hard_links: u64,
    /// FIFOs and device nodes created.
    pub special: u64,
    /// FIFOs and device nodes that could not be created here (a device node needs root),
    /// each with why: `path (character device 1:3: creating it needs root ...)`.
    pub special_not_created: Vec<String>,
    /// Files of size zero (the seeds check these after a restore).
    pub zero_size: Vec<String>,
    /// Files that had changed while they were backed up (their bytes may be torn).
    pub changed_during_backup: Vec<String>,
    /// A selection restored into an existing tree (in place or into a non-empty `--to`
    /// directory): what was put into it and what was kept aside; everything else was left
    /// as it was. `None` when the restore wrote a new tree or swapped in a whole one.
    pub merged: Option<Merged>,
}

/// Restores directory backups; needs the repository to reach the earlier backups an
/// incremental one references.
#[derive(Clone)]
pub struct DirectoryTarget {
    root: PathBuf,
    repo: Option<Repository>,
    select: Vec<String>,
    owners: bool,
}

/// What the target is before a restore.
struct Found {
    /// Something is at the target path (a directory).
    exists: bool,
    /// A directory with entries.
    occupied: bool,
}

impl DirectoryTarget {
    /// Restores into `root` (the source's own tree by default; `RestoreOptions::target`
    /// overrides it).
    pub fn new(root: impl Into<PathBuf>, repo: Repository) -> Self {
        DirectoryTarget {
            root: root.into(),
            repo: Some(repo),
            select: Vec::new(),
            owners: false,
        }
    }

    /// Restores into `root` without a repository: only backups that hold every file
    /// themselves (a full backup) can be restored; an incremental one fails naming the
    /// backup it would need (for scratch restores where no repository is at hand).
    pub fn without_repository(root: impl Into<PathBuf>) -> Self {
        DirectoryTarget {
            root: root.into(),
            repo: None,
            select: Vec::new(),
            owners: false,
        }
    }

    /// Also give every path its recorded owner and group (needs root).
    pub fn with_owners(mut self, owners: bool) -> Self {
        self.owners = owners;
        self
    }

    /// Only these paths or globs (a directory selects everything under it). Restored into
    /// an existing non-empty directory (in place, or a `--to` one), the selection is put
    /// into that tree and the rest of it left as it was (see [`TreeReport::merged`]).
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

    /// Restores and returns the detailed report with the generic one. Every file-system
    /// call runs on the blocking pool, never on a runtime thread.
    ///
    /// # Errors
    /// A damaged or missing backup, a file whose SHA-256 does not match, an index entry
    /// outside the target, I/O errors. The target is left as it was, but for a selection
    /// put into an existing tree that fails between two renames (a mount point inside the
    /// tree): the error then names what was already put back and what was kept aside.
    pub async fn restore_tree(
        &self,
        backup: &BackupReader,
        opts: &RestoreOptions,
    ) -> Result<(RestoreReport, TreeReport)> {
        let started = Instant::now();
        let target = opts.target.clone().unwrap_or_else(|| self.root.clone());
        let (tree, index) = if self.select.is_empty() {
            // The whole tree: the index is streamed, never whole in memory.
            let plan = StreamPlan {
                backup: backup.clone(),
                repo: self.repo.clone(),
                owners: self.owners,
            };
            (Tree::Streamed(plan), None)
        } else {
            let mut index = read_index(backup).await?;
            let plan = self.plan(backup, &mut index)?;
            let root = index.root.clone();
            (
                Tree::Planned {
                    plan: Box::new(plan),
                    root,
                },
                Some(index),
            )
        };
        let probe = target.clone();
        let found = blocking("inspecting the restore target", move || inspect(&probe)).await?;
        let mut report = RestoreReport::default();
        let tree = match (&tree, index) {
            (Tree::Planned { plan, .. }, Some(index)) if found.occupied => {
                let merge = Merge::new(&index.entries, &plan.entries, self.owners);
                let (tree, merged) = merge_selection(plan, merge, &target).await?;
                TreeReport {
                    merged: Some(merged),
                    ..tree
                }
            }
            _ if found.exists && !found.occupied => {
                // An empty directory (perhaps a mount point): written in place.
                write_into_empty(&tree, &target).await?
            }
            _ => {
                let (tree, previous) = write_and_swap(&tree, &target, found.occupied).await?;
                report.previous_kept_at = previous;
                tree
            }
        };
        report.backup_id = backup.id().to_owned();
        report.target = target.display().to_string();
        report.restored_bytes = tree.bytes;
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok((report, tree))
    }

    /// The selected entries of `index` (every pattern must match something). The whole
    /// tree's entries are moved out of `index`, not copied (a selection, which a merge
    /// compares with the whole index, takes copies of what it selects).
    fn plan(&self, backup: &BackupReader, index: &mut FileIndex) -> Result<Plan> {
        let primaries = Arc::new(index.link_primaries());
        let entries = if self.select.is_empty() {
            std::mem::take(&mut index.entries)
        } else {
            let paths: Vec<Vec<u8>> = index
                .entries
                .iter()
                .map(|e| e.relative_path().as_os_str().as_bytes().to_vec())
                .collect();
            require_matches(&self.select, &paths, backup.id())?;
            index
                .entries
                .iter()
                .filter(|e| self.selected(&e.relative_path()))
                .cloned()
                .collect()
        };
        Ok(Plan {
            backup: backup.clone(),
            repo: self.repo.clone(),
            entries: Arc::new(entries),
            primaries,
            owners: self.owners,
        })
    }
}

/// How the tree is written: a selection from the index in memory, or the whole tree with
/// the index streamed.
enum Tree {
    Planned {
        plan: Box<Plan>,
        root: Option<FileEntry>,
    },
    Streamed(StreamPlan),
}

impl Tree {
    /// Writes the tree under `dir`; returns the report and the root's own entry.
    async fn write(&self, dir: &Path) -> Result<(TreeReport, Option<FileEntry>)> {
        match self {
            Tree::Planned { plan, root } => Ok((plan.write(dir).await?, root.clone())),
            Tree::Streamed(plan) => plan.write(dir).await,
        }
    }

    fn owners(&self) -> bool {
        match self {
            Tree::Planned { plan, .. } => plan.owners,
            Tree::Streamed(plan) => plan.owners,
        }
    }
}

/// Whether something is at `target` and has entries; anything but a directory is refused.
fn inspect(target: &Path) -> Result<Found> {
    let existing = std::fs::symlink_metadata(target).ok();
    if existing.as_ref().is_some_and(|m| !m.is_dir()) {
        return Err(Error::TargetExists {
            target: target.display().to_string(),
            found: "exists and is not a directory".into(),
            hint: "restore the tree with --to a new path, or move that file away first; \
                   nothing was changed"
                .into(),
        });
    }
    let occupied = std::fs::read_dir(target)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    Ok(Found {
        exists: existing.is_some(),
        occupied,
    })
}

/// Writes the tree into the empty directory `target`, emptying it again on failure.
async fn write_into_empty(plan: &Tree, target: &Path) -> Result<TreeReport> {
    let at = target.to_owned();
    match plan.write(target).await {
        Ok((tree, root)) => {
            let owners = plan.owners();
            blocking("finishing the restored root", move || {
                finish_root(&at, root.as_ref(), owners, None)
            })
            .await?;
            Ok(tree)
        }
        Err(e) => {
            let _ = blocking("emptying the target again", move || {
                empty(&at).map_err(|e| Error::io("emptying the target again", e))
            })
            .await;
            Err(e)
        }
    }
}

/// Writes the tree into a staging directory beside `target` and swaps it in, keeping the
/// previous tree; returns where the previous one is kept.
async fn write_and_swap(
    plan: &Tree,
    target: &Path,
    occupied: bool,
) -> Result<(TreeReport, Option<String>)> {
    let at = target.to_owned();
    let staging = blocking("staging the restore", move || Staging::dir(&at)).await?;
    let (tree, root) = match plan.write(staging.path()).await {
        Ok(written) => written,
        Err(e) => {
            drop_blocking(staging).await;
            return Err(e);
        }
    };
    let (at, owners) = (target.to_owned(), plan.owners());
    let previous = blocking("swapping the restored tree in", move || {
        swap_in(staging, &at, root.as_ref(), owners, occupied)
    })
    .await?;
    Ok((tree, previous))
}

/// Gives the staged root its attributes, swaps it into `target` and sets the root's mtime
/// last (the swap's renames may touch it).
fn swap_in(
    staging: Staging,
    target: &Path,
    root: Option<&FileEntry>,
    owners: bool,
    occupied: bool,
) -> Result<Option<String>> {
    let inherit = match root {
        Some(_) => {
            let replaced = occupied.then(|| Attributes::read(target)).transpose()?;
            finish_root(staging.path(), root, owners, replaced.as_ref())?;
            Inherit::Staged
        }
        None => Inherit::Replaced,
    };
    let swapped = staging.commit(&inherit).map_err(|e| {
        Error::restore(
            "files",
            format!(
                "the restored tree was complete and checked, but swapping it into {} failed \
             ({e}); a mount point cannot be swapped: empty it and restore into it, or \
             restore with --to ANOTHER_PATH",
                target.display()
            ),
        )
    })?;
    if let Some(root) = root {
        set_mtime(target, root.mtime_ns)?;
    }
    Ok(swapped.previous.map(|p| p.display().to_string()))
}

/// Writes the selection into a staging directory beside `target` (inside it when `target`
/// is a mount point), checks it, and puts each selected entry into the existing tree.
async fn merge_selection(plan: &Plan, merge: Merge, target: &Path) -> Result<(TreeReport, Merged)> {
    let at = target.to_owned();
    let (staging, root_mtime) = blocking("staging the selection", move || {
        let root_mtime = std::fs::symlink_metadata(&at)
            .map(|m| filetime::FileTime::from_last_modification_time(&m))
            .map_err(|e| Error::io(format!("reading {}", at.display()), e))?;
        let staging = if is_mount_point(&at) {
            Staging::dir(&at.join(".dr-selection"))?
        } else {
            Staging::dir(&at)?
        };
        Ok((staging, root_mtime))
    })
    .await?;
    let tree = match plan.write(staging.path()).await {
        Ok(tree) => tree,
        Err(e) => {
            drop_blocking(staging).await;
            return Err(e);
        }
    };
    let at = target.to_owned();
    let merged = blocking("putting the selection into the tree", move || {
        let merged = merge.run(staging.path(), &at);
        drop(staging);
        filetime::set_file_mtime(&at, root_mtime)
            .map_err(|e| Error::io(format!("keeping the mtime of {}", at.display()), e))?;
        merged
    })
    .await?;
    Ok((tree, merged))
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
    let artifact = backup.artifact(INDEX_ARTIFACT)?;
    let key = format!("{} {INDEX_ARTIFACT}", backup.id());
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // Parsed as it streams: no whole copy of the JSON beside the entries. A read error
        // (a damaged part) is kept as it came, not as serde's rewording of it.
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(artifact, handle);
        let mut reader = KeepIoError {
            inner: std::io::BufReader::with_capacity(1 << 20, bridge),
            error: None,
        };
        let parsed = serde_json::from_reader(&mut reader);
        match (parsed, reader.error) {
            (Ok(index), None) => Ok(index),
            (_, Some(e)) => Err(Error::from_io("reading the file index", e)),
            (Err(e), None) => Err(Error::BadManifest {
                key,
                detail: e.to_string(),
            }),
        }
    })
    .await
    .map_err(|e| Error::internal("reading the file index", e))?
}

/// Gives the restored root directory its recorded mode, xattrs and mtime, and its recorded
/// owner with `--owners` (else the owner of the tree it replaces, if any).
fn finish_root(
    dir: &Path,
    root: Option<&FileEntry>,
    owners: bool,
    replaced: Option<&Attributes>,
) -> Result<()> {
    let Some(root) = root else {
        return Ok(());
    };
    if !owners && let Some(replaced) = replaced {
        std::os::unix::fs::lchown(dir, Some(replaced.uid), Some(replaced.gid)).map_err(|e| {
            Error::restore(
                "files",
                format!(
                    "cannot give the restored tree the owner {}:{} of the one it replaces ({e}); \
                 the target was not changed",
                    replaced.uid, replaced.gid
                ),
            )
        })?;
    }
    apply(dir, root, owners)
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
    let mut check = SelectionCheck::new(select);
    for path in paths {
        check.see(path);
    }
    check.finish(id)
}

/// Top-level names kept for the error of a selection that matches nothing.
const TOP_NAMES_KEPT: usize = 1000;

/// Checks a selection against paths seen one at a time (a streamed index): every pattern
/// must match something.
pub(crate) struct SelectionCheck<'a> {
    select: &'a [String],
    matched: Vec<bool>,
    top: BTreeSet<String>,
    more_top: bool,
}

impl<'a> SelectionCheck<'a> {
    pub(crate) fn new(select: &'a [String]) -> Self {
        SelectionCheck {
            select,
            matched: vec![false; select.len()],
            top: BTreeSet::new(),
            more_top: false,
        }
    }

    /// Notes one path of the backup; true when the selection takes it.
    pub(crate) fn see(&mut self, path: &[u8]) -> bool {
        let mut taken = self.select.is_empty();
        for (pattern, matched) in self.select.iter().zip(self.matched.iter_mut()) {
            if selects(pattern, path) {
                *matched = true;
                taken = true;
            }
        }
        let first = path.split(|b| *b == b'/').next().unwrap_or_default();
        let first = String::from_utf8_lossy(first);
        if self.top.len() < TOP_NAMES_KEPT {
            self.top.insert(first.into_owned());
        } else if !self.top.contains(first.as_ref()) {
            self.more_top = true;
        }
        taken
    }

    /// Fails naming the patterns that matched nothing and what the backup holds.
    pub(crate) fn finish(self, id: &str) -> Result<()> {
        let unmatched: Vec<&str> = self
            .select
            .iter()
            .zip(&self.matched)
            .filter(|(_, matched)| !**matched)
            .map(|(s, _)| s.as_str())
            .collect();
        if unmatched.is_empty() {
            return Ok(());
        }
        let top: Vec<String> = self.top.into_iter().collect();
        let shown = top.len().min(10);
        let more = match (top.len() > shown, self.more_top) {
            (_, true) => " and more".to_owned(),
            (true, false) => format!(" and {} more", top.len() - shown),
            (false, false) => String::new(),
        };
        Err(Error::refused(
            Refusal::InvalidInput,
            format!(
                "--only {} matches nothing in backup {id}; it holds {} at its top level{more}; \
                 nothing was restored",
                unmatched.join(", --only "),
                if top.is_empty() {
                    "nothing".to_owned()
                } else {
                    top[..shown].join(", ")
                },
            ),
        ))
    }
}
