//! Recovery points: `dr restore --point ID|latest` (`dr list --points` is in `list`).

use std::time::Instant;

use dr_core::{PointSelector, RecoveryPoint};
use serde_json::json;

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
    let repo = app.read_repository(None).await?;
    let point = repo
        .find_point(&selector)
        .await
        .doing(|| "finding the recovery point".into())?;
    if !point.is_complete() && !args.force {
        return Err(CliError::usage(format!(
            "recovery point {} is incomplete ({} failed): restore its sources one by one, or pass --force to restore what it holds",
            point.id,
            point
                .failed
                .iter()
                .map(|f| f.source.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    check_members(&repo, &point).await?;
    let order = restore_order(app, &point)?;
    if !app.global.json {
        println!(
            "restoring recovery point {} ({}, taken {}): {}",
            point.id,
            point.group,
            point.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            order.join(", ")
        );
    }
    let started = Instant::now();
    let mut steps = Vec::new();
    let mut by_pitr = Vec::new();
    for source in &order {
        let Some(member) = point.member(source) else {
            continue;
        };
        let config = app.config.source(source)?;
        if config.is_physical() {
            println!(
                "skipped {source}: a physical PostgreSQL source recovers into a new data directory: dr restore {source} --at {} --to NEW_DIR --start --port N",
                point.created_at.to_rfc3339()
            );
            by_pitr.push(source.as_str());
            continue;
        }
        let step = Instant::now();
        // A logical PostgreSQL database goes the safe way: into a new database, checked,
        // swapped in by rename (the current one, if any, kept).
        let member_args = args.for_member(source, &member.backup_id, config.supports_in_place());
        super::restore(app, &member_args).await.map_err(|e| {
            let done: Vec<&str> = steps
                .iter()
                .map(|(s, _): &(String, u64)| s.as_str())
                .collect();
            e.context(&format!(
                "restoring recovery point {} (already restored: {})",
                point.id,
                if done.is_empty() {
                    "none".into()
                } else {
                    done.join(", ")
                }
            ))
        })?;
        steps.push((source.clone(), elapsed_ms(step)));
    }
    let total_ms = elapsed_ms(started);
    if app.global.json {
        let steps: Vec<_> = steps
            .iter()
            .map(|(source, ms)| json!({ "source": source, "elapsed_ms": ms }))
            .collect();
        return output::json(
            &json!({ "point": point.id, "steps": steps, "elapsed_ms": total_ms, "pitr_pending": by_pitr }),
        );
    }
    for (source, ms) in &steps {
        println!("  {source:<20} {:>8.2} s", *ms as f64 / 1000.0);
    }
    println!(
        "recovery point {} restored in {:.2} s{}",
        point.id,
        total_ms as f64 / 1000.0,
        if by_pitr.is_empty() {
            String::new()
        } else {
            format!(
                "; still to recover by point-in-time restore: {}",
                by_pitr.join(", ")
            )
        }
    );
    Ok(())
}

/// Refuses, before anything is restored, a point whose members are not the committed
/// backups it names.
async fn check_members(repo: &dr_core::Repository, point: &RecoveryPoint) -> CliResult<()> {
    let listing = repo.list(None).await.doing(|| "listing backups".into())?;
    let unreadable: Vec<&str> = listing.unreadable.iter().map(|u| u.id.as_str()).collect();
    let mut problems = point.problems(&listing.backups);
    let missing = point.missing_members(&listing.backups, &unreadable);
    if !missing.is_empty() {
        problems.push(format!(
            "recovery point {} names backups that are not in the repository (pruned, or the record is damaged): {}",
            point.id,
            missing.join(", ")
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(CliError::verification(format!(
        "{}; nothing was restored: restore its sources one by one (dr list)",
        problems.join("; ")
    )))
}

/// The point's sources in restore order: its group's order when the group is still
/// configured, else databases, caches, then files; sources no longer configured refused.
fn restore_order(app: &App, point: &RecoveryPoint) -> CliResult<Vec<String>> {
    let mut order = app.config.group_sources(&point.group).unwrap_or_default();
    order.retain(|s| point.member(s).is_some());
    let mut rest: Vec<String> = point
        .members
        .iter()
        .map(|m| m.source.clone())
        .filter(|s| !order.contains(s))
        .collect();
    for source in &rest {
        app.config.source(source)?;
    }
    rest.sort_by_key(|s| app.config.sources[s].restore_rank());
    order.extend(rest);
    Ok(order)
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
