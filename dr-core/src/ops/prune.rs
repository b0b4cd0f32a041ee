//! The `prune` operation: every backup's retention decision with its reasons, then the
//! deletes, safe on a shared repository.
//!
//! - Retention per source (its own policy or the system's default), newest first.
//! - Recovery points are kept whole: a member a kept point needs is kept.
//! - A source holding a manifest of a newer format is left alone (this build cannot know
//!   what its backups depend on); while a recovery point is damaged, every backup is kept.
//! - Backups a kept backup depends on are kept (retention's own invariant).
//! - Failure records past a bound go (the newest `keep_failures` per source and all newer
//!   than its newest backup stay).
//! - The continuous archive of a kind (PostgreSQL WAL) is pruned through the registry, never
//!   for a source with an unreadable manifest (it may be a base backup that needs it).
//! - Orphans older than a grace period go; recovery points none of whose backups is kept
//!   are forgotten.
//!
//! - On a bucket with Object Lock: a backup still under retention is kept until a prune
//!   after its date, and the lock of what is kept is extended by the lock margin.
//!
//! `dry_run` plans and deletes nothing.

mod failures;
pub(crate) mod locks;

pub use failures::FailuresPruned;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::listing::{Listing, UnreadableBackup};
use crate::manifest::Manifest;
use crate::ops::System;
use crate::points::{PointListing, RecoveryPoint};
use crate::progress::{Operation, ProgressHandle, Scope};
use crate::registry::ArchivePrune;
use crate::repository::{Orphan, Repository};
use crate::retention::{Decision, Plan, RetentionItem, keep_recovery_points, plan};

/// What prune does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Plan only: delete nothing.
    pub dry_run: bool,
    /// Orphans younger than this are left (a backup may be writing them).
    pub orphan_grace: Duration,
    /// The time retention is computed at (now by default).
    pub now: Option<DateTime<Utc>>,
    /// Failure records kept per source beyond those newer than its newest backup (100).
    pub keep_failures: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            orphan_grace: Duration::from_secs(3600),
            now: None,
            keep_failures: 100,
        }
    }
}

impl PruneOptions {
    /// Keeps the newest `keep` failure records of each source (and every one newer than
    /// its newest backup).
    pub fn with_keep_failures(mut self, keep: usize) -> Self {
        self.keep_failures = keep;
        self
    }

    /// Plans only.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Leaves orphans younger than `grace`.
    pub fn with_orphan_grace(mut self, grace: Duration) -> Self {
        self.orphan_grace = grace;
        self
    }

    /// Computes retention at `now`.
    pub fn with_now(mut self, now: DateTime<Utc>) -> Self {
        self.now = Some(now);
        self
    }
}

/// What prune decided and did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
    /// Every backup's decision with its reasons.
    pub decisions: Vec<Decision>,
    /// Ids of the backups deleted.
    pub deleted: Vec<String>,
    /// Orphaned objects removed.
    pub orphans_removed: Vec<Orphan>,
    /// Recovery points forgotten (none of their backups is kept).
    pub points_forgotten: Vec<String>,
    /// Per source: the failure records past the bound, removed unless a dry run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, FailuresPruned>,
    /// Per source with a continuous archive: what is not needed (deleted unless a dry run).
    pub archives: BTreeMap<String, ArchivePrune>,
    /// Committed backups whose manifest could not be read: all their objects were kept.
    pub unreadable: Vec<UnreadableBackup>,
    /// Damaged recovery point records: every backup was kept.
    pub point_problems: Vec<String>,
    /// Backups retention forgot but Object Lock still holds: kept, with the date as reason.
    pub held_by_lock: Vec<String>,
    /// Objects of kept backups whose lock was extended (Object Lock buckets only).
    pub locks_extended: usize,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl PruneReport {
    /// Backups kept.
    pub fn kept(&self) -> usize {
        self.decisions.iter().filter(|d| d.keep).count()
    }

    /// Backups deleted, or that a dry run would delete.
    pub fn forgotten(&self) -> usize {
        self.decisions.len() - self.kept()
    }

    /// Whether the repository needs attention (an unreadable manifest, a damaged point):
    /// prune kept what it could not judge, but a person should look.
    pub fn needs_attention(&self) -> bool {
        !self.unreadable.is_empty() || !self.point_problems.is_empty()
    }
}

