//! The core of **dr**: the traits a datastore backend implements, the streaming
//! zstd + age pipeline, the repository with its manifests, and retention.
//!
//! Every backup goes one way: plain bytes are cut into parts; each part is hashed, compressed
//! into one zstd frame, encrypted into one age file, hashed again and written as one object;
//! a manifest written last commits the backup. Reading reverses it on several cores and hands
//! out bytes only after they checked.
//!
//! ```
//! use std::sync::Arc;
//! use dr_core::{Backup, BackupOptions, BackupSelector, BackupWriter, Identities, Repository, Result, SourceInfo};
//! use object_store::memory::InMemory;
//!
//! struct Greeting;
//!
//! #[async_trait::async_trait]
//! impl Backup for Greeting {
//!     fn kind(&self) -> &'static str { "example" }
//!     async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
//!         out.put_artifact("hello", &mut &b"hello, world"[..]).await?;
//!         Ok(SourceInfo::new())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<()> {
//! let key = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
//! let identities = Identities::parse(key, "example")?;
//! let store = Arc::new(InMemory::new());
//! let repo = Repository::init(store, "memory://", &identities.to_recipients()).await?
//!     .with_identities(identities);
//! let manifest = repo.backup("greeting", &Greeting, &BackupOptions::default()).await?;
//!
//! let reader = repo.open_backup("greeting", &BackupSelector::Latest).await?;
//! let mut restored = Vec::new();
//! reader.copy_artifact("hello", &mut restored).await?;
//! assert_eq!(restored, b"hello, world");
//! assert_eq!(reader.id(), manifest.id);
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod checks;
pub mod copy;
pub mod drill;
mod error;
mod fs;
mod keys;
pub mod latency;
pub mod lease;
mod listing;
pub mod locks;
mod manifest;
pub mod ops;
mod pipeline;
mod points;
mod progress;
mod redact;
pub mod registry;
pub mod report;
mod repository;
pub mod retention;
mod sealed;
mod selector;
pub mod status;
pub mod store;
pub mod swap;
mod traits;
mod units;
pub mod untar;
pub mod verify;

pub use error::{BoxError, Error, LOAD_A_KEY, Refusal, Result};
pub use fs::{SparseFile, sibling_path};
pub use keys::{Identities, Recipients, generate_identity_file};
pub use listing::{CACHE_DIR_ENV, NO_CACHE_ENV, default_cache_dir};
pub use listing::{Listing, UnreadableBackup};
pub use manifest::{
    ArtifactRecord, Encoding, MANIFEST_FORMAT_VERSION, Manifest, NOTES_KEY, PartRecord,
    SAFETY_LABEL, SourceInfo, backup_notes, check_name,
};
pub use pipeline::{
    ArtifactReader, ArtifactWriter, BackupReader, BackupWriter, DEFAULT_PART_SIZE, EncodedPart,
    ExpectedPart, PipelineOptions, decode_part, encode_part, sha256_hex,
};
pub use points::{
    FailedMember, PointListing, PointMember, PointSelector, RecoveryPoint, UnreadablePoint,
};
pub use progress::{Event, NoProgress, Operation, Progress, ProgressHandle, Scope};
pub use redact::{percent_decode, redact_url};
pub use registry::{
    KindSupport, Registry, RestoreRank, RestoreRequest, Source, SourceFactory, SourceSettings,
};
pub use repository::{
    BackupOptions, LockProblem, LockReport, Orphan, REPOSITORY_FORMAT_VERSION, Repository,
    RepositoryConfig,
};
pub use retention::{Plan, RetentionPolicy};
pub use selector::BackupSelector;
pub use traits::{
    Backup, Restore, RestoreOptions, RestoreReport, Verify, VerifyLevel, VerifyReport,
};
pub use units::human_size;
pub use verify::{
    ChecksumsOnly, Findings, KindVerifier, ProblemKind, VerifyProblem, verify_backup,
};

/// Re-exported so that backends and tests use the same versions.
pub use async_trait::async_trait;
pub use chrono;
pub use object_store;
pub use serde_json;
