//! The manifest kinds `postgres.logical` and `postgres.base` in the registry, and the WAL
//! archive as a [`dr_core::registry::Archive`]: continuity and damaged files for verify and
//! status, and what prune may delete.

use std::sync::Arc;

use futures::StreamExt;

use dr_core::registry::{Archive, ArchiveFindings, ArchivePrune, KindSupport};
use dr_core::{Error, Manifest, Repository, Result, Verify, VerifyLevel, async_trait};

use crate::backup::KIND;
use crate::base::{BASE_KIND, BaseBackupFacts};
use crate::base_verify::BaseVerifier;
use crate::continuity::{ArchiveCheck, WalRun, check_archive, unneeded_wal};
use crate::lsn::{Segment, history_file_name, timeline_of_segment};
use crate::pitr::{PitrPlan, RecoveryTarget};
use crate::wal::WalArchive;

/// `postgres.logical`: a test restore needs a server, which only a configured source has, so
/// without one backups are verified by checksums only.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogicalKindSupport;

impl KindSupport for LogicalKindSupport {
    fn kind(&self) -> &str {
        KIND
    }

    fn verifier(&self, _: &Repository) -> Option<Box<dyn Verify>> {
        None
    }
}

/// `postgres.base`: [`BaseVerifier`] (pg_verifybackup on a scratch copy) and the WAL archive.
#[derive(Debug, Clone, Copy, Default)]
pub struct BaseKindSupport;

impl KindSupport for BaseKindSupport {
    fn kind(&self) -> &str {
        BASE_KIND
    }

    fn verifier(&self, _: &Repository) -> Option<Box<dyn Verify>> {
        Some(Box::new(BaseVerifier::new()))
    }

    fn archive(&self) -> Option<Arc<dyn Archive>> {
        Some(Arc::new(WalArchiveSupport))
    }
}

/// The WAL archive beside the base backups of a source.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalArchiveSupport;

#[async_trait]
impl Archive for WalArchiveSupport {
    /// Per base backup among `backups`: the archive's continuity from it (every problem and
    /// note of the source's archive is reported on each, as `dr verify` always did), and at
    /// `checksums` and above with the identity loaded, every file a recovery from it
    /// replays read and decoded as `wal-fetch` reads it. An archive that cannot be checked
    /// at all is a problem of each base backup, not an error.
    async fn check(
        &self,
        repo: &Repository,
        source: &str,
        backups: &[Manifest],
        level: VerifyLevel,
    ) -> Result<Vec<ArchiveFindings>> {
        let bases: Vec<&Manifest> = backups.iter().filter(|m| m.kind == BASE_KIND).collect();
        if bases.is_empty() {
            return Ok(Vec::new());
        }
        let check = check_archive(repo, source).await;
        let mut all = Vec::new();
        for manifest in bases {
            let mut findings = ArchiveFindings::default();
            findings.backup_id = manifest.id.clone();
            match &check {
                Ok(check) => check_one(repo, check, manifest, level, &mut findings).await,
                Err(e) => findings.problems.push(format!(
                    "the WAL archive of {source} cannot be checked: {e}"
                )),
            }
            all.push(findings);
        }
        Ok(all)
    }

    /// The archived WAL no kept base backup needs. The caller passes every manifest it keeps
    /// of `source` from a complete listing: a source with an unreadable manifest must not be
    /// pruned (that backup may be a base backup needing the WAL), so leave it out of prune.
    async fn prune(
        &self,
        repo: &Repository,
        source: &str,
        kept: &[Manifest],
        dry_run: bool,
    ) -> Result<ArchivePrune> {
        let facts: Vec<BaseBackupFacts> = kept
            .iter()
            .filter(|m| m.source == source && m.kind == BASE_KIND)
            .filter_map(|m| BaseBackupFacts::from_info(&m.source_info, &m.id).ok())
            .collect();
        let mut prune = ArchivePrune::default();
        if facts.is_empty() {
            prune.kept_all_because = Some(
                "no kept base backup: WAL is never removed on the strength of an empty plan".into(),
            );
            return Ok(prune);
        }
        let archive = WalArchive::new(repo, source)?;
        let contents = archive.contents().await?;
        prune.unneeded = unneeded_wal(&contents, &facts);
        if !dry_run {
            archive.delete(&prune.unneeded).await?;
        }
        Ok(prune)
    }
}

