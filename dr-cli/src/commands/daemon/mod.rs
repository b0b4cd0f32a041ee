//! `dr daemon`: runs the `[[schedules]]` of dr.toml. Each run is a backup, then a verify of
//! what it backed up, then a prune; never two runs of one source at once; SIGTERM or SIGINT
//! stops scheduling, waits for running runs (up to `stop_timeout`), then abandons them (an
//! abandoned backup never commits: its parts are orphans that prune removes). Optionally
//! serves `/metrics` (the text of `dr status --prometheus`) and `/healthz` on an HTTP
//! address ([`http`]), stopped with the rest.

mod http;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::app::App;
use crate::exit::{CliError, CliResult};
use crate::schedule::{Schedule, ScheduleConfig};

const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Orphans younger than this are left to the backup that may still be writing them.
const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

type Busy = Arc<Mutex<HashSet<String>>>;

/// `dr daemon`.
pub async fn daemon(app: App) -> CliResult<()> {
    let app = Arc::new(app);
    let schedules = parse_schedules(&app)?;
    let health = Arc::new(http::Health::default());
    let server = match app.config.daemon.metrics.clone() {
        Some(address) => {
            Some(http::MetricsServer::start(app.clone(), health.clone(), &address).await?)
        }
        None => None,
    };
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    let (Ok(mut term), Ok(mut int)) = signals else {
        return Err(CliError::usage("cannot install the signal handlers"));
    };
    let busy: Busy = Arc::default();
    let mut tasks = JoinSet::new();
    let mut next: Vec<DateTime<Utc>> = schedules
        .iter()
        .map(|s| s.next_after(Utc::now()))
        .collect::<CliResult<_>>()?;
    for (s, at) in schedules.iter().zip(&next) {
        tracing::info!(schedule = %s.config.name, cron = %s.config.cron, "next run at {at}");
    }
    let reason = loop {
        health.beat();
        let (i, at) = earliest(&next);
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            // Turn at least every heartbeat, so that /healthz sees the loop alive.
            _ = tokio::time::sleep(http::HEARTBEAT), if wait > http::HEARTBEAT => {}
            _ = tokio::time::sleep(wait), if wait <= http::HEARTBEAT => {
                tasks.spawn(run(app.clone(), schedules[i].clone(), busy.clone()));
                next[i] = schedules[i].next_after(at.max(Utc::now()))?;
                tracing::info!(schedule = %schedules[i].config.name, "next run at {}", next[i]);
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!("a run ended abnormally: {e}");
                }
            }
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    health.stopping();
    stop(&app, tasks, reason).await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    tracing::info!("dr daemon stopped");
    Ok(())
}

fn parse_schedules(app: &App) -> CliResult<Vec<Arc<Schedule>>> {
    if app.config.schedules.is_empty() {
        return Err(CliError::usage(
            "no schedules: add [[schedules]] with name and cron to dr.toml",
        ));
    }
    app.config
        .schedules
        .iter()
        .map(|config| {
            sources_of(app, config)?;
            Schedule::parse(config.clone()).map(Arc::new)
        })
        .collect()
}

fn earliest(next: &[DateTime<Utc>]) -> (usize, DateTime<Utc>) {
    next.iter()
        .copied()
        .enumerate()
        .min_by_key(|(_, at)| *at)
        .unwrap_or((0, Utc::now()))
}

/// The sources a schedule backs up.
fn sources_of(app: &App, config: &ScheduleConfig) -> CliResult<Vec<String>> {
    let system = app.system()?;
    let sources = match (&config.source, &config.group) {
        (Some(source), _) => system.source(source).map(|_| vec![source.clone()]),
        (None, Some(group)) => system.group_sources(group),
        (None, None) => system.group_sources("all"),
    };
    sources.map_err(CliError::from)
}

/// Marks sources busy for the life of a run (also when the run is abandoned).
struct Claim {
    busy: Busy,
    sources: Vec<String>,
}

impl Claim {
    /// Claims `sources`, or names the one already running.
    fn take(busy: &Busy, sources: Vec<String>) -> Result<Claim, String> {
        let mut held = busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(taken) = sources.iter().find(|s| held.contains(*s)) {
            return Err(taken.clone());
        }
        held.extend(sources.iter().cloned());
        Ok(Claim {
            busy: busy.clone(),
            sources,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut held = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        for s in &self.sources {
            held.remove(s);
        }
    }
}

async fn run(app: Arc<App>, schedule: Arc<Schedule>, busy: Busy) {
    let name = &schedule.config.name;
    let sources = match sources_of(&app, &schedule.config) {
        Ok(sources) => sources,
        Err(e) => return tracing::error!(schedule = %name, "{}", e.message),
    };
    let _claim = match Claim::take(&busy, sources.clone()) {
        Ok(claim) => claim,
        Err(source) => {
            return tracing::warn!(schedule = %name, "skipped: the previous run of {source} is still going");
        }
    };
    tracing::info!(schedule = %name, "run started: {}", sources.join(", "));
    let started = Instant::now();
    match steps(&app, &schedule.config, &sources).await {
        Ok(()) => tracing::info!(
            schedule = %name,
            "run finished in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => tracing::error!(schedule = %name, "run failed: {}", e.message),
    }
}

/// Backup, verify, prune: the first failure ends the run.
async fn steps(app: &App, config: &ScheduleConfig, sources: &[String]) -> CliResult<()> {
    let run = super::BackupRun {
        source: config.source.as_deref(),
        all: config.source.is_none() && config.group.is_none(),
        group: config.group.as_deref(),
        labels: config.labels.clone(),
        full: false,
        copy: config.copy,
    };
    super::backup(app, run).await?;
    if config.verify != "none" {
        for source in sources {
            let report = super::verify::run(app, Some(source), &config.verify).await?;
            log_verify(source, &report);
            super::verify::outcome(&report)?;
        }
    }
    if config.prune {
        super::prune(app, false, ORPHAN_GRACE).await?;
    }
    Ok(())
}

/// One log line per verified entry, one per problem.
fn log_verify(source: &str, report: &dr_core::ops::verify::VerifyRunReport) {
    for entry in &report.entries {
        let r = &entry.report;
        tracing::info!(
            source,
            backup = %r.backup_id,
            ok = r.is_ok(),
            level = ?r.level_performed,
            elapsed_ms = r.elapsed_ms,
            "verified"
        );
        for problem in &r.problems {
            tracing::warn!(source, backup = %r.backup_id, kind = ?problem.kind, "{}", problem.message);
        }
    }
}

async fn stop(app: &App, mut tasks: JoinSet<()>, reason: &str) {
    let timeout = app
        .config
        .daemon
        .stop_timeout
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    tracing::info!(
        "{reason}: no new runs; waiting up to {} for {} running",
        humantime::format_duration(timeout),
        tasks.len()
    );
    let drained = tokio::time::timeout(timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let abandoned = tasks.len();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        tracing::warn!(
            "abandoned {abandoned} runs: their backups were not committed (nothing half-written is listed); `dr prune` removes their parts"
        );
    }
}
