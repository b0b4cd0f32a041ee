//! Recovery points: `dr restore --point ID|latest` (`dr list --points` is in `list`).

use dr_core::ops::restore::{PointRestoreOptions, PointRestoreReport};
use dr_core::{PointSelector, ProgressHandle};

use crate::app::App;
use crate::cli::RestoreArgs;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr restore --point ID|latest`: every member backup, in the group's restore order, each
/// into its source's own place (each kind's safe restore: staged, checked, swapped, the
/// previous data kept), timed step by step. Stops at the first failure and says which
/// sources were restored before it.
pub async fn restore_point(app: &App, args: &RestoreArgs, point: &str) -> CliResult<()> {
    let selector: PointSelector = point.parse().map_err(CliError::from)?;
    let system = app.system()?;
    let options = PointRestoreOptions::point(selector)
        .with_allow_incomplete(args.force)
        .with_options(super::restore::options(args, false));
    let bar = app.bar();
    let repo = app.read_repository(Some(bar.clone())).await?;
    let progress = ProgressHandle::new(bar.clone());
    let report = dr_core::ops::restore::restore_point(&repo, &system, &options, &progress).await;
    bar.finish();
    let report = report.doing(|| "restoring the recovery point".into())?;
    if app.global.json {
        output::json(&report)?;
    } else {
        print_point_restore(&report);
    }
    point_outcome(&report)
}

fn print_point_restore(report: &PointRestoreReport) {
    let order: Vec<&str> = report.members.iter().map(|m| m.source.as_str()).collect();
    let verb = if report.failed_member().is_some() {
        "stopped restoring"
    } else {
        "restored"
    };
    println!(
        "{verb} recovery point {} ({}, taken {}): {}",
        report.point,
        report.group,
        report.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        order.join(", ")
    );
    for member in &report.members {
        super::restore::print(member, false);
    }
    for skipped in &report.skipped {
        println!("skipped {}: {}", skipped.source, skipped.reason);
    }
    for member in report.members.iter().filter(|m| m.restore.is_some()) {
        let ms = member.restore.as_ref().map_or(0, |r| r.elapsed_ms);
        println!("  {:<20} {:>8.2} s", member.source, ms as f64 / 1000.0);
    }
    if report.failed_member().is_some() {
        return;
    }
    let pending: Vec<&str> = report.skipped.iter().map(|s| s.source.as_str()).collect();
    println!(
        "recovery point {} restored in {:.2} s{}",
        report.point,
        report.elapsed_ms as f64 / 1000.0,
        if pending.is_empty() {
            String::new()
        } else {
            format!(
                "; still to recover by point-in-time restore: {}",
                pending.join(", ")
            )
        }
    );
    super::restore::print_healthy(report.health.as_ref(), report.rto_ms);
    for failure in point_hook_failures(report) {
        eprintln!("error: {failure}");
    }
}

/// The group's own hook failures (each member's are printed with the member).
fn point_hook_failures(report: &PointRestoreReport) -> Vec<String> {
    let members: Vec<String> = report
        .members
        .iter()
        .flat_map(|m| m.hook_failures())
        .collect();
    report
        .hook_failures()
        .into_iter()
        .filter(|f| !members.contains(f))
        .collect()
}

fn point_outcome(report: &PointRestoreReport) -> CliResult<()> {
    if let Some(failed) = report.failed_member() {
        let done: Vec<&str> = report
            .members
            .iter()
            .filter(|m| m.failure.is_none())
            .map(|m| m.source.as_str())
            .collect();
        let context = format!(
            "restoring recovery point {} (already restored: {})",
            report.point,
            if done.is_empty() {
                "none".into()
            } else {
                done.join(", ")
            }
        );
        return super::restore::outcome(failed).map_err(|e| e.context(&context));
    }
    let hooks = report.hook_failures();
    if hooks.is_empty() {
        return Ok(());
    }
    Err(CliError::operational(format!(
        "recovery point {} was restored, but: {}",
        report.point,
        hooks.join("; ")
    )))
}
