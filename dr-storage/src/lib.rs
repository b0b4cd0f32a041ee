//! Repository destinations for dr, opened from a URL; and file trees as a source ([`files`]).
//!
//! | URL | store |
//! |---|---|
//! | `/var/backups/dr`, `./repo`, `file:///var/backups/dr` | local directory (the default) |
//! | `memory://` | in-process memory (tests, demos) |
//! | `s3://bucket/prefix` | S3 or an S3-compatible server (feature `aws`: off here, on in the facade's and dr-cli's defaults) |
//! | `gs://bucket/prefix` | Google Cloud Storage (feature `gcp`) |
//! | `az://container/prefix` | Azure Blob Storage (feature `azure`) |
//!
//! Cloud credentials, endpoint and region come from the usual environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT`, `AWS_REGION`,
//! `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...) and from explicit options,
//! which win. Credentials never appear in [`StoreLocation`]'s Display or Debug, nor in errors.
//! A store behind a private CA takes the option [`CA_FILE_OPTION`] (`ca_file`): a PEM file of
//! CA certificates trusted besides the system's roots.
//!
//! ```
//! # #[tokio::main] async fn main() -> dr_core::Result<()> {
//! let dir = tempfile::tempdir().map_err(|e| dr_core::Error::io("tempdir", e))?;
//! let location = dr_storage::open_store(dir.path().to_str().unwrap_or("."), &[], true)?;
//! assert!(location.to_string().starts_with("file://"));
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "aws")]
pub mod as_of;
pub mod files;
#[cfg(feature = "aws")]
pub mod s3_locks;
mod tidy_local;
mod tls;
mod url_store;
#[cfg(feature = "aws")]
mod xml;

pub use dr_core::redact_url;
pub use tls::{CA_FILE_OPTION, explain_untrusted_certificate, is_untrusted_certificate};
pub use url_store::{StoreLocation, init_repository, open_repository, open_store};

/// Adds this crate's source types (`directory`, `bucket`) and manifest kind (`files`) to
/// `registry`.
pub fn register(registry: &mut dr_core::Registry) {
    use std::sync::Arc;
    registry
        .register_source_type(Arc::new(files::DirectoryFactory))
        .register_source_type(Arc::new(files::BucketFactory))
        .register_kind(Arc::new(files::FilesKind));
}
