//! Restoring a whole recovery point.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RestoreRunOptions, RestoreRunReport, require_identity, restore};
use crate::error::{Error, Result};
use crate::ops::System;
use crate::ops::hooks::{self, HealthReport, HookEnv, HookPhase, HookRun, Hooks};
use crate::points::{PointSelector, RecoveryPoint};
use crate::progress::ProgressHandle;
use crate::repository::Repository;
use crate::selector::BackupSelector;
use crate::traits::RestoreOptions;

/// The options of [`restore_point`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PointRestoreOptions {
    /// Which point.
    pub point: PointSelector,
    /// Restore an incomplete point too (what it holds).
    pub allow_incomplete: bool,
    /// The options every member is restored with (`force`, `owners`, `wait`); each member
    /// goes into its own place with `swap` set (the kind's safe way: staged, checked,
    /// swapped in, the previous data kept), so `target`, `server` and `only` are ignored.
    pub options: RestoreOptions,
}

impl Default for PointRestoreOptions {
    fn default() -> Self {
        PointRestoreOptions {
            point: PointSelector::Latest,
            allow_incomplete: false,
            options: RestoreOptions::default(),
        }
    }
}

impl PointRestoreOptions {
    /// Restores the point `point`.
    pub fn point(point: PointSelector) -> Self {
        PointRestoreOptions {
            point,
            ..PointRestoreOptions::default()
        }
    }

    /// Whether an incomplete point may be restored.
    pub fn with_allow_incomplete(mut self, allow: bool) -> Self {
        self.allow_incomplete = allow;
        self
    }

    /// With the members' options.
    pub fn with_options(mut self, options: RestoreOptions) -> Self {
        self.options = options;
        self
    }
}

/// A member a point restore leaves to another kind of restore.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SkippedMember {
    /// The source.
    pub source: String,
    /// Its backup in the point.
    pub backup_id: String,
    /// Why, and what to run instead.
    pub reason: String,
}

/// What restoring a recovery point did.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct PointRestoreReport {
    /// The point.
    pub point: String,
    /// Its group.
    pub group: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// The members restored (or tried: a failure stops the restore), in restore order.
    pub members: Vec<RestoreRunReport>,
    /// Members recovered by point-in-time restore instead (kinds with a continuous archive).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedMember>,
    /// The group's hooks that ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_hooks: Vec<HookRun>,
    /// The group's health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthReport>,
    /// Wall time of the whole restore.
    pub elapsed_ms: u64,
    /// Until every member and the group passed their health checks; `None` on failure.
    pub rto_ms: Option<u64>,
}

impl PointRestoreReport {
    /// The member that failed, if one did.
    pub fn failed_member(&self) -> Option<&RestoreRunReport> {
        self.members.iter().find(|m| m.failure.is_some())
    }

    /// Every hook and health failure of the members and of the group.
    pub fn hook_failures(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .members
            .iter()
            .flat_map(RestoreRunReport::hook_failures)
            .collect();
        lines.extend(hooks::failures(&self.group_hooks));
        if let Some(h) = self.health.as_ref().filter(|h| !h.passed) {
            lines.push(format!(
                "the group's health check did not pass after {} attempts: {}",
                h.attempts,
                h.error.as_deref().unwrap_or("failed")
            ));
        }
        lines
    }

    /// Whether every member, hook and health check succeeded.
    pub fn is_success(&self) -> bool {
        self.failed_member().is_none() && self.hook_failures().is_empty()
    }
}

/// Restores every member of a recovery point in restore order (its group's order when the
/// group is still configured, else by [`crate::RestoreRank`]), each into its own place,
/// between the group's hooks. Members of kinds with a continuous archive are skipped (they
/// recover by point-in-time restore). The first member that fails stops the restore.
///
/// # Errors
/// Before anything ran: [`Error::NoIdentity`], [`Error::BackupNotFound`], an incomplete
/// point without `allow_incomplete` ([`Error::Refused`]), members that do not match their
/// backups or are missing ([`Error::ChecksFailed`]), a member no longer configured
/// ([`Error::Usage`]), a failing group `before_restore` hook ([`Error::HookFailed`]).
pub async fn restore_point(
    repo: &Repository,
    system: &System,
    options: &PointRestoreOptions,
    progress: &ProgressHandle,
) -> Result<PointRestoreReport> {
    let started = Instant::now();
    require_identity(repo)?;
    let point = repo.find_point(&options.point).await?;
    refuse_incomplete(&point, options.allow_incomplete)?;
    check_members(repo, &point).await?;
    let order = restore_order(system, &point)?;
    let group_hooks: Hooks = system
        .group(&point.group)
        .map(|g| g.hooks.clone())
        .unwrap_or_default();
    let env = HookEnv::new("restore")
        .with_group(&point.group)
        .with_point(&point.id);
    let mut report = PointRestoreReport {
        point: point.id.clone(),
        group: point.group.clone(),
        created_at: point.created_at,
        members: Vec::new(),
        skipped: Vec::new(),
        group_hooks: Vec::new(),
        health: None,
        elapsed_ms: 0,
        rto_ms: None,
    };
    let before = group_hooks
        .run_before(HookPhase::BeforeRestore, &env, &mut report.group_hooks)
        .await;
    if let Err(e) = before {
        group_hooks.run_after(HookPhase::AfterRestore, &env).await;
        return Err(e);
    }
    let members =
        restore_members(repo, system, &point, &order, options, progress, &mut report).await;
    let after = group_hooks.run_after(HookPhase::AfterRestore, &env).await;
    report.group_hooks.extend(after);
    if members.is_ok() && report.failed_member().is_none() {
        report.health = group_hooks.wait_healthy(&env).await;
        if report.hook_failures().is_empty() {
            report.rto_ms = Some(crate::ops::elapsed_ms(started));
        }
    }
    report.elapsed_ms = crate::ops::elapsed_ms(started);
    members.map(|()| report)
}

