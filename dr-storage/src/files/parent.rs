//! The parent of an incremental backup, read in step with the new one: both list their
//! entries in the same order (a directory's paths, a bucket's keys), so the parent's index
//! is merge-joined entry by entry instead of held in memory.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dr_core::{BackupReader, Error, Result};

use super::index::{FileEntry, FileIndex};
use super::index_stream::IndexStream;

/// The backup an incremental one compares its source with.
#[derive(Clone)]
pub(crate) enum Parent {
    /// Its index, in memory.
    Loaded { id: String, index: Arc<FileIndex> },
    /// Its index, streamed beside the new backup.
    Streamed { reader: BackupReader },
}

impl Parent {
    /// The parent's backup id.
    pub(crate) fn id(&self) -> &str {
        match self {
            Parent::Loaded { id, .. } => id,
            Parent::Streamed { reader } => reader.id(),
        }
    }
}

/// The parent's index read in order (blocking calls: use it from the blocking pool), each
/// entry compared by the key `key_of` gives it.
pub(crate) struct ParentFiles<K> {
    id: String,
    entries: ParentEntries,
    key_of: fn(&FileEntry) -> K,
    /// The next parent entry that holds its own bytes, with its key.
    peeked: Option<(K, FileEntry)>,
    /// The parent's link groups met so far (the first name of each holds the bytes).
    seen_groups: HashSet<u64>,
}

enum ParentEntries {
    None,
    Loaded(Arc<FileIndex>, usize),
    Streamed(Box<IndexStream>),
}

impl<K: Ord> ParentFiles<K> {
    /// Starts reading `parent`'s index (call from the runtime); no parent: nothing found.
    ///
    /// # Errors
    /// A parent without an index, said with what to do.
    pub(crate) fn open(parent: Option<&Parent>, key_of: fn(&FileEntry) -> K) -> Result<Self> {
        let (id, entries) = match parent {
            None => (String::new(), ParentEntries::None),
            Some(Parent::Loaded { id, index }) => {
                (id.clone(), ParentEntries::Loaded(index.clone(), 0))
            }
            Some(Parent::Streamed { reader }) => {
                let stream = IndexStream::open(reader).map_err(|e| parent_error(reader.id(), e))?;
                (
                    reader.id().to_owned(),
                    ParentEntries::Streamed(Box::new(stream)),
                )
            }
        };
        Ok(ParentFiles {
            id,
            entries,
            key_of,
            peeked: None,
            seen_groups: HashSet::new(),
        })
    }

    fn pull(&mut self) -> Result<Option<FileEntry>> {
        match &mut self.entries {
            ParentEntries::None => Ok(None),
            ParentEntries::Loaded(index, at) => {
                let entry = index.entries.get(*at).cloned();
                *at += 1;
                Ok(entry)
            }
            ParentEntries::Streamed(stream) => {
                stream.next_entry().map_err(|e| parent_error(&self.id, e))
            }
        }
    }

    /// The parent's entry for `key` when the parent's tar holds those bytes under that
    /// name (not a second name of a hard link). Asked in order; a parent index out of that
    /// order only costs files stored again, never a wrong reference.
    ///
    /// # Errors
    /// A damaged parent index, said with what to do.
    pub(crate) fn get(&mut self, key: &K) -> Result<Option<FileEntry>> {
        loop {
            if self.peeked.is_none() {
                let Some(entry) = self.pull()? else {
                    return Ok(None);
                };
                if entry
                    .link_group
                    .is_some_and(|g| !self.seen_groups.insert(g))
                {
                    continue;
                }
                self.peeked = Some(((self.key_of)(&entry), entry));
            }
            let Some((at, _)) = &self.peeked else {
                return Ok(None);
            };
            match at.cmp(key) {
                Ordering::Less => self.peeked = None,
                Ordering::Equal => return Ok(self.peeked.take().map(|(_, e)| e)),
                Ordering::Greater => return Ok(None),
            }
        }
    }
}

/// A parent index that cannot be read.
fn parent_error(parent: &str, e: Error) -> Error {
    Error::backend(
        "files",
        "backup",
        format!(
            "reading the file index of {parent}, the parent of this incremental backup, failed \
             ({e}); back up with `full` (--full) to start afresh"
        ),
    )
}

/// Adds the backup holding `entry`'s bytes to `holders` unless it is `own`, the backup being
/// written.
pub(crate) fn note_holder(holders: &mut BTreeSet<String>, entry: &FileEntry, own: &str) {
    if let Some(holder) = entry.stored_in.as_ref().filter(|h| **h != own)
        && !holders.contains(holder)
    {
        holders.insert(holder.clone());
    }
}

/// The backups an increment needs: after it was written, the other backups its entries
/// name (`written`), then its parent; before, what the parent's index says (its parent
/// alone when the index is streamed).
pub(crate) fn dependencies(
    parent: Option<&Parent>,
    written: &Mutex<Option<Vec<String>>>,
) -> Vec<String> {
    match (parent, lock_holders(written).clone()) {
        (None, _) => Vec::new(),
        (Some(parent), Some(mut holders)) => {
            holders.retain(|holder| holder != parent.id());
            holders.push(parent.id().to_owned());
            holders
        }
        (Some(Parent::Loaded { id, index }), None) => {
            super::backup::parent_dependencies(Some((id, index)))
        }
        (Some(Parent::Streamed { reader }), None) => vec![reader.id().to_owned()],
    }
}

/// The holders recorded by the last backup written.
pub(crate) fn lock_holders(
    holders: &Mutex<Option<Vec<String>>>,
) -> MutexGuard<'_, Option<Vec<String>>> {
    holders.lock().unwrap_or_else(PoisonError::into_inner)
}
