//! Atomic restore: temporary file beside the target, checked, fsynced, renamed into place.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dr_core::{BackupReader, Error, Restore, RestoreOptions, RestoreReport, Result, async_trait};
use rusqlite::Connection;

use crate::check::{Integrity, UserCheck, check_database, recorded_rows, require_clean};
use crate::{DB_ARTIFACT, sibling, sqlite_error};

/// Where to restore a SQLite backup (the target may not exist yet).
#[derive(Debug, Clone)]
pub struct SqliteTarget {
    path: PathBuf,
    user_checks: Vec<UserCheck>,
    integrity: Integrity,
}

impl SqliteTarget {
    /// Restore to `path` (overridden by [`RestoreOptions::target`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteTarget {
            path: path.into(),
            user_checks: Vec::new(),
            integrity: Integrity::Quick,
        }
    }

    /// How thoroughly the restored copy is checked before the swap: `quick_check` by default
    /// (linear time); `integrity_check` also compares every index with its table and can
    /// take several times longer than the restore itself (`dr verify --level restore` runs it).
    pub fn with_integrity(mut self, integrity: Integrity) -> Self {
        self.integrity = integrity;
        self
    }

    /// Checks that must pass on the restored copy before it replaces the target.
    pub fn with_checks(mut self, checks: Vec<UserCheck>) -> Self {
        self.user_checks = checks;
        self
    }
}

#[async_trait]
impl Restore for SqliteTarget {
    async fn restore(&self, backup: &BackupReader, opts: &RestoreOptions) -> Result<RestoreReport> {
        let started = Instant::now();
        let target = std::path::absolute(opts.target.as_deref().unwrap_or(&self.path))
            .map_err(|e| Error::io("resolving the restore target", e))?;
        if !opts.force {
            refuse_if_in_use(&target)?;
        }
        let staged = stage_beside(&target)?;
        let restored_bytes = write_artifact(backup, staged.path()).await?;
        let expected = recorded_rows(&backup.manifest().source_info);
        let (checks, staged_path, integrity) = (
            self.user_checks.clone(),
            staged.path().to_owned(),
            self.integrity,
        );
        let outcome = tokio::task::spawn_blocking(move || {
            check_database(&staged_path, expected.as_ref(), &checks, integrity)
        })
        .await
        .map_err(|e| Error::Usage(format!("check task failed: {e}")))??;
        require_clean(
            &outcome,
            &format!("the restored copy of backup {}", backup.id()),
        )?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let previous = swap_into_place(staged, &target, &stamp)?;
        tracing::info!(target = %target.display(), backup = backup.id(), "SQLite database restored");
        let mut report = RestoreReport::default();
        report.backup_id = backup.id().to_owned();
        report.target = target.display().to_string();
        report.previous_kept_at = previous.map(|p| p.display().to_string());
        report.restored_bytes = restored_bytes;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

/// A temporary file in the target's directory (same filesystem, so the rename is atomic);
/// removed automatically unless it is renamed into place. A missing directory is created
/// (a whole-system recovery onto an empty machine).
fn stage_beside(target: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating the directory {}", dir.display()), e))?;
    let name = file_name(target);
    let prefix = format!(".{name}.dr-restore-");
    remove_abandoned(dir, &prefix);
    tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))
}

/// Removes staged files of restores whose process is gone (killed before it could clean
/// up): their names carry the PID of the restore that wrote them.
fn remove_abandoned(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed the staged file of an interrupted restore")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "could not remove the staged file of an interrupted restore")
                }
            }
        }
    }
}

async fn write_artifact(backup: &BackupReader, staged: &Path) -> Result<u64> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(staged)
        .await
        .map_err(|e| Error::io("opening the staged restore", e))?;
    let written = backup.copy_artifact(DB_ARTIFACT, &mut file).await?;
    file.sync_all()
        .await
        .map_err(|e| Error::io("syncing the staged restore", e))?;
    Ok(written)
}

/// Moves the old file and its `-wal`/`-shm` aside (they must never be replayed onto the new
/// file), then renames the staged file over the target and syncs the directory.
fn swap_into_place(
    staged: tempfile::NamedTempFile,
    target: &Path,
    stamp: &str,
) -> Result<Option<PathBuf>> {
    let kept = unused_name(target, stamp);
    for suffix in ["-wal", "-shm"] {
        let side = sibling(target, suffix);
        if side.exists() {
            rename(&side, &sibling(&kept, suffix))?;
        }
    }
    let previous = if target.exists() {
        std::fs::hard_link(target, &kept)
            .map_err(|e| Error::io(format!("keeping {}", kept.display()), e))?;
        Some(kept)
    } else {
        None
    };
    staged.persist(target).map_err(|e| {
        Error::io(
            format!("renaming the restored file to {}", target.display()),
            e.error,
        )
    })?;
    sync_dir(target)?;
    Ok(previous)
}

/// `<name>.pre-restore-<stamp>`, or with `-2`, `-3`... when a restore in the same second
/// already kept one.
fn unused_name(target: &Path, stamp: &str) -> PathBuf {
    let base = format!("{}.pre-restore-{stamp}", file_name(target));
    (1..)
        .map(|n| match n {
            1 => target.with_file_name(&base),
            n => target.with_file_name(format!("{base}-{n}")),
        })
        .find(|p| !p.exists() && !sibling(p, "-wal").exists())
        .unwrap_or_else(|| target.with_file_name(base))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .map_err(|e| Error::io(format!("moving {} to {}", from.display(), to.display()), e))
}

fn sync_dir(target: &Path) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// Refuses when another process has the database (or its `-wal`/`-shm`) open, or holds a lock.
fn refuse_if_in_use(target: &Path) -> Result<()> {
    if !target.exists() {
        return Ok(());
    }
    let files = [
        target.to_owned(),
        sibling(target, "-wal"),
        sibling(target, "-shm"),
    ];
    if let Some(pid) = process_holding(&files) {
        return Err(in_use(target, &format!("process {pid} has it open")));
    }
    let db = Connection::open(target).map_err(|e| sqlite_error("opening the restore target", e))?;
    if db.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_err() {
        return Err(in_use(target, "another connection holds a lock on it"));
    }
    Ok(())
}

fn in_use(target: &Path, why: &str) -> Error {
    Error::Usage(format!(
        "refusing to replace {} while it is in use ({why}): stop the application first, restore with --to ANOTHER_PATH, or force it",
        target.display()
    ))
}

/// The pid of another process with one of `files` open (Linux /proc), if any.
fn process_holding(files: &[PathBuf]) -> Option<u32> {
    let own = std::process::id();
    let wanted: Vec<PathBuf> = files.iter().filter_map(|f| f.canonicalize().ok()).collect();
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

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "database".into(), |n| n.to_string_lossy().into_owned())
}
