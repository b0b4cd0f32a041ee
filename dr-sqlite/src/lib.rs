//! SQLite backend for dr.
//!
//! - [`SqliteSource`] takes a consistent snapshot of a live database (other connections may
//!   keep writing, WAL or rollback-journal mode) inside one read transaction: it streams the
//!   database file itself where SQLite guarantees the file is the snapshot (see
//!   [`SnapshotMethod::Auto`]), otherwise copies it with the online backup API into a
//!   temporary file that is streamed and removed afterwards, also on failure.
//! - [`SqliteTarget`] restores into a temporary file beside the target, checks it
//!   (`quick_check` by default or `integrity_check`, row counts, user checks), fsyncs it and renames it into place, keeping the previous
//!   file (and its `-wal`/`-shm`) as `<name>.pre-restore-<time>`.
//! - [`SqliteVerifier`] adds, at [`dr_core::VerifyLevel::Restore`], a restore into a scratch
//!   file with `integrity_check`, `foreign_key_check`, the recorded row counts and user checks.
//!
//! ```no_run
//! # async fn demo(repo: dr_core::Repository) -> dr_core::Result<()> {
//! use dr_sqlite::{SqliteSource, SqliteTarget};
//! let manifest = repo.backup("app", &SqliteSource::new("app.db"), &Default::default()).await?;
//! let reader = repo.reader(manifest);
//! let report = dr_core::Restore::restore(&SqliteTarget::new("app.db"), &reader, &Default::default()).await?;
//! println!("restored into {}, previous kept at {:?}", report.target, report.previous_kept_at);
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod backup;
mod check;
mod restore;
mod verify;

pub use backup::{SnapshotMethod, SqliteOptions, SqliteSource};
pub use check::{CheckOutcome, Integrity, UserCheck, check_database};
pub use restore::SqliteTarget;
pub use verify::SqliteVerifier;

/// The artifact holding the database file.
pub const DB_ARTIFACT: &str = "db";
/// The manifest kind.
pub const KIND: &str = "sqlite";

/// `<path><suffix>`, e.g. the `-wal` and `-shm` files beside a database.
use dr_core::sibling_path as sibling;

fn sqlite_error(what: &str, e: rusqlite::Error) -> dr_core::Error {
    dr_core::Error::Source(format!("SQLite {what}: {e}"))
}
