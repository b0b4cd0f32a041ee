//! Directory backups: a tar of the tree (the root itself, directories, symlinks, hard links,
//! FIFOs, device nodes and files, with modes, owners, nanosecond mtimes and xattrs in PAX
//! records; GNU long-name entries for long and non-UTF-8 names) plus the per-file index.
//! Incremental: files unchanged since the parent (size, mtime, ctime, inode) are referenced, not
//! stored again. Files that change while read are recorded as such, never silently torn.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::{Backup, BackupWriter, Error, Result, SourceInfo, async_trait};
use sha2::{Digest, Sha256};

use super::index::{EntryKind, FileEntry, FileIndex, link_primaries};
use super::walk::{TreeFilter, absolute, root_entry, walk_counting_sockets};

/// The manifest kind of directory backups.
pub const FILES_KIND: &str = "files";
/// The artifact holding the tar of the files stored by this backup.
pub const TAR_ARTIFACT: &str = "files.tar";
/// The artifact holding the index (JSON).
pub const INDEX_ARTIFACT: &str = "index.json";

/// A directory tree to back up.
#[derive(Debug, Clone)]
pub struct DirectorySource {
    root: PathBuf,
    filter: TreeFilter,
    parent: Option<(String, Arc<FileIndex>)>,
}

impl DirectorySource {
    /// The tree under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirectorySource {
            root: root.into(),
            filter: TreeFilter::default(),
            parent: None,
        }
    }

    /// Include/exclude globs and filesystem boundaries.
    pub fn with_filter(mut self, filter: TreeFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Makes the backup incremental over backup `id` with `index`: unchanged files are
    /// referenced. The backup declares `id` and the backups holding those files through
    /// [`Backup::depends_on`], so the repository records them and retention keeps them.
    pub fn with_parent(mut self, id: impl Into<String>, index: FileIndex) -> Self {
        self.parent = Some((id.into(), Arc::new(index)));
        self
    }
}

#[async_trait]
impl Backup for DirectorySource {
    fn kind(&self) -> &'static str {
        FILES_KIND
    }

    fn depends_on(&self) -> Vec<String> {
        parent_dependencies(
            self.parent
                .as_ref()
                .map(|(id, index)| (id.as_str(), &**index)),
        )
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let (root, filter) = (self.root.clone(), self.filter.clone());
        let ((entries, sockets), root_entry) = tokio::task::spawn_blocking(move || {
            Ok::<_, Error>((walk_counting_sockets(&root, &filter)?, root_entry(&root)?))
        })
        .await
        .map_err(|e| Error::internal("walking the tree", e))??;
        let mut context = Context {
            root: self.root.clone(),
            id: out.id().to_owned(),
            parent: self.parent_files(),
            primaries: link_primaries(&entries),
            done: BTreeMap::new(),
        };
        let tar_root = root_entry.clone();
        let writer = out.artifact(TAR_ARTIFACT)?;
        let handle = tokio::runtime::Handle::current();
        let (writer, index, stats) = tokio::task::spawn_blocking(move || {
            let mut tar = tar::Builder::new(tokio_util::io::SyncIoBridge::new_with_handle(
                writer, handle,
            ));
            tar.mode(tar::HeaderMode::Complete);
            let mut stats = Stats {
                sockets,
                ..Stats::default()
            };
            let mut index = Vec::with_capacity(entries.len());
            add_root(&mut tar, &tar_root)?;
            for entry in entries {
                let entry = add_entry(&mut tar, &mut context, entry, &mut stats)?;
                if entry.link_group.is_some() {
                    context.done.insert(entry.relative_path(), entry.clone());
                }
                index.push(entry);
            }
            let bridge = tar
                .into_inner()
                .map_err(|e| Error::from_io("finishing the tar", e))?;
            Ok::<_, Error>((bridge.into_inner(), index, stats))
        })
        .await
        .map_err(|e| Error::internal("writing the tar", e))??;
        writer.finish().await?;
        let index = FileIndex {
            version: 1,
            entries: index,
            vanished: Vec::new(),
            root: Some(root_entry),
        };
        drop(write_index(out, index).await?);
        Ok(stats.into_info(self.parent.as_ref().map(|(id, _)| id.as_str())))
    }
}

