//! `dr verify`.

use std::collections::BTreeMap;

use dr_core::{
    BackupReader, Manifest, Repository, UnreadableBackup, Verify, VerifyLevel, VerifyReport,
};
use dr_sqlite::SqliteVerifier;

use crate::app::App;
use crate::exit::{CliError, CliResult, Context, Failure};
use crate::output;

/// `dr verify [ID|SOURCE] [--level L]`; exit 3 when any backup has a problem.
pub async fn verify(app: &App, target: Option<&str>, level: &str) -> CliResult<()> {
    let level: VerifyLevel = level.parse().map_err(CliError::from)?;
    let bar = app.bar();
    let repo = app.read_repository(Some(bar.clone())).await?;
    let headless = headless(&repo, target).await?;
    let (chosen, unreadable) = match choose(&repo, target).await {
        Err(e) if e.failure == Failure::Usage && !headless.is_empty() => (Vec::new(), Vec::new()),
        other => other?,
    };
    let physical = super::pitr_sources(&chosen);
    let (archives, archive_failures) = super::verify_wal::archive_checks(&repo, &physical).await;
    let mut reports = Vec::new();
    for manifest in chosen {
        let reader = repo.reader(manifest);
        let report = verify_one(app, &repo, &reader, level, (&archives, &archive_failures)).await;
        bar.finish();
        let report = report?;
        if !app.global.json {
            print_report(&reader, &report);
        }
        reports.push(report);
    }
    let problems = unreadable
        .iter()
        .map(|u| (format!("{} {} (manifest unreadable)", u.source, u.id), u.id.clone(), u.describe()))
        .chain(headless.iter().map(|dir| (format!("{dir} (no manifest)"), last_segment(dir), format!(
            "{dir}/manifest.json is missing but {dir}/SHA256SUMS is there: the backup's manifest was deleted, or it died while committing (its parts may still decode by hand, see FORMAT.md; `dr prune` keeps them while a committed backup depends on them, and removes them as orphans otherwise)"
        ))));
    for (what, id, problem) in problems {
        if !app.global.json {
            println!("FAILED  {what}\n  PROBLEM {problem}");
        }
        reports.push(VerifyReport::failed(id, problem));
    }
    if app.global.json {
        output::json(&reports)?;
    }
    if target.is_none() {
        reports.extend(verify_points(app, &repo).await?);
    }
    if let Err(e) = repo.check_pinned_recipients() {
        eprintln!("PROBLEM {e}");
        return Err(CliError::verification(
            "the repository's recipients differ from the pinned ones (see above)",
        ));
    }
    outcome(&reports)
}

/// One backup: the kind's verifier, the backups it depends on, its WAL archive (every file
/// a recovery from it replays decoded, at checksums level and above).
async fn verify_one(
    app: &App,
    repo: &Repository,
    reader: &BackupReader,
    level: VerifyLevel,
    (archives, archive_failures): (&[dr_postgres::ArchiveCheck], &[(String, String)]),
) -> CliResult<VerifyReport> {
    let mut report = verifier(app, repo, reader)?
        .verify(reader, level)
        .await
        .doing(|| format!("verifying backup {}", reader.id()))?;
    let chain = repo
        .verify_dependencies(reader.manifest(), level)
        .await
        .doing(|| format!("verifying the backups {} depends on", reader.id()))?;
    add_chain_check(&mut report, reader.manifest(), chain);
    let source = reader.manifest().source.as_str();
    if let Some(check) = archives.iter().find(|c| c.source == source) {
        add_archive_check(&mut report, check, reader.id());
        if let Some((_, run)) = check.runs.iter().find(|(base, _)| base == reader.id()) {
            let facts = dr_postgres::BaseBackupFacts::from_info(
                &reader.manifest().source_info,
                reader.id(),
            )
            .ok();
            let size = facts.as_ref().map(|f| f.wal_segment_size);
            super::verify_wal::check_run_files(repo, source, run, (level, size), &mut report).await;
            // The base backup's own first and last segments: recovery asks the archive for
            // them first, and a damaged copy there aborts it.
            let own: Vec<String> = facts
                .iter()
                .flat_map(|f| [f.start_wal_file.clone(), f.stop_wal_file.clone()])
                .collect();
            if level >= VerifyLevel::Checksums && !repo.identities().is_empty() {
                let damaged = super::verify_wal::damaged_files(repo, source, &own, true).await;
                report.problems.extend(damaged);
            }
        }
    }
    if reader.manifest().kind == dr_postgres::BASE_KIND {
        let failures = archive_failures.iter().filter(|(s, _)| s == source);
        report.problems.extend(failures.map(|(_, p)| p.clone()));
    }
    Ok(report)
}

