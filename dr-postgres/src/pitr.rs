//! Point-in-time recovery planning: which base backup, which WAL, and whether the archive
//! really reaches the target (PostgreSQL itself would stop silently at a gap and promote).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use dr_core::{Error, Manifest, Repository, Result};
use serde::Serialize;

use crate::base::{BASE_KIND, BaseBackupFacts};
use crate::lsn::{Lsn, Segment, TimelineSwitch, history_file_name, timeline_of_segment};
use crate::wal::{ArchiveContents, ArchivedFile, WalArchive};

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
                Error::Usage(format!(
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

/// The archived WAL that follows a base backup without a hole.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WalRun {
    /// The timeline recovery ends on.
    pub timeline: u32,
    /// Archived files in replay order (segments only).
    pub files: Vec<ArchiveFileView>,
    /// The first missing segment when later segments exist: recovery cannot pass it.
    pub gap: Option<String>,
    /// The newest time one can recover to (when the last contiguous segment was archived).
    pub recoverable_until: Option<DateTime<Utc>>,
    /// The WAL position where the contiguous run ends.
    pub end_lsn: Lsn,
}

/// An archived file as shown in plans and reports.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveFileView {
    /// WAL file name.
    pub name: String,
    /// Stored bytes.
    pub stored_size: u64,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
}

impl From<&ArchivedFile> for ArchiveFileView {
    fn from(f: &ArchivedFile) -> Self {
        ArchiveFileView {
            name: f.name.clone(),
            stored_size: f.stored_size,
            archived_at: f.archived_at,
        }
    }
}

