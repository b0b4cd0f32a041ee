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
