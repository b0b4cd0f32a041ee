//! Point-in-time recovery planning: which base backup, which WAL, and whether the archive
//! really reaches the target (PostgreSQL itself would stop silently at a gap and promote).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use dr_core::{Error, Manifest, Repository, Result};
use serde::Serialize;

use crate::base::BaseBackupFacts;
use crate::continuity::{
    ArchiveFileView, WalRun, base_backups, newest_history, on_the_way, wal_run,
};
use crate::lsn::{Lsn, Segment, history_file_name};
use crate::wal::WalArchive;

/// Where recovery stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum RecoveryTarget {
    /// The end of the archive.
    Latest,
    /// Just before the first commit after this time.
    Time(DateTime<Utc>),
    /// This WAL position.
    Lsn(Lsn),
}

impl FromStr for RecoveryTarget {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("latest") {
            return Ok(RecoveryTarget::Latest);
        }
        if s.contains('/') {
            return s.parse().map(RecoveryTarget::Lsn);
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| RecoveryTarget::Time(t.with_timezone(&Utc)))
            .map_err(|_| {
                Error::Refused(format!(
                    "{s:?} is not a recovery target: use latest, a time like 2026-11-23T12:30:00Z, or a WAL position like 0/5000028"
                ))
            })
    }
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::Latest => f.write_str("latest"),
            RecoveryTarget::Time(t) => write!(f, "{}", t.to_rfc3339()),
            RecoveryTarget::Lsn(l) => write!(f, "WAL position {l}"),
        }
    }
}

/// What a point-in-time restore will do.
#[derive(Debug, Clone, Serialize)]
pub struct PitrPlan {
    /// The source.
    pub source: String,
    /// The target asked for.
    pub target: RecoveryTarget,
    /// The base backup restored first.
    pub base_backup: String,
    /// Its facts.
    pub base: BaseBackupFacts,
    /// Its stored size.
    pub base_stored_bytes: u64,
    /// The timeline recovery ends on.
    pub timeline: u32,
    /// History files recovery reads.
    pub history_files: Vec<String>,
    /// WAL files recovery will fetch, in order.
    pub wal: Vec<ArchiveFileView>,
    /// Everything downloaded: the base backup and the WAL.
    pub download_bytes: u64,
    /// The newest time the archive reaches from this base backup.
    pub recoverable_until: Option<DateTime<Utc>>,
}

/// Plans a point-in-time restore of `source` to `target`.
///
/// # Errors
/// [`Error::BackupNotFound`] without a suitable base backup; [`Error::Usage`] when the
/// archive does not reach the target (a gap, or WAL not archived yet), saying how far it goes.
pub async fn plan(repo: &Repository, source: &str, target: RecoveryTarget) -> Result<PitrPlan> {
    let archive = WalArchive::new(repo, source)?;
    let contents = archive.contents().await?;
    let (timeline, history) = newest_history(&archive, &contents).await?;
    let bases = base_backups(repo, source).await?;
    let (manifest, facts) = bases
        .iter()
        .filter(|(_, f)| on_the_way(f, timeline, &history))
        .find(|(_, f)| match target {
            RecoveryTarget::Latest => true,
            RecoveryTarget::Time(t) => f.stop_time <= t,
            RecoveryTarget::Lsn(l) => f.stop_lsn <= l,
        })
        .ok_or_else(|| no_base_backup(source, target, &bases))?;
    let run = wal_run(facts, &contents, timeline, &history);
    check_reachable(&run, target, facts)?;
    let wal = needed_wal(&run, target, facts.wal_segment_size);
    let history_files: Vec<String> = (2..=timeline)
        .map(history_file_name)
        .filter(|n| contents.files.contains_key(n))
        .collect();
    let download_bytes = manifest.stored_size() + wal.iter().map(|f| f.stored_size).sum::<u64>();
    Ok(PitrPlan {
        source: source.to_owned(),
        target,
        base_backup: manifest.id.clone(),
        base: facts.clone(),
        base_stored_bytes: manifest.stored_size(),
        timeline,
        history_files,
        wal,
        download_bytes,
        recoverable_until: run.recoverable_until,
    })
}

