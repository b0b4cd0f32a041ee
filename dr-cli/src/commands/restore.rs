//! `dr restore`: the arguments turned into [`RestoreOptions`], the library's restore, the
//! report printed.

use dr_core::ops::restore::{RestoreRunOptions, RestoreRunReport};
use dr_core::{BackupSelector, ProgressHandle, RestoreOptions};

use crate::app::App;
use crate::cli::RestoreArgs;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr restore SOURCE [ID|latest] [--at T] [--to PATH] [--force] ...`, or `--point`.
pub async fn restore(app: &App, args: &RestoreArgs) -> CliResult<()> {
    if let Some(point) = &args.point {
        return super::points::restore_point(app, args, point).await;
    }
    let system = app.system()?;
    let name = args.source_name();
    let by_time = system.source(name)?.source.restores_by_point_in_time();
    let run = RestoreRunOptions::source(name)
        .with_selector(selector(args, by_time)?)
        .with_options(options(args, by_time));
    let bar = app.bar();
    let repo = app.read_repository(Some(bar.clone())).await?;
    let progress = ProgressHandle::new(bar.clone());
    let report = dr_core::ops::restore::restore(&repo, &system, &run, &progress).await;
    bar.finish();
    let report = report.doing(|| format!("restoring {name}"))?;
    if app.global.json {
        output::json(&report)?;
    } else {
        print(&report, args.dry_run);
    }
    outcome(&report)
}

/// The options of one source's restore from the command line; `--point` members get
/// theirs from the library.
pub fn options(args: &RestoreArgs, by_time: bool) -> RestoreOptions {
    let owners = match (args.owners, args.no_owners) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    };
    let mut options = RestoreOptions::default()
        .with_force(args.force)
        .with_swap(args.swap)
        .with_in_place(args.in_place)
        .with_server(args.server.clone())
        .with_only(args.only.clone())
        .with_owners(owners)
        .with_wait(args.wait.into())
        .with_globals(args.globals)
        .with_role_passwords(args.with_role_passwords)
        .with_dry_run(args.dry_run)
        .with_start_port(if args.start { args.port } else { None })
        .with_keep_archiving(args.keep_archiving);
    if by_time {
        options = options.with_recovery_target(Some(args.at.clone().unwrap_or("latest".into())));
    }
    if let Some(to) = &args.to {
        options = options.with_target(to);
    }
    options
}

/// Which backup: `--at` picks the newest at or before a time, unless the source replays
/// an archive to it (then `--at` is the recovery target and the base backup follows).
fn selector(args: &RestoreArgs, by_time: bool) -> CliResult<BackupSelector> {
    match (&args.at, by_time) {
        (Some(_), true) | (None, true) if args.backup != "latest" => Err(CliError::usage(
            "a physical PostgreSQL source restores by point in time: use --at TIME|latest|LSN and --to NEW_DATA_DIR (the base backup is chosen from it)",
        )),
        (Some(at), false) => {
            let time = chrono::DateTime::parse_from_rfc3339(at).map_err(|e| {
                CliError::usage(format!(
                    "--at {at:?} is not an RFC 3339 time ({e}); e.g. 2026-11-23T12:30:00Z"
                ))
            })?;
            Ok(BackupSelector::AtOrBefore(time.with_timezone(&chrono::Utc)))
        }
        (_, true) => Ok(BackupSelector::Latest),
        (None, false) => args.backup.parse().map_err(CliError::from),
    }
}

/// The report in words: one line for the restore, then the kind's summary, the checks that
/// passed, where the previous data is, the safety backup, the notes, the hooks. A dry run has no header: its
/// summary is the plan.
pub fn print(report: &RestoreRunReport, dry_run: bool) {
    let Some(done) = &report.restore else {
        print_hooks(report);
        return;
    };
    if !dry_run {
        println!(
            "restored {} {} ({}) into {} in {:.1} s",
            report.source,
            report.backup_id,
            output::size(done.restored_bytes),
            done.target,
            done.elapsed_ms as f64 / 1000.0
        );
    }
    for line in &done.summary {
        println!("{line}");
    }
    for check in &done.checks_passed {
        println!("check passed: {check}");
    }
    if let Some(kept) = &done.previous_kept_at {
        println!("the previous data is kept at {kept}");
    }
    for note in &done.notes {
        println!("note: {note}");
    }
    print_hooks(report);
    if !dry_run {
        print_healthy(report.health.as_ref(), report.rto_ms);
    }
}

/// The RTO line of a restore whose health check passed.
pub fn print_healthy(health: Option<&dr_core::ops::hooks::HealthReport>, rto_ms: Option<u64>) {
    if let (Some(health), Some(rto)) = (health, rto_ms) {
        println!(
            "healthy {:.2} s after the restore began (RTO; health check passed after {} attempts)",
            rto as f64 / 1000.0,
            health.attempts
        );
    }
}

fn print_hooks(report: &RestoreRunReport) {
    for failure in report.hook_failures() {
        eprintln!("error: {failure}");
    }
}

/// The exit code of a restore: its failure (the message says what to do), else a failed
/// hook or health check.
pub fn outcome(report: &RestoreRunReport) -> CliResult<()> {
    if let Some(failure) = &report.failure {
        return Err(CliError::from(failure).context(&format!(
            "restoring backup {} of {}",
            report.backup_id, report.source
        )));
    }
    let hooks = report.hook_failures();
    if hooks.is_empty() {
        return Ok(());
    }
    Err(CliError::operational(format!(
        "the restore of {} finished, but: {}",
        report.source,
        hooks.join("; ")
    )))
}
