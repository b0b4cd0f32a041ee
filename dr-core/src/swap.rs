//! Stage and swap: the one way every file-like restore (a SQLite database, a Redis RDB file,
//! a directory tree) replaces its target.
//!
//! 1. [`Staging::file`] or [`Staging::dir`] creates an empty staged entry beside the target
//!    (same directory, so the final rename is atomic), named
//!    `.<name>.dr-restore-<pid>-<random>`, and first cleans up what killed restores left there.
//! 2. The restore writes into [`Staging::path`] and checks it.
//! 3. [`Staging::commit`] gives the staged entry its attributes ([`Inherit`]: by default the
//!    owner, group, mode and extended attributes (POSIX ACLs included) of the target it
//!    replaces), fsyncs it, keeps the previous target under `<name>.pre-restore-<stamp>` (with
//!    `-2`, `-3`... so the name never collides), renames the staged entry over the target and
//!    fsyncs the directory. The target is never missing: files are kept by a hard link before
//!    the rename, directories are exchanged atomically (`renameat2(RENAME_EXCHANGE)`).
//!
//! A staging dropped without a commit removes itself: a failed restore leaves the target as
//! it was and nothing beside it.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the staged entry's owner, group, mode and extended attributes come from.
#[derive(Debug, Clone, Default)]
pub enum Inherit {
    /// Those of the target it replaces (nothing is changed when there is no target).
    #[default]
    Replaced,
    /// Those the restore already gave the staged entry (a directory tree restored with the
    /// attributes its backup recorded).
    Staged,
    /// These.
    Set(Attributes),
}

/// Owner, group, permission bits and extended attributes of a file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Extended attributes, POSIX ACLs (`system.posix_acl_access`) included.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Attributes {
    /// Reads them from `path` (not following a final symbolic link).
    ///
    /// # Errors
    /// The `lstat` or extended-attribute listing error.
    pub fn read(path: &Path) -> Result<Attributes> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| Error::io(format!("reading the attributes of {}", path.display()), e))?;
        let mut xattrs = Vec::new();
        match xattr::list(path) {
            Ok(names) => {
                for name in names {
                    if let Ok(Some(value)) = xattr::get(path, &name) {
                        xattrs.push((name, value));
                    }
                }
            }
            Err(e) if unsupported(&e) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("listing the extended attributes of {}", path.display()),
                    e,
                ));
            }
        }
        xattrs.sort();
        Ok(Attributes {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
            xattrs,
        })
    }

    /// Gives them to `path`: owner and group first (a change of owner clears set-id bits),
    /// then the mode, then the extended attributes.
    ///
    /// # Errors
    /// [`Error::Restore`] naming what could not be set (an owner other than the restoring
    /// user needs root): the caller's target is still untouched.
    pub fn apply(&self, path: &Path) -> Result<()> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if meta.uid() != self.uid || meta.gid() != self.gid {
            std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(|e| {
                Error::restore(
                    "files",
                    format!(
                        "cannot give {} the owner {}:{} of what it replaces ({e}): restore as root \
                         or as that user, or restore with --to ANOTHER_PATH; the target was not changed",
                        path.display(),
                        self.uid,
                        self.gid
                    ),
                )
                .caused_by(e)
            })?;
        }
        if !meta.file_type().is_symlink() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(self.mode))
                .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))?;
        }
        let recorded = |acl: &str| self.xattrs.iter().any(|(name, _)| name == acl);
        if ACL_XATTRS.iter().any(|acl| !recorded(acl)) {
            strip_inherited_acls(path)?;
        }
        for (name, value) in &self.xattrs {
            xattr::set(path, name, value).map_err(|e| {
                Error::restore(
                    "files",
                    format!(
                        "cannot set the extended attribute {} on {} ({e}); the target was not changed",
                        name.to_string_lossy(),
                        path.display()
                    ),
                )
                .caused_by(e)
            })?;
        }
        Ok(())
    }
}

fn unsupported(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error())
}

/// The extended attributes that hold POSIX ACLs.
const ACL_XATTRS: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

