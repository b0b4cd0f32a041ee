//! `dr wal-push` (archive_command) and `dr wal-fetch` (restore_command).

use std::path::Path;

use dr_postgres::{PushOutcome, WalArchive, system_identifier};

use crate::app::App;
use crate::exit::{CliError, CliResult, Context, Failure};

/// `dr wal-push %p`: exit 0 only once the file is safely archived (or already was).
pub async fn wal_push(
    app: &App,
    path: &Path,
    source: Option<&str>,
    pgdata: &Path,
) -> CliResult<()> {
    let source = app.config.postgres_source(source)?;
    let repo = app.repository(None).await?;
    let sysid = system_identifier(pgdata).doing(|| {
        "reading the cluster's system identifier (run in the data directory or pass --pgdata)"
            .into()
    })?;
    let archive = WalArchive::new(&repo, &source).map_err(CliError::from)?;
    let outcome = archive
        .push(path, sysid)
        .await
        .doing(|| format!("archiving {} for {source}", path.display()))?;
    if outcome == PushOutcome::AlreadyArchived {
        tracing::info!(file = %path.display(), "already archived, identical");
    }
    Ok(())
}

/// `dr wal-fetch %f %p`: exit 1 when the archive does not have the file; 255 (recovery
/// aborts) when it cannot tell, so that recovery never ends early because of a bad network.
pub async fn wal_fetch(app: &App, name: &str, dest: &Path, source: Option<&str>) -> CliResult<()> {
    match fetch(app, name, dest, source).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(CliError {
            failure: Failure::NotArchived,
            message: format!(
                "{name} is not in the WAL archive (normal: recovery asks until the archive ends)"
            ),
        }),
        Err(mut e) => {
            e.failure = Failure::AbortRecovery;
            Err(e)
        }
    }
}

/// The source the file came from, or `None` when the archive does not have it.
async fn fetch(
    app: &App,
    name: &str,
    dest: &Path,
    source: Option<&str>,
) -> CliResult<Option<String>> {
    let source = app.config.postgres_source(source)?;
    let repo = app.read_repository(None).await?;
    let archive = WalArchive::new(&repo, &source).map_err(CliError::from)?;
    let found = archive
        .fetch(name, dest)
        .await
        .doing(|| format!("restoring WAL file {name} of {source}"))?;
    Ok(found.then_some(source))
}
