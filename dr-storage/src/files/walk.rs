//! Walking a directory tree: entries in path order, include/exclude globs, staying on one
//! filesystem unless asked otherwise.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dr_core::{Error, Refusal, Result};

use super::index::{EntryKind, FileEntry};

/// Which paths a directory backup takes.
#[derive(Debug, Clone, Default)]
pub struct TreeFilter {
    /// Only files matching one of these (relative paths; `*`, `?`, `**`); empty: all.
    pub include: Vec<String>,
    /// Paths (files or whole directories) matching one of these are left out.
    pub exclude: Vec<String>,
    /// Also descend into other filesystems mounted below the root.
    pub cross_filesystems: bool,
}

impl TreeFilter {
    fn excluded(&self, relative: &Path) -> bool {
        let bytes = relative.as_os_str().as_bytes();
        self.exclude.iter().any(|p| glob_match(p.as_bytes(), bytes))
    }

    fn included(&self, relative: &Path) -> bool {
        let bytes = relative.as_os_str().as_bytes();
        self.include.is_empty() || self.include.iter().any(|p| glob_match(p.as_bytes(), bytes))
    }
}

/// Every entry under `root` (not `root` itself), sorted by path, without file hashes.
///
/// # Errors
/// [`Error::Io`] when the root or a directory cannot be read.
pub fn walk(root: &Path, filter: &TreeFilter) -> Result<Vec<FileEntry>> {
    walk_counting_sockets(root, filter).map(|(entries, _)| entries)
}

/// [`walk`], also counting the sockets passed over (a socket cannot be backed up: the
/// program that owns it recreates it), so the backup can say so.
///
/// # Errors
/// As [`walk`].
pub fn walk_counting_sockets(root: &Path, filter: &TreeFilter) -> Result<(Vec<FileEntry>, u64)> {
    let mut walker = Walker::new(root, filter)?;
    let entries = walker.by_ref().collect::<Result<Vec<_>>>()?;
    Ok((entries, walker.sockets()))
}

/// The entries under a root one at a time, in path order (a depth-first walk over each
/// directory's sorted names, which is [`Path`]'s order), holding only the names of the
/// directories on the current path: a million files are never in memory at once. Files
/// whose inode has more than one name get a link group (per inode and device).
pub(crate) struct Walker {
    root: PathBuf,
    filter: TreeFilter,
    device: u64,
    /// Each directory being walked (relative) with its names still to visit.
    stack: Vec<(PathBuf, std::vec::IntoIter<std::ffi::OsString>)>,
    sockets: u64,
    groups: HashMap<(u64, u64), u64>,
}