async fn restore_members(
    repo: &Repository,
    system: &System,
    point: &RecoveryPoint,
    order: &[String],
    options: &PointRestoreOptions,
    progress: &ProgressHandle,
    report: &mut PointRestoreReport,
) -> Result<()> {
    for source in order {
        let Some(member) = point.member(source) else {
            continue;
        };
        if system
            .kind(&member.kind)
            .and_then(|k| k.archive())
            .is_some()
        {
            report.skipped.push(SkippedMember {
                source: source.clone(),
                backup_id: member.backup_id.clone(),
                reason: format!(
                    "a {} source recovers by point-in-time restore into a new place: dr restore {source} --at {} --to NEW_PLACE",
                    member.kind,
                    point.created_at.to_rfc3339()
                ),
            });
            continue;
        }
        let mut member_options = options.options.clone();
        member_options.target = None;
        member_options.server = None;
        member_options.only = Vec::new();
        member_options.in_place = false;
        member_options.swap = system
            .get(source)
            .is_some_and(|c| c.source.swaps_into_own_place());
        let run = RestoreRunOptions::source(source)
            .with_selector(BackupSelector::Id(member.backup_id.clone()))
            .with_options(member_options);
        let one = restore(repo, system, &run, progress).await?;
        let failed = one.failure.is_some();
        report.members.push(one);
        if failed {
            break;
        }
    }
    Ok(())
}

fn refuse_incomplete(point: &RecoveryPoint, allow: bool) -> Result<()> {
    if point.is_complete() || allow {
        return Ok(());
    }
    let failed: Vec<&str> = point.failed.iter().map(|f| f.source.as_str()).collect();
    Err(Error::refused(
        crate::Refusal::Incomplete,
        format!(
            "recovery point {} is incomplete ({} failed): restore its sources one by one, or pass --force to restore what it holds",
            point.id,
            failed.join(", ")
        ),
    ))
}

/// Refuses, before anything is restored, a point whose members are not the committed
/// backups it names.
async fn check_members(repo: &Repository, point: &RecoveryPoint) -> Result<()> {
    let listing = repo.list(None).await?;
    let unreadable: Vec<&str> = listing.unreadable.iter().map(|u| u.id.as_str()).collect();
    for member in &point.members {
        let found = listing
            .backups
            .iter()
            .find(|m| m.id == member.backup_id && m.source == member.source);
        if let Some(manifest) = found {
            repo.check_identities_for(manifest)?;
        }
    }
    let mut problems = point.problems(&listing.backups);
    let missing = point.missing_members(&listing.backups, &unreadable);
    if !missing.is_empty() {
        problems.push(format!(
            "it names backups that are not in the repository (pruned, or the record is damaged): {}",
            missing.join(", ")
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::ChecksFailed {
        subject: format!(
            "recovery point {} (nothing was restored: restore its sources one by one, see dr list)",
            point.id
        ),
        problems: problems.join("; "),
    })
}

/// The point's sources in restore order: its group's order when the group is still
/// configured, then the other members by restore rank; members no longer configured
/// are refused.
fn restore_order(system: &System, point: &RecoveryPoint) -> Result<Vec<String>> {
    let mut order = system.group_sources(&point.group).unwrap_or_default();
    order.retain(|s| point.member(s).is_some());
    let mut rest: Vec<String> = point
        .members
        .iter()
        .map(|m| m.source.clone())
        .filter(|s| !order.contains(s))
        .collect();
    for source in &rest {
        system.source(source)?;
    }
    rest.sort_by_key(|s| system.get(s).map(|c| c.source.restore_rank()));
    order.extend(rest);
    Ok(order)
}
