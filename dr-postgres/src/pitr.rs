//! Point-in-time recovery planning: which base backup, which WAL, and whether the archive
//! really reaches the target (PostgreSQL itself would stop silently at a gap and promote).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use dr_core::Refusal;
use dr_core::{Error, Manifest, Repository, Result};
use serde::Serialize;

use crate::base::BaseBackupFacts;
use crate::continuity::{
    ArchiveFileView, WalRun, base_backups, newest_history, on_the_way, reach, wal_run,
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
                Error::refused(Refusal::InvalidInput, format!(
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

/// What dr tells PostgreSQL, chosen so that recovery stops where it was asked to and never
/// runs off the end of the archive looking for a later transaction that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum RecoveryStop {
    /// No target: replay everything archived (the archive is contiguous).
    EndOfArchive,
    /// `recovery_target_time`, inclusive: before the first transaction after it, which the
    /// contiguous archive holds.
    Time(DateTime<Utc>),
    /// `recovery_target_lsn`, inclusive: after the record starting at or after it. For a
    /// time at or past the last archived transaction, that transaction's record.
    AfterLsn(Lsn),
    /// `recovery_target = 'immediate'`: the base backup's end, when no transaction follows.
    Immediate,
}

/// A time as dr prints it for copying into `--at`: RFC 3339, microseconds, UTC.
pub fn exact_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// What a point-in-time restore will do.
#[derive(Debug, Clone, Serialize)]
pub struct PitrPlan {
    /// The source.
    pub source: String,
    /// The target asked for.
    pub target: RecoveryTarget,
    /// Where recovery is told to stop.
    pub stop: RecoveryStop,
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
    /// The newest time the archive reaches from this base backup: its last transaction.
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
    let mut run = wal_run(facts, &contents, timeline, &history);
    reach(&archive, facts, &mut run, &mut Default::default()).await?;
    check_reachable(&run, target, facts, source)?;
    let stop = recovery_stop(&run, target);
    let wal = needed_wal(&run, stop, facts);
    let history_files: Vec<String> = (2..=timeline)
        .map(history_file_name)
        .filter(|n| contents.files.contains_key(n))
        .collect();
    let download_bytes = manifest.stored_size() + wal.iter().map(|f| f.stored_size).sum::<u64>();
    Ok(PitrPlan {
        source: source.to_owned(),
        target,
        stop,
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

fn check_reachable(
    run: &WalRun,
    target: RecoveryTarget,
    base: &BaseBackupFacts,
    source: &str,
) -> Result<()> {
    let last_lsn = run.last_record.unwrap_or(run.end_lsn).max(base.stop_lsn);
    let reached = match target {
        RecoveryTarget::Latest => run.gap.is_none(),
        RecoveryTarget::Time(t) => run.recoverable_until.is_some_and(|u| t <= u),
        RecoveryTarget::Lsn(l) => l <= last_lsn,
    };
    if reached {
        return Ok(());
    }
    let until = run
        .recoverable_until
        .map_or_else(|| "its end".to_owned(), exact_time);
    let why = match &run.gap {
        Some(missing) => format!(
            "the WAL archive has a gap: {missing} is missing, so recovery cannot go past the last transaction before it, at {until} (WAL position {last_lsn})"
        ),
        None => format!(
            "the WAL archive reaches only its last archived transaction, at {until} (WAL position {last_lsn}); later changes are not archived yet (wait for archive_timeout or run SELECT pg_switch_wal())"
        ),
    };
    let fallback = match run.recoverable_until {
        Some(u) => format!(
            "; to recover as far as the archive reaches, run `dr restore {source} --at {} --to NEW_DATA_DIR`",
            exact_time(u)
        ),
        None => "; choose an earlier --at".to_owned(),
    };
    Err(Error::refused(
        Refusal::Unavailable,
        format!("cannot recover to {target}: {why}{fallback}"),
    ))
}

/// How recovery is told to stop for a reachable `target`.
fn recovery_stop(run: &WalRun, target: RecoveryTarget) -> RecoveryStop {
    let at_end = || match run.last_xact {
        Some(x) => RecoveryStop::AfterLsn(x.lsn),
        None => RecoveryStop::Immediate,
    };
    match target {
        RecoveryTarget::Latest => RecoveryStop::EndOfArchive,
        RecoveryTarget::Lsn(l) => RecoveryStop::AfterLsn(l),
        // No transaction in the archive is later: PostgreSQL would look for one past the
        // end and fail, so stop after the last one (everything up to `t` is in).
        RecoveryTarget::Time(t) if run.recoverable_until.is_none_or(|u| t >= u) => at_end(),
        RecoveryTarget::Time(t) => RecoveryStop::Time(t),
    }
}

fn needed_wal(run: &WalRun, stop: RecoveryStop, base: &BaseBackupFacts) -> Vec<ArchiveFileView> {
    let size = base.wal_segment_size;
    let mut wal = Vec::new();
    for file in &run.files {
        wal.push(file.clone());
        let past = |l: Lsn| {
            Segment::parse(&file.name, size).is_some_and(|s| Lsn((s.number + 1) * size) > l)
        };
        let done = match stop {
            RecoveryStop::EndOfArchive => false,
            RecoveryStop::Time(t) => file.archived_at >= t,
            RecoveryStop::AfterLsn(l) => past(l),
            RecoveryStop::Immediate => past(base.stop_lsn),
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
    use crate::continuity::tests::{archive, facts};

    #[test]
    fn a_run_stops_at_a_gap_and_says_so() {
        let base = facts("0/2000028", "0/2000100", "2026-11-23T10:00:00Z");
        let contents = archive(&[
            ("000000010000000000000002", "2026-11-23T10:00:01Z"),
            ("000000010000000000000003", "2026-11-23T10:05:00Z"),
            ("000000010000000000000005", "2026-11-23T10:15:00Z"),
        ]);
        let mut run = wal_run(&base, &contents, 1, &[]);
        assert_eq!(run.files.len(), 2);
        assert_eq!(run.gap.as_deref(), Some("000000010000000000000004"));
        assert_eq!(run.recoverable_until, Some(base.stop_time));
        // What `reach` finds: the last transaction before the gap, at 10:04:30.
        let last = crate::walscan::XactPoint {
            lsn: "0/3FF0000".parse().unwrap(),
            time: "2026-11-23T10:04:30Z".parse().unwrap(),
        };
        run.last_xact = Some(last);
        run.recoverable_until = Some(last.time);
        let err = check_reachable(&run, RecoveryTarget::Latest, &base, "db")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gap")
                && err
                    .contains("`dr restore db --at 2026-11-23T10:04:30.000000Z --to NEW_DATA_DIR`"),
            "{err}"
        );
        let before: RecoveryTarget = "2026-11-23T10:04:00Z".parse().unwrap();
        assert!(check_reachable(&run, before, &base, "db").is_ok());
        assert_eq!(
            recovery_stop(&run, before),
            RecoveryStop::Time("2026-11-23T10:04:00Z".parse().unwrap())
        );
        // Exactly the limit: after the last transaction's record, not a time target that
        // would look for a later transaction past the gap.
        let limit = RecoveryTarget::Time(last.time);
        assert!(check_reachable(&run, limit, &base, "db").is_ok());
        assert_eq!(recovery_stop(&run, limit), RecoveryStop::AfterLsn(last.lsn));
        let after: RecoveryTarget = "2026-11-23T10:10:00Z".parse().unwrap();
        let err = check_reachable(&run, after, &base, "db")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gap") && err.contains("000000010000000000000004"),
            "{err}"
        );
        assert_eq!(needed_wal(&run, recovery_stop(&run, limit), &base).len(), 2);
        // No transaction after the base backup: its end, by `immediate`.
        run.last_xact = None;
        run.recoverable_until = Some(base.stop_time);
        let end = RecoveryTarget::Time(base.stop_time);
        assert_eq!(recovery_stop(&run, end), RecoveryStop::Immediate);
        assert_eq!(needed_wal(&run, RecoveryStop::Immediate, &base).len(), 1);
    }
}
