//! The streaming pipeline.
//!
//! write: plain bytes -> parts of `part_size` -> per part, on the blocking pool: SHA-256 of
//! the plain bytes, one zstd frame, one age file, SHA-256 of the stored bytes -> one object
//! per part (`PutMode::Create`). Several parts are encoded and uploaded at once; memory is
//! bounded by `part_size x (threads + 2)` plus reused buffers, never by the backup size.
//!
//! read: parts fetched ahead (as many as cover the store's measured round trip, within
//! `read_ahead_bytes`) and decoded `threads` at once (age authenticates, zstd decodes, the
//! plain SHA-256 is compared with the manifest), handed to the consumer strictly in order.
//! A part's bytes reach the consumer only after they checked, and the stream only ends after
//! the last part checked.

mod codec;
mod read_ahead;
mod reader;
mod writer;

pub use codec::{EncodedPart, ExpectedPart, decode_part, encode_part, sha256_hex};
pub use reader::{ArtifactReader, BackupReader};
pub(crate) use writer::WriteContext;
pub use writer::{ArtifactWriter, BackupWriter};

use serde::{Deserialize, Serialize};

/// Default plain bytes per part (chosen by `benches/pipeline.rs`, see benches/README.md).
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;

/// Tuning of the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PipelineOptions {
    /// Plain bytes per part (at least 64 KiB).
    pub part_size: usize,
    /// zstd level (1-19; 3 by default).
    pub zstd_level: i32,
    /// Parts encoded or decoded at once (default: the number of cores).
    pub threads: usize,
    /// The most stored bytes a reader fetches ahead of the part it hands out (default
    /// 128 MiB). How far ahead within it adapts to the store: on a local disk the decoders'
    /// share, against a store 50 ms away enough fetches to cover the round trip.
    #[serde(default = "default_read_ahead")]
    pub read_ahead_bytes: u64,
}

/// Default [`PipelineOptions::read_ahead_bytes`].
pub const DEFAULT_READ_AHEAD_BYTES: u64 = 128 * 1024 * 1024;

fn default_read_ahead() -> u64 {
    DEFAULT_READ_AHEAD_BYTES
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            part_size: DEFAULT_PART_SIZE,
            zstd_level: 3,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            read_ahead_bytes: DEFAULT_READ_AHEAD_BYTES,
        }
    }
}

impl PipelineOptions {
    /// Sets the part size (clamped to at least 64 KiB).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(64 * 1024);
        self
    }

    /// Sets the zstd level.
    pub fn with_zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// Sets the number of parts processed at once (at least 1).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Sets the read-ahead budget in stored bytes (never fewer parts than `threads`).
    pub fn with_read_ahead_bytes(mut self, bytes: u64) -> Self {
        self.read_ahead_bytes = bytes;
        self
    }
}
