//! Test harnesses for dr (dev-only, not published): a real S3-compatible server on
//! 127.0.0.1, a fault-injecting object store, deterministic test data and sources, and the
//! shared conformance suite every repository kind runs.
#![allow(missing_docs)]

pub mod append_only;
pub mod conformance;
pub mod counting;
pub mod damage;
pub mod data;
pub mod faulty;
pub mod fidelity;
pub mod lock_oracle;
pub mod pg_tls;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod sources;
pub mod stall;
pub mod tls;

pub use append_only::AppendOnlyStore;
pub use counting::{CountingStore, Counts};
pub use damage::Damage;
pub use data::MixedData;
pub use dr_core::latency::{Latency, LatencyStore};
pub use faulty::FaultyStore;
pub use lock_oracle::LockOracle;
pub use postgres::PgServer;
pub use redis::{ClientCertificates, RedisServer, ServerCertificate};
pub use s3::S3Server;
pub use sources::{FailingSource, StreamSource};
pub use tls::TlsCertificates;

/// Fails the test with an instruction when a binary from a Debian package is missing.
pub fn require_binary(name: &str, package: &str) -> std::path::PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed: run `apt-get install -y {package}` (bash .ci/run installs it)")
    })
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
