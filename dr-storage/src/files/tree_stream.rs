//! Writing a whole restored tree from the streamed index: one pass over the index beside
//! each holding backup's tar (both in path order, merge-joined), so memory grows with the
//! number of directories and hard-linked files, not with the number of files. Directories
//! are created as they come, files written (hash-checked) and given their attributes, hard
//! links made to the first name; symbolic links and special files come after every file,
//! and directories get their attributes last, deepest first.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use dr_core::untar::{Unpacker, inside};
use dr_core::{BackupReader, Error, Repository, Result};

use super::attrs::apply;
use super::backup::TAR_ARTIFACT;
use super::blocking::blocking;
use super::index::{EntryKind, FileEntry};
use super::index_stream::IndexStream;
use super::restore::TreeReport;
use super::tree_write::{finish_special, holder_reader, write_checked};

/// A whole-tree restore that streams the index.
#[derive(Clone)]
pub(crate) struct StreamPlan {
    /// The backup restored.
    pub backup: BackupReader,
    /// Reaches the backups holding files of an incremental one.
    pub repo: Option<Repository>,
    /// Give recorded owners.
    pub owners: bool,
}

/// What the passes carry from one to the next.
struct State {
    dir: PathBuf,
    unpacker: Unpacker,
    tree: TreeReport,
    /// Every directory, in index order (their attributes are given last).
    dirs: Vec<FileEntry>,
    /// The other backups holding files.
    others: BTreeSet<String>,
    /// Symbolic links and special files seen (made in a last pass).
    deferred: u64,
    root: Option<FileEntry>,
}

impl StreamPlan {
    /// Writes the tree under `dir`; returns what was written and the root's own entry.
    ///
    /// # Errors
    /// A backup that lacks a file of the index, a SHA-256 mismatch, an entry outside `dir`,
    /// a damaged index, I/O errors.
    pub(crate) async fn write(&self, dir: &Path) -> Result<(TreeReport, Option<FileEntry>)> {
        let mut state = State {
            dir: dir.to_owned(),
            unpacker: Unpacker::new(dir),
            tree: TreeReport::default(),
            dirs: Vec::new(),
            others: BTreeSet::new(),
            deferred: 0,
            root: None,
        };
        state = self.pass(&self.backup.clone(), true, state).await?;
        for holder in std::mem::take(&mut state.others) {
            let reader = holder_reader(&self.backup, self.repo.as_ref(), &holder).await?;
            state = self.pass(&reader, false, state).await?;
        }
        if state.deferred > 0 {
            let stream = IndexStream::open(&self.backup)?;
            let owners = self.owners;
            state = blocking("creating the links and special files", move || {
                make_deferred(stream, owners, &mut state)?;
                Ok(state)
            })
            .await?;
        }
        let owners = self.owners;
        blocking("giving the directories their attributes", move || {
            for entry in state.dirs.iter().rev() {
                apply(
                    &state.dir.join(inside(&entry.relative_path())?),
                    entry,
                    owners,
                )?;
            }
            Ok((state.tree, state.root))
        })
        .await
    }

    /// One pass of the index beside `holder`'s tar: its files (and, in the first pass over
    /// the restored backup itself, the directories).
    async fn pass(&self, holder: &BackupReader, first: bool, mut state: State) -> Result<State> {
        let stream = IndexStream::open(&self.backup)?;
        let tar = holder.artifact(TAR_ARTIFACT)?;
        let handle = tokio::runtime::Handle::current();
        let pass = Pass {
            holder: holder.id().to_owned(),
            own: self.backup.id().to_owned(),
            first,
            owners: self.owners,
        };
        tokio::task::spawn_blocking(move || {
            let tar = tokio_util::io::SyncIoBridge::new_with_handle(tar, handle);
            pass.run(stream, tar, &mut state)?;
            Ok(state)
        })
        .await
        .map_err(|e| Error::internal("restoring the tree", e))?
    }
}

