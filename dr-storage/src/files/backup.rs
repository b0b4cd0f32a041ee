//! Directory backups: a tar of the tree (the root itself, directories, symlinks, hard links,
//! FIFOs, device nodes and files, with modes, owners, nanosecond mtimes and xattrs in PAX
//! records; GNU long-name entries for long and non-UTF-8 names) plus the per-file index.
//! Incremental: files unchanged since the parent (size, mtime, ctime, inode) are referenced, not
//! stored again. Files that change while read are recorded as such, never silently torn.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dr_core::{
    ArtifactWriter, Backup, BackupReader, BackupWriter, Error, Result, SourceInfo, async_trait,
};
use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use super::index::{EntryKind, FileEntry, FileIndex};
use super::index_stream::IndexWriter;
use super::parent::{Parent, ParentFiles, dependencies, lock_holders, note_holder};
use super::walk::{TreeFilter, Walker, absolute, root_entry};

/// The manifest kind of directory backups.
pub const FILES_KIND: &str = "files";
/// The artifact holding the tar of the files stored by this backup.
pub const TAR_ARTIFACT: &str = "files.tar";
/// The artifact holding the index (JSON).
pub const INDEX_ARTIFACT: &str = "index.json";

/// A directory tree to back up.
#[derive(Clone)]
pub struct DirectorySource {
    root: PathBuf,
    filter: TreeFilter,
    parent: Option<Parent>,
    /// The backups holding the files of the last backup written (its dependencies).
    holders: Arc<Mutex<Option<Vec<String>>>>,
}

impl std::fmt::Debug for DirectorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorySource")
            .field("root", &self.root)
            .field("filter", &self.filter)
            .field("parent", &self.parent.as_ref().map(Parent::id))
            .finish()
    }
}

impl DirectorySource {
    /// The tree under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirectorySource {
            root: root.into(),
            filter: TreeFilter::default(),
            parent: None,
            holders: Arc::default(),
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
    /// [`DirectorySource::with_parent_backup`] does the same without the whole index in
    /// memory.
    pub fn with_parent(mut self, id: impl Into<String>, index: FileIndex) -> Self {
        self.parent = Some(Parent::Loaded {
            id: id.into(),
            index: Arc::new(index),
        });
        self
    }

    /// Makes the backup incremental over the backup `parent` reads, whose index is read
    /// entry by entry beside the walk (both are in path order), so memory does not grow
    /// with the number of files. A damaged parent index fails the backup (back up without
    /// a parent to start afresh).
    pub fn with_parent_backup(mut self, parent: BackupReader) -> Self {
        self.parent = Some(Parent::Streamed { reader: parent });
        self
    }
}

#[async_trait]
impl Backup for DirectorySource {
    fn kind(&self) -> &'static str {
        FILES_KIND
    }

    /// After a backup: the backups holding its unchanged files, then its parent. Before
    /// one: what the parent's index says (its parent alone when the index is streamed).
    fn depends_on(&self) -> Vec<String> {
        dependencies(self.parent.as_ref(), &self.holders)
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let job = TreeJob {
            root: self.root.clone(),
            filter: self.filter.clone(),
            id: out.id().to_owned(),
            parent: ParentFiles::open(self.parent.as_ref(), FileEntry::relative_path)?,
            tar: out.artifact(TAR_ARTIFACT)?,
            index: out.artifact(INDEX_ARTIFACT)?,
            handle: tokio::runtime::Handle::current(),
        };
        let (tar, index, stats, holders) = tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(|e| Error::internal("writing the tar", e))??;
        tar.finish().await?;
        index.finish().await?;
        *lock_holders(&self.holders) = Some(holders);
        Ok(stats.into_info(self.parent.as_ref().map(Parent::id)))
    }
}

/// One directory backup's work on the blocking pool: the walk, the tar and the index, all
/// streamed.
struct TreeJob {
    root: PathBuf,
    filter: TreeFilter,
    id: String,
    parent: ParentFiles<PathBuf>,
    tar: ArtifactWriter,
    index: ArtifactWriter,
    handle: tokio::runtime::Handle,
}

type Written = (ArtifactWriter, ArtifactWriter, Stats, Vec<String>);

impl TreeJob {
    fn run(self) -> Result<Written> {
        let mut walker = Walker::new(&self.root, &self.filter)?;
        let root = root_entry(&self.root)?;
        let mut tar =
            tar::Builder::new(SyncIoBridge::new_with_handle(self.tar, self.handle.clone()));
        tar.mode(tar::HeaderMode::Complete);
        let mut index = IndexWriter::start(
            SyncIoBridge::new_with_handle(self.index, self.handle),
            &root,
        )?;
        let mut context = Context {
            root: self.root,
            id: self.id,
            parent: self.parent,
            links: HashMap::new(),
            holders: BTreeSet::new(),
        };
        let mut stats = Stats::default();
        add_root(&mut tar, &root)?;
        for entry in walker.by_ref() {
            let entry = add_entry(&mut tar, &mut context, entry?, &mut stats)?;
            context.record(&entry);
            index.push(&entry)?;
        }
        stats.sockets = walker.sockets();
        let tar = tar
            .into_inner()
            .map_err(|e| Error::from_io("finishing the tar", e))?
            .into_inner();
        let holders = context.holders.into_iter().collect();
        Ok((tar, index.end()?, stats, holders))
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
    /// The parent's index.
    parent: ParentFiles<PathBuf>,
    /// The first name of each hard-link group added so far.
    links: HashMap<u64, FileEntry>,
    /// The other backups holding files of this one.
    holders: BTreeSet<String>,
}

impl Context {
    /// Notes what later entries need of an added one.
    fn record(&mut self, entry: &FileEntry) {
        if let Some(group) = entry.link_group {
            self.links.entry(group).or_insert_with(|| FileEntry {
                xattrs: BTreeMap::new(),
                ..entry.clone()
            });
        }
        note_holder(&mut self.holders, entry, &self.id);
    }
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
        links,
        ..
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
            if let Some(first) = entry.link_group.and_then(|g| links.get(&g)) {
                // A second name of a file already in the index: a hard link to it.
                let primary = first.relative_path();
                entry.sha256 = first.sha256.clone();
                entry.stored_in = first.stored_in.clone();
                entry.changed_during_backup = first.changed_during_backup;
                stats.hard_links += 1;
                pax_records(tar, &entry)?;
                header.set_entry_type(tar::EntryType::Link);
                tar.append_link(&mut header, &relative, &primary)
                    .map_err(io)?;
                return Ok(entry);
            }
            if let Some(earlier) = parent.get(&relative)?.filter(|p| entry.unchanged_since(p)) {
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
