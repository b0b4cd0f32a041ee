//! One function per command: parse nothing, call the library, print, return.

mod backup;
mod bench;
mod copy;
mod daemon;
mod drill;
mod files;
mod list;
mod pg_globals;
mod pitr;
mod points;
mod prune;
mod restore;
mod status;
mod verify;
mod verify_wal;
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
pub use verify::verify;
pub use wal::{wal_fetch, wal_push};

use dr_core::Repository;
use dr_core::ops::{ConfiguredSource, System};

use crate::app::App;
use crate::exit::CliResult;

/// The system the operations serve: the built-in kinds of the facade and the configured
/// sources of dr.toml with their retention and objectives.
///
/// Until dr.toml is turned into a [`System`] by the configuration itself, each configured
/// source is bridged here by [`ConfigSource`], which serves what the reading operations need
/// (its kind and its verifier with the user checks, built for `repo`).
pub(crate) fn system(app: &App, repo: &Repository) -> CliResult<System> {
    let mut system = System::new(dr::registry())
        .with_default_retention(app.config.retention.clone())
        .with_default_objectives(app.config.objectives);
    for (name, config) in &app.config.sources {
        // A source that cannot even name its kind here (a password variable unset, say)
        // is served by its kind's support, as a backup read on another host would be.
        let kind = match config.backup() {
            Ok(backup) => backup.kind(),
            Err(e) => {
                tracing::debug!(source = %name, error = %e.message, "not bridged");
                continue;
            }
        };
        let source = ConfigSource {
            kind,
            verifier: config
                .verifier(repo)
                .map(std::sync::Arc::from)
                .map_err(|e| e.message),
        };
        let mut configured = ConfiguredSource::new(name.clone(), std::sync::Arc::new(source))
            .with_objectives(app.config.objectives_for(name));
        if let Some(retention) = &config.retention {
            configured = configured.with_retention(retention.clone());
        }
        system = system.with_source(configured);
    }
    Ok(system)
}

/// A configured source of dr.toml seen as a [`dr_core::Source`] by the reading operations
/// (backups and restores still go through their own commands).
struct ConfigSource {
    kind: &'static str,
    verifier: Result<std::sync::Arc<dyn dr_core::Verify>, String>,
}

#[dr_core::async_trait]
impl dr_core::Source for ConfigSource {
    fn kind(&self) -> &str {
        self.kind
    }

    async fn backup(
        &self,
        _: &Repository,
        _: &str,
        _: bool,
    ) -> dr_core::Result<Box<dyn dr_core::Backup>> {
        Err(not_here("backups"))
    }

    async fn restore(
        &self,
        _: &dr_core::RestoreRequest<'_>,
    ) -> dr_core::Result<dr_core::RestoreReport> {
        Err(not_here("restores"))
    }

    fn verifier(&self, _: &Repository) -> dr_core::Result<Box<dyn dr_core::Verify>> {
        match &self.verifier {
            Ok(verifier) => Ok(Box::new(SharedVerifier(verifier.clone()))),
            Err(message) => Err(dr_core::Error::Refused(message.clone())),
        }
    }
}

fn not_here(what: &str) -> dr_core::Error {
    dr_core::Error::Refused(format!(
        "{what} of configured sources go through their own command"
    ))
}

/// A verifier shared by every call of [`ConfigSource::verifier`].
struct SharedVerifier(std::sync::Arc<dyn dr_core::Verify>);

#[dr_core::async_trait]
impl dr_core::Verify for SharedVerifier {
    async fn verify(
        &self,
        backup: &dr_core::BackupReader,
        level: dr_core::VerifyLevel,
    ) -> dr_core::Result<dr_core::VerifyReport> {
        self.0.verify(backup, level).await
    }
}
