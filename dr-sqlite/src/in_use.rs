//! Whether a restore target is in use: a process has it open, or (for a valid database) a
//! connection holds its write lock. A damaged file is not "in use": it is what a restore is for.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use dr_core::swap::process_holding;
use dr_core::{Error, Result};
use rusqlite::{Connection, ErrorCode};

use crate::{SIDECARS, sibling};

/// The first 16 bytes of every SQLite database file.
const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses when another process has the target (or one of its sidecars) open, naming the
/// process, or when a connection holds the write lock of a valid database. Returns notes on
/// what is replaced when it is not a valid database (it is kept, like any replaced target).
pub(crate) fn refuse_if_in_use(target: &Path) -> Result<Vec<String>> {
    if std::fs::symlink_metadata(target).is_err() {
        return Ok(Vec::new());
    }
    let mut files = vec![target.to_owned()];
    files.extend(SIDECARS.iter().map(|s| sibling(target, s)));
    if let Some(pid) = process_holding(&files) {
        let name = process_name(pid);
        return Err(in_use(
            target,
            Some(pid),
            format!("process {pid}{name} has it open"),
        ));
    }
    if !has_header(target) {
        return Ok(vec![format!(
            "{} was not a SQLite database (no SQLite header: damaged or another kind of file); it was replaced",
            target.display()
        )]);
    }
    let journal = sibling(target, "-journal");
    if std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0) {
        // No process has it open: a crashed writer's hot journal. Opening the database would
        // roll it back into the file that is about to be kept; leave both as they are.
        return Ok(vec![format!(
            "{} had the hot journal of a crashed writer beside it; both were kept as they were (not rolled back)",
            target.display()
        )]);
    }
    match write_lock_test(target) {
        Ok(()) => Ok(Vec::new()),
        Err(e) => match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Err(in_use(
                target,
                None,
                "another connection holds its write lock: BEGIN IMMEDIATE got SQLITE_BUSY (a RESERVED, PENDING or EXCLUSIVE lock, or the WAL write lock)".into(),
            )),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => Ok(vec![format!(
                "{} was a damaged SQLite database ({e}); it was replaced",
                target.display()
            )]),
            _ => {
                tracing::debug!(error = %e, "the lock test could not run; no process has the file open");
                Ok(Vec::new())
            }
        },
    }
}

fn has_header(path: &Path) -> bool {
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == HEADER)
}

/// Takes and releases the write lock (a hot journal is rolled back, as any opener would).
fn write_lock_test(target: &Path) -> rusqlite::Result<()> {
    let db = Connection::open(target)?;
    db.busy_timeout(Duration::from_millis(200))?;
    db.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
}

/// ` (name)` of a process, from `/proc/<pid>/comm`, or nothing.
fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|n| format!(" ({})", n.trim()))
        .unwrap_or_default()
}

fn in_use(target: &Path, holder_pid: Option<u32>, holder: String) -> Error {
    Error::TargetInUse {
        target: target.display().to_string(),
        holder_pid,
        holder,
        hint: "stop the application first, restore with --to ANOTHER_PATH, or replace it anyway with --force (the previous file is kept aside)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer inside a transaction in another process: the lock test names the lock.
    #[test]
    fn write_lock_held_by_another_process_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("locked.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let mut child = std::process::Command::new("sqlite3")
            .arg(&db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, b"BEGIN IMMEDIATE;\nSELECT 'locked';\n").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        let err = write_lock_test(&db).unwrap_err();
        drop(stdin);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            err.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy),
            "{err}"
        );
    }
}