/// Backup directories of `target` (or all) with `SHA256SUMS` but no manifest.
async fn headless(repo: &Repository, target: Option<&str>) -> CliResult<Vec<String>> {
    Ok(repo
        .headless_backups()
        .await
        .doing(|| "looking for backups without a manifest".into())?
        .into_iter()
        .filter(|d| target.is_none_or(|t| d.split('/').any(|part| part == t)))
        .collect())
}

fn last_segment(dir: &str) -> String {
    dir.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Exit 3 when any report has a problem, worded for user checks that failed on intact backups.
fn outcome(reports: &[VerifyReport]) -> CliResult<()> {
    let failed = reports.iter().filter(|r| !r.is_ok()).count();
    if failed == 0 {
        return Ok(());
    }
    if reports
        .iter()
        .all(|r| r.is_ok() || r.only_user_checks_failed())
    {
        return Err(CliError::verification(format!(
            "{failed} of {} backups failed a user check; the backups themselves are intact (every part matched its checksums and the test restore passed): the data they hold does not satisfy the check",
            reports.len()
        )));
    }
    Err(CliError::verification(format!(
        "{failed} of {} backups failed verification; restore from another backup and investigate the repository",
        reports.len()
    )))
}

/// The recovery point records: each unreadable record, and each point whose members do not
/// match the committed backups it names, is a failed report (a member deleted by retention
/// is not a failure).
async fn verify_points(app: &App, repo: &Repository) -> CliResult<Vec<VerifyReport>> {
    let points = repo
        .points()
        .await
        .doing(|| "listing recovery points".into())?;
    let listing = repo.list(None).await.doing(|| "listing backups".into())?;
    let mut reports = Vec::new();
    let mut report = |id: &str, problems: Vec<String>| {
        if !app.global.json {
            println!("FAILED  recovery point {id}");
            for problem in &problems {
                println!("  PROBLEM {problem}");
            }
        }
        let mut failed = VerifyReport::failed(id, problems.join("; "));
        failed.problems = problems;
        reports.push(failed);
    };
    for u in &points.unreadable {
        report(&u.id, vec![u.describe()]);
    }
    for point in &points.points {
        let problems = point.problems(&listing.backups);
        if !problems.is_empty() {
            report(&point.id, problems);
        }
    }
    Ok(reports)
}

/// The backups to verify: one id, the latest of one source, or the latest of every source;
/// beside them the committed backups of the same selection whose manifest is unreadable
/// (each one fails the verification).
async fn choose(
    repo: &Repository,
    target: Option<&str>,
) -> CliResult<(Vec<Manifest>, Vec<UnreadableBackup>)> {
    let listing = repo.list(None).await.doing(|| "listing backups".into())?;
    let unreadable: Vec<UnreadableBackup> = listing
        .unreadable
        .iter()
        .filter(|u| target.is_none_or(|t| t == u.id || t == u.source))
        .cloned()
        .collect();
    let all = &listing.backups;
    if let Some(m) = target.and_then(|t| all.iter().find(|m| m.id == t)) {
        return Ok((vec![m.clone()], unreadable));
    }
    let mut latest: BTreeMap<&str, &Manifest> = BTreeMap::new();
    for m in all {
        if target.is_none_or(|t| t == m.source) {
            latest.entry(m.source.as_str()).or_insert(m);
        }
    }
    if latest.is_empty() && !unreadable.is_empty() {
        return Ok((Vec::new(), unreadable));
    }
    if latest.is_empty() {
        return Err(CliError::usage(match target {
            Some(t) => format!("no backup id or source named {t}: run `dr list`"),
            None => "the repository holds no backups yet".into(),
        }));
    }
    Ok((latest.into_values().cloned().collect(), unreadable))
}

/// The problems of the backups `manifest` needs, or a line saying they passed.
fn add_chain_check(report: &mut VerifyReport, manifest: &Manifest, problems: Vec<String>) {
    if manifest.depends_on.is_empty() {
        return;
    }
    if problems.is_empty() {
        report.passed.push(format!(
            "the backups it depends on ({}) pass the same checks",
            manifest.depends_on.join(", ")
        ));
    }
    report.problems.extend(problems);
}

/// The configured source's verifier, or the kind's default one.
pub(super) fn verifier(
    app: &App,
    repo: &Repository,
    reader: &BackupReader,
) -> CliResult<Box<dyn Verify>> {
    let manifest = reader.manifest();
    if let Some(source) = app.config.sources.get(&manifest.source) {
        return source.verifier(repo);
    }
    Ok(match manifest.kind.as_str() {
        dr_sqlite::KIND => Box::new(SqliteVerifier::new()),
        dr_redis::RDB_KIND | dr_redis::LOGICAL_KIND => Box::new(dr_redis::RedisVerifier::new()),
        dr_postgres::BASE_KIND => Box::new(dr_postgres::BaseVerifier::new()),
        dr_storage::files::FILES_KIND => {
            Box::new(dr_storage::files::TreeVerifier::new(repo.clone()))
        }
        // Without a configured server there is nowhere to test-restore: checksums only.
        _ => Box::new(GenericVerifier),
    })
}

/// Checksums only, for kinds this build has no backend for.
struct GenericVerifier;

#[dr_core::async_trait]
impl Verify for GenericVerifier {
    async fn verify(
        &self,
        backup: &BackupReader,
        level: VerifyLevel,
    ) -> dr_core::Result<VerifyReport> {
        backup
            .verify_objects(level.min(VerifyLevel::Checksums))
            .await
    }
}

fn print_report(reader: &BackupReader, report: &VerifyReport) {
    let m = reader.manifest();
    let verdict = if report.is_ok() { "OK" } else { "FAILED" };
    println!(
        "{verdict}  {} {} ({} objects, {}, {} ms)",
        m.source,
        m.id,
        report.checked_objects,
        output::size(report.checked_bytes),
        report.elapsed_ms
    );
    for line in &report.passed {
        println!("  ok      {line}");
    }
    for line in &report.problems {
        println!("  PROBLEM {line}");
    }
    if report.only_user_checks_failed() {
        println!(
            "  note    the backup is intact (parts, test restore and integrity checks passed); what failed is a user check on the data it holds"
        );
    }
    if !report.decoded && report.is_ok() {
        println!(
            "  note    no identity loaded: stored checksums only (pass --identity to decrypt and check every part)"
        );
    }
}

/// WAL continuity from this base backup to the newest archived segment.
fn add_archive_check(report: &mut VerifyReport, check: &dr_postgres::ArchiveCheck, id: &str) {
    report.problems.extend(check.problems.iter().cloned());
    report
        .passed
        .extend(check.notes.iter().map(|n| format!("note: {n}")));
    let Some((_, run)) = check.runs.iter().find(|(base, _)| base == id) else {
        return;
    };
    if run.gap.is_none() {
        let last = run.files.last().map_or("none", |f| f.name.as_str());
        let until = run
            .recoverable_until
            .map_or_else(|| "its end".into(), |t| t.to_rfc3339());
        report.passed.push(format!(
            "WAL archive continuous from this base backup through {last} ({} files, timeline {}): recoverable until {until}",
            run.files.len(),
            run.timeline
        ));
    }
}
