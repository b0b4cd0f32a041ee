//! Object Lock and object versions: what dr needs of a store's control plane to make backups
//! undeletable for a while and to read a repository as it was at an earlier time.
//!
//! `object_store` moves bytes; it cannot set a retention on an object nor list versions. A
//! store that can (S3 with Object Lock, in `dr-storage`) implements [`ObjectLocks`] and is
//! attached with [`crate::Repository::with_object_locks`]. Keys are relative to the
//! repository, as everywhere else in dr.

use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::retention::RetentionPolicy;

/// How long past its guaranteed keep time a backup stays locked, by default: room for a prune
/// that runs late (prune extends the lock of what it keeps by this much each time it runs).
pub const DEFAULT_LOCK_MARGIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// S3's two retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still shorten or delete.
    #[serde(alias = "GOVERNANCE")]
    Governance,
    /// Nobody, the account root included, can delete the version before its date.
    #[serde(alias = "COMPLIANCE")]
    Compliance,
}

impl LockMode {
    /// The name S3 uses (`GOVERNANCE`, `COMPLIANCE`).
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// Parses S3's or dr.toml's spelling, any case.
    pub fn parse(text: &str) -> Option<LockMode> {
        match text.to_ascii_lowercase().as_str() {
            "governance" => Some(LockMode::Governance),
            "compliance" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_s3())
    }
}

/// The retention of one object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Governance or compliance.
    pub mode: LockMode,
    /// Until when the version cannot be deleted.
    pub until: DateTime<Utc>,
}

/// A bucket's Object Lock configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketLock {
    /// The mode of the bucket's default retention, if it has one.
    pub default_mode: Option<LockMode>,
    /// The length of the bucket's default retention, if it has one.
    pub default_retention: Option<Duration>,
}

/// One version of one object (or a delete marker), as a versioned bucket lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The key, relative to the repository.
    pub key: Path,
    /// The store's version id.
    pub version: String,
    /// When this version was written (or the delete happened).
    pub modified: DateTime<Utc>,
    /// A delete marker: the object was deleted at `modified`.
    pub deleted: bool,
    /// Size in bytes (0 for a delete marker).
    pub size: u64,
    /// The key's current version (breaks ties: S3 times have one-second resolution).
    pub latest: bool,
}

/// A store's control plane for Object Lock and versions.
#[async_trait::async_trait]
pub trait ObjectLocks: Send + Sync + std::fmt::Debug {
    /// The bucket's lock configuration; `None` when Object Lock is not enabled.
    async fn bucket_lock(&self) -> Result<Option<BucketLock>>;
    /// Sets the retention of the current version of `key`.
    async fn set_retention(&self, key: &Path, retention: Retention) -> Result<()>;
    /// The retention of the current version of `key`; `None` when it has none.
    async fn retention(&self, key: &Path) -> Result<Option<Retention>>;
    /// The retention of one version of `key`.
    async fn version_retention(&self, key: &Path, version: &str) -> Result<Option<Retention>>;
    /// Whether the bucket keeps versions (versioning enabled now or before: suspended).
    async fn versioning(&self) -> Result<bool>;
    /// Every version and delete marker under `prefix` (the whole repository for `None`).
    async fn versions(&self, prefix: Option<&Path>) -> Result<Vec<ObjectVersion>>;
}

/// The shortest time `policy` keeps a new backup that stays the newest of its hour, day,
/// week, month and year: what a lock taken at backup time can promise without locking
/// backups the policy will forget. Rules without a time (`keep_last`, labels) add nothing;
/// an empty policy keeps everything and so gives no bound either (zero: the margin alone).
pub fn guaranteed_keep(policy: &RetentionPolicy) -> Duration {
    const HOUR: u64 = 3600;
    let periods = [
        (policy.keep_hourly, HOUR),
        (policy.keep_daily, 24 * HOUR),
        (policy.keep_weekly, 7 * 24 * HOUR),
        (policy.keep_monthly, 28 * 24 * HOUR),
        (policy.keep_yearly, 365 * 24 * HOUR),
    ];
    let counted = periods
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, secs)| Duration::from_secs(u64::from(n) * secs));
    let spans = [
        policy.keep_within,
        policy.keep_within_hourly,
        policy.keep_within_daily,
        policy.keep_within_weekly,
        policy.keep_within_monthly,
        policy.keep_within_yearly,
        policy.recovery_window,
    ];
    counted
        .chain(spans.into_iter().flatten())
        .min()
        .unwrap_or(Duration::ZERO)
}

/// The date a backup started at `started_at` is locked until when it is written: its
/// guaranteed keep time under `policy` plus `margin`.
pub fn lock_until_at_backup(
    started_at: DateTime<Utc>,
    policy: &RetentionPolicy,
    margin: Duration,
) -> DateTime<Utc> {
    let span = guaranteed_keep(policy) + margin;
    started_at + chrono::TimeDelta::from_std(span).unwrap_or(chrono::TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_timed_rule_bounds_the_lock() {
        let seeds = RetentionPolicy::seed_default();
        assert_eq!(guaranteed_keep(&seeds), Duration::from_secs(30 * 86_400));
        let hourly = RetentionPolicy {
            keep_hourly: 24,
            keep_within: Some(Duration::from_secs(3 * 86_400)),
            ..RetentionPolicy::seed_default()
        };
        assert_eq!(guaranteed_keep(&hourly), Duration::from_secs(24 * 3600));
        let last_only = RetentionPolicy {
            keep_last: 5,
            ..RetentionPolicy::default()
        };
        assert_eq!(guaranteed_keep(&last_only), Duration::ZERO);
    }

    #[test]
    fn a_backup_is_locked_for_its_keep_time_and_the_margin() {
        let at = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let until = lock_until_at_backup(
            at,
            &RetentionPolicy::seed_default(),
            Duration::from_secs(86_400),
        );
        assert_eq!(until.to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn modes_parse_both_spellings() {
        assert_eq!(LockMode::parse("COMPLIANCE"), Some(LockMode::Compliance));
        assert_eq!(LockMode::parse("governance"), Some(LockMode::Governance));
        assert_eq!(LockMode::parse("legal-hold"), None);
    }
}
