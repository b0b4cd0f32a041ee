//! `dr verify` of a base backup's WAL: the archive's continuity, and every file a recovery
//! from the backup would replay, read and checked the way `dr wal-fetch` reads it.

use dr_core::{Repository, VerifyLevel, VerifyReport};
use dr_postgres::lsn::{Segment, history_file_name, timeline_of_segment};
use dr_postgres::{ArchiveCheck, WalArchive, WalRun, check_archive};

/// The continuity check of each source's archive; a source whose archive cannot be checked
/// (a damaged history file, say) is returned beside them with the reason.
pub(super) async fn archive_checks(
    repo: &Repository,
    sources: &[&str],
) -> (Vec<ArchiveCheck>, Vec<(String, String)>) {
    let mut checks = Vec::new();
    let mut failed = Vec::new();
    for source in sources {
        match check_archive(repo, source).await {
            Ok(check) if check.runs.is_empty() && check.problems.is_empty() => {}
            Ok(check) => checks.push(check),
            Err(e) => failed.push((
                (*source).to_owned(),
                format!("the WAL archive of {source} cannot be checked: {e}"),
            )),
        }
    }
    (checks, failed)
}

/// Reads and decodes every file of `run` (and the history file of its timeline, and the
/// segment after it when it has a record); each one that `dr wal-fetch` would refuse is a
/// problem naming it. Only at `checksums` and above,
/// and only with the identity loaded (without it a note says so).
pub(super) async fn check_run_files(
    repo: &Repository,
    source: &str,
    run: &WalRun,
    (level, segment_size): (VerifyLevel, Option<u64>),
    report: &mut VerifyReport,
) {
    if level == VerifyLevel::Quick {
        return;
    }
    if repo.identities().is_empty() {
        report
            .passed
            .push("note: archived WAL files not decoded without the identity".into());
        return;
    }
    let mut names: Vec<String> = run.files.iter().map(|f| f.name.clone()).collect();
    if run.timeline > 1 {
        names.push(history_file_name(run.timeline));
    }
    let mut problems = damaged_files(repo, source, &names, false).await;
    // The segment recovery asks for next: a record whose data is gone is not listed in the
    // archive, yet wal-fetch fails on it (255) and the recovery aborts there.
    let end = segment_size.map(|size| (run.end_lsn.0 / size.max(1), size));
    if let Some(next) = segment_after(repo, source, run.timeline, end).await {
        problems.extend(damaged_files(repo, source, &[next], true).await);
    }
    if problems.is_empty() {
        report.passed.push(format!(
            "{} archived WAL files from this base backup on decoded and checked",
            names.len()
        ));
    }
    report.problems.extend(problems);
}

/// The name of segment `number` (of `size` bytes) on the timeline recovery towards
/// `timeline` reads it from.
pub(super) async fn segment_after(
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

/// Reads and decodes the archived files `names` the way `dr wal-fetch` does; one problem
/// naming each file it would refuse (with `missing_ok`, a file without a record is fine:
/// `wal-fetch` says "not archived" and recovery reads the base backup's own copy).
pub(super) async fn damaged_files(
    repo: &Repository,
    source: &str,
    names: &[String],
    missing_ok: bool,
) -> Vec<String> {
    let archive = match WalArchive::new(repo, source) {
        Ok(archive) => archive,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = Vec::new();
    for name in names {
        let problem = match archive.fetch_bytes(name).await {
            Ok(Some(plain)) => match archive.check_recorded_summary(name, plain).await {
                Ok(None) => continue,
                Ok(Some(problem)) => problem,
                Err(e) => format!("WAL file {name} is damaged ({e}): recovery through it aborts"),
            },
            Ok(None) if missing_ok => continue,
            Ok(None) => format!("WAL file {name} is listed in the archive but has no record"),
            Err(e) => format!("WAL file {name} is damaged ({e}): recovery through it aborts"),
        };
        problems.push(problem);
    }
    problems
}