/// Follows the archive from `base` towards `timeline` (whose ancestors are `history`)
/// segment by segment until the first missing one.
pub fn wal_run(
    base: &BaseBackupFacts,
    contents: &ArchiveContents,
    timeline: u32,
    history: &[TimelineSwitch],
) -> WalRun {
    let size = base.wal_segment_size;
    let stop = Segment::containing(base.timeline, base.stop_lsn, size);
    let newest_number = contents
        .files
        .keys()
        .filter_map(|n| Segment::parse(n, size))
        .map(|s| s.number)
        .max()
        .unwrap_or(0);
    let mut run = WalRun {
        timeline,
        recoverable_until: Some(base.stop_time),
        end_lsn: base.stop_lsn,
        ..WalRun::default()
    };
    let mut number = base.start_lsn.0 / size.max(1);
    loop {
        let segment = Segment {
            timeline: timeline_of_segment(number, timeline, history, size),
            number,
        };
        let name = segment.file_name(size);
        match contents.files.get(&name) {
            Some(file) => {
                run.files.push(file.into());
                run.end_lsn = Lsn((number + 1) * size);
                if number >= stop.number {
                    run.recoverable_until = Some(file.archived_at.max(base.stop_time));
                }
            }
            // The base backup carries the WAL up to its stop position itself.
            None if number <= stop.number => {}
            None => {
                if number <= newest_number {
                    run.gap = Some(name);
                }
                return run;
            }
        }
        number += 1;
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

/// The base backups of `source`, newest first, with their facts.
///
/// # Errors
/// Store errors and manifests that are not base backups.
pub async fn base_backups(
    repo: &Repository,
    source: &str,
) -> Result<Vec<(Manifest, BaseBackupFacts)>> {
    let mut bases = Vec::new();
    for manifest in repo.list(Some(source)).await? {
        if manifest.kind == BASE_KIND {
            let facts = BaseBackupFacts::from_info(&manifest.source_info, &manifest.id)?;
            bases.push((manifest, facts));
        }
    }
    bases.sort_by_key(|b| std::cmp::Reverse(b.1.stop_time));
    Ok(bases)
}

/// The archive's newest timeline and its ancestry.
///
/// # Errors
/// Key and store errors reading the history file.
pub async fn newest_history(
    archive: &WalArchive<'_>,
    contents: &ArchiveContents,
) -> Result<(u32, Vec<TimelineSwitch>)> {
    let timeline = contents.newest_timeline();
    Ok((timeline, archive.history(timeline).await?))
}

/// Whether a backup taken on `base` lies on the way to `timeline` (not on an abandoned branch).
pub fn on_the_way(base: &BaseBackupFacts, timeline: u32, history: &[TimelineSwitch]) -> bool {
    base.timeline == timeline
        || history
            .iter()
            .any(|s| s.parent == base.timeline && s.switchpoint >= base.stop_lsn)
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
    Err(Error::Usage(format!(
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

/// The WAL archive as seen from each base backup of a source.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveCheck {
    /// The source.
    pub source: String,
    /// Per base backup (newest first): the contiguous WAL after it.
    pub runs: Vec<(String, WalRun)>,
    /// The earliest time one can recover to (the oldest base backup's end).
    pub earliest: Option<DateTime<Utc>>,
    /// The latest time one can recover to.
    pub latest: Option<DateTime<Utc>>,
    /// The newest archived WAL segment.
    pub newest_segment: Option<String>,
    /// Problems found (gaps, base backups on abandoned timelines), in words.
    pub problems: Vec<String>,
    /// What could not be checked, in words.
    pub notes: Vec<String>,
}

/// Checks WAL continuity from each base backup of `source` to the newest archived segment.
///
/// # Errors
/// Store and key errors (history files are decrypted).
pub async fn check_archive(repo: &Repository, source: &str) -> Result<ArchiveCheck> {
    let archive = WalArchive::new(repo, source)?;
    let contents = archive.contents().await?;
    let mut notes = Vec::new();
    let (timeline, history) = match newest_history(&archive, &contents).await {
        Ok(found) => found,
        // Without the key, history files cannot be read: check the oldest timeline's WAL.
        Err(Error::NoIdentity) => {
            notes.push(format!(
                "timeline history (timeline {}) not read without the identity: WAL checked on timeline 1 only",
                contents.newest_timeline()
            ));
            (1, Vec::new())
        }
        Err(e) => return Err(e),
    };
    let bases = base_backups(repo, source).await?;
    let mut check = ArchiveCheck {
        source: source.to_owned(),
        runs: Vec::new(),
        earliest: None,
        latest: None,
        newest_segment: None,
        problems: Vec::new(),
        notes,
    };
    for (manifest, facts) in &bases {
        if !on_the_way(facts, timeline, &history) {
            check.problems.push(format!(
                "base backup {} is on timeline {}, which timeline {timeline} left before it ended: it cannot reach the newest WAL",
                manifest.id, facts.timeline
            ));
            continue;
        }
        let run = wal_run(facts, &contents, timeline, &history);
        if let Some(missing) = &run.gap {
            check.problems.push(format!(
                "WAL gap after base backup {}: {missing} is missing; recovery from it stops at {}",
                manifest.id,
                run.recoverable_until
                    .map_or_else(|| "its end".into(), |t| t.to_rfc3339())
            ));
        }
        check.earliest = Some(facts.stop_time);
        check.latest = check.latest.max(run.recoverable_until);
        check.runs.push((manifest.id.clone(), run));
    }
    check.newest_segment = contents
        .files
        .keys()
        .filter(|n| n.len() == 24)
        .max_by_key(|n| &n[8..])
        .cloned();
    Ok(check)
}

/// The archived WAL files no kept base backup needs: every segment (and its `.partial` and
/// `.backup` companions) older than the oldest kept base backup's start. Timeline history
/// files are always kept (they are tiny and recovery reads them). With no kept base
/// backup nothing is deleted: WAL is never removed on the strength of an empty plan.
pub fn unneeded_wal(contents: &ArchiveContents, kept: &[BaseBackupFacts]) -> Vec<String> {
    let Some(oldest_start) = kept
        .iter()
        .map(|f| f.start_lsn.0 / f.wal_segment_size.max(1))
        .min()
    else {
        return Vec::new();
    };
    let size = kept.first().map_or(16 << 20, |f| f.wal_segment_size);
    contents
        .files
        .keys()
        .filter(|name| {
            name.get(..24)
                .and_then(|head| Segment::parse(head, size))
                .is_some_and(|s| s.number < oldest_start)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 << 20;

    fn facts(start: &str, stop: &str, stop_time: &str) -> BaseBackupFacts {
        let start: Lsn = start.parse().unwrap();
        let stop: Lsn = stop.parse().unwrap();
        BaseBackupFacts {
            server_version: "15".into(),
            server_version_num: 150000,
            system_identifier: "1".into(),
            wal_segment_size: MB16,
            timeline: 1,
            start_lsn: start,
            stop_lsn: stop,
            start_wal_file: Segment::containing(1, start, MB16).file_name(MB16),
            stop_wal_file: Segment::containing(1, stop, MB16).file_name(MB16),
            start_time: stop_time.parse().unwrap(),
            stop_time: stop_time.parse().unwrap(),
            label: "dr test".into(),
            pg_basebackup_version: "15".into(),
        }
    }

    fn archive(names: &[(&str, &str)]) -> ArchiveContents {
        let files = names
            .iter()
            .map(|(name, at)| {
                let file = ArchivedFile {
                    name: (*name).into(),
                    stored_size: 100,
                    archived_at: at.parse().unwrap(),
                };
                ((*name).to_owned(), file)
            })
            .collect();
        ArchiveContents { files }
    }

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

    #[test]
    fn a_run_follows_the_new_timeline_after_a_switch() {
        let base = facts("0/2000028", "0/2000100", "2026-11-23T10:00:00Z");
        let history =
            crate::lsn::parse_history("1\t0/3800000\tbefore 2026-11-23 10:06:00+00\n").unwrap();
        let contents = archive(&[
            ("000000010000000000000002", "2026-11-23T10:00:01Z"),
            ("000000010000000000000003.partial", "2026-11-23T10:07:00Z"),
            ("00000002.history", "2026-11-23T10:07:00Z"),
            ("000000020000000000000003", "2026-11-23T10:08:00Z"),
            ("000000020000000000000004", "2026-11-23T10:09:00Z"),
        ]);
        let run = wal_run(&base, &contents, 2, &history);
        let names: Vec<&str> = run.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "000000010000000000000002",
                "000000020000000000000003",
                "000000020000000000000004"
            ]
        );
        assert!(run.gap.is_none());
        assert!(on_the_way(&base, 2, &history));
        let late = facts("0/4000028", "0/4000100", "2026-11-23T10:05:00Z");
        assert!(
            !on_the_way(&late, 2, &history),
            "a timeline-1 backup after the switch is abandoned"
        );
    }

    #[test]
    fn pruning_keeps_what_the_oldest_kept_base_needs() {
        let contents = archive(&[
            ("00000002.history", "2026-11-23T10:00:00Z"),
            ("000000010000000000000001", "2026-11-23T10:00:00Z"),
            (
                "000000010000000000000002.00000028.backup",
                "2026-11-23T10:00:00Z",
            ),
            ("000000010000000000000002", "2026-11-23T10:00:00Z"),
            ("000000010000000000000003", "2026-11-23T10:00:00Z"),
        ]);
        let kept = [facts("0/3000028", "0/3000100", "2026-11-23T10:00:00Z")];
        assert_eq!(
            unneeded_wal(&contents, &kept),
            [
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000002.00000028.backup"
            ]
        );
        assert!(unneeded_wal(&contents, &[]).is_empty());
    }
}