async fn check_one(
    repo: &Repository,
    check: &ArchiveCheck,
    manifest: &Manifest,
    level: VerifyLevel,
    findings: &mut ArchiveFindings,
) {
    if check.runs.is_empty() && check.problems.is_empty() {
        return;
    }
    findings.problems.extend(check.problems.iter().cloned());
    findings.notes.extend(check.notes.iter().cloned());
    let Some((_, run)) = check.runs.iter().find(|(base, _)| *base == manifest.id) else {
        return;
    };
    findings.recoverable_until = run.recoverable_until;
    findings.newest_archived = check.newest_segment.clone();
    if run.gap.is_none() {
        let last = run.files.last().map_or("none", |f| f.name.as_str());
        let until = run
            .recoverable_until
            .map_or_else(|| "its end".into(), |t| t.to_rfc3339());
        findings.passed.push(format!(
            "WAL archive continuous from this base backup through {last} ({} files, timeline {}): recoverable until {until}",
            run.files.len(),
            run.timeline
        ));
    }
    let facts = BaseBackupFacts::from_info(&manifest.source_info, &manifest.id).ok();
    findings.recoverable_from = facts.as_ref().map(|f| f.stop_time);
    let size = facts.as_ref().map(|f| f.wal_segment_size);
    check_run_files(repo, &check.source, run, (level, size), findings).await;
    // The base backup's own first and last segments: recovery asks the archive for them
    // first, and a damaged copy there aborts it.
    let own: Vec<String> = facts
        .iter()
        .flat_map(|f| [f.start_wal_file.clone(), f.stop_wal_file.clone()])
        .collect();
    if level >= VerifyLevel::Checksums && !repo.identities().is_empty() {
        let damaged = damaged_files(repo, &check.source, &own, true).await;
        findings.problems.extend(damaged);
    }
}

/// Reads and decodes every file of `run` (and the history file of its timeline, and the
/// segment after it when it has a record); each one that `wal-fetch` would refuse is a
/// problem naming it. Only at `checksums` and above, and only with the identity loaded
/// (without it a note says so).
async fn check_run_files(
    repo: &Repository,
    source: &str,
    run: &WalRun,
    (level, segment_size): (VerifyLevel, Option<u64>),
    findings: &mut ArchiveFindings,
) {
    if level == VerifyLevel::Quick {
        return;
    }
    if repo.identities().is_empty() {
        findings
            .notes
            .push("archived WAL files not decoded without the identity".into());
        return;
    }
    let mut names: Vec<String> = run.files.iter().map(|f| f.name.clone()).collect();
    if run.timeline > 1 {
        names.push(history_file_name(run.timeline));
    }
    let mut problems = damaged_files(repo, source, &names, false).await;
    // The segment recovery asks for next: a record whose data is gone is not listed in the
    // archive, yet wal-fetch fails on it and the recovery aborts there.
    let end = segment_size.map(|size| (run.end_lsn.0 / size.max(1), size));
    if let Some(next) = segment_after(repo, source, run.timeline, end).await {
        problems.extend(damaged_files(repo, source, &[next], true).await);
    }
    if problems.is_empty() {
        findings.passed.push(format!(
            "{} archived WAL files from this base backup on decoded and checked",
            names.len()
        ));
    }
    findings.problems.extend(problems);
}

