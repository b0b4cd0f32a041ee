//! The `status` operation: is every source protected as its objectives say? Per source
//! (every configured one and every one with backups): the newest backup and its age against
//! the RPO, the newest drill, size anomalies, what retention would forget, the continuous
//! archive's window and gaps, copies lacking the newest backup, recorded failures, and
//! whether every part of the newest backup is still there. The judgement itself is the pure
//! [`crate::status::evaluate`]; this gathers its facts from the repository.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::listing::Listing;
use crate::manifest::Manifest;
use crate::ops::System;
use crate::ops::list::{CopyRepository, archive_windows};
use crate::progress::{Operation, ProgressHandle, Scope};
use crate::repository::Repository;
use crate::status::{CopyFacts, SourceFacts, SourceStatus, evaluate};
use crate::traits::VerifyLevel;

/// What status looks at.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StatusOptions {
    /// The time ages are computed at (now by default).
    pub now: Option<DateTime<Utc>>,
    /// Copies that must hold each source's newest backup.
    pub copies: Vec<CopyRepository>,
    /// Check that every part of each newest backup (and what it depends on) is present
    /// with its recorded size: a HEAD per part, no download (default).
    pub check_parts: bool,
}

impl Default for StatusOptions {
    fn default() -> Self {
        StatusOptions {
            now: None,
            copies: Vec::new(),
            check_parts: true,
        }
    }
}

impl StatusOptions {
    /// Computes ages at `now`.
    pub fn with_now(mut self, now: DateTime<Utc>) -> Self {
        self.now = Some(now);
        self
    }

    /// Compares with `copies`.
    pub fn with_copies(mut self, copies: Vec<CopyRepository>) -> Self {
        self.copies = copies;
        self
    }

    /// With (or without) the check of the newest backups' parts.
    pub fn with_check_parts(mut self, check_parts: bool) -> Self {
        self.check_parts = check_parts;
        self
    }
}

/// What status found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatusReport {
    /// The time ages were computed at.
    pub computed_at: DateTime<Utc>,
    /// Every source, by name.
    pub sources: Vec<SourceStatus>,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl StatusReport {
    /// A report of `sources` computed at `computed_at` (for front ends and tests).
    pub fn new(computed_at: DateTime<Utc>, sources: Vec<SourceStatus>) -> Self {
        StatusReport {
            computed_at,
            sources,
            elapsed_ms: 0,
        }
    }

    /// How many problems in all.
    pub fn problem_count(&self) -> usize {
        self.sources.iter().map(|s| s.problems.len()).sum()
    }

    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problem_count() == 0
    }

    /// The sources with a problem.
    pub fn failing(&self) -> impl Iterator<Item = &SourceStatus> {
        self.sources.iter().filter(|s| !s.is_ok())
    }
}

/// The status of every configured source and every source with backups.
///
/// # Errors
/// A store error while listing backups, drills, failures or recovery points, or while
/// checking the parts of a newest backup. What is wrong with the backups is in the report.
pub async fn status(
    repo: &Repository,
    system: &System,
    options: &StatusOptions,
    progress: &ProgressHandle,
) -> Result<StatusReport> {
    let started = Instant::now();
    let progress = progress.narrowed(|_| Scope::of(Operation::Status));
    progress.start("status", None);
    let now = options.now.unwrap_or_else(Utc::now);
    let listing = repo.list(None).await?;
    let drills = repo.drills(None).await?;
    let failures = repo.backup_failures(None).await?;
    let points = repo.points().await?;
    let mut decisions = crate::ops::prune::retention_decisions(system, &listing, &points, now);
    // Forgotten but still under Object Lock: prune keeps them on purpose, not overdue. (A
    // lock that cannot be read leaves them counted; the lock problem is reported below.)
    let _ = crate::ops::prune::locks::keep_locked(repo, &listing, &mut decisions, now).await;
    let windows = archive_windows(repo, system, &listing.backups).await;
    let mut copies = Vec::new();
    for copy in &options.copies {
        copies.push(CopyFacts {
            destination: copy.name.clone(),
            backup_ids: copy.ids(None).await,
        });
    }
    let recipients = repo.check_pinned_recipients().err().map(|e| e.to_string());
    let mut sources = Vec::new();
    for name in source_names(system, &listing) {
        let of = |source: &str| source == name;
        let facts = SourceFacts {
            source: name.clone(),
            objectives: system.objectives_for(&name),
            backups: listing
                .backups
                .iter()
                .filter(|m| of(&m.source))
                .cloned()
                .collect(),
            unreadable: listing.unreadable_of(&name).cloned().collect(),
            drills: drills.iter().filter(|d| of(&d.source)).cloned().collect(),
            kept: decisions.iter().filter(|d| d.keep && of(&d.source)).count(),
            forgotten: decisions
                .iter()
                .filter(|d| !d.keep && of(&d.source))
                .count(),
            archive: windows.iter().find(|w| of(&w.source)).cloned(),
            failures: failures.iter().filter(|f| of(&f.source)).cloned().collect(),
            copies: copies.clone(),
        };
        let mut status = evaluate(&facts, now);
        status.problems.extend(recipients.clone());
        let newest = facts.backups.first();
        match crate::ops::locks::newest_lock_problems(repo, system, newest, now).await {
            Ok(problems) => status.problems.extend(problems),
            Err(e) => status.problems.push(format!(
                "could not check the Object Lock of the newest backup: {e}"
            )),
        }
        if options.check_parts {
            status
                .problems
                .extend(newest_parts_problems(repo, newest).await?);
        }
        sources.push(status);
    }
    progress.finish();
    Ok(StatusReport {
        computed_at: now,
        sources,
        elapsed_ms: crate::ops::elapsed_ms(started),
    })
}

/// The configured sources and every source with a backup, readable or not, sorted.
fn source_names(system: &System, listing: &Listing) -> Vec<String> {
    let mut names: Vec<String> = system.sources().map(|s| s.name.clone()).collect();
    let listed = listing.backups.iter().map(|m| &m.source);
    names.extend(
        listed
            .chain(listing.unreadable.iter().map(|u| &u.source))
            .cloned(),
    );
    names.sort();
    names.dedup();
    names
}

/// The newest backup of a source and the backups it depends on: every part present with
/// its recorded size. `ok` must not be said of a newest backup whose parts are gone or
/// truncated; flipped bytes are for `verify` to find.
async fn newest_parts_problems(
    repo: &Repository,
    newest: Option<&Manifest>,
) -> Result<Vec<String>> {
    let Some(newest) = newest else {
        return Ok(Vec::new());
    };
    let quick = VerifyLevel::Quick;
    let report = repo.reader(newest.clone()).verify_objects(quick).await?;
    let chain = repo.verify_dependencies(newest, quick).await?;
    Ok(report
        .problems
        .into_iter()
        .chain(chain)
        .map(|p| {
            format!(
                "the newest backup {} cannot be restored as it is: {p}",
                newest.id
            )
        })
        .collect())
}