/// One pass's settings.
struct Pass {
    holder: String,
    own: String,
    first: bool,
    owners: bool,
}

impl Pass {
    fn run(&self, mut stream: IndexStream, tar: impl Read, state: &mut State) -> Result<()> {
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, tar));
        let mut items = archive.entries().map_err(tar_error)?;
        let mut linked: HashMap<u64, PathBuf> = HashMap::new();
        let mut buffer = vec![0u8; 1 << 20];
        while let Some(entry) = stream.next_entry()? {
            let relative = inside(&entry.relative_path())?;
            let path = state.dir.join(&relative);
            match entry.kind {
                EntryKind::Dir if self.first => {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                    state.tree.directories += 1;
                    state.dirs.push(entry);
                }
                EntryKind::File => {
                    let stored = entry.stored_in.as_deref().unwrap_or(&self.own);
                    if stored != self.holder {
                        if self.first {
                            state.others.insert(stored.to_owned());
                        }
                        continue;
                    }
                    if let Some(parent) = path.parent() {
                        state.unpacker.ensure_dir(parent, &relative)?;
                    }
                    match entry.link_group.and_then(|g| linked.get(&g)) {
                        Some(first) => {
                            std::fs::hard_link(first, &path).map_err(|e| {
                                Error::io(
                                    format!("linking {} to {}", path.display(), first.display()),
                                    e,
                                )
                            })?;
                            state.tree.hard_links += 1;
                        }
                        None => {
                            let name = entry.relative_path();
                            let mut item = next_file(&mut items, &name, &self.holder)?;
                            write_checked(&mut item, &path, &entry, &mut buffer)?;
                            state.tree.bytes += entry.size;
                            if let Some(group) = entry.link_group {
                                linked.insert(group, path.clone());
                            }
                        }
                    }
                    count_file(&entry, &relative, &mut state.tree);
                    apply(&path, &entry, self.owners)?;
                }
                EntryKind::Dir => {}
                _ if self.first => state.deferred += 1,
                _ => {}
            }
        }
        // Every part of the tar is read (and so checked), not only those up to the last
        // file wanted.
        for item in items {
            item.map_err(tar_error)?;
        }
        if self.first {
            state.root = stream.tail().and_then(|t| t.root.clone());
        }
        Ok(())
    }
}

/// The tar's next regular file, which must be `name` (the tar and the index are both in
/// path order; files of the tar the index does not want are passed over).
fn next_file<'a, R: Read>(
    items: &mut tar::Entries<'a, R>,
    name: &Path,
    holder: &str,
) -> Result<tar::Entry<'a, R>> {
    for item in items.by_ref() {
        let item = item.map_err(tar_error)?;
        if !item.header().entry_type().is_file() {
            continue;
        }
        let order = item.path().map_err(tar_error)?.as_ref().cmp(name);
        match order {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => return Ok(item),
            std::cmp::Ordering::Greater => break,
        }
    }
    Err(Error::restore(
        "files",
        format!(
            "backup {holder} lacks {} of the index (a damaged or incomplete backup): \
             verify it with `dr verify`; nothing was swapped in",
            name.display()
        ),
    ))
}

fn count_file(entry: &FileEntry, relative: &Path, tree: &mut TreeReport) {
    tree.files += 1;
    if entry.size == 0 {
        tree.zero_size.push(relative.display().to_string());
    }
    if entry.changed_during_backup {
        tree.changed_during_backup
            .push(relative.display().to_string());
    }
}

/// The last pass: symbolic links and special files, after every file.
fn make_deferred(mut stream: IndexStream, owners: bool, state: &mut State) -> Result<()> {
    while let Some(entry) = stream.next_entry()? {
        if entry.kind == EntryKind::Symlink || entry.kind.is_special() {
            finish_special(
                &state.dir,
                &entry,
                owners,
                &mut state.unpacker,
                &mut state.tree,
            )?;
        }
    }
    Ok(())
}

fn tar_error(e: std::io::Error) -> Error {
    Error::from_io("reading the tar", e)
}