/// Removes the ACLs `path` inherited from its directory's default ACL on creation: a
/// restored entry has the ACLs it had when it was backed up (given afterwards), not those
/// of wherever it was restored to.
fn strip_inherited_acls(path: &Path) -> Result<()> {
    for name in ACL_XATTRS {
        match xattr::remove(path, name) {
            Ok(()) => {}
            Err(e)
                if unsupported(&e)
                    || e.raw_os_error() == Some(rustix::io::Errno::NODATA.raw_os_error()) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("removing the inherited ACL {name} of {}", path.display()),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// A file or directory being restored beside its target.
#[derive(Debug)]
pub struct Staging {
    target: PathBuf,
    staged: PathBuf,
    is_dir: bool,
    sidecars: Vec<String>,
    committed: bool,
}

/// What a commit did.
#[derive(Debug, Clone, Default)]
pub struct Swapped {
    /// Where the replaced target is kept, if there was one.
    pub previous: Option<PathBuf>,
    /// Sidecars found beside a target that did not exist (a `-wal` left after the database
    /// file was deleted): moved to these paths, never left to be replayed into the restored
    /// file.
    pub sidecars_kept: Vec<PathBuf>,
}

const STAGING_MARK: &str = ".dr-restore-";
const SWAPPING_SUFFIX: &str = ".swapping";

impl Staging {
    /// An empty staged file (mode 0600, without the ACLs a default ACL of its directory
    /// would give it) beside `target`; the target's directory is created if missing (a
    /// recovery onto an empty machine).
    ///
    /// # Errors
    /// I/O errors creating the directory or the file.
    pub fn file(target: &Path) -> Result<Staging> {
        let staging = Staging::new(target, false)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging.staged)
            .map_err(|e| Error::io(format!("creating {}", staging.staged.display()), e))?;
        strip_inherited_acls(&staging.staged)?;
        Ok(staging)
    }

    /// An empty staged directory (mode 0700, without inherited ACLs: what is restored into
    /// it inherits nothing it did not have) beside `target`.
    ///
    /// # Errors
    /// I/O errors creating the parent directory or the staged one.
    pub fn dir(target: &Path) -> Result<Staging> {
        let staging = Staging::new(target, true)?;
        std::fs::create_dir(&staging.staged)
            .map_err(|e| Error::io(format!("creating {}", staging.staged.display()), e))?;
        std::fs::set_permissions(&staging.staged, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("securing {}", staging.staged.display()), e))?;
        strip_inherited_acls(&staging.staged)?;
        Ok(staging)
    }

    fn new(target: &Path, is_dir: bool) -> Result<Staging> {
        let target = std::path::absolute(target)
            .map_err(|e| Error::io(format!("resolving {}", target.display()), e))?;
        let target = follow_symlink(target)?;
        let dir = parent(&target).to_owned();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating the directory {}", dir.display()), e))?;
        let prefix = staging_prefix(&target);
        recover_abandoned(&target, &prefix)?;
        let random: u32 = rand::random();
        let staged = dir.join(format!("{prefix}{}-{random:08x}", std::process::id()));
        Ok(Staging {
            target,
            staged,
            is_dir,
            sidecars: Vec::new(),
            committed: false,
        })
    }

    /// Files named `<target><suffix>` (SQLite's `-wal`, `-shm`, `-journal`) that belong to
    /// the target: the replaced target's are kept with it, never left beside the new one,
    /// and the staged copy's are removed before the swap.
    pub fn with_sidecars(mut self, suffixes: &[&str]) -> Self {
        self.sidecars = suffixes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The staged file or directory to write into.
    pub fn path(&self) -> &Path {
        &self.staged
    }

    /// The absolute target path, a symbolic link followed to the file it names.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Swaps the staged entry into place (see the module documentation).
    ///
    /// # Errors
    /// [`Error::Restore`] when the attributes cannot be given (the target is untouched);
    /// I/O errors of the fsyncs and renames.
    pub fn commit(mut self, inherit: &Inherit) -> Result<Swapped> {
        let replaced = std::fs::symlink_metadata(&self.target).is_ok();
        match inherit {
            Inherit::Replaced if replaced => Attributes::read(&self.target)?.apply(&self.staged)?,
            Inherit::Set(attributes) => attributes.apply(&self.staged)?,
            Inherit::Replaced | Inherit::Staged => {}
        }
        for suffix in &self.sidecars {
            remove_if_present(&crate::sibling_path(&self.staged, suffix))?;
        }
        sync(&self.staged)?;
        let mut sidecars_kept = Vec::new();
        let previous = if !replaced {
            let kept = unused_name(&self.target, &self.sidecars);
            for suffix in self.move_sidecars(&self.target, &kept)? {
                sidecars_kept.push(crate::sibling_path(&kept, &suffix));
            }
            rename(&self.staged, &self.target)?;
            None
        } else if self.is_dir {
            Some(self.swap_dir()?)
        } else {
            Some(self.swap_file()?)
        };
        self.committed = true;
        sync(parent(&self.target))?;
        Ok(Swapped {
            previous,
            sidecars_kept,
        })
    }

    /// Keeps the old file by a hard link, moves its sidecars to the kept name, renames the
    /// staged file over it. A failed rename puts the sidecars back.
    fn swap_file(&self) -> Result<PathBuf> {
        let kept = unused_name(&self.target, &self.sidecars);
        if let Err(e) = std::fs::hard_link(&self.target, &kept) {
            tracing::debug!(error = %e, "no hard link: the previous file is renamed instead");
            rename(&self.target, &kept)?;
        }
        let moved = self.move_sidecars(&self.target, &kept)?;
        if let Err(e) = rename(&self.staged, &self.target) {
            for suffix in moved {
                let _ = std::fs::rename(
                    crate::sibling_path(&kept, &suffix),
                    crate::sibling_path(&self.target, &suffix),
                );
            }
            return Err(e);
        }
        Ok(kept)
    }

    /// Exchanges the staged directory with the target atomically, then renames the old tree
    /// (now at the staged name) to the kept name. A marker beside it says, until then, that
    /// the staged name may hold the previous tree: a killed restore's leftovers are kept,
    /// never deleted.
    fn swap_dir(&self) -> Result<PathBuf> {
        let kept = unused_name(&self.target, &self.sidecars);
        let marker = crate::sibling_path(&self.staged, SWAPPING_SUFFIX);
        std::fs::write(&marker, self.target.as_os_str().as_encoded_bytes())
            .map_err(|e| Error::io(format!("creating {}", marker.display()), e))?;
        let cwd = rustix::fs::CWD;
        match rustix::fs::renameat_with(
            cwd,
            &self.staged,
            cwd,
            &self.target,
            rustix::fs::RenameFlags::EXCHANGE,
        ) {
            Ok(()) => rename(&self.staged, &kept)?,
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                tracing::debug!("no atomic exchange here: the tree is swapped by two renames");
                rename(&self.target, &kept)?;
                rename(&self.staged, &self.target)?;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&marker);
                return Err(Error::io(
                    format!("swapping the restored tree into {}", self.target.display()),
                    e.into(),
                ));
            }
        }
        remove_if_present(&marker)?;
        Ok(kept)
    }

    fn move_sidecars(&self, from: &Path, to: &Path) -> Result<Vec<String>> {
        let mut moved = Vec::new();
        for suffix in &self.sidecars {
            let side = crate::sibling_path(from, suffix);
            if std::fs::symlink_metadata(&side).is_ok() {
                rename(&side, &crate::sibling_path(to, suffix))?;
                moved.push(suffix.clone());
            }
        }
        Ok(moved)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let removed = if self.is_dir {
            std::fs::remove_dir_all(&self.staged)
        } else {
            std::fs::remove_file(&self.staged)
        };
        if let Err(e) = removed
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.staged.display(), error = %e, "could not remove a staged restore");
        }
        for suffix in &self.sidecars {
            let _ = std::fs::remove_file(crate::sibling_path(&self.staged, suffix));
        }
    }
}

