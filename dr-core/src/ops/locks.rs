//! `dr verify --locks` and the lock line of `dr status`: every backup retention keeps must be
//! locked at least until its guaranteed keep date (and not have a lock that already ran out).

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::locks::guaranteed_keep;
use crate::manifest::Manifest;
use crate::ops::System;
use crate::repository::{LockReport, Repository};

/// The date a kept backup must be locked until: its guaranteed keep date under its policy,
/// and never a date already past (a lock that ran out protects nothing).
pub fn needed_until(manifest: &Manifest, system: &System, now: DateTime<Utc>) -> DateTime<Utc> {
    let keep = guaranteed_keep(system.retention_for(&manifest.source));
    let keep_date =
        manifest.started_at + chrono::TimeDelta::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
    keep_date.max(now)
}

/// Checks the locks of every backup retention keeps (of `source` only, when given).
///
/// # Errors
/// A store or lock control plane error.
pub async fn verify_locks(
    repo: &Repository,
    system: &System,
    source: Option<&str>,
    now: DateTime<Utc>,
) -> Result<LockReport> {
    let listing = repo.list(source).await?;
    let points = repo.points().await?;
    let decisions = crate::ops::prune::retention_decisions(system, &listing, &points, now);
    let wanted: Vec<(&Manifest, DateTime<Utc>)> = listing
        .backups
        .iter()
        .filter(|m| {
            decisions
                .iter()
                .any(|d| d.keep && d.id == m.id && d.source == m.source)
        })
        .map(|m| (m, needed_until(m, system, now)))
        .collect();
    let mut report = repo.check_locks(&wanted).await?;
    if report.bucket_locked && source.is_none() {
        for point in &points.points {
            if !crate::ops::prune::locks::point_is_kept(point, &decisions) {
                continue;
            }
            report.objects_checked += 1;
            let locked_until = repo.point_retention(&point.id).await?.map(|r| r.until);
            if locked_until.is_none_or(|until| until < now) {
                report.problems.push(crate::repository::LockProblem {
                    source: "points".into(),
                    id: point.id.clone(),
                    key: format!("points/{}.json", point.id),
                    locked_until,
                    needed_until: now,
                });
            }
        }
    }
    Ok(report)
}

/// `dr status`'s lock problems of a source's newest backup (none where the bucket has no
/// Object Lock).
///
/// # Errors
/// A lock control plane error.
pub async fn newest_lock_problems(
    repo: &Repository,
    system: &System,
    newest: Option<&Manifest>,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let Some(newest) = newest else {
        return Ok(Vec::new());
    };
    let report = repo
        .check_locks(&[(newest, needed_until(newest, system, now))])
        .await?;
    let count = report.problems.len();
    Ok(report
        .problems
        .first()
        .map(|first| {
            format!(
                "the newest backup {} is not locked long enough on this Object Lock bucket ({count} objects; first: {first}); `dr prune` extends locks, `dr verify --locks` lists them",
                newest.id
            )
        })
        .into_iter()
        .collect())
}