/// Plans retention over the whole repository and, unless a dry run, deletes what no rule
/// keeps.
///
/// # Errors
/// A store error while listing or deleting (what was deleted before stays deleted; a rerun
/// continues).
pub async fn prune(
    repo: &Repository,
    system: &System,
    options: &PruneOptions,
    progress: &ProgressHandle,
) -> Result<PruneReport> {
    let started = Instant::now();
    let progress = progress.narrowed(|_| Scope::of(Operation::Prune));
    progress.start("plan", None);
    let now = options.now.unwrap_or_else(Utc::now);
    let listing = repo.list(None).await?;
    let points = repo.points().await?;
    let mut report = PruneReport {
        dry_run: options.dry_run,
        decisions: retention_decisions(system, &listing, &points, now),
        unreadable: listing.unreadable.clone(),
        point_problems: point_problems(&points, &listing),
        ..PruneReport::default()
    };
    if !options.dry_run {
        // Only what retention keeps is extended: a backup it forgot is held by its lock
        // until the lock runs out, never renewed.
        report.locks_extended = locks::extend_kept(repo, &listing, &report.decisions, now).await?
            + locks::extend_points(repo, &points.points, &report.decisions, now).await?;
    }
    report.held_by_lock = locks::keep_locked(repo, &listing, &mut report.decisions, now).await?;
    if !options.dry_run {
        delete_forgotten(repo, &listing, &mut report).await?;
        let grace = chrono::TimeDelta::from_std(options.orphan_grace)
            .unwrap_or(chrono::TimeDelta::hours(1));
        report.orphans_removed = repo.remove_orphans(now - grace).await?;
        report.points_forgotten =
            forget_empty_points(repo, &points.points, &report.decisions, &listing).await?;
    }
    report.archives = prune_archives(repo, system, &listing, &report.decisions, options).await?;
    report.failures =
        failures::prune(repo, &listing, options.keep_failures, options.dry_run).await?;
    report.elapsed_ms = crate::ops::elapsed_ms(started);
    progress.finish();
    Ok(report)
}

/// Every backup's retention decision: each source's policy, then recovery points kept
/// whole, newer formats and damaged points keeping everything.
pub fn retention_decisions(
    system: &System,
    listing: &Listing,
    points: &PointListing,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut by_source: BTreeMap<&str, Vec<RetentionItem>> = BTreeMap::new();
    for m in &listing.backups {
        by_source
            .entry(m.source.as_str())
            .or_default()
            .push(RetentionItem::from(m));
    }
    let mut decisions = Vec::new();
    for (source, items) in &by_source {
        let mut planned = plan(items, system.retention_for(source), now).decisions;
        if listing.has_newer_format(source) {
            keep_all(
                &mut planned,
                "source holds a manifest of a newer format: prune refuses to touch it (upgrade dr)",
            );
        }
        decisions.extend(planned);
    }
    let mut decisions = keep_points_whole(decisions, &listing.backups, &points.points);
    if !point_problems(points, listing).is_empty() {
        keep_all(
            &mut decisions,
            "a recovery point is damaged: prune keeps every backup",
        );
    }
    decisions
}

/// What is wrong with the recovery point records: unreadable ones, and points whose members
/// do not match the committed backups they name.
pub fn point_problems(points: &PointListing, listing: &Listing) -> Vec<String> {
    points
        .unreadable
        .iter()
        .map(|u| u.describe())
        .chain(
            points
                .points
                .iter()
                .flat_map(|p| p.problems(&listing.backups)),
        )
        .collect()
}

fn keep_all(decisions: &mut [Decision], reason: &str) {
    for d in decisions {
        d.keep = true;
        d.reasons = vec![reason.to_owned()];
    }
}

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

async fn delete_forgotten(
    repo: &Repository,
    listing: &Listing,
    report: &mut PruneReport,
) -> Result<()> {
    for d in report.decisions.iter().filter(|d| !d.keep) {
        let found = listing
            .backups
            .iter()
            .find(|m| m.id == d.id && m.source == d.source);
        if let Some(m) = found {
            repo.delete(m).await?;
            report.deleted.push(d.id.clone());
        }
    }
    Ok(())
}

/// Forgets the records of points none of whose backups is kept (an unreadable backup counts
/// as kept: it was not deleted).
async fn forget_empty_points(
    repo: &Repository,
    points: &[RecoveryPoint],
    decisions: &[Decision],
    listing: &Listing,
) -> Result<Vec<String>> {
    let mut forgotten = Vec::new();
    for point in points {
        let kept = point.backup_ids().any(|id| {
            decisions.iter().any(|d| d.keep && d.id == id)
                || listing.unreadable.iter().any(|u| u.id == id)
        });
        if !kept {
            repo.delete_point(&point.id).await?;
            forgotten.push(point.id.clone());
        }
    }
    Ok(forgotten)
}

/// The archive of each source whose backups' kind has one: what no kept backup needs.
async fn prune_archives(
    repo: &Repository,
    system: &System,
    listing: &Listing,
    decisions: &[Decision],
    options: &PruneOptions,
) -> Result<BTreeMap<String, ArchivePrune>> {
    let mut by_source: BTreeMap<&str, Vec<&Manifest>> = BTreeMap::new();
    for m in &listing.backups {
        if system.registry().archive(&m.kind).is_some() {
            by_source.entry(m.source.as_str()).or_default().push(m);
        }
    }
    let mut pruned = BTreeMap::new();
    for (source, manifests) in by_source {
        if listing.unreadable_of(source).next().is_some() {
            let kept = ArchivePrune::kept_all(
                "the source has a backup with an unreadable manifest: it may need the archive",
            );
            pruned.insert(source.to_owned(), kept);
            continue;
        }
        let Some(archive) = system.registry().archive(&manifests[0].kind) else {
            continue;
        };
        let kept: Vec<Manifest> = manifests
            .iter()
            .filter(|m| decisions.iter().any(|d| d.keep && d.id == m.id))
            .map(|m| (*m).clone())
            .collect();
        let result = archive.prune(repo, source, &kept, options.dry_run).await?;
        pruned.insert(source.to_owned(), result);
    }
    Ok(pruned)
}
