//! Checks of a database file: integrity, foreign keys, row counts, user checks.

use std::collections::BTreeMap;
use std::path::Path;

pub use dr_core::checks::UserCheck;
use dr_core::checks::expectation_holds;
use dr_core::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::backup::row_counts;
use crate::sqlite_error;

/// How thoroughly to check the b-trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Integrity {
    /// `PRAGMA integrity_check`: everything, including that indexes match their tables.
    #[default]
    Full,
    /// `PRAGMA quick_check`: page and b-tree structure in linear time, without index contents.
    Quick,
}

impl Integrity {
    fn pragma(self) -> &'static str {
        match self {
            Integrity::Full => "integrity_check",
            Integrity::Quick => "quick_check",
        }
    }
}

/// What the checks found.
#[derive(Debug, Clone, Default)]
pub struct CheckOutcome {
    /// Checks that passed, in words.
    pub passed: Vec<String>,
    /// Checks that failed, in words.
    pub problems: Vec<String>,
}

/// Opens `path` read-only and runs `integrity`'s check, `foreign_key_check`, compares the row
/// counts with `expected_rows` (when given) and runs `user_checks`.
///
/// # Errors
/// [`Error::Backend`] when the file cannot be opened as a database at all; failed checks are
/// reported in the outcome.
pub fn check_database(
    path: &Path,
    expected_rows: Option<&BTreeMap<String, u64>>,
    user_checks: &[UserCheck],
    integrity: Integrity,
) -> Result<CheckOutcome> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sqlite_error(&format!("opening {}", path.display()), e))?;
    Ok(run_checks(&db, expected_rows, user_checks, integrity))
}

/// [`check_database`] of a restored copy that no other connection uses, opened `immutable`:
/// SQLite takes no locks and creates no `-wal` or `-shm` beside it (a read-only connection
/// to a WAL-mode file would, and leave them behind).
pub(crate) fn check_restored(
    path: &Path,
    expected_rows: Option<&BTreeMap<String, u64>>,
    user_checks: &[UserCheck],
    integrity: Integrity,
) -> Result<CheckOutcome> {
    let db = open_immutable(path)?;
    Ok(run_checks(&db, expected_rows, user_checks, integrity))
}

/// Opens a file no other connection uses read-only, without locks, `-wal` or `-shm`.
pub(crate) fn open_immutable(path: &Path) -> Result<Connection> {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| sqlite_error(&format!("opening {}", path.display()), e))
}

fn run_checks(
    db: &Connection,
    expected_rows: Option<&BTreeMap<String, u64>>,
    user_checks: &[UserCheck],
    integrity: Integrity,
) -> CheckOutcome {
    let mut outcome = CheckOutcome::default();
    record(&mut outcome, integrity_check(db, integrity));
    record(&mut outcome, foreign_keys(db));
    if let Some(expected) = expected_rows {
        record(&mut outcome, compare_rows(db, expected));
    }
    for check in user_checks {
        record(&mut outcome, run_user_check(db, check));
    }
    outcome
}

fn record(outcome: &mut CheckOutcome, result: std::result::Result<String, String>) {
    match result {
        Ok(passed) => outcome.passed.push(passed),
        Err(problem) => outcome.problems.push(problem),
    }
}

type Check = std::result::Result<String, String>;

fn integrity_check(db: &Connection, integrity: Integrity) -> Check {
    let name = integrity.pragma();
    let lines = column_strings(db, &format!("PRAGMA {name}"))
        .map_err(|e| format!("{name} could not run: {e}"))?;
    if lines == ["ok"] {
        Ok(format!("{name} ok"))
    } else {
        Err(format!("{name} failed: {}", lines.join("; ")))
    }
}

fn foreign_keys(db: &Connection) -> Check {
    let violations = db
        .prepare("PRAGMA foreign_key_check")
        .and_then(|mut s| s.query_map([], |_| Ok(())).map(|rows| rows.count()))
        .map_err(|e| format!("foreign_key_check could not run: {e}"))?;
    if violations == 0 {
        Ok("foreign_key_check ok".into())
    } else {
        Err(format!(
            "foreign_key_check found {violations} orphaned rows"
        ))
    }
}

fn compare_rows(db: &Connection, expected: &BTreeMap<String, u64>) -> Check {
    let actual = row_counts(db).map_err(|e| e.to_string())?;
    if &actual == expected {
        let total: u64 = actual.values().sum();
        return Ok(format!(
            "row counts match the backup ({} tables, {total} rows)",
            actual.len()
        ));
    }
    let mut differences = Vec::new();
    for (table, want) in expected {
        match actual.get(table) {
            Some(got) if got == want => {}
            Some(got) => differences.push(format!("{table}: {got} rows, backup recorded {want}")),
            None => differences.push(format!("{table}: missing, backup recorded {want} rows")),
        }
    }
    differences.extend(
        actual
            .keys()
            .filter(|t| !expected.contains_key(*t))
            .map(|t| format!("{t}: not in the backup")),
    );
    Err(format!("row counts differ: {}", differences.join("; ")))
}

fn run_user_check(db: &Connection, check: &UserCheck) -> Check {
    let value: f64 = db
        .query_row(&check.sql, [], |row| row.get::<_, f64>(0))
        .map_err(|e| format!("check {} could not run: {e}", check.name))?;
    let satisfied = expectation_holds(&check.expect, value)
        .map_err(|e| format!("check {}: {e}", check.name))?;
    let shown = format!("check {}: {value} {}", check.name, check.expect);
    if satisfied {
        Ok(format!("{shown} ok"))
    } else {
        Err(format!("{shown} failed"))
    }
}

fn column_strings(db: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = db.prepare(sql)?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    rows.collect()
}

/// Row counts recorded in a manifest's source info, if any.
pub(crate) fn recorded_rows(info: &dr_core::SourceInfo) -> Option<BTreeMap<String, u64>> {
    info.get("row_counts")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Fails with the problems of an outcome as one error.
pub(crate) fn require_clean(outcome: &CheckOutcome, what: &str) -> Result<()> {
    if outcome.problems.is_empty() {
        return Ok(());
    }
    Err(Error::ChecksFailed {
        subject: what.to_owned(),
        problems: outcome.problems.join("; "),
    })
}