impl DirectorySource {
    /// The parent's files whose bytes its tar holds under their own name (not the second
    /// names of hard links), by path: positions in the parent's index, which is shared, not
    /// copied.
    fn parent_files(&self) -> ParentFiles {
        let Some((_, index)) = &self.parent else {
            return ParentFiles::default();
        };
        let primaries = link_primaries(&index.entries);
        let at = index
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.link_group
                    .is_none_or(|g| primaries.get(&g) == Some(&e.relative_path()))
            })
            .map(|(at, e)| (e.relative_path(), at))
            .collect();
        ParentFiles {
            index: index.clone(),
            at,
        }
    }
}

/// The parent backup's files, by path.
#[derive(Default)]
struct ParentFiles {
    index: Arc<FileIndex>,
    at: BTreeMap<PathBuf, usize>,
}

impl ParentFiles {
    fn get(&self, path: &Path) -> Option<&FileEntry> {
        self.at.get(path).map(|&at| &self.index.entries[at])
    }
}

/// What an increment over `parent` needs: the backups holding its unchanged files, then the
/// parent itself.
pub(crate) fn parent_dependencies(parent: Option<(&str, &FileIndex)>) -> Vec<String> {
    let Some((id, index)) = parent else {
        return Vec::new();
    };
    let mut ids = index.holders();
    ids.retain(|holder| holder != id);
    ids.push(id.to_owned());
    ids
}

/// Writes `index` as the backup's `index.json` artifact, serialized straight into the
/// pipeline (never a whole JSON copy in memory: a million entries are hundreds of MB of
/// JSON); returns the index.
pub(crate) async fn write_index(out: &mut BackupWriter, index: FileIndex) -> Result<FileIndex> {
    let writer = out.artifact(INDEX_ARTIFACT)?;
    let handle = tokio::runtime::Handle::current();
    let (writer, index) = tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(writer, handle);
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, bridge);
        serde_json::to_writer(&mut buffered, &index)
            .map_err(|e| Error::from_io("writing the index", std::io::Error::other(e)))?;
        let bridge = buffered
            .into_inner()
            .map_err(|e| Error::from_io("writing the index", e.into_error()))?;
        Ok::<_, Error>((bridge.into_inner(), index))
    })
    .await
    .map_err(|e| Error::internal("writing the index", e))??;
    writer.finish().await?;
    Ok(index)
}

#[derive(Default)]
struct Stats {
    sockets: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    special: u64,
    hard_links: u64,
    bytes: u64,
    stored_files: u64,
    stored_bytes: u64,
    changed: u64,
}

impl Stats {
    /// The manifest's facts: counts only. No path (not even the root's) goes into the
    /// plaintext manifest; the encrypted index flags the files that changed while read.
    fn into_info(self, parent: Option<&str>) -> SourceInfo {
        let mut info = SourceInfo::new();
        info.insert("files".into(), self.files.into());
        info.insert("directories".into(), self.dirs.into());
        info.insert("symlinks".into(), self.symlinks.into());
        info.insert("bytes".into(), self.bytes.into());
        if self.special > 0 {
            info.insert("special_files".into(), self.special.into());
        }
        if self.hard_links > 0 {
            info.insert("hard_links".into(), self.hard_links.into());
        }
        info.insert("stored_files".into(), self.stored_files.into());
        info.insert("stored_bytes".into(), self.stored_bytes.into());
        if let Some(parent) = parent {
            info.insert("parent".into(), parent.into());
        }
        if self.changed > 0 {
            info.insert("changed_during_backup".into(), self.changed.into());
        }
        if self.sockets > 0 {
            info.insert("sockets_not_backed_up".into(), self.sockets.into());
            let note = format!(
                "{} sockets were not backed up: a socket cannot be (the program that owns it \
                 recreates it); their paths are in the log",
                self.sockets
            );
            info.insert(dr_core::NOTES_KEY.into(), vec![note].into());
        }
        info
    }
}

type TarOut = tar::Builder<tokio_util::io::SyncIoBridge<dr_core::ArtifactWriter>>;

