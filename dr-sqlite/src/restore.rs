//! Restore through [`dr_core::swap`]: staged beside the target, checked, given its
//! attributes, fsynced and swapped into place.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dr_core::swap::{Attributes, Inherit, Staging};
use dr_core::{
    BackupReader, Error, Restore, RestoreOptions, RestoreReport, Result, SourceInfo, async_trait,
};

use crate::check::{Integrity, UserCheck, check_restored, recorded_rows, require_clean};
use crate::in_use::refuse_if_in_use;
use crate::{DB_ARTIFACT, SIDECARS};

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
    /// Over an existing file, the restored file gets that file's owner, group, mode and
    /// extended attributes; at a new path, the owner, group and mode the backup recorded
    /// (`file_uid`, `file_gid`, `file_mode`), except that only root can give another owner:
    /// a restore by another user gives the file that user's ownership (like `cp`) and says
    /// so in [`RestoreReport::notes`].
    async fn restore(&self, backup: &BackupReader, opts: &RestoreOptions) -> Result<RestoreReport> {
        let started = Instant::now();
        let target = std::path::absolute(opts.target.as_deref().unwrap_or(&self.path))
            .map_err(|e| Error::io("resolving the restore target", e))?;
        let force = opts.force;
        // The /proc scan, the lock test (which may recover and checkpoint a large WAL) and
        // the staged file's creation are blocking I/O: off the runtime threads.
        let (mut notes, staging) = crate::blocking("preparing the restore", move || {
            let notes = match force {
                true => Vec::new(),
                false => refuse_if_in_use(&target)?,
            };
            Ok((notes, Staging::file(&target)?.with_sidecars(SIDECARS)))
        })
        .await?;
        let target = staging.target().to_owned();
        let restored_bytes = write_artifact(backup, staging.path()).await?;
        let expected = recorded_rows(&backup.manifest().source_info);
        let (checks, staged_path, integrity) = (
            self.user_checks.clone(),
            staging.path().to_owned(),
            self.integrity,
        );
        let outcome = crate::blocking("checking the restored copy", move || {
            check_restored(&staged_path, expected.as_ref(), &checks, integrity)
        })
        .await?;
        require_clean(
            &outcome,
            &format!("the restored copy of backup {}", backup.id()),
        )?;
        let info = backup.manifest().source_info.clone();
        let (swapped, note) = crate::blocking("swapping the restored copy in", move || {
            let (inherit, note) = attributes_for(&staging, &info)?;
            Ok((staging.commit(&inherit)?, note))
        })
        .await?;
        notes.extend(note);
        for kept in &swapped.sidecars_kept {
            notes.push(format!(
                "{} was beside the missing database (a leftover that SQLite would have replayed into the restored file): moved to {}",
                leftover_name(&target, kept),
                kept.display()
            ));
        }
        // The notes are the report's: logged here only for whoever reads logs, not twice on
        // a terminal.
        for note in &notes {
            tracing::info!(target = %target.display(), "{note}");
        }
        tracing::info!(target = %target.display(), backup = backup.id(), "SQLite database restored");
        let mut report = RestoreReport::default();
        report.backup_id = backup.id().to_owned();
        report.target = target.display().to_string();
        report.previous_kept_at = swapped.previous.map(|p| p.display().to_string());
        report.restored_bytes = restored_bytes;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        report.notes = notes;
        report.checks_passed = outcome.passed;
        Ok(report)
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

/// The owner, group and mode the database file had at backup time, if the backup recorded
/// them (backups made before dr recorded them did not).
pub(crate) fn recorded_attributes(info: &SourceInfo) -> Option<(u32, u32, u32)> {
    let id = |k: &str| {
        info.get(k)
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
    };
    let mode = info
        .get("file_mode")
        .and_then(|v| v.as_str())
        .and_then(|m| u32::from_str_radix(m, 8).ok())?;
    Some((id("file_uid")?, id("file_gid")?, mode))
}

/// What the staged file's attributes come from, and a note when the recorded owner cannot
/// be given.
fn attributes_for(staging: &Staging, info: &SourceInfo) -> Result<(Inherit, Option<String>)> {
    if std::fs::symlink_metadata(staging.target()).is_ok() {
        return Ok((Inherit::Replaced, None));
    }
    let Some((uid, gid, mode)) = recorded_attributes(info) else {
        return Ok((
            Inherit::Staged,
            Some(format!(
                "the backup did not record the database file's owner and mode (made by an older dr): {} is owned by the restoring user with mode 0600",
                staging.target().display()
            )),
        ));
    };
    // The staged file was created by this process: its owner is the restoring user.
    let own = std::fs::metadata(staging.path())
        .map_err(|e| Error::io(format!("reading {}", staging.path().display()), e))?;
    let set = |uid, gid| {
        Inherit::Set(Attributes {
            uid,
            gid,
            mode,
            xattrs: Vec::new(),
        })
    };
    if own.uid() == 0 || (own.uid() == uid && own.gid() == gid) {
        return Ok((set(uid, gid), None));
    }
    let note = format!(
        "{} is owned by {}:{} (the restoring user), not by {uid}:{gid} as the backed-up file was: only root can give a file another owner; run `chown {uid}:{gid} {}` as root",
        staging.target().display(),
        own.uid(),
        own.gid(),
        staging.target().display()
    );
    Ok((set(own.uid(), own.gid()), Some(note)))
}

/// The name the leftover sidecar `kept` had beside `target` (`app.db-wal`), from the suffix
/// its new name ends with.
fn leftover_name(target: &std::path::Path, kept: &std::path::Path) -> String {
    let kept_name = kept.to_string_lossy();
    let original = SIDECARS
        .iter()
        .find(|suffix| kept_name.ends_with(*suffix))
        .map_or_else(
            || kept.to_path_buf(),
            |suffix| crate::sibling(target, suffix),
        );
    original
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}
