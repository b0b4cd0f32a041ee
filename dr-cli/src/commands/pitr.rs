//! `dr restore` of a physical PostgreSQL source: point-in-time recovery into a new data
//! directory, and the recoverable windows `dr list` and `dr verify` show.

use std::path::Path;

use dr_core::Repository;
use dr_postgres::lsn::Segment;
use dr_postgres::pitr::{self, PitrPlan, RecoveryTarget};
use dr_postgres::{ArchiveCheck, check_archive};
use dr_postgres::{PitrOptions, restore_pitr};

use crate::app::App;
use crate::cli::RestoreArgs;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr restore SOURCE --at TARGET --to DIR [--dry-run] [--start --port N]`.
pub async fn restore(app: &App, args: &RestoreArgs) -> CliResult<()> {
    if args.backup != "latest" || args.in_place || args.swap || args.server.is_some() {
        return Err(CliError::usage(
            "a physical PostgreSQL source restores by point in time: use --at TIME|latest|LSN and --to NEW_DATA_DIR",
        ));
    }
    let target: RecoveryTarget = args
        .at
        .as_deref()
        .unwrap_or("latest")
        .parse()
        .map_err(CliError::from)?;
    let repo = app.read_repository(None).await?;
    let plan = pitr::plan(&repo, args.source_name(), target)
        .await
        .doing(|| {
            format!(
                "planning the recovery of {} to {target}",
                args.source_name()
            )
        })?;
    if args.dry_run {
        return print_plan(app, &plan);
    }
    let Some(data_dir) = &args.to else {
        return Err(CliError::usage(
            "--to NEW_DATA_DIR is required: a point-in-time restore never touches the current data directory",
        ));
    };
    if app.identity_path().is_none() {
        return Err(CliError::usage(
            "restoring needs the secret key: pass --identity FILE or set `identity` in dr.toml",
        ));
    }
    let options = PitrOptions {
        data_dir: absolute(data_dir)?,
        restore_command: restore_command(app, args.source_name())?,
        keep_archiving: args.keep_archiving,
        start_on_port: if args.start { args.port } else { None },
    };
    if !app.global.json {
        print_plan(app, &plan)?;
    }
    check_plan_wal(&repo, &plan).await?;
    let report = restore_pitr(&repo, plan, &options)
        .await
        .doing(|| format!("restoring {} to {target}", args.source_name()))?;
    if app.global.json {
        return output::json(&report);
    }
    println!(
        "restored base backup {} ({}) into {} in {:.1} s",
        report.plan.base_backup,
        output::size(report.restored_bytes),
        report.data_dir.display(),
        report.elapsed_ms as f64 / 1000.0
    );
    match (&report.recovery_stopped, report.promoted) {
        (Some(summary), true) => println!("recovered and promoted: {summary}"),
        (None, true) => println!("recovered and promoted"),
        _ => println!(
            "recovery is configured (recovery.signal, restore_command): start PostgreSQL on {} to replay the WAL",
            report.data_dir.display()
        ),
    }
    if owned_by_root(&report.data_dir) {
        println!(
            "note: {0} belongs to root and PostgreSQL refuses to run as root: `chown -R postgres: {0}` before starting it (and let postgres read dr.toml and the key, which restore_command uses)",
            report.data_dir.display()
        );
    }
    Ok(())
}

/// Reads every WAL and history file of the plan before anything is written: a recovery that
/// would abort at a damaged file is refused while the new data directory is still empty.
async fn check_plan_wal(repo: &Repository, plan: &PitrPlan) -> CliResult<()> {
    let names: Vec<String> = plan
        .wal
        .iter()
        .map(|f| f.name.clone())
        .chain(plan.history_files.iter().cloned())
        .collect();
    let mut problems = super::verify_wal::damaged_files(repo, &plan.source, &names, false).await;
    // The segments the base backup holds itself: recovery asks the archive for them first,
    // and a damaged archived copy aborts it.
    let mut inside = vec![plan.base.start_wal_file.clone()];
    if plan.base.stop_wal_file != plan.base.start_wal_file {
        inside.push(plan.base.stop_wal_file.clone());
    }
    inside.retain(|n| !names.contains(n));
    // Recovery to the end asks for the segment after the archive's last: a record of it
    // without data makes it abort.
    if plan.target == RecoveryTarget::Latest {
        let size = plan.base.wal_segment_size;
        let next = match plan.wal.last() {
            Some(last) => Segment::parse(&last.name, size).map(|s| s.number + 1),
            None => Some(Segment::containing(1, plan.base.stop_lsn, size).number + 1),
        };
        let next = next.map(|n| (n, size));
        let after = super::verify_wal::segment_after(repo, &plan.source, plan.timeline, next);
        inside.extend(after.await);
    }
    problems.extend(super::verify_wal::damaged_files(repo, &plan.source, &inside, true).await);
    if problems.is_empty() {
        return Ok(());
    }
    Err(CliError::verification(format!(
        "{}; nothing was written: recover to a point before the first damaged file (--at), or bring the archive back from a copy",
        problems.join("; ")
    )))
}

fn print_plan(app: &App, plan: &PitrPlan) -> CliResult<()> {
    if app.global.json {
        return output::json(plan);
    }
    println!("recover {} to {}", plan.source, plan.target);
    println!(
        "  base backup {} (ended {} at WAL {} on timeline {}), {} stored",
        plan.base_backup,
        plan.base.stop_time.format("%Y-%m-%d %H:%M:%S"),
        plan.base.stop_lsn,
        plan.base.timeline,
        output::size(plan.base_stored_bytes)
    );
    match (plan.wal.first(), plan.wal.last()) {
        (Some(first), Some(last)) => println!(
            "  WAL {} .. {} ({} files, {} stored), ending on timeline {}",
            first.name,
            last.name,
            plan.wal.len(),
            output::size(plan.wal.iter().map(|f| f.stored_size).sum()),
            plan.timeline
        ),
        _ => println!("  WAL: only what the base backup holds"),
    }
    if !plan.history_files.is_empty() {
        println!("  timeline history {}", plan.history_files.join(", "));
    }
    println!("  download {}", output::size(plan.download_bytes));
    if let Some(until) = plan.recoverable_until {
        println!(
            "  the archive reaches {} (its last transaction)",
            pitr::exact_time(until)
        );
    }
    Ok(())
}

/// The `restore_command` recovery runs: this very binary with this configuration.
pub(super) fn restore_command(app: &App, source: &str) -> CliResult<String> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::usage(format!("cannot find the dr binary: {e}")))?;
    let mut words = vec![
        shell_quote(&exe.display().to_string()),
        "--config".into(),
        shell_quote(&absolute(&app.global.config)?.display().to_string()),
    ];
    if let Some(repository) = &app.global.repository {
        words.extend(["--repository".into(), shell_quote(repository)]);
    }
    if let Some(identity) = &app.global.identity {
        words.extend([
            "--identity".into(),
            shell_quote(&absolute(identity)?.display().to_string()),
        ]);
    }
    words.extend([
        "wal-fetch".into(),
        "--source".into(),
        shell_quote(source),
        "%f".into(),
        "%p".into(),
    ]);
    Ok(words.join(" "))
}

fn shell_quote(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:@=+,".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn absolute(path: &Path) -> CliResult<std::path::PathBuf> {
    std::path::absolute(path)
        .map_err(|e| CliError::usage(format!("cannot resolve {}: {e}", path.display())))
}

/// The archive checks of every source with base backups (for `dr list` and `dr verify`).
pub async fn archive_checks(repo: &Repository, sources: &[&str]) -> CliResult<Vec<ArchiveCheck>> {
    let mut checks = Vec::new();
    for source in sources {
        let check = check_archive(repo, source)
            .await
            .doing(|| format!("checking the WAL archive of {source}"))?;
        if !check.runs.is_empty() || !check.problems.is_empty() {
            checks.push(check);
        }
    }
    Ok(checks)
}

fn owned_by_root(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_spaces_and_quotes() {
        assert_eq!(shell_quote("/usr/bin/dr"), "/usr/bin/dr");
        assert_eq!(shell_quote("/srv/my dr/dr.toml"), "'/srv/my dr/dr.toml'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