/// What each entry of the tar is added with.
struct Context {
    /// The tree's root.
    root: PathBuf,
    /// This backup's id (`stored_in` of the files it stores).
    id: String,
    /// The parent's files, by path.
    parent: ParentFiles,
    /// This backup's first path of each hard-link group.
    primaries: BTreeMap<u64, PathBuf>,
    /// The entries of link groups added so far.
    done: BTreeMap<PathBuf, FileEntry>,
}

fn add_entry(
    tar: &mut TarOut,
    context: &mut Context,
    mut entry: FileEntry,
    stats: &mut Stats,
) -> Result<FileEntry> {
    let Context {
        root,
        id,
        parent,
        primaries,
        done,
    } = context;
    let relative = entry.relative_path();
    let mut header = header_for(&entry);
    // Unchanged files are not in this tar: the PAX header goes with each appended entry.
    if entry.kind != EntryKind::File {
        pax_records(tar, &entry)?;
    }
    let io = |e| Error::from_io(&format!("adding {} to the tar", relative.display()), e);
    match entry.kind {
        EntryKind::Dir => {
            stats.dirs += 1;
            header.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut header, &relative, std::io::empty())
                .map_err(io)?;
        }
        EntryKind::Symlink => {
            stats.symlinks += 1;
            header.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut header, &relative, entry.link_target())
                .map_err(io)?;
        }
        EntryKind::Fifo | EntryKind::CharDevice | EntryKind::BlockDevice => {
            stats.special += 1;
            header.set_entry_type(match entry.kind {
                EntryKind::Fifo => tar::EntryType::Fifo,
                EntryKind::CharDevice => tar::EntryType::Char,
                _ => tar::EntryType::Block,
            });
            let [major, minor] = entry.device.unwrap_or_default();
            header.set_device_major(major).map_err(io)?;
            header.set_device_minor(minor).map_err(io)?;
            tar.append_data(&mut header, &relative, std::io::empty())
                .map_err(io)?;
        }
        EntryKind::File => {
            stats.files += 1;
            stats.bytes += entry.size;
            let primary = entry
                .link_group
                .and_then(|g| primaries.get(&g))
                .filter(|p| **p != relative);
            if let Some(primary) = primary {
                // A second name of a file already in the index: a hard link to it.
                let first = done.get(primary).ok_or_else(|| {
                    Error::internal(
                        "indexing hard links",
                        format!("the hard link {} lost its group", relative.display()),
                    )
                })?;
                entry.sha256 = first.sha256.clone();
                entry.stored_in = first.stored_in.clone();
                entry.changed_during_backup = first.changed_during_backup;
                stats.hard_links += 1;
                pax_records(tar, &entry)?;
                header.set_entry_type(tar::EntryType::Link);
                tar.append_link(&mut header, &relative, primary)
                    .map_err(io)?;
                return Ok(entry);
            }
            if let Some(earlier) = parent.get(&relative).filter(|p| entry.unchanged_since(p)) {
                entry.sha256 = earlier.sha256.clone();
                entry.stored_in = earlier.stored_in.clone();
                return Ok(entry);
            }
            pax_records(tar, &entry)?;
            store_file(tar, root, &mut entry, &mut header, stats)?;
            entry.stored_in = Some(id.clone());
        }
    }
    Ok(entry)
}

/// The root directory's own entry, `./`: `tar -x -C DIR` gives DIR its mode, owner and
/// mtime.
fn add_root(tar: &mut TarOut, root: &FileEntry) -> Result<()> {
    let io = |e| Error::from_io("adding the root directory to the tar", e);
    pax_records(tar, root)?;
    let mut header = header_for(root);
    header.set_entry_type(tar::EntryType::Directory);
    header.as_old_mut().name[..2].copy_from_slice(b"./");
    header.set_cksum();
    tar.append(&header, std::io::empty()).map_err(io)
}

/// A GNU header with the entry's mode, owner and whole-second mtime (the PAX record before
/// it holds the nanoseconds).
fn header_for(entry: &FileEntry) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(u64::from(entry.uid.unwrap_or(0)));
    header.set_gid(u64::from(entry.gid.unwrap_or(0)));
    header.set_mtime(u64::try_from(entry.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0));
    header.set_size(0);
    header
}

