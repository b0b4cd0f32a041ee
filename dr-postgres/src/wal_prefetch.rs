//! WAL prefetch for recovery: `restore_command` asks for one segment at a time, and against a
//! far store each ask costs several round trips that recovery waits for. So, as pgBackRest's
//! asynchronous archive-get does, `wal-fetch` keeps a spool of the next archived segments,
//! decoded and checked, beside the destination (`pg_wal/.dr-prefetch/<source>/`), filled by a
//! prefetcher that runs in the background while PostgreSQL replays; an ask the spool can
//! answer needs no repository at all.
//!
//! "Not archived" is still only said by the store: a segment missing from the spool is asked
//! of the archive as before, and when the archive answers that it does not have it (the end
//! of recovery) the spool is emptied. A spooled file is written under a temporary name and
//! renamed once whole, so a crash leaves nothing that could be taken for a segment. One
//! prefetcher runs at a time (a lock file holding its process id).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use dr_core::object_store::path::Path as ObjectPath;
use dr_core::{Error, Result};
use futures::{StreamExt, TryStreamExt};

use crate::wal::WalArchive;

/// Segments fetched and decoded at once while prefetching (each holds its stored and plain
/// bytes in memory: about 4 x 21 MiB for 16 MiB segments).
const FETCHES_AT_ONCE: usize = 4;

/// Default number of segments kept ahead (`wal_prefetch` of a postgres source): off until
/// prefetch has run through the whole PITR test suite (the spool test in
/// dr-cli/tests/cli_wal.rs passes again since the spool fix; benches/README.md "WAL replay").
pub const DEFAULT_WAL_PREFETCH: usize = 0;

const LOCK: &str = ".prefetcher.lock";

/// The directory where prefetched WAL segments of one source wait for recovery to ask.
#[derive(Debug, Clone)]
pub struct WalSpool {
    dir: PathBuf,
}

impl WalSpool {
    /// The spool of `source` beside `dest` (the `%p` PostgreSQL gives `restore_command`,
    /// inside `pg_wal`): `pg_wal/.dr-prefetch/<source>/`. PostgreSQL ignores the directory.
    pub fn beside(dest: &Path, source: &str) -> Self {
        let wal_dir = dest.parent().unwrap_or_else(|| Path::new("."));
        WalSpool {
            dir: wal_dir.join(".dr-prefetch").join(source),
        }
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves the prefetched file `name` to `dest`; `false` when it was not prefetched.
    /// Segments before `name` (recovery has passed them) are dropped.
    ///
    /// # Errors
    /// The file could not be moved (it stays in the spool).
    pub fn take(&self, name: &str, dest: &Path) -> Result<bool> {
        if is_segment(name) {
            for passed in self.segments().into_iter().filter(|s| s.as_str() < name) {
                let _ = std::fs::remove_file(self.dir.join(passed));
            }
        }
        let spooled = self.dir.join(name);
        if !spooled.is_file() {
            return Ok(false);
        }
        let moved = std::fs::rename(&spooled, dest).or_else(|_| {
            // Another file system (a spool placed elsewhere): copy, then remove.
            std::fs::copy(&spooled, dest).and_then(|_| std::fs::remove_file(&spooled))
        });
        let doing = || format!("moving {} to {}", spooled.display(), dest.display());
        moved.map_err(|e| Error::io(doing(), e))?;
        Ok(true)
    }

    /// The segments waiting in the spool, in order.
    pub fn segments(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_segment(n))
            .collect();
        names.sort();
        names
    }

    /// Whether a prefetcher should start after `name` was asked for: the spool holds fewer
    /// than half of `ahead` segments after it and no prefetcher is running.
    pub fn wants_prefetcher(&self, name: &str, ahead: usize) -> bool {
        let waiting = self.segments().iter().filter(|s| s.as_str() > name).count();
        ahead > 0 && is_segment(name) && waiting * 2 < ahead && self.running_prefetcher().is_none()
    }

