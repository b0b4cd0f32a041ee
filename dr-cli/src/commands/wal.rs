//! `dr wal-push` (archive_command) and `dr wal-fetch` (restore_command).

use std::path::Path;

use dr_postgres::{
    DEFAULT_WAL_PREFETCH, PostgresSettings, PushOutcome, WalArchive, WalSpool, system_identifier,
};

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
        return Ok(());
    }
    lock_pushed(app, &repo, &archive, &source, path).await;
    Ok(())
}

/// On a bucket with Object Lock: the pushed file is locked as long as a base backup taken now
/// would be. A failure is logged, never fails the push (PostgreSQL would keep the WAL and
/// retry until its disk fills).
async fn lock_pushed(
    app: &App,
    repo: &dr_core::Repository,
    archive: &WalArchive<'_>,
    source: &str,
    path: &Path,
) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let policy = match app.system() {
        Ok(system) => system.retention_for(source).clone(),
        Err(_) => dr_core::RetentionPolicy::default(),
    };
    let until =
        dr_core::locks::lock_until_at_backup(chrono::Utc::now(), &policy, repo.lock_margin());
    if let Err(e) = repo.lock_objects(&archive.object_keys(name), until).await {
        tracing::warn!(file = name, error = %e, "archived but NOT locked");
    }
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

/// The source the file came from, or `None` when the archive does not have it. A segment
/// the prefetcher already brought is taken from the spool without opening the repository;
/// either way a prefetcher is started when the spool runs low.
async fn fetch(
    app: &App,
    name: &str,
    dest: &Path,
    source: Option<&str>,
) -> CliResult<Option<String>> {
    let source = app.config.postgres_source(source)?;
    let ahead = prefetch_depth(app, &source);
    let spool = WalSpool::beside(dest, &source);
    if ahead > 0 {
        match spool.take(name, dest) {
            Ok(true) => {
                start_prefetcher(app, &spool, name, dest, &source, ahead);
                return Ok(Some(source));
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("{e}; fetching {name} from the archive"),
        }
    }
    let repo = app.read_repository(None).await?;
    let archive = WalArchive::new(&repo, &source).map_err(CliError::from)?;
    let found = archive
        .fetch(name, dest)
        .await
        .doing(|| format!("restoring WAL file {name} of {source}"))?;
    if !found {
        spool.clear();
        return Ok(None);
    }
    start_prefetcher(app, &spool, name, dest, &source, ahead);
    Ok(Some(source))
}

/// Starts `dr wal-fetch --prefetch-after NAME DEST` in the background (its own process
/// group, output to `prefetcher.log` in the spool) when the spool holds fewer than half of
/// `ahead` segments after `name`. Recovery does not wait for it.
fn start_prefetcher(
    app: &App,
    spool: &WalSpool,
    name: &str,
    dest: &Path,
    source: &str,
    ahead: usize,
) {
    use std::os::unix::process::CommandExt as _;
    if !spool.wants_prefetcher(name, ahead) {
        return;
    }
    let log = std::fs::create_dir_all(spool.dir()).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spool.dir().join("prefetcher.log"))
    });
    let Ok(log) = log else {
        return;
    };
    let argv = app.self_command();
    let started = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .args(["wal-fetch", "--prefetch-after", "--source", source, name])
        .arg(dest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn();
    if let Err(e) = started {
        tracing::warn!("could not start the WAL prefetcher (recovery goes on without it): {e}");
    }
}

/// `dr wal-fetch --prefetch-after NAME DEST`: the background prefetcher. Fills the spool
/// with the segments archived after NAME; nothing when another prefetcher is running.
pub async fn wal_prefetch(
    app: &App,
    name: &str,
    dest: &Path,
    source: Option<&str>,
) -> CliResult<()> {
    let source = app.config.postgres_source(source)?;
    let spool = WalSpool::beside(dest, &source);
    let Some(_lock) = spool.lock() else {
        return Ok(());
    };
    let repo = app.read_repository(None).await?;
    let archive = WalArchive::new(&repo, &source).map_err(CliError::from)?;
    let added = archive
        .prefetch_after(name, &spool, prefetch_depth(app, &source))
        .await
        .doing(|| format!("prefetching the WAL of {source} after {name}"))?;
    tracing::info!(after = name, added, "WAL segments prefetched");
    Ok(())
}

/// The source's `wal_prefetch` (its default when the settings do not parse: they are
/// checked where the source is built, and `wal-fetch` must not fail recovery over them).
fn prefetch_depth(app: &App, source: &str) -> usize {
    app.config
        .sources
        .get(source)
        .and_then(|s| s.settings.clone().try_into::<PostgresSettings>().ok())
        .map_or(DEFAULT_WAL_PREFETCH, |s| s.wal_prefetch)
}
