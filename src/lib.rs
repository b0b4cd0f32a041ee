//! **dr**: disaster recovery for PostgreSQL, SQLite, Redis and files: streamed, compressed
//! (zstd), encrypted (age), checksummed backups in any object store, verified, restorable,
//! and pruned by a retention policy that explains itself.
//!
//! This facade re-exports the crates: [`core`] (traits, pipeline, repository, retention) and,
//! with the default features, [`storage`] (repository destinations from URLs) and
//! [`sqlite`], [`postgres`] and [`redis`] (the backends).
//!
//! ```
//! # #[tokio::main] async fn main() -> dr::Result<()> {
//! let identities = dr::Identities::generate();
//! let repo = dr::storage::init_repository("memory://", &[], &identities.to_recipients()).await?;
//! assert!(repo.list(None).await?.is_empty());
//! # Ok(()) }
//! ```

pub use dr_core as core;
pub use dr_core::*;

#[cfg(feature = "storage")]
pub use dr_storage as storage;

#[cfg(feature = "sqlite")]
pub use dr_sqlite as sqlite;

#[cfg(feature = "postgres")]
pub use dr_postgres as postgres;

#[cfg(feature = "redis")]
pub use dr_redis as redis;

/// A registry of every backend this build has (by feature): their source types for
/// configurations and their manifest kinds for verify, restore, drill and bench. Add your
/// own kinds to it before building a [`core::ops::System`].
pub fn registry() -> dr_core::Registry {
    #[allow(unused_mut)]
    let mut registry = dr_core::Registry::new();
    #[cfg(feature = "storage")]
    dr_storage::register(&mut registry);
    #[cfg(feature = "sqlite")]
    dr_sqlite::register(&mut registry);
    #[cfg(feature = "postgres")]
    dr_postgres::register(&mut registry);
    #[cfg(feature = "redis")]
    dr_redis::register(&mut registry);
    registry
}