/// A PAX time: the decimal number of seconds, so a time before 1970 is `-` and its distance
/// from the epoch (1960-05-05 01:02:03.5 is `-304815476.5`, not `-304815477.5`).
fn pax_time(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    let (secs, nanos) = (abs / 1_000_000_000, abs % 1_000_000_000);
    match nanos {
        0 => format!("{sign}{secs}"),
        n => format!("{sign}{secs}.{n:09}"),
    }
}

/// A PAX extended header before the entry (when the mtime has nanoseconds or the entry has
/// extended attributes): `mtime` with nanoseconds and one
/// `SCHILY.xattr.<name>` record per extended attribute (what GNU tar `--xattrs` writes and
/// reads; POSIX ACLs are the `system.posix_acl_*` attributes).
fn pax_records(tar: &mut TarOut, entry: &FileEntry) -> Result<()> {
    let nanos = entry.mtime_ns.rem_euclid(1_000_000_000);
    if nanos == 0 && entry.mtime_ns >= 0 && entry.xattrs.is_empty() {
        // The header's whole seconds say it all (it cannot hold a time before 1970).
        return Ok(());
    }
    let mut body = Vec::new();
    record(&mut body, "mtime", pax_time(entry.mtime_ns).as_bytes());
    for (name, value) in &entry.xattrs {
        let value = hex::decode(value).unwrap_or_default();
        record(&mut body, &format!("SCHILY.xattr.{name}"), &value);
    }
    let mut header = tar::Header::new_ustar();
    header.as_old_mut().name[..14].copy_from_slice(b"././@PaxHeader");
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_mode(0o644);
    header.set_size(body.len() as u64);
    header.set_cksum();
    tar.append(&header, body.as_slice())
        .map_err(|e| Error::from_io("adding a PAX header to the tar", e))
}

/// One PAX record: `<length> <key>=<value>\n`, the length counting itself.
fn record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + rest.to_string().len();
    if len.to_string().len() + rest != len {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Streams one file into the tar, hashing it; exactly `size` bytes go in (zero padding if
/// the file shrank), and a file that changed while read is flagged.
fn store_file(
    tar: &mut TarOut,
    root: &Path,
    entry: &mut FileEntry,
    header: &mut tar::Header,
    stats: &mut Stats,
) -> Result<()> {
    let path = absolute(root, entry);
    let relative = entry.relative_path();
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let size = entry.size;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    let mut reader = HashingExact::new(file, size);
    tar.append_data(header, &relative, &mut reader)
        .map_err(|e| Error::from_io(&format!("adding {} to the tar", relative.display()), e))?;
    let after = std::fs::metadata(&path).ok();
    let changed = reader.short
        || after.is_none_or(|m| {
            m.len() != size
                || i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
                    != entry.mtime_ns
                || Some(super::walk::ctime_ns(&m)) != entry.ctime_ns
        });
    if changed {
        tracing::warn!(path = %path.display(), "the file changed while it was backed up");
        entry.changed_during_backup = true;
        stats.changed += 1;
    }
    entry.sha256 = Some(hex::encode(reader.hasher.finalize()));
    stats.stored_files += 1;
    stats.stored_bytes += size;
    Ok(())
}

/// Reads exactly `size` bytes from a file (zeros after an early end), hashing them.
struct HashingExact {
    file: std::fs::File,
    remaining: u64,
    hasher: Sha256,
    short: bool,
}

impl HashingExact {
    fn new(file: std::fs::File, size: u64) -> Self {
        HashingExact {
            file,
            remaining: size,
            hasher: Sha256::new(),
            short: false,
        }
    }
}

impl Read for HashingExact {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let mut n = if self.short {
            0
        } else {
            self.file.read(&mut buf[..want])?
        };
        if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            n = want;
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::pax_time;

    #[test]
    fn pax_times_before_1970_count_back_from_the_epoch() {
        assert_eq!(pax_time(-304_815_476_500_000_000), "-304815476.500000000");
        assert_eq!(pax_time(-1), "-0.000000001");
        assert_eq!(pax_time(-86_400_000_000_000), "-86400");
        assert_eq!(pax_time(1_700_000_000_000_000_007), "1700000000.000000007");
        assert_eq!(pax_time(0), "0");
    }
}
