//! `dr status`: is every source protected as its objectives say? A table, `--json`, or the
//! Prometheus text format (printed, or written atomically for node_exporter's textfile
//! collector); exit 3 when anything is wrong.

use std::path::Path;

use dr_core::status::{CopyFacts, SourceFacts, SourceStatus, evaluate, prometheus};
use dr_core::{Manifest, Repository, VerifyLevel};

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// How `dr status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// A table (or `--json`).
    Table,
    /// Prometheus text exposition format.
    Prometheus,
}

/// `dr status [--prometheus] [--textfile PATH]`.
pub async fn status(app: &App, format: StatusFormat, textfile: Option<&Path>) -> CliResult<()> {
    let repo = app.read_repository(None).await?;
    let statuses = gather(app, &repo).await?;
    let now = chrono::Utc::now();
    if let Some(path) = textfile {
        write_atomically(path, &prometheus(&statuses, now))?;
    }
    match (format, app.global.json) {
        (StatusFormat::Prometheus, _) => print!("{}", prometheus(&statuses, now)),
        (StatusFormat::Table, true) => output::json(&statuses)?,
        (StatusFormat::Table, false) => print_table(&statuses),
    }
    let problems: usize = statuses.iter().map(|s| s.problems.len()).sum();
    if problems == 0 {
        return Ok(());
    }
    let sources: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.is_ok())
        .map(|s| s.source.as_str())
        .collect();
    Err(CliError::verification(format!(
        "{problems} {} in {} ({}): see above",
        if problems == 1 { "problem" } else { "problems" },
        if sources.len() == 1 {
            "1 source"
        } else {
            "several sources"
        },
        sources.join(", ")
    )))
}

/// The status of every configured source and every source with backups.
pub async fn gather(app: &App, repo: &Repository) -> CliResult<Vec<SourceStatus>> {
    let now = chrono::Utc::now();
    let listing = repo.list(None).await.doing(|| "listing backups".into())?;
    let manifests = &listing.backups;
    let drills = repo
        .drills(None)
        .await
        .doing(|| "reading the drills".into())?;
    let points = repo
        .points()
        .await
        .doing(|| "listing recovery points".into())?;
    let decisions =
        dr_core::ops::prune::retention_decisions(&app.system()?, &listing, &points, now);
    let physical = super::pitr_sources(manifests);
    let archives = super::pitr::archive_checks(repo, &physical).await?;
    let copies = super::copy_ids(app, None).await;
    let mut names: Vec<String> = app.config.sources.keys().cloned().collect();
    let listed = manifests.iter().map(|m| &m.source);
    for source in listed.chain(listing.unreadable.iter().map(|u| &u.source)) {
        if !names.contains(source) {
            names.push(source.clone());
        }
    }
    names.sort();
    let statuses = names
        .iter()
        .map(|name| {
            let archive = archives.iter().find(|c| &c.source == name);
            let facts = SourceFacts {
                source: name.clone(),
                objectives: app.config.objectives_for(name),
                backups: of_source(manifests, name),
                unreadable: listing.unreadable_of(name).cloned().collect(),
                drills: drills
                    .iter()
                    .filter(|d| &d.source == name)
                    .cloned()
                    .collect(),
                forgotten: decisions
                    .iter()
                    .filter(|d| !d.keep && &d.source == name)
                    .count(),
                wal_newest: archive.and_then(|c| c.latest),
                wal_problems: archive.map(|c| c.problems.clone()).unwrap_or_default(),
                copies: app
                    .config
                    .copies
                    .iter()
                    .zip(&copies)
                    .map(|(url, ids)| CopyFacts {
                        destination: dr_core::redact_url(url),
                        backup_ids: ids.clone(),
                    })
                    .collect(),
            };
            let mut status = evaluate(&facts, now);
            if let Err(e) = repo.check_pinned_recipients() {
                status.problems.push(e.to_string());
            }
            status
        })
        .collect();
    check_newest_present(repo, manifests, statuses).await
}

/// The newest backup of each source and the backups it depends on: every part present with
/// its recorded size (a HEAD per part, no download). `ok` must not be said of a newest backup
/// whose parts are gone or truncated; flipped bytes are for `dr verify` to find.
async fn check_newest_present(
    repo: &Repository,
    manifests: &[Manifest],
    mut statuses: Vec<SourceStatus>,
) -> CliResult<Vec<SourceStatus>> {
    for status in &mut statuses {
        let Some(newest) = manifests.iter().find(|m| m.source == status.source) else {
            continue;
        };
        let quick = VerifyLevel::Quick;
        let report = repo
            .reader(newest.clone())
            .verify_objects(quick)
            .await
            .doing(|| format!("checking the parts of backup {}", newest.id))?;
        let chain = repo
            .verify_dependencies(newest, quick)
            .await
            .doing(|| format!("checking the backups {} depends on", newest.id))?;
        let problems = report.problems.into_iter().chain(chain);
        status.problems.extend(problems.map(|p| {
            format!(
                "the newest backup {} cannot be restored as it is: {p}",
                newest.id
            )
        }));
    }
    Ok(statuses)
}

fn of_source(manifests: &[Manifest], name: &str) -> Vec<Manifest> {
    manifests
        .iter()
        .filter(|m| m.source == name)
        .cloned()
        .collect()
}

fn print_table(statuses: &[SourceStatus]) {
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
    };
    let secs = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0} s"));
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            vec![
                s.source.clone(),
                when(s.last_backup_at),
                s.last_backup_bytes.map_or_else(|| "-".into(), output::size),
                secs(s.rpo_now_s),
                match s.last_drill_passed {
                    Some(true) => format!("passed {}", when(s.last_drill_at)),
                    Some(false) => format!("FAILED {}", when(s.last_drill_at)),
                    None => "-".into(),
                },
                s.last_drill_rto_s
                    .map_or_else(|| "-".into(), |v| format!("{v:.2} s")),
                if s.is_ok() {
                    "ok".into()
                } else {
                    format!("{} PROBLEM(S)", s.problems.len())
                },
            ]
        })
        .collect();
    output::table(
        &[
            "SOURCE",
            "LAST BACKUP (UTC)",
            "SIZE",
            "RPO NOW",
            "LAST DRILL",
            "DRILL RTO",
            "STATE",
        ],
        &rows,
    );
    for s in statuses {
        for problem in &s.problems {
            println!("  {} PROBLEM {problem}", s.source);
        }
    }
}

/// Writes `text` to `path` through a temporary file renamed over it, so that a collector
/// never reads half a file.
fn write_atomically(path: &Path, text: &str) -> CliResult<()> {
    let io = |e| CliError::from(dr_core::Error::io(format!("writing {}", path.display()), e));
    let tmp = dr_core::sibling_path(path, ".dr-tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