/// The file a symbolic link at `target` points to (followed to the end): a restore
/// replaces the database the link names, never the link itself. A dangling link resolves
/// to where it points.
fn follow_symlink(mut target: PathBuf) -> Result<PathBuf> {
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&target)
                    .map_err(|e| Error::io(format!("reading the link {}", target.display()), e))?;
                target = parent(&target).join(link);
            }
            _ => return Ok(target),
        }
    }
    Err(Error::restore(
        "files",
        format!(
            "{} is a chain of too many symbolic links (a loop?)",
            target.display()
        ),
    ))
}

fn staging_prefix(target: &Path) -> String {
    format!(".{}{STAGING_MARK}", file_name(target))
}

/// Removes the staged entries of restores whose process is gone; an entry marked as being
/// swapped may hold the previous target and is kept under a `pre-restore` name instead.
fn recover_abandoned(target: &Path, prefix: &str) -> Result<()> {
    let dir = parent(target);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
            continue;
        }
        let path = entry.path();
        if let Some(staged) = rest.strip_suffix(SWAPPING_SUFFIX) {
            // A marker whose staged entry is gone: the swap finished but for this.
            if std::fs::symlink_metadata(dir.join(format!("{prefix}{staged}"))).is_err() {
                remove_if_present(&path)?;
            }
            continue;
        }
        let marker = crate::sibling_path(&path, SWAPPING_SUFFIX);
        if marker.exists() {
            let kept = unused_name(target, &[]);
            rename(&path, &kept)?;
            remove_if_present(&marker)?;
            tracing::warn!(kept = %kept.display(), "an interrupted restore left a tree that may be the previous target: kept it");
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed what an interrupted restore staged")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove what an interrupted restore staged")
            }
        }
    }
    Ok(())
}

/// `<name>.pre-restore-<stamp>`, or with `-2`, `-3`... when that name (or one of its
/// sidecars) is taken.
fn unused_name(target: &Path, sidecars: &[String]) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let base = format!("{}.pre-restore-{stamp}", file_name(target));
    let taken = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok()
            || sidecars
                .iter()
                .any(|s| std::fs::symlink_metadata(crate::sibling_path(p, s)).is_ok())
    };
    (1u64..)
        .map(|n| match n {
            1 => target.with_file_name(&base),
            n => target.with_file_name(format!("{base}-{n}")),
        })
        .find(|p| !taken(p))
        .unwrap_or_else(|| target.with_file_name(base))
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "target".into(), |n| n.to_string_lossy().into_owned())
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .map_err(|e| Error::io(format!("moving {} to {}", from.display(), to.display()), e))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// fsyncs a file or a directory (opened read-only: works for both on Linux).
fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// The pid of another process with one of `files` open (Linux `/proc`), if any: the honest
/// test of "in use" before a file is replaced.
pub fn process_holding(files: &[PathBuf]) -> Option<u32> {
    let own = std::process::id();
    let wanted: Vec<PathBuf> = files.iter().filter_map(|f| f.canonicalize().ok()).collect();
    if wanted.is_empty() {
        return None;
    }
    let processes = std::fs::read_dir("/proc").ok()?;
    for entry in processes.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| wanted.contains(&p)))
        {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
#[path = "swap_tests.rs"]
mod tests;