/// The name of segment `number` (of `size` bytes) on the timeline recovery towards
/// `timeline` reads it from.
async fn segment_after(
    repo: &Repository,
    source: &str,
    timeline: u32,
    end: Option<(u64, u64)>,
) -> Option<String> {
    let (number, size) = end?;
    let archive = WalArchive::new(repo, source).ok()?;
    let history = archive.history(timeline).await.ok()?;
    let timeline = timeline_of_segment(number, timeline, &history, size);
    Some(Segment { timeline, number }.file_name(size))
}

/// WAL files read and checked at once before a recovery (16 MiB segments: about 4 x 21 MiB
/// in memory).
const FILES_CHECKED_AT_ONCE: usize = 4;

/// Reads and decodes the archived files `names` the way `wal-fetch` does; one problem
/// naming each file it would refuse (with `missing_ok`, a file without a record is fine:
/// recovery then reads the base backup's own copy).
pub async fn damaged_files(
    repo: &Repository,
    source: &str,
    names: &[String],
    missing_ok: bool,
) -> Vec<String> {
    let archive = match WalArchive::new(repo, source) {
        Ok(archive) => archive,
        Err(e) => return vec![e.to_string()],
    };
    let archive = &archive;
    // Several at once (each holds one file's stored and plain bytes): against a far store
    // one after the other would wait a few round trips per file.
    let checks = futures::stream::iter(names.to_vec())
        .map(|name: String| async move {
            match archive.fetch_bytes(&name).await {
                Ok(Some(plain)) => match archive.check_recorded_summary(&name, plain).await {
                    Ok(problem) => problem,
                    Err(e) => Some(format!(
                        "WAL file {name} is damaged ({e}): recovery through it aborts"
                    )),
                },
                Ok(None) if missing_ok => None,
                Ok(None) => Some(format!(
                    "WAL file {name} is listed in the archive but has no record"
                )),
                Err(e) => Some(format!(
                    "WAL file {name} is damaged ({e}): recovery through it aborts"
                )),
            }
        })
        .buffered(FILES_CHECKED_AT_ONCE);
    let outcomes: Vec<Option<String>> = checks.collect().await;
    outcomes.into_iter().flatten().collect()
}

/// Reads every WAL and history file of `plan` before anything is written: a recovery that
/// would abort at a damaged file is refused while the new data directory is still empty.
///
/// # Errors
/// [`Error::ChecksFailed`] naming every damaged file.
pub async fn check_plan_wal(repo: &Repository, plan: &PitrPlan) -> Result<()> {
    let names: Vec<String> = plan
        .wal
        .iter()
        .map(|f| f.name.clone())
        .chain(plan.history_files.iter().cloned())
        .collect();
    let mut problems = damaged_files(repo, &plan.source, &names, false).await;
    // The segments the base backup holds itself: recovery asks the archive for them first.
    let mut inside = vec![plan.base.start_wal_file.clone()];
    if plan.base.stop_wal_file != plan.base.start_wal_file {
        inside.push(plan.base.stop_wal_file.clone());
    }
    inside.retain(|n| !names.contains(n));
    // Recovery to the end asks for the segment after the archive's last.
    if plan.target == RecoveryTarget::Latest {
        let size = plan.base.wal_segment_size;
        let next = match plan.wal.last() {
            Some(last) => Segment::parse(&last.name, size).map(|s| s.number + 1),
            None => Some(Segment::containing(1, plan.base.stop_lsn, size).number + 1),
        };
        let after = segment_after(repo, &plan.source, plan.timeline, next.map(|n| (n, size)));
        inside.extend(after.await);
    }
    problems.extend(damaged_files(repo, &plan.source, &inside, true).await);
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::ChecksFailed {
        subject: format!("the WAL archive of {} for this recovery", plan.source),
        problems: format!(
            "{}; nothing was written: recover to a point before the first damaged file (an earlier recovery_target), or bring the archive back from a copy",
            problems.join("; ")
        ),
    })
}
