//! Operations: every command of dr as a library function.
//!
//! As in rustic_core, each operation takes the repository, the [`System`] (the configured
//! sources, groups and policies, with the kind [`Registry`]), an `*Options` struct
//! (`#[non_exhaustive]`, `Default`, builder methods) and a [`ProgressHandle`], and returns a
//! serde-serializable `*Report` whose fields carry their unit in the name (`_bytes`, `_ms`).
//! Nothing here prints: front ends render the reports. What depends on a datastore goes
//! through the registry, so dr-core still knows none.

pub mod backup;
pub mod bench;
pub mod copy;
pub mod drill;
pub mod hooks;
pub mod list;
pub mod locks;
pub mod prune;
pub mod report;
pub mod restore;
pub mod status;
mod system;
pub mod verify;

pub use hooks::Hooks;
pub use system::{ConfiguredSource, Group, System};

/// Milliseconds since `since`.
pub(crate) fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
