//! Walking a directory tree: entries in path order, include/exclude globs, staying on one
//! filesystem unless asked otherwise.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dr_core::{Error, Result};

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
    let meta =
        std::fs::metadata(root).map_err(|e| Error::io(format!("reading {}", root.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::Refused(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mut entries = Vec::new();
    visit(root, Path::new(""), meta.dev(), filter, &mut entries)?;
    Ok(entries)
}

fn visit(
    root: &Path,
    relative: &Path,
    device: u64,
    filter: &TreeFilter,
    out: &mut Vec<FileEntry>,
) -> Result<()> {
    let dir = root.join(relative);
    let io = |e| Error::io(format!("reading {}", dir.display()), e);
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io)?;
    names.sort();
    for name in names {
        let rel = relative.join(&name);
        if filter.excluded(&rel) {
            continue;
        }
        let path = root.join(&rel);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Deleted since the directory was listed: not part of the backup.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let kind = if meta.file_type().is_symlink() {
            EntryKind::Symlink
        } else if meta.is_dir() {
            EntryKind::Dir
        } else if meta.is_file() {
            EntryKind::File
        } else {
            tracing::info!(path = %path.display(), "skipping a special file (socket, fifo, device)");
            continue;
        };
        if kind != EntryKind::Dir && !filter.included(&rel) {
            continue;
        }
        let mut entry = entry_from(&meta, kind);
        entry.set_path(&rel);
        if kind == EntryKind::Symlink {
            let target = std::fs::read_link(&path)
                .map_err(|e| Error::io(format!("reading the link {}", path.display()), e))?;
            entry.target = Some(target.to_string_lossy().into_owned());
        }
        out.push(entry);
        if kind == EntryKind::Dir && (filter.cross_filesystems || meta.dev() == device) {
            visit(root, &rel, device, filter, out)?;
        }
    }
    Ok(())
}

/// An index entry from metadata (no path, no hash yet).
pub(crate) fn entry_from(meta: &std::fs::Metadata, kind: EntryKind) -> FileEntry {
    FileEntry {
        path: None,
        path_hex: None,
        kind,
        size: if kind == EntryKind::File {
            meta.len()
        } else {
            0
        },
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: Some(ctime_ns(meta)),
        mode: meta.mode() & 0o7777,
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        inode: meta.ino(),
        sha256: None,
        target: None,
        etag: None,
        stored_in: None,
        changed_during_backup: false,
    }
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
