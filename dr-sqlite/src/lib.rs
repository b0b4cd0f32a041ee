//! SQLite backend for dr.
//!
//! - [`SqliteSource`] takes a consistent snapshot of a live database (other connections may
//!   keep writing, WAL or rollback-journal mode) inside one read transaction. In WAL mode it
//!   streams the database file itself where SQLite guarantees the file is the snapshot (WAL
//!   readers do not block writers); in rollback-journal mode, where a reader blocks every
//!   commit, it copies the file at disk speed into a temporary file under the read lock and
//!   streams that copy after releasing it (see [`SnapshotMethod::Auto`]). It records the
//!   file's owner, group and mode (`file_uid`, `file_gid`, `file_mode`).
//! - [`SqliteTarget`] restores through [`dr_core::swap`]: a staged file beside the target,
//!   checked (`quick_check` by default or `integrity_check`, row counts, user checks), given
//!   the replaced file's owner, group, mode and extended attributes (or, at a new path, those
//!   the backup recorded), fsynced and renamed into place, keeping the previous file (and its
//!   `-wal`/`-shm`/`-journal`) as `<name>.pre-restore-<time>`.
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
mod in_use;
mod restore;
mod source;
mod verify;

pub use backup::{SnapshotMethod, SqliteOptions, SqliteSource};
pub use check::{CheckOutcome, Integrity, UserCheck, check_database};
pub use restore::SqliteTarget;
pub use source::{SqliteConfigured, SqliteKind, SqliteSettings, SqliteSourceFactory, scratch_path};
pub use verify::SqliteVerifier;

/// The artifact holding the database file.
pub const DB_ARTIFACT: &str = "db";
/// Files beside a database that belong to it.
const SIDECARS: &[&str] = &["-wal", "-shm", "-journal"];
/// The manifest kind.
pub const KIND: &str = "sqlite";

/// `<path><suffix>`, e.g. the `-wal` and `-shm` files beside a database.
use dr_core::sibling_path as sibling;

/// A rusqlite error as [`dr_core::Error::Backend`]: retryable when the database was busy or
/// locked.
fn sqlite_error(what: &str, e: rusqlite::Error) -> dr_core::Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    dr_core::Error::backend("sqlite", what, e.to_string())
        .retryable_if(busy)
        .caused_by(e)
}

/// Runs blocking work (rusqlite, file copies, fsyncs, `/proc` scans) on a blocking thread.
async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> dr_core::Result<T> + Send + 'static,
) -> dr_core::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| dr_core::Error::internal(what, e))?
}

/// Adds this crate's source types and manifest kinds to `registry`.
/// `kind = "sqlite"` sources ([`SqliteSourceFactory`]) and the `sqlite` manifest kind
/// ([`SqliteKind`]).
pub fn register(registry: &mut dr_core::Registry) {
    registry
        .register_source_type(std::sync::Arc::new(SqliteSourceFactory))
        .register_kind(std::sync::Arc::new(SqliteKind));
}
