//! Failure records past a bound: the newest [`super::PruneOptions::keep_failures`] of each
//! source stay, and so does every failure newer than the source's newest backup (what
//! `dr status` reports); older ones are deleted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::drill::BackupFailure;
use crate::error::Result;
use crate::listing::Listing;
use crate::repository::Repository;

/// The failure records prune removed (or a dry run would) of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FailuresPruned {
    /// Records kept.
    pub kept: usize,
    /// Ids of the failed backups whose records went.
    pub removed: Vec<String>,
}

/// Which failure records of each source go: beyond the newest `keep` of that source, and
/// older than its newest backup.
pub(super) fn plan(
    failures: &[BackupFailure],
    listing: &Listing,
    keep: usize,
) -> BTreeMap<String, (FailuresPruned, Vec<BackupFailure>)> {
    let mut by_source: BTreeMap<&str, Vec<&BackupFailure>> = BTreeMap::new();
    for failure in failures {
        by_source
            .entry(failure.source.as_str())
            .or_default()
            .push(failure);
    }
    let mut planned = BTreeMap::new();
    for (source, mut records) in by_source {
        records.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        let newest_backup: Option<DateTime<Utc>> = listing
            .backups
            .iter()
            .filter(|m| m.source == source)
            .map(|m| m.started_at)
            .max();
        let (mut kept, mut gone) = (0, Vec::new());
        for (rank, record) in records.into_iter().enumerate() {
            let recent = newest_backup.is_none_or(|newest| record.started_at > newest);
            if rank < keep || recent {
                kept += 1;
            } else {
                gone.push(record.clone());
            }
        }
        let removed = gone.iter().map(|f| f.id.clone()).collect();
        planned.insert(source.to_owned(), (FailuresPruned { kept, removed }, gone));
    }
    planned
}

/// Plans and, unless `dry_run`, deletes the failure records past the bound.
pub(super) async fn prune(
    repo: &Repository,
    listing: &Listing,
    keep: usize,
    dry_run: bool,
) -> Result<BTreeMap<String, FailuresPruned>> {
    let failures = repo.backup_failures(None).await?;
    let mut report = BTreeMap::new();
    for (source, (pruned, gone)) in plan(&failures, listing, keep) {
        if !dry_run {
            repo.forget_backup_failures(&gone).await?;
        }
        if !pruned.removed.is_empty() {
            report.insert(source, pruned);
        }
    }
    Ok(report)
}
