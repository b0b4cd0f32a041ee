//! `dr prune`.

use std::collections::BTreeMap;

use dr_core::retention::{Decision, RetentionItem, keep_recovery_points, plan};
use dr_core::{Listing, Manifest, Plan, PointListing, RecoveryPoint, Repository};
use dr_postgres::{BaseBackupFacts, WalArchive, unneeded_wal};
use serde_json::json;

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr prune [--dry-run]`: plans per source with its policy, prints every decision with its
/// reasons, then deletes what no rule keeps and orphans older than the grace period.
pub async fn prune(app: &App, dry_run: bool, orphan_grace: std::time::Duration) -> CliResult<()> {
    let repo = app.repository(None).await?;
    let listing = repo.list(None).await.doing(|| "listing backups".into())?;
    let manifests = &listing.backups;
    let now = chrono::Utc::now();
    let (decisions, points) = retention_plan(app, &repo, &listing, now).await?;
    let mut deleted = Vec::new();
    let mut orphans = Vec::new();
    if !dry_run {
        for d in decisions.iter().filter(|d| !d.keep) {
            if let Some(m) = manifests
                .iter()
                .find(|m| m.id == d.id && m.source == d.source)
            {
                repo.delete(m)
                    .await
                    .doing(|| format!("deleting backup {} of {}", m.id, m.source))?;
                deleted.push(d.id.clone());
            }
        }
        let grace =
            chrono::TimeDelta::from_std(orphan_grace).unwrap_or(chrono::TimeDelta::hours(1));
        orphans = repo
            .remove_orphans(now - grace)
            .await
            .doing(|| "removing orphans".into())?;
        forget_empty_points(&repo, &points.points, &decisions, &listing).await?;
    }
    let wal = prune_wal(&repo, &listing, &decisions, dry_run).await?;
    if app.global.json {
        output::json(
            &json!({ "dry_run": dry_run, "decisions": decisions, "deleted": deleted,
            "orphans_removed": orphans, "wal": wal, "unreadable": listing.unreadable }),
        )?;
        return unreadable_outcome(&listing, &points);
    }
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            let action = match (d.keep, dry_run) {
                (true, _) => "keep",
                (false, true) => "would delete",
                (false, false) => "deleted",
            };
            vec![
                d.source.clone(),
                d.id.clone(),
                d.time.format("%Y-%m-%d %H:%M").to_string(),
                action.into(),
                d.reasons.join(", "),
            ]
        })
        .collect();
    output::table(
        &["SOURCE", "ID", "STARTED (UTC)", "ACTION", "REASONS"],
        &rows,
    );
    let forgotten = decisions.iter().filter(|d| !d.keep).count();
    println!(
        "{} kept, {forgotten} {}; {} orphaned objects removed",
        decisions.len() - forgotten,
        if dry_run {
            "would be deleted (dry run)"
        } else {
            "deleted"
        },
        orphans.len()
    );
    for (source, names) in &wal {
        println!(
            "{source}: {} archived WAL files older than the oldest kept base backup {}",
            names.len(),
            if dry_run {
                "would be deleted"
            } else {
                "deleted"
            }
        );
    }
    for unreadable in &listing.unreadable {
        println!("PROBLEM {}", unreadable.describe());
    }
    for problem in super::points::point_problems(&points, &listing) {
        println!("PROBLEM {problem}");
    }
    unreadable_outcome(&listing, &points)
}

/// Exit 3 when a committed backup's manifest could not be read, or a recovery point is
/// damaged: prune kept their objects, but the repository needs attention.
fn unreadable_outcome(listing: &Listing, points: &PointListing) -> CliResult<()> {
    if !super::points::point_problems(points, listing).is_empty() {
        return Err(CliError::verification(
            "a recovery point is damaged; prune kept every backup (see above)",
        ));
    }
    if listing.is_complete() {
        return Ok(());
    }
    Err(CliError::verification(format!(
        "{} committed backups have unreadable manifests; prune kept every object of them (see above)",
        listing.unreadable.len()
    )))
}

/// Every backup's retention decision: each source's policy, then recovery points kept whole.
/// A source holding a manifest of a newer format is left alone: all its backups are kept
/// (this build cannot know what the newer backups depend on). While a recovery point is
/// damaged (unreadable, or naming backups that are not there) every backup is kept: the
/// point's members are unknown.
pub(super) async fn retention_plan(
    app: &App,
    repo: &Repository,
    listing: &Listing,
    now: chrono::DateTime<chrono::Utc>,
) -> CliResult<(Vec<Decision>, PointListing)> {
    let manifests = &listing.backups;
    let mut by_source: BTreeMap<&str, Vec<RetentionItem>> = BTreeMap::new();
    for m in manifests {
        by_source
            .entry(m.source.as_str())
            .or_default()
            .push(RetentionItem::from(m));
    }
    let mut decisions: Vec<Decision> = Vec::new();
    for (source, items) in &by_source {
        let mut planned = plan(items, app.config.retention_for(source), now).decisions;
        if listing.has_newer_format(source) {
            for d in &mut planned {
                d.keep = true;
                d.reasons = vec![
                    "source holds a manifest of a newer format: prune refuses to touch it (upgrade dr)".into(),
                ];
            }
        }
        decisions.extend(planned);
    }
    let points = repo
        .points()
        .await
        .doing(|| "listing recovery points".into())?;
    let mut decisions = keep_points_whole(decisions, manifests, &points.points);
    if !super::points::point_problems(&points, listing).is_empty() {
        for d in &mut decisions {
            d.keep = true;
            d.reasons = vec!["a recovery point is damaged: prune keeps every backup".into()];
        }
    }
    Ok((decisions, points))
}

/// Applies the recovery points to the per-source plans: a point is kept whole.
fn keep_points_whole(
    decisions: Vec<Decision>,
    manifests: &[Manifest],
    points: &[RecoveryPoint],
) -> Vec<Decision> {
    let items: Vec<RetentionItem> = manifests.iter().map(RetentionItem::from).collect();
    let members: Vec<(String, Vec<String>)> = points
        .iter()
        .map(|p| (p.id.clone(), p.backup_ids().map(str::to_owned).collect()))
        .collect();
    let mut plan = Plan { decisions };
    keep_recovery_points(&mut plan, &items, &members);
    plan.decisions
}

/// Deletes the records of points none of whose backups is kept (an unreadable backup counts
/// as kept: it was not deleted).
async fn forget_empty_points(
    repo: &Repository,
    points: &[RecoveryPoint],
    decisions: &[Decision],
    listing: &Listing,
) -> CliResult<()> {
    for point in points {
        let kept = point.backup_ids().any(|id| {
            decisions.iter().any(|d| d.keep && d.id == id)
                || listing.unreadable.iter().any(|u| u.id == id)
        });
        if !kept {
            repo.delete_point(&point.id)
                .await
                .doing(|| format!("deleting recovery point {}", point.id))?;
        }
    }
    Ok(())
}

/// Deletes the archived WAL no kept base backup needs, per source with base backups. A
/// source with an unreadable manifest keeps all its WAL: the unreadable backup may be a base
/// backup that needs it.
async fn prune_wal(
    repo: &Repository,
    listing: &Listing,
    decisions: &[Decision],
    dry_run: bool,
) -> CliResult<BTreeMap<String, Vec<String>>> {
    let manifests = &listing.backups;
    let mut pruned = BTreeMap::new();
    for source in super::pitr_sources(manifests) {
        if listing.unreadable_of(source).next().is_some() {
            tracing::warn!(
                source,
                "not pruning WAL: the source has a backup with an unreadable manifest"
            );
            continue;
        }
        let kept: Vec<BaseBackupFacts> = manifests
            .iter()
            .filter(|m| m.source == source && m.kind == dr_postgres::BASE_KIND)
            .filter(|m| decisions.iter().any(|d| d.keep && d.id == m.id))
            .filter_map(|m| BaseBackupFacts::from_info(&m.source_info, &m.id).ok())
            .collect();
        let archive = WalArchive::new(repo, source).map_err(CliError::from)?;
        let contents = archive
            .contents()
            .await
            .doing(|| format!("listing the WAL archive of {source}"))?;
        let names = unneeded_wal(&contents, &kept);
        if !dry_run {
            archive
                .delete(&names)
                .await
                .doing(|| format!("deleting old WAL of {source}"))?;
        }
        pruned.insert(source.to_owned(), names);
    }
    Ok(pruned)
}
