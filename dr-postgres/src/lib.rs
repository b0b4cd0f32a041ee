//! PostgreSQL backend for dr: logical backups, and physical base backups with a WAL archive
//! for point-in-time recovery.
//!
//! - [`PostgresSource`]: `pg_dump --format=custom --compress=0` streamed from its stdout into
//!   the pipeline (zstd does the compressing), from a snapshot exported in a repeatable-read
//!   transaction that also records the facts (server and pg_dump versions, database size,
//!   system identifier, row counts), so the counts describe exactly the dump; plus
//!   `pg_dumpall --globals-only` (without passwords where pg_authid is unreadable), and the
//!   database's own properties ([`DatabaseProperties`]: owner, ACL, settings, comment,
//!   connection limit, encoding, locale), which every restore mode applies. The password reaches the children only through `PGPASSWORD`;
//!   a child's non-zero exit fails the backup, so a failed dump is never committed.
//! - [`PostgresTarget`]: restores into a new database (`<db>_restored_<time>`), checks row
//!   counts, orphans through every foreign key and user checks, drops it again on any failure,
//!   and on request swaps it in (`<db>` kept as `<db>_pre_restore_<time>`).
//! - [`PostgresVerifier`]: checksums, `pg_restore --list`, and at `Restore` level a test restore
//!   into a scratch database that is dropped afterwards, with the time it took.
//! - [`PostgresBaseSource`]: `pg_basebackup` as a tar streamed into the pipeline, recording WAL
//!   positions, timeline and system identifier; [`WalArchive`] behind `dr wal-push`/`wal-fetch`;
//!   [`pitr::plan`] and [`restore_pitr`]: point-in-time recovery into a new data directory,
//!   refusing targets the archive does not reach (a gap, WAL not archived yet).
//! - [`tls`]: libpq's `sslmode`, `sslrootcert`, `sslcert`, `sslkey` as URL parameters; dr's
//!   connections over rustls, the children's through `PGSSLMODE` & co. in their environment.
//! - [`register`]: the `postgres` source type ([`PostgresSourceFactory`] building a
//!   [`LogicalSource`] or a [`PhysicalSource`] from [`PostgresSettings`], each running its
//!   whole restore flow from `RestoreOptions`), and the kinds `postgres.logical` and
//!   `postgres.base` with the WAL archive as a registry archive ([`WalArchiveSupport`]).
//!
//! ```no_run
//! # async fn demo(repo: dr_core::Repository) -> dr_core::Result<()> {
//! use dr_postgres::{PgConnection, PostgresSource, PostgresTarget};
//! let conn = PgConnection::from_url("postgres://app:secret@127.0.0.1:5432/shop")?;
//! let manifest = repo.backup("shop", &PostgresSource::new(conn.clone()), &Default::default()).await?;
//! let options = dr_core::RestoreOptions::default().with_swap(true);
//! dr_core::Restore::restore(&PostgresTarget::new(conn), &repo.reader(manifest), &options).await?;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod acl;
mod backup;
mod base;
mod base_verify;
mod checks;
mod child;
mod conn;
pub mod continuity;
mod dbprops;
mod drill;
mod globals;
pub mod lsn;
mod pgrestore;
pub mod pitr;
pub mod probe;
mod recover;
mod restore;
mod sessions;
pub mod source;
pub mod tls;
mod verify;
pub mod wal;
mod wal_prefetch;
pub mod walscan;

pub use backup::{DUMP_ARTIFACT, GLOBALS_ARTIFACT, KIND, PostgresSource};
pub use base::{BASE_ARTIFACT, BASE_KIND, BaseBackupFacts, PostgresBaseSource};
pub use base_verify::BaseVerifier;
pub use checks::{
    CheckOutcome, check_restored, check_restored_with, newest_timestamps, row_counts,
};
pub use conn::{PgConnection, quote_ident};
pub use continuity::{ArchiveCheck, WalRun, check_archive, unneeded_wal};
pub use dbprops::{DATABASE_ARTIFACT, DatabaseProperties};
pub use drill::RecoveryDrill;
pub use globals::{GlobalsOutcome, apply_globals};
pub use lsn::Lsn;
pub use pitr::{PitrPlan, RecoveryTarget};
pub use recover::{LOG_FILE, PitrOptions, PitrReport, restore_pitr};
pub use restore::{DEFAULT_WAIT, PostgresTarget, check_whole_backup};
pub use source::{
    BaseKindSupport, GlobalsDetails, LogicalDetails, LogicalKindSupport, LogicalSource, PgMethod,
    PhysicalSource, PitrDetails, PostgresSettings, PostgresSourceFactory, WalArchiveSupport,
};
pub use tls::{SslMode, TlsSettings};
pub use verify::PostgresVerifier;
pub use wal::{ArchiveContents, ArchivedFile, PushOutcome, WalArchive, system_identifier};
pub use wal_prefetch::{DEFAULT_WAL_PREFETCH, WalSpool};

/// Adds this crate's source types and manifest kinds to `registry`.
///
/// - source type `postgres` ([`PostgresSourceFactory`], settings [`PostgresSettings`]);
/// - manifest kinds `postgres.logical` ([`LogicalKindSupport`]: checksums only without a
///   configured source) and `postgres.base` ([`BaseKindSupport`]: [`BaseVerifier`] and the
///   WAL archive, [`WalArchiveSupport`]).
pub fn register(registry: &mut dr_core::Registry) {
    registry
        .register_source_type(std::sync::Arc::new(PostgresSourceFactory))
        .register_kind(std::sync::Arc::new(LogicalKindSupport))
        .register_kind(std::sync::Arc::new(BaseKindSupport));
}
