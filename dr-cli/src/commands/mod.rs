//! One function per command: parse nothing, call the library, print, return.

mod backup;
mod bench;
mod copy;
mod daemon;
mod drill;
mod list;
mod points;
mod prune;
mod restore;
mod status;
mod verify;
mod wal;

pub use backup::{BackupRun, backup, init, keygen};
pub use bench::{BenchArgs, bench};
pub use copy::copy;
pub use daemon::daemon;
pub use drill::{drill, report};
pub use list::{list, list_points, show};
pub use prune::prune;
pub use restore::restore;
pub use status::{StatusFormat, status};
pub use verify::{verify, verify_locks};
pub use wal::{wal_fetch, wal_prefetch, wal_push};
