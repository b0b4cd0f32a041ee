//! WAL files read and checked the way `dr wal-fetch` reads them (for `dr restore --pitr`'s
//! plan; `dr verify` checks the archive through the registry's `Archive`).

use dr_core::Repository;
use dr_postgres::WalArchive;
use dr_postgres::lsn::{Segment, timeline_of_segment};

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