    /// Removes everything prefetched (the archive ended: nothing in it will be asked for).
    pub fn clear(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), "could not empty the WAL prefetch spool: {e}");
        }
    }

    /// Takes the prefetcher lock for this process; `None` while another live one holds it,
    /// or when the spool is gone (emptied because the archive ended: a prefetcher started
    /// before then must not fill it again).
    pub fn lock(&self) -> Option<PrefetcherLock> {
        if !self.dir.is_dir() {
            return None;
        }
        let path = self.dir.join(LOCK);
        for _ in 0..2 {
            match std::fs::File::create_new(&path) {
                Ok(mut file) => {
                    let _ = write!(file, "{}", std::process::id());
                    return Some(PrefetcherLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if self.running_prefetcher().is_some() {
                        return None;
                    }
                    // Left by a prefetcher that died: take it over.
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// The process id of the prefetcher holding the lock, when it is alive.
    fn running_prefetcher(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join(LOCK)).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Keeps the decoded, checked bytes of `name` for a later [`WalSpool::take`]. Fails
    /// when the spool is gone (see [`WalSpool::lock`]): it is never created again here.
    fn put(&self, name: &str, plain: &[u8]) -> std::io::Result<()> {
        let partial = self.dir.join(format!("{name}.partial"));
        let written = std::fs::write(&partial, plain)
            .and_then(|()| std::fs::rename(&partial, self.dir.join(name)));
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written
    }
}

/// Held by the one running prefetcher of a spool; released when dropped.
#[derive(Debug)]
pub struct PrefetcherLock {
    path: PathBuf,
}

impl Drop for PrefetcherLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A WAL segment's name (24 hex digits: timeline, log, segment), not a history or label file.
fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit())
}

impl WalArchive<'_> {
    /// Fills `spool` with up to `ahead` archived segments after `name` in its timeline
    /// (those not already there); returns how many it added. A segment that fails to fetch
    /// is left out (its own ask fetches it and reports the failure then).
    ///
    /// # Errors
    /// Store errors of the listing.
    pub async fn prefetch_after(
        &self,
        name: &str,
        spool: &WalSpool,
        ahead: usize,
    ) -> Result<usize> {
        let present = spool.segments();
        let wanted: Vec<String> = self
            .archived_after(name, ahead)
            .await?
            .into_iter()
            .filter(|n| !present.contains(n))
            .collect();
        let mut fetches = futures::stream::iter(wanted)
            .map(|n| async move { (self.fetch_bytes(&n).await, n) })
            .buffered(FETCHES_AT_ONCE);
        let mut added = 0;
        while let Some((fetched, n)) = fetches.next().await {
            match fetched {
                Ok(Some(plain)) => match spool.put(&n, &plain) {
                    Ok(()) => added += 1,
                    Err(e) if !spool.dir().is_dir() => {
                        tracing::debug!("the spool was emptied (the archive ended): {e}");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(file = %n, "could not keep a prefetched WAL segment: {e}")
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::debug!(file = %n, "prefetch failed, left to its own fetch: {e}"),
            }
        }
        Ok(added)
    }

    /// Up to `count` archived segments after `name` in its timeline, in order (one listing).
    async fn archived_after(&self, name: &str, count: usize) -> Result<Vec<String>> {
        let prefix = self.timeline_dir(name);
        let offset = ObjectPath::from(format!("{prefix}/{name}.json"));
        self.store()
            .list_with_offset(Some(&prefix), &offset)
            .try_filter_map(|meta| async move {
                let file = meta.location.filename().unwrap_or_default();
                let segment = file.strip_suffix(".json").filter(|n| is_segment(n));
                Ok(segment.map(str::to_owned))
            })
            .take(count)
            .try_collect()
            .await
            .map_err(|e| Error::store(format!("listing {prefix}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_moves_a_spooled_segment_and_drops_passed_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("RECOVERYXLOG");
        let spool = WalSpool::beside(&dest, "db");
        std::fs::create_dir_all(spool.dir()).expect("spool");
        let (old, now) = ("000000010000000000000003", "000000010000000000000004");
        spool.put(old, b"old").expect("put");
        spool.put(now, b"now").expect("put");
        assert!(spool.take(now, &dest).expect("take"));
        assert_eq!(std::fs::read(&dest).expect("dest"), b"now");
        assert!(spool.segments().is_empty(), "the passed segment is dropped");
        assert!(!spool.take(now, &dest).expect("take"), "taken once");
    }

    #[test]
    fn history_files_do_not_drop_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("RECOVERYHISTORY");
        let spool = WalSpool::beside(&dest, "db");
        std::fs::create_dir_all(spool.dir()).expect("spool");
        spool.put("000000010000000000000004", b"seg").expect("put");
        assert!(!spool.take("00000002.history", &dest).expect("take"));
        assert_eq!(spool.segments(), ["000000010000000000000004"]);
        spool.clear();
        assert!(!spool.dir().exists());
    }

    #[test]
    fn one_prefetcher_at_a_time_and_a_dead_ones_lock_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = WalSpool::beside(&dir.path().join("RECOVERYXLOG"), "db");
        let name = "000000010000000000000004";
        assert!(spool.lock().is_none(), "no spool: nothing to fill");
        std::fs::create_dir_all(spool.dir()).expect("spool");
        assert!(spool.wants_prefetcher(name, 16));
        let held = spool.lock().expect("first lock");
        assert!(spool.lock().is_none(), "this process holds it");
        assert!(!spool.wants_prefetcher(name, 16), "one is running");
        drop(held);
        std::fs::write(spool.dir().join(LOCK), "4000000000").expect("a dead process's lock");
        assert!(
            spool.lock().is_some(),
            "a dead prefetcher's lock is taken over"
        );
        for n in 5..=12 {
            spool
                .put(&format!("0000000100000000000000{n:02X}"), b"s")
                .expect("put");
        }
        assert!(!spool.wants_prefetcher(name, 16), "8 of 16 waiting: enough");
        assert!(spool.wants_prefetcher(name, 18), "8 of 18: fewer than half");
        assert!(!spool.wants_prefetcher(name, 0), "prefetch off");
    }
}
