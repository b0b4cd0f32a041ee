//! WAL continuity: which archived files follow a base backup without a hole (following
//! timeline history files), what each base backup can reach, and what WAL no kept base
//! backup needs any more.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dr_core::{Error, Manifest, Repository, Result};
use serde::Serialize;

use crate::base::{BASE_KIND, BaseBackupFacts};
use crate::lsn::{Lsn, Segment, TimelineSwitch, timeline_of_segment};
use crate::wal::{ArchiveContents, ArchivedFile, WalArchive};
use crate::walscan::{SegmentSummary, XactPoint};

/// The archived WAL that follows a base backup without a hole.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WalRun {
    /// The timeline recovery ends on.
    pub timeline: u32,
    /// Archived files in replay order (segments only).
    pub files: Vec<ArchiveFileView>,
    /// The first missing segment when later segments exist: recovery cannot pass it.
    pub gap: Option<String>,
    /// The newest time one can recover to: the newest commit (or abort) in the contiguous
    /// WAL after the base backup's end, or that end when it holds none (filled by [`reach`]).
    pub recoverable_until: Option<DateTime<Utc>>,
    /// The WAL position where the contiguous run ends.
    pub end_lsn: Lsn,
    /// The last transaction record of the run after the base backup's end: recovering to
    /// just after it reaches `recoverable_until` (filled by [`reach`]).
    pub last_xact: Option<XactPoint>,
    /// The start of the last record complete in the run, when known (filled by [`reach`]).
    pub last_record: Option<Lsn>,
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

/// Summaries of segments already read, by name.
pub type SummaryCache = BTreeMap<String, Option<SegmentSummary>>;

/// Fills in what recovery really reaches in `run`: walks back from its last segment to the
/// newest one holding a transaction record after the base backup's end. That record's time
/// (the newest in its segment) is `recoverable_until`, a moment recovery reaches, rather
/// than when the segment was archived, which is later than anything in it.
///
/// # Errors
/// Damaged records or segments, key and store errors.
pub async fn reach(
    archive: &WalArchive<'_>,
    base: &BaseBackupFacts,
    run: &mut WalRun,
    cache: &mut SummaryCache,
) -> Result<()> {
    let mut first = true;
    for file in run.files.iter().rev() {
        let summary = match cache.get(&file.name) {
            Some(known) => *known,
            None => {
                let read = archive.summary(&file.name).await?;
                cache.insert(file.name.clone(), read);
                read
            }
        };
        if first {
            run.last_record = summary.and_then(|s| s.last_record);
            first = false;
        }
        let Some(summary) = summary else { continue };
        match summary.last_xact {
            Some(xact) if xact.lsn >= base.stop_lsn => {
                run.last_xact = Some(xact);
                run.recoverable_until = run.recoverable_until.max(summary.max_xact_time);
                return Ok(());
            }
            Some(_) => return Ok(()),
            None => {}
        }
    }
    Ok(())
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
    for manifest in repo.list(Some(source)).await?.backups {
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
    let mut cache = SummaryCache::new();
    for (manifest, facts) in &bases {
        if !on_the_way(facts, timeline, &history) {
            check.problems.push(format!(
                "base backup {} is on timeline {}, which timeline {timeline} left before it ended: it cannot reach the newest WAL",
                manifest.id, facts.timeline
            ));
            continue;
        }
        let mut run = wal_run(facts, &contents, timeline, &history);
        if let Err(e) = reach(&archive, facts, &mut run, &mut cache).await {
            check.problems.push(format!(
                "could not read how far the WAL after base backup {} reaches ({e}): counted only to the backup's end",
                manifest.id
            ));
        }
        if let Some(missing) = &run.gap {
            check.problems.push(format!(
                "WAL gap after base backup {}: {missing} is missing; recovery from it stops at its last commit before the gap, {}",
                manifest.id,
                run.recoverable_until
                    .map_or_else(|| "its end".into(), crate::pitr::exact_time)
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
pub(crate) mod tests {
    use super::*;

    pub(crate) const MB16: u64 = 16 << 20;

    pub(crate) fn facts(start: &str, stop: &str, stop_time: &str) -> BaseBackupFacts {
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

    pub(crate) fn archive(names: &[(&str, &str)]) -> ArchiveContents {
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
