//! Redis backend for dr.
//!
//! - [`RedisSource`]: in [`RedisMode::Rdb`], the RDB the server sends a replica (`PSYNC ? -1`
//!   with `REPLCONF rdb-only 1`, disk-based `$<length>` or diskless `$EOF:<mark>`), streamed
//!   into the pipeline at the speed the server sends and checked on the way (every opcode,
//!   CRC64) while the per-database key counts are taken; in [`RedisMode::Logical`], for
//!   managed servers that refuse SYNC, `SCAN` + pipelined `DUMP`/`PTTL` into a documented
//!   record stream ([`logical`]: each key is consistent, the whole is not one point in time).
//! - [`RedisFileTarget`]: the RDB staged beside the target file ([`dr_core::swap`]), checked,
//!   given the replaced file's owner, group and mode, the previous file kept as
//!   `<name>.pre-restore-<time>[-N]`, with optional stop/start commands around the swap;
//!   refused while the server at the source's URL runs and saves to the target file (it
//!   would overwrite the restored file on its next save or shutdown).
//! - [`RedisReplayTarget`]: Functions libraries (`FUNCTION LOAD REPLACE`) then keys replayed
//!   into a running server with pipelined `RESTORE ... ABSTTL REPLACE` (the absolute expiry
//!   times of the backup; keys expired since are skipped and counted), from logical backups
//!   and from RDB backups (each RDB entry becomes a DUMP payload). The whole backup is read and checked before the first
//!   key is written; `--force` over existing keys takes a safety backup of the target first
//!   (label `pre-restore`); a failure part of the way says how many keys were written and
//!   not, and how to finish or undo.
//! - [`RedisVerifier`]: checksums, a full parse with key counts compared to the recorded
//!   ones, and at `Restore` level a scratch redis-server loading the backup.
//! - Connections ([`RedisConnection`]): `redis://` or `rediss://` (TLS: [`RedisTls`], one
//!   rustls configuration for every connection). Commands go through the `redis` crate
//!   ([`RedisClient`]); only the replication payload after `PSYNC`, which the crate cannot
//!   carry, is read directly from the same (TLS) stream.
//!
//! ```no_run
//! # async fn demo(repo: dr_core::Repository) -> dr_core::Result<()> {
//! use dr_redis::{RedisConnection, RedisReplayTarget, RedisSource};
//! let conn = RedisConnection::from_url("redis://:secret@127.0.0.1:6379")?;
//! let manifest = repo.backup("cache", &RedisSource::new(conn.clone()), &Default::default()).await?;
//! let target = RedisReplayTarget::new(RedisConnection::from_url("redis://127.0.0.1:6380")?);
//! dr_core::Restore::restore(&target, &repo.reader(manifest), &Default::default()).await?;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod backup;
mod client;
mod connection;
mod live;
pub mod logical;
pub mod rdb;
mod replay;
mod replay_io;
mod replication;
mod restore;
mod source;
mod stream;
mod tls;
mod transport;
mod verify;

pub use backup::{LOGICAL_KIND, RDB_ARTIFACT, RDB_KIND, RedisMode, RedisSource};
pub use client::RedisClient;
pub use connection::RedisConnection;
/// The `redis` crate dr talks to servers with (for [`RedisClient::connection`] and its
/// [`redis::Value`] replies).
pub use redis;
pub use replay::{PRE_RESTORE_LABEL, RedisReplayTarget};
pub use restore::{RedisFileTarget, check_file};
pub use source::{
    RedisConfigured, RedisKind, RedisSettings, RedisSourceFactory, SOURCE_TYPE, explain_auth,
    scratch_path,
};
pub use tls::RedisTls;
pub use verify::RedisVerifier;

/// Adds this crate's source types and manifest kinds to `registry`.
/// `kind = "redis"` sources ([`RedisSourceFactory`]) and the `redis.rdb` and
/// `redis.logical` manifest kinds ([`RedisKind`]).
pub fn register(registry: &mut dr_core::Registry) {
    use std::sync::Arc;
    registry
        .register_source_type(Arc::new(RedisSourceFactory))
        .register_kind(Arc::new(RedisKind::new(RDB_KIND)))
        .register_kind(Arc::new(RedisKind::new(LOGICAL_KIND)));
}
