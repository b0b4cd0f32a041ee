//! The per-file index of a directory backup: path, kind, size, mtime, mode, SHA-256, and
//! which backup holds the bytes (itself, or an earlier one for unchanged files).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe (FIFO).
    Fifo,
    /// A character device (recreated only when restoring as root).
    CharDevice,
    /// A block device (recreated only when restoring as root).
    BlockDevice,
}

impl EntryKind {
    /// FIFOs and device nodes: recreated with `mknod`, not stored as bytes.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice
        )
    }
}

/// One path of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path, UTF-8 (`path_hex` holds other names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Relative path as hex bytes, for names that are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Bytes (files).
    #[serde(default)]
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Inode change time, nanoseconds since the Unix epoch (directory backups; absent in
    /// indexes written before dr recorded it). Unlike the mtime, no program can set it back,
    /// so a rewrite whose mtime was restored (`touch -r`) is still seen, as GNU tar and
    /// restic do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<i128>,
    /// Permission bits.
    pub mode: u32,
    /// Owner user id, when known (restored with `--owners`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Owner group id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Inode number when backed up (unchanged-file detection).
    #[serde(default)]
    pub inode: u64,
    /// SHA-256 of the content (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Link target (symlinks), UTF-8 (`target_hex` holds other targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Link target as hex bytes, for targets that are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
    /// Device number `[major, minor]` (character and block devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<[u32; 2]>,
    /// Files with more than one name in the tree: the inode they share when backed up. The
    /// first entry of a group (in index order) holds the bytes; the others are hard links
    /// to it (tar `Link` entries naming it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_group: Option<u64>,
    /// Extended attributes (POSIX ACLs included, as `system.posix_acl_access` and
    /// `system.posix_acl_default`): name to value in hex.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// Object metadata (bucket backups): `content-type`, `content-encoding`,
    /// `cache-control`, `content-disposition`, `content-language`, and `meta:<name>` for
    /// user metadata (`x-amz-meta-<name>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The object's ETag (bucket backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The backup whose `files.tar` holds the bytes (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_in: Option<String>,
    /// The file changed while it was read: its bytes may be torn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_during_backup: bool,
}

impl FileEntry {
    /// The relative path.
    pub fn relative_path(&self) -> PathBuf {
        match (&self.path, &self.path_hex) {
            (Some(p), _) => PathBuf::from(p),
            (None, Some(h)) => PathBuf::from(std::ffi::OsStr::from_bytes(
                &hex::decode(h).unwrap_or_default(),
            )),
            (None, None) => PathBuf::new(),
        }
    }

    /// Sets the path, as UTF-8 when it is.
    pub fn set_path(&mut self, path: &Path) {
        match path.to_str() {
            Some(p) => {
                self.path = Some(p.to_owned());
                self.path_hex = None;
            }
            None => {
                self.path = None;
                self.path_hex = Some(hex::encode(path.as_os_str().as_bytes()));
            }
        }
    }

    /// Whether the file looks unchanged since `earlier`: size, mtime, ctime and inode all
    /// equal. An earlier entry without a ctime (an index of an older dr) never counts as
    /// unchanged, so the first backup after an upgrade stores every file again.
    pub fn unchanged_since(&self, earlier: &FileEntry) -> bool {
        self.kind == EntryKind::File
            && earlier.kind == EntryKind::File
            && self.size == earlier.size
            && self.mtime_ns == earlier.mtime_ns
            && self.ctime_ns.is_some()
            && self.ctime_ns == earlier.ctime_ns
            && self.inode == earlier.inode
            && earlier.sha256.is_some()
            && earlier.stored_in.is_some()
            && !earlier.changed_during_backup
    }

    /// The symlink target, byte for byte.
    pub fn link_target(&self) -> PathBuf {
        match (&self.target, &self.target_hex) {
            (Some(t), _) => PathBuf::from(t),
            (None, Some(h)) => PathBuf::from(std::ffi::OsStr::from_bytes(
                &hex::decode(h).unwrap_or_default(),
            )),
            (None, None) => PathBuf::new(),
        }
    }

    /// Sets the symlink target, as UTF-8 when it is.
    pub fn set_link_target(&mut self, target: &Path) {
        match target.to_str() {
            Some(t) => {
                self.target = Some(t.to_owned());
                self.target_hex = None;
            }
            None => {
                self.target = None;
                self.target_hex = Some(hex::encode(target.as_os_str().as_bytes()));
            }
        }
    }

    /// An entry of `kind` with nothing else recorded yet.
    pub fn empty(kind: EntryKind) -> FileEntry {
        FileEntry {
            path: None,
            path_hex: None,
            kind,
            size: 0,
            mtime_ns: 0,
            ctime_ns: None,
            mode: 0,
            uid: None,
            gid: None,
            inode: 0,
            sha256: None,
            target: None,
            target_hex: None,
            device: None,
            link_group: None,
            xattrs: BTreeMap::new(),
            attributes: BTreeMap::new(),
            etag: None,
            stored_in: None,
            changed_during_backup: false,
        }
    }
}

/// The index of one backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIndex {
    /// Format version (1).
    pub version: u32,
    /// Entries in path order.
    pub entries: Vec<FileEntry>,
    /// Bucket backups: keys of objects listed but deleted before they could be read (kept
    /// here, encrypted, rather than in the plaintext manifest, which only counts them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vanished: Vec<String>,
    /// Directory backups: the root directory's own mode, owner, mtime and extended
    /// attributes (absent in indexes of older dr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<FileEntry>,
}

impl FileIndex {
    /// Entries by relative path.
    pub fn by_path(&self) -> BTreeMap<PathBuf, &FileEntry> {
        self.entries
            .iter()
            .map(|e| (e.relative_path(), e))
            .collect()
    }

    /// The first path of each hard-link group (the one whose bytes the tar holds).
    pub fn link_primaries(&self) -> BTreeMap<u64, PathBuf> {
        link_primaries(&self.entries)
    }

    /// The backups holding the bytes of this index's files.
    pub fn holders(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .entries
            .iter()
            .filter_map(|e| e.stored_in.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// The first path of each hard-link group of `entries`, in order.
pub fn link_primaries(entries: &[FileEntry]) -> BTreeMap<u64, PathBuf> {
    let mut primaries = BTreeMap::new();
    for entry in entries {
        if let Some(group) = entry.link_group {
            primaries
                .entry(group)
                .or_insert_with(|| entry.relative_path());
        }
    }
    primaries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_names_round_trip() {
        let name = Path::new(std::ffi::OsStr::from_bytes(b"caf\xe9/menu.txt"));
        let mut entry = FileEntry::empty(EntryKind::File);
        entry.set_path(name);
        assert!(entry.path.is_none());
        let json = serde_json::to_string(&entry).unwrap();
        let back: FileEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back.relative_path(), name);
    }
}
