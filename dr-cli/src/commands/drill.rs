//! `dr drill` and `dr report`.

use std::path::Path;

use dr_core::drill::{DrillOptions, DrillRecord, run_drill};
use dr_core::report::RecoveryReport;
use dr_core::{Manifest, PointSelector, Repository};
use dr_postgres::RecoveryDrill;

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr drill [SOURCE|--point ID] [--report FILE]`: one drill per backup chosen, recorded;
/// exit 3 when any fails or misses an objective.
pub async fn drill(
    app: &App,
    source: Option<&str>,
    point: Option<&str>,
    report_to: Option<&Path>,
    since: std::time::Duration,
) -> CliResult<()> {
    if app.identity_path().is_none() {
        return Err(CliError::usage(
            "a drill restores, which needs the secret key: pass --identity FILE or set `identity` in dr.toml",
        ));
    }
    let bar = app.bar();
    let repo = app.read_repository(Some(bar.clone())).await?;
    let (chosen, point_id) = choose(app, &repo, source, point).await?;
    let mut records = Vec::new();
    for manifest in chosen {
        let record = drill_one(app, &repo, manifest, point_id.clone()).await;
        bar.finish();
        records.push(record?);
    }
    if app.global.json {
        output::json(&records)?;
    } else {
        print_drills(&records);
    }
    if let Some(path) = report_to {
        write_report(app, &repo, path, since).await?;
    }
    let failed: Vec<&str> = records
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.source.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(CliError::verification(format!(
        "{} of {} drills did not pass ({}): see the problems above, fix them and drill again",
        failed.len(),
        records.len(),
        failed.join(", ")
    )))
}

/// The backups to drill: a point's members, the newest of one source, or the newest of
/// every configured source (a configured source without any backup is an error).
async fn choose(
    app: &App,
    repo: &Repository,
    source: Option<&str>,
    point: Option<&str>,
) -> CliResult<(Vec<Manifest>, Option<String>)> {
    let all = repo
        .list(None)
        .await
        .doing(|| "listing backups".into())?
        .backups;
    if let Some(point) = point {
        let selector: PointSelector = point.parse().map_err(CliError::from)?;
        let point = repo
            .find_point(&selector)
            .await
            .doing(|| "finding the recovery point".into())?;
        let members = point
            .members
            .iter()
            .filter_map(|m| {
                all.iter()
                    .find(|b| b.id == m.backup_id && b.source == m.source)
            })
            .cloned()
            .collect();
        return Ok((members, Some(point.id)));
    }
    let names: Vec<String> = match source {
        Some(name) => vec![name.to_owned()],
        None => app.config.group_sources("all")?,
    };
    let mut chosen = Vec::new();
    for name in &names {
        let newest = all.iter().find(|m| &m.source == name).ok_or_else(|| {
            CliError::verification(format!(
                "source {name} has no backup to drill: run `dr backup {name}` first"
            ))
        })?;
        chosen.push(newest.clone());
    }
    Ok((chosen, None))
}

async fn drill_one(
    app: &App,
    repo: &Repository,
    manifest: Manifest,
    point_id: Option<String>,
) -> CliResult<DrillRecord> {
    let source = manifest.source.clone();
    let reader = repo.reader(manifest);
    let (verifier, recoverable_until) = match physical_drill(app, repo, &reader)? {
        Some(drill) => {
            // The probe first, so that the archive's reach is read after it is archived.
            let drill = match drill.write_probe().await {
                Ok(probe) => drill.with_probe(Some(probe)),
                Err(e) => return probe_failed(repo, &reader, app, point_id, e).await,
            };
            let checks = super::pitr::archive_checks(repo, &[source.as_str()]).await?;
            let verifier: Box<dyn dr_core::Verify> = Box::new(drill);
            (verifier, checks.first().and_then(|c| c.latest))
        }
        None => (
            dr_core::ops::verify::verifier_for(
                repo,
                &super::system(app, repo)?,
                reader.manifest(),
            )?,
            None,
        ),
    };
    let options = DrillOptions::new(app.config.objectives_for(&source))
        .with_recoverable_until(recoverable_until)
        .with_point(point_id);
    run_drill(repo, &reader, verifier.as_ref(), &options)
        .await
        .doing(|| format!("recording the drill of {source}"))
}

/// A drill whose RPO probe could not be written: recorded as failed, nothing recovered.
async fn probe_failed(
    repo: &Repository,
    reader: &dr_core::BackupReader,
    app: &App,
    point_id: Option<String>,
    e: dr_core::Error,
) -> CliResult<DrillRecord> {
    let source = reader.manifest().source.clone();
    let failing = Failing(format!(
        "the RPO probe could not be written into the live cluster, so the drill's RPO cannot be checked: {e}"
    ));
    let options = DrillOptions::new(app.config.objectives_for(&source)).with_point(point_id);
    run_drill(repo, reader, &failing, &options)
        .await
        .doing(|| format!("recording the drill of {source}"))
}

/// A verifier that fails with its message.
struct Failing(String);

#[dr_core::async_trait]
impl dr_core::Verify for Failing {
    async fn verify(
        &self,
        _: &dr_core::BackupReader,
        _: dr_core::VerifyLevel,
    ) -> dr_core::Result<dr_core::VerifyReport> {
        Err(dr_core::Error::backend("source", "backup", self.0.clone()))
    }
}

/// For a configured physical PostgreSQL source: a real recovery through the WAL archive on
/// a scratch server, with the RPO probe.
fn physical_drill(
    app: &App,
    repo: &Repository,
    reader: &dr_core::BackupReader,
) -> CliResult<Option<RecoveryDrill>> {
    let name = &reader.manifest().source;
    if reader.manifest().kind != dr_postgres::BASE_KIND {
        return Ok(None);
    }
    match app.config.sources.get(name) {
        Some(source) if source.is_physical() => Ok(Some(
            RecoveryDrill::new(
                repo.clone(),
                name,
                source.postgres()?,
                super::pitr::restore_command(app, name)?,
            )
            .with_checks(source.checks.clone()),
        )),
        _ => Ok(None),
    }
}

fn print_drills(records: &[DrillRecord]) {
    let objective = |d: Option<std::time::Duration>| {
        d.map_or_else(|| "-".into(), |d| humantime::format_duration(d).to_string())
    };
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let result = match (r.ok, r.passed()) {
                (true, true) => "passed",
                (true, false) => "OBJECTIVE MISSED",
                (false, _) => "FAILED",
            };
            vec![
                r.source.clone(),
                r.backup_id.clone(),
                result.into(),
                format!("{:.2} s", r.rto_ms as f64 / 1000.0),
                objective(r.objectives.rto),
                format!("{:.1} s", r.rpo_s),
                objective(r.objectives.rpo),
            ]
        })
        .collect();
    output::table(
        &[
            "SOURCE", "BACKUP", "RESULT", "RTO", "RTO GOAL", "RPO", "RPO GOAL",
        ],
        &rows,
    );
    for r in records {
        for line in &r.passed {
            println!("  {} ok      {line}", r.source);
        }
        for problem in &r.problems {
            println!("  {} PROBLEM {problem}", r.source);
        }
    }
}

/// `dr report [--to FILE] [--since SPAN]`.
pub async fn report(app: &App, to: Option<&Path>, since: std::time::Duration) -> CliResult<()> {
    let repo = app.read_repository(None).await?;
    match to {
        Some(path) => write_report(app, &repo, path, since).await,
        None => {
            let report = build_report(&repo, since).await?;
            if app.global.json {
                return output::json(&report);
            }
            print!("{}", report.to_markdown());
            Ok(())
        }
    }
}

async fn build_report(repo: &Repository, since: std::time::Duration) -> CliResult<RecoveryReport> {
    let now = chrono::Utc::now();
    let start = now - chrono::TimeDelta::from_std(since).unwrap_or(chrono::TimeDelta::days(90));
    let drills = repo
        .drills(None)
        .await
        .doing(|| "reading the drill history".into())?;
    let backups = repo
        .list(None)
        .await
        .doing(|| "listing backups".into())?
        .backups;
    let failures = repo
        .backup_failures(None)
        .await
        .doing(|| "reading the failed backups".into())?;
    Ok(RecoveryReport::build(
        &drills, &backups, &failures, start, now,
    ))
}

/// Writes the report as Markdown at `path` and as JSON beside it (`.json`).
async fn write_report(
    app: &App,
    repo: &Repository,
    path: &Path,
    since: std::time::Duration,
) -> CliResult<()> {
    let report = build_report(repo, since).await?;
    let json_path = path.with_extension("json");
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| CliError::usage(format!("cannot encode the report: {e}")))?;
    let write = |p: &Path, bytes: &[u8]| {
        std::fs::write(p, bytes).map_err(|e| {
            CliError::from(dr_core::Error::io(
                format!("writing the report {}", p.display()),
                e,
            ))
        })
    };
    write(path, report.to_markdown().as_bytes())?;
    write(&json_path, &json)?;
    if !app.global.json {
        println!(
            "recovery report written to {} and {}",
            path.display(),
            json_path.display()
        );
    }
    Ok(())
}
