//! Putting a restored selection into an existing tree (`--only` over the live tree, or into
//! a non-empty `--to` directory): the selection is written and checked in a staging
//! directory, then each selected entry is renamed into the tree at its path. What was in its
//! way is kept beside it as `<name>.pre-restore-<stamp>[-N]`; directories that exist in both
//! are merged; everything not selected stays as it was, the mtimes of the directories that
//! received entries included.
//!
//! A directory is replaced as a whole only when the selection holds everything the backup
//! recorded under it (`--only DIR`); a directory the selection holds only part of (the
//! parent of a selected file, or one a glob matched without its contents) is merged: created
//! with its recorded attributes when the tree lacks it, left alone when the tree has it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dr_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::attrs::apply;
use super::index::{EntryKind, FileEntry};

/// An entry of the existing tree that was in the way of a selected one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptAside {
    /// Its path, relative to the tree.
    pub path: String,
    /// Where it is kept now (beside it).
    pub kept_at: String,
}

/// What a merge changed in the existing tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Merged {
    /// The paths renamed into the tree, each with what the selection holds under it.
    pub placed: Vec<String>,
    /// What was in their way, each kept beside its path.
    pub kept_aside: Vec<KeptAside>,
}

/// Moves the selection staged under `staged` into the existing tree `live`.
pub(crate) struct Merge {
    /// The selected entries, by relative path.
    selected: BTreeSet<PathBuf>,
    /// Directories holding a path of the backup that is not selected: merged, not replaced.
    partial: BTreeSet<PathBuf>,
    /// Every entry of the index, by relative path (the recorded attributes of parents).
    index: BTreeMap<PathBuf, FileEntry>,
    owners: bool,
    done: Merged,
}

impl Merge {
    /// A merge of `selected` (entries of `all`).
    pub(crate) fn new(all: &[FileEntry], selected: &[FileEntry], owners: bool) -> Self {
        let selected: BTreeSet<PathBuf> = selected.iter().map(FileEntry::relative_path).collect();
        let mut partial = BTreeSet::new();
        for entry in all {
            let path = entry.relative_path();
            if !selected.contains(&path) {
                partial.extend(path.ancestors().skip(1).map(Path::to_owned));
            }
        }
        Merge {
            selected,
            partial,
            index: all.iter().map(|e| (e.relative_path(), e.clone())).collect(),
            owners,
            done: Merged::default(),
        }
    }

    /// Moves everything staged under `staged` into `live`.
    ///
    /// # Errors
    /// [`Error::Restore`] naming the path that failed, what was already put back and what
    /// was kept aside (a rename across filesystems: a mount point inside the tree).
    pub(crate) fn run(mut self, staged: &Path, live: &Path) -> Result<Merged> {
        match self.merge_dir(staged, live, Path::new("")) {
            Ok(()) => Ok(self.done),
            Err(e) => Err(Error::restore(
                "files",
                format!(
                    "putting the selection into {} failed ({e}); already put back: {}; kept aside: {}",
                    live.display(),
                    list(&self.done.placed),
                    list(
                        &self
                            .done
                            .kept_aside
                            .iter()
                            .map(|k| format!("{} -> {}", k.path, k.kept_at))
                            .collect::<Vec<_>>()
                    ),
                ),
            )),
        }
    }