fn no_base_backup(
    source: &str,
    target: RecoveryTarget,
    bases: &[(Manifest, BaseBackupFacts)],
) -> Error {
    let oldest = bases
        .last()
        .map(|(_, f)| format!(" (the oldest finished at {})", f.stop_time.to_rfc3339()))
        .unwrap_or_else(|| " (there is none: run `dr backup` first)".into());
    Error::BackupNotFound {
        selector: format!("{source} at {target}: no base backup finished before it{oldest}"),
    }
}

fn check_reachable(run: &WalRun, target: RecoveryTarget, base: &BaseBackupFacts) -> Result<()> {
    let until = run
        .recoverable_until
        .map_or_else(|| "its end".to_owned(), |t| t.to_rfc3339());
    let reached = match target {
        RecoveryTarget::Latest => run.gap.is_none(),
        RecoveryTarget::Time(t) => run.recoverable_until.is_some_and(|u| t <= u),
        RecoveryTarget::Lsn(l) => l <= run.end_lsn.max(base.stop_lsn),
    };
    if reached {
        return Ok(());
    }
    let why = match &run.gap {
        Some(missing) => format!(
            "the WAL archive has a gap: {missing} is missing, so recovery cannot go past {until} (WAL position {})",
            run.end_lsn
        ),
        None => format!(
            "the WAL archive reaches only {until} (WAL position {}); later changes are not archived yet (wait for archive_timeout or run SELECT pg_switch_wal())",
            run.end_lsn
        ),
    };
    Err(Error::Refused(format!(
        "cannot recover to {target}: {why}; choose an earlier --at"
    )))
}

fn needed_wal(run: &WalRun, target: RecoveryTarget, segment_size: u64) -> Vec<ArchiveFileView> {
    let mut wal = Vec::new();
    for file in &run.files {
        wal.push(file.clone());
        let done = match target {
            RecoveryTarget::Latest => false,
            RecoveryTarget::Time(t) => file.archived_at >= t,
            RecoveryTarget::Lsn(l) => Segment::parse(&file.name, segment_size)
                .is_some_and(|s| Lsn((s.number + 1) * segment_size) > l),
        };
        if done {
            break;
        }
    }
    wal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continuity::tests::{MB16, archive, facts};

    #[test]
    fn a_run_stops_at_a_gap_and_says_so() {
        let base = facts("0/2000028", "0/2000100", "2026-11-23T10:00:00Z");
        let contents = archive(&[
            ("000000010000000000000002", "2026-11-23T10:00:01Z"),
            ("000000010000000000000003", "2026-11-23T10:05:00Z"),
            ("000000010000000000000005", "2026-11-23T10:15:00Z"),
        ]);
        let run = wal_run(&base, &contents, 1, &[]);
        assert_eq!(run.files.len(), 2);
        assert_eq!(run.gap.as_deref(), Some("000000010000000000000004"));
        assert_eq!(
            run.recoverable_until,
            Some("2026-11-23T10:05:00Z".parse().unwrap())
        );
        assert!(check_reachable(&run, RecoveryTarget::Latest, &base).is_err());
        let before: RecoveryTarget = "2026-11-23T10:04:00Z".parse().unwrap();
        assert!(check_reachable(&run, before, &base).is_ok());
        let after: RecoveryTarget = "2026-11-23T10:10:00Z".parse().unwrap();
        let err = check_reachable(&run, after, &base).unwrap_err().to_string();
        assert!(
            err.contains("gap") && err.contains("000000010000000000000004"),
            "{err}"
        );
        assert_eq!(needed_wal(&run, before, MB16).len(), 2);
    }
}