impl Walker {
    /// Starts a walk under `root`.
    ///
    /// # Errors
    /// [`Error::Io`] when the root cannot be read; a root that is not a directory.
    pub(crate) fn new(root: &Path, filter: &TreeFilter) -> Result<Walker> {
        let meta = std::fs::metadata(root)
            .map_err(|e| Error::io(format!("reading {}", root.display()), e))?;
        if !meta.is_dir() {
            return Err(Error::refused(
                Refusal::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Walker {
            stack: vec![(PathBuf::new(), sorted_names(root)?.into_iter())],
            root: root.to_owned(),
            filter: filter.clone(),
            device: meta.dev(),
            sockets: 0,
            groups: HashMap::new(),
        })
    }

    /// Sockets passed over so far.
    pub(crate) fn sockets(&self) -> u64 {
        self.sockets
    }

    /// The entry for `rel`, `None` when it is not part of the backup (excluded, deleted
    /// since its directory was listed, a socket, or not included); descends into
    /// directories.
    fn visit(&mut self, rel: PathBuf) -> Result<Option<FileEntry>> {
        if self.filter.excluded(&rel) {
            return Ok(None);
        }
        let path = self.root.join(&rel);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Deleted since the directory was listed: not part of the backup.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let Some(kind) = kind_of(&meta) else {
            tracing::warn!(path = %path.display(), "skipping a socket: it cannot be backed up (the program that owns it recreates it)");
            self.sockets += 1;
            return Ok(None);
        };
        if kind != EntryKind::Dir && !self.filter.included(&rel) {
            return Ok(None);
        }
        let mut entry = entry_from(&meta, kind);
        entry.set_path(&rel);
        if kind == EntryKind::Symlink {
            let target = std::fs::read_link(&path)
                .map_err(|e| Error::io(format!("reading the link {}", path.display()), e))?;
            entry.set_link_target(&target);
        }
        entry.xattrs = read_xattrs(&path)?;
        if kind == EntryKind::File && meta.nlink() > 1 {
            let next = self.groups.len() as u64 + 1;
            entry.link_group = Some(*self.groups.entry((meta.dev(), meta.ino())).or_insert(next));
        }
        if kind == EntryKind::Dir && (self.filter.cross_filesystems || meta.dev() == self.device) {
            let names = sorted_names(&path)?;
            self.stack.push((rel, names.into_iter()));
        }
        Ok(Some(entry))
    }
}

impl Iterator for Walker {
    type Item = Result<FileEntry>;

    fn next(&mut self) -> Option<Result<FileEntry>> {
        loop {
            let (dir, names) = self.stack.last_mut()?;
            let Some(name) = names.next() else {
                self.stack.pop();
                continue;
            };
            let rel = dir.join(name);
            match self.visit(rel) {
                Ok(None) => continue,
                Ok(Some(entry)) => return Some(Ok(entry)),
                Err(e) => {
                    self.stack.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The names in directory `dir`, sorted byte-wise.
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let io = |e| Error::io(format!("reading {}", dir.display()), e);
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io)?;
    names.sort();
    Ok(names)
}

/// The root directory's own entry: mode, owner, mtime, extended attributes (no path).
///
/// # Errors
/// [`Error::Io`] when the root cannot be read.
pub fn root_entry(root: &Path) -> Result<FileEntry> {
    let meta =
        std::fs::metadata(root).map_err(|e| Error::io(format!("reading {}", root.display()), e))?;
    let mut entry = entry_from(&meta, EntryKind::Dir);
    entry.xattrs = read_xattrs(root)?;
    entry.path = Some(String::new());
    Ok(entry)
}

/// Every extended attribute of `path` (not following a symbolic link), values in hex;
/// nothing on filesystems without them.
///
/// # Errors
/// [`Error::Io`] when they cannot be listed or read.
pub(crate) fn read_xattrs(path: &Path) -> Result<BTreeMap<String, String>> {
    let io = |e| {
        Error::io(
            format!("reading the extended attributes of {}", path.display()),
            e,
        )
    };
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => {
            return Ok(BTreeMap::new());
        }
        Err(e) => return Err(io(e)),
    };
    let mut out = BTreeMap::new();
    for name in names {
        if let Some(value) = xattr::get(path, &name).map_err(io)? {
            out.insert(name.to_string_lossy().into_owned(), hex::encode(value));
        }
    }
    Ok(out)
}

fn kind_of(meta: &std::fs::Metadata) -> Option<EntryKind> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    Some(if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Dir
    } else if t.is_file() {
        EntryKind::File
    } else if t.is_fifo() {
        EntryKind::Fifo
    } else if t.is_char_device() {
        EntryKind::CharDevice
    } else if t.is_block_device() {
        EntryKind::BlockDevice
    } else {
        return None;
    })
}

/// An index entry from metadata (no path, no hash yet).
pub(crate) fn entry_from(meta: &std::fs::Metadata, kind: EntryKind) -> FileEntry {
    let mut entry = FileEntry::empty(kind);
    entry.size = if kind == EntryKind::File {
        meta.len()
    } else {
        0
    };
    entry.mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    entry.ctime_ns = Some(ctime_ns(meta));
    entry.mode = meta.mode() & 0o7777;
    entry.uid = Some(meta.uid());
    entry.gid = Some(meta.gid());
    entry.inode = meta.ino();
    if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        let rdev = meta.rdev();
        entry.device = Some([rustix::fs::major(rdev), rustix::fs::minor(rdev)]);
    }
    entry
}

/// The inode change time in nanoseconds since the Unix epoch.
pub(crate) fn ctime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())
}

/// Shell-style matching over `/`-separated paths: `*` and `?` stay within one segment,
/// `**` spans segments; a pattern without `/` matches the last segment anywhere.
pub fn glob_match(pattern: &[u8], path: &[u8]) -> bool {
    if !pattern.contains(&b'/') {
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
        return matches(pattern, name) || matches(pattern, path);
    }
    matches(pattern, path)
}

fn matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) if rest.first() == Some(&b'*') => {
            let rest = rest.strip_prefix(b"*/").unwrap_or(&rest[1..]);
            (0..=text.len()).any(|i| matches(rest, &text[i..]))
        }
        Some((b'*', rest)) => (0..=text.len())
            .take_while(|i| *i == 0 || text[i - 1] != b'/')
            .any(|i| matches(rest, &text[i..])),
        Some((b'?', rest)) => text.first().is_some_and(|c| *c != b'/') && matches(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && matches(rest, &text[1..]),
    }
}

/// `root` joined with an entry's relative path.
pub(crate) fn absolute(root: &Path, entry: &FileEntry) -> PathBuf {
    root.join(entry.relative_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match(b"*.log", b"app/logs/today.log"));
        assert!(!glob_match(b"logs/*.log", b"logs/deep/today.log"));
        assert!(glob_match(b"logs/**/*.log", b"logs/deep/er/today.log"));
        assert!(glob_match(b"logs/**", b"logs/a/b"));
        assert!(glob_match(b"cache", b"app/cache"));
        assert!(glob_match(b"file?.txt", b"file1.txt"));
        assert!(!glob_match(b"file?.txt", b"file12.txt"));
    }

    #[test]
    fn walks_in_order_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/cache")).unwrap();
        std::fs::write(dir.path().join("b/cache/x"), "x").unwrap();
        std::fs::write(dir.path().join("b/keep.txt"), "k").unwrap();
        std::fs::write(dir.path().join("a.log"), "l").unwrap();
        std::os::unix::fs::symlink("b/keep.txt", dir.path().join("link")).unwrap();
        let filter = TreeFilter {
            exclude: vec!["cache".into(), "*.log".into()],
            ..TreeFilter::default()
        };
        let paths: Vec<PathBuf> = walk(dir.path(), &filter)
            .unwrap()
            .iter()
            .map(FileEntry::relative_path)
            .collect();
        assert_eq!(
            paths,
            [PathBuf::from("b"), "b/keep.txt".into(), "link".into()]
        );
    }
}
