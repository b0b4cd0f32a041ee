//! File trees: a directory source streaming a tar plus a per-file index (incremental over a
//! parent backup), and a restore of the whole tree or selected paths, every file checked
//! against its SHA-256 and nothing written outside the target.

mod attrs;
mod backup;
mod blocking;
mod bucket;
mod bucket_listing;
mod bucket_meta;
mod bucket_restore;
mod bucket_source;
mod index;
mod index_stream;
mod merge;
mod parent;
mod restore;
mod source;
mod tar_stream;
mod tree_stream;
mod tree_write;
mod verify;
mod walk;

pub use backup::{DirectorySource, FILES_KIND, INDEX_ARTIFACT, TAR_ARTIFACT};
pub use bucket::BucketSource;
pub use bucket_restore::{BucketRestored, BucketTarget};
pub use bucket_source::{BUCKET_SOURCE_TYPE, BucketFactory, BucketSettings, ConfiguredBucket};
pub use index::{EntryKind, FileEntry, FileIndex};
pub use merge::{KeptAside, Merged};
pub use restore::{DirectoryTarget, TreeReport, read_index};
pub use source::{
    ConfiguredDirectory, DIRECTORY_SOURCE_TYPE, DirectoryFactory, DirectorySettings, FilesKind,
};
pub use verify::TreeVerifier;
pub use walk::{TreeFilter, glob_match, walk};
