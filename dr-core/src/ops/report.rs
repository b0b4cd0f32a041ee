//! `report`: the recovery report over a period, from the drills, backups and backup
//! failures recorded in the repository (see [`crate::report::RecoveryReport`]).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::Result;
use crate::progress::ProgressHandle;
use crate::report::RecoveryReport;
use crate::repository::Repository;

/// The default period of a report: 90 days.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(90 * 24 * 3600);

/// The options of [`report`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReportOptions {
    /// The report covers drills and backups since this long before `now`.
    pub since: Duration,
    /// Only this source (`None`: every source).
    pub source: Option<String>,
    /// The end of the period (`None`: the current time).
    pub now: Option<DateTime<Utc>>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            since: DEFAULT_SINCE,
            source: None,
            now: None,
        }
    }
}

impl ReportOptions {
    /// Covers the `since` before now.
    pub fn with_since(mut self, since: Duration) -> Self {
        self.since = since;
        self
    }

    /// Only `source`.
    pub fn with_source(mut self, source: Option<String>) -> Self {
        self.source = source;
        self
    }

    /// Ends the period at `now` (for reproducible reports).
    pub fn with_now(mut self, now: DateTime<Utc>) -> Self {
        self.now = Some(now);
        self
    }
}

/// Builds the recovery report: per source, RTO and RPO actual against the objectives, drill
/// and backup success rates, drills per month and the trend.
///
/// # Errors
/// [`crate::Error::Store`] when the records or the backups cannot be listed.
pub async fn report(
    repo: &Repository,
    options: &ReportOptions,
    progress: &ProgressHandle,
) -> Result<RecoveryReport> {
    // Reading the records is quick: there is no progress to report.
    let _ = progress;
    let now = options.now.unwrap_or_else(Utc::now);
    let span = TimeDelta::from_std(options.since).unwrap_or(TimeDelta::MAX);
    let start = now
        .checked_sub_signed(span)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let source = options.source.as_deref();
    let drills = repo.drills(source).await?;
    let backups = repo.list(source).await?.backups;
    let failures = repo.backup_failures(source).await?;
    Ok(RecoveryReport::build(
        &drills, &backups, &failures, start, now,
    ))
}