    /// `live` is a directory of the tree: each staged child goes in, whole or merged. Its
    /// mtime is kept.
    fn merge_dir(&mut self, staged: &Path, live: &Path, relative: &Path) -> Result<()> {
        let mtime = std::fs::symlink_metadata(live)
            .map(|m| filetime::FileTime::from_last_modification_time(&m))
            .map_err(|e| Error::io(format!("reading {}", live.display()), e))?;
        let mut children: Vec<_> = std::fs::read_dir(staged)
            .map_err(|e| Error::io(format!("listing {}", staged.display()), e))?
            .map(|c| c.map(|c| c.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(format!("listing {}", staged.display()), e))?;
        children.sort();
        for name in children {
            let (from, to, rel) = (staged.join(&name), live.join(&name), relative.join(&name));
            let whole = self.selected.contains(&rel) && !self.partial.contains(&rel);
            let existing = std::fs::symlink_metadata(&to).ok();
            if !whole && existing.as_ref().is_some_and(std::fs::Metadata::is_dir) {
                self.merge_dir(&from, &to, &rel)?;
                continue;
            }
            if !whole {
                self.finish_parents(&from, &rel)?;
            }
            if existing.is_some() {
                let kept = keep_aside(&to)?;
                self.done.kept_aside.push(KeptAside {
                    path: rel.display().to_string(),
                    kept_at: kept.display().to_string(),
                });
            }
            rename_new(&from, &to)?;
            self.done.placed.push(rel.display().to_string());
        }
        filetime::set_file_mtime(live, mtime)
            .map_err(|e| Error::io(format!("keeping the mtime of {}", live.display()), e))?;
        std::fs::File::open(live)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("syncing {}", live.display()), e))
    }

    /// Gives the staged directories the selection holds only part of, and that go into the
    /// tree whole (it lacked them), their recorded attributes, deepest first.
    fn finish_parents(&self, staged: &Path, relative: &Path) -> Result<()> {
        let meta = std::fs::symlink_metadata(staged)
            .map_err(|e| Error::io(format!("reading {}", staged.display()), e))?;
        if !meta.is_dir() {
            return Ok(());
        }
        for child in std::fs::read_dir(staged)
            .map_err(|e| Error::io(format!("listing {}", staged.display()), e))?
        {
            let name = child
                .map_err(|e| Error::io(format!("listing {}", staged.display()), e))?
                .file_name();
            let rel = relative.join(&name);
            if self.partial.contains(&rel) {
                self.finish_parents(&staged.join(&name), &rel)?;
            }
        }
        match self.index.get(relative) {
            Some(entry) if entry.kind == EntryKind::Dir => apply(staged, entry, self.owners),
            _ => Ok(()),
        }
    }
}

/// Renames `path` to `<name>.pre-restore-<stamp>` beside it (`-2`, `-3`... when taken; the
/// rename never replaces anything).
fn keep_aside(path: &Path) -> Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .map_or_else(|| "entry".into(), |n| n.to_string_lossy().into_owned());
    let base = format!("{name}.pre-restore-{stamp}");
    for n in 1u32.. {
        let kept = match n {
            1 => path.with_file_name(&base),
            n => path.with_file_name(format!("{base}-{n}")),
        };
        match rename_no_replace(path, &kept) {
            Ok(()) => return Ok(kept),
            Err(e) if e == rustix::io::Errno::EXIST => {}
            Err(e) => {
                return Err(Error::io(
                    format!("keeping {} aside", path.display()),
                    e.into(),
                ));
            }
        }
    }
    Err(Error::restore(
        "files",
        format!("no free name to keep {} aside", path.display()),
    ))
}

/// Renames `from` to `to`, failing if `to` appeared meanwhile (never replaces).
fn rename_new(from: &Path, to: &Path) -> Result<()> {
    rename_no_replace(from, to).map_err(|e| {
        Error::io(
            format!("moving {} to {}", from.display(), to.display()),
            e.into(),
        )
    })
}

fn rename_no_replace(from: &Path, to: &Path) -> rustix::io::Result<()> {
    let cwd = rustix::fs::CWD;
    rustix::fs::renameat_with(cwd, from, cwd, to, rustix::fs::RenameFlags::NOREPLACE)
}

/// Whether `dir` is a mount point (on another filesystem than its parent): a staging
/// directory beside it could not be renamed into it.
pub(crate) fn is_mount_point(dir: &Path) -> bool {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    match (std::fs::metadata(dir), std::fs::metadata(parent)) {
        (Ok(d), Ok(p)) => d.dev() != p.dev(),
        _ => false,
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}
