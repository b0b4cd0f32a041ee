//! Status for monitoring: per source, the newest backup and drill against the objectives,
//! size anomalies, overdue retention, WAL archive problems and stale copies, each problem in
//! words. A pure function of the facts gathered by the caller
//! ([`crate::ops::status::status`] gathers them from a repository); front ends render the
//! result (a table, JSON, the Prometheus text format).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::drill::{BackupFailure, DrillRecord, Objectives};
use crate::listing::UnreadableBackup;
use crate::manifest::Manifest;
use crate::registry::ArchiveWindow;

/// How many earlier backups the newest one's size is compared with.
const SIZE_WINDOW: usize = 7;
/// The fewest earlier backups needed before sizes are compared.
const SIZE_MIN_HISTORY: usize = 3;

/// What is known about one source when its status is evaluated.
#[derive(Debug, Clone, Default)]
pub struct SourceFacts {
    /// Source name.
    pub source: String,
    /// Its objectives (RPO for backup age, `drill_every` for drills).
    pub objectives: Objectives,
    /// Its committed backups, newest first.
    pub backups: Vec<Manifest>,
    /// Its drills, oldest first.
    pub drills: Vec<DrillRecord>,
    /// Backups the retention policy keeps.
    pub kept: usize,
    /// Backups the retention policy no longer keeps (prune has not removed them).
    pub forgotten: usize,
    /// For a source with a continuous archive (PITR): what it lets one recover to, and its
    /// gaps.
    pub archive: Option<ArchiveWindow>,
    /// Its recorded backup failures, oldest first.
    pub failures: Vec<BackupFailure>,
    /// The configured copies.
    pub copies: Vec<CopyFacts>,
    /// Its committed backups whose manifest could not be read.
    pub unreadable: Vec<UnreadableBackup>,
}

/// One copy of the repository, as seen for one source.
#[derive(Debug, Clone, Default)]
pub struct CopyFacts {
    /// The copy's URL (credentials redacted).
    pub destination: String,
    /// `None` when the copy could not be read; else the ids it holds of this source.
    pub backup_ids: Option<Vec<String>>,
}

/// What retention decides for a source's backups now (the plan `prune --dry-run` shows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetentionSummary {
    /// Backups the policy keeps.
    pub kept: usize,
    /// Backups the policy no longer keeps, still stored until `prune` runs.
    pub forgotten: usize,
}

/// A source's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SourceStatus {
    /// Source name.
    pub source: String,
    /// The newest backup's id.
    pub last_backup_id: Option<String>,
    /// When it finished.
    pub last_backup_at: Option<DateTime<Utc>>,
    /// Its plain size.
    pub last_backup_bytes: Option<u64>,
    /// Its stored size.
    pub last_backup_stored_bytes: Option<u64>,
    /// How long it took, seconds.
    pub last_backup_duration_s: Option<f64>,
    /// The newest recoverable moment (the backup's end, or the newest archived WAL).
    pub recoverable_until: Option<DateTime<Utc>>,
    /// Data that would be lost now: now minus `recoverable_until`, seconds.
    pub rpo_now_s: Option<f64>,
    /// The newest drill's start.
    pub last_drill_at: Option<DateTime<Utc>>,
    /// Whether it passed.
    pub last_drill_passed: Option<bool>,
    /// Its measured RTO, seconds.
    pub last_drill_rto_s: Option<f64>,
    /// Its measured RPO, seconds.
    pub last_drill_rpo_s: Option<f64>,
    /// The objectives.
    pub objectives: Objectives,
    /// Committed backups stored.
    #[serde(default)]
    pub backup_count: usize,
    /// What retention keeps and forgets.
    #[serde(default)]
    pub retention: RetentionSummary,
    /// For a source with a continuous archive: its window and gaps.
    #[serde(default)]
    pub archive: Option<ArchiveWindow>,
    /// Recorded backup failures after the newest backup (all of them without one).
    #[serde(default)]
    pub failures_since_last_backup: usize,
    /// The newest recorded backup failure.
    #[serde(default)]
    pub last_failure: Option<BackupFailure>,
    /// Per copy: whether it holds the newest backup (`None`: unreadable).
    pub copies: Vec<(String, Option<bool>)>,
    /// What is wrong, in words; empty when all is well.
    pub problems: Vec<String>,
}

impl SourceStatus {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Evaluates one source at `now`.
pub fn evaluate(facts: &SourceFacts, now: DateTime<Utc>) -> SourceStatus {
    let newest = facts.backups.first();
    let wal_newest = facts.archive.as_ref().and_then(|a| a.recoverable_until);
    let recoverable_until = match (newest.map(|m| m.finished_at), wal_newest) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let last_drill = facts.drills.last();
    let mut status = SourceStatus {
        source: facts.source.clone(),
        last_backup_id: newest.map(|m| m.id.clone()),
        last_backup_at: newest.map(|m| m.finished_at),
        last_backup_bytes: newest.map(Manifest::plain_size),
        last_backup_stored_bytes: newest.map(Manifest::stored_size),
        last_backup_duration_s: newest.map(|m| seconds(m.finished_at - m.started_at)),
        recoverable_until,
        rpo_now_s: recoverable_until.map(|t| seconds(now - t)),
        last_drill_at: last_drill.map(|d| d.started_at),
        last_drill_passed: last_drill.map(DrillRecord::passed),
        last_drill_rto_s: last_drill.map(|d| d.rto_ms as f64 / 1000.0),
        last_drill_rpo_s: last_drill.map(|d| d.rpo_s),
        objectives: facts.objectives,
        backup_count: facts.backups.len(),
        retention: RetentionSummary {
            kept: facts.kept,
            forgotten: facts.forgotten,
        },
        archive: facts.archive.clone(),
        failures_since_last_backup: facts
            .failures
            .iter()
            .filter(|f| newest.is_none_or(|m| f.started_at > m.started_at))
            .count(),
        last_failure: facts.failures.last().cloned(),
        copies: Vec::new(),
        problems: Vec::new(),
    };
    status
        .problems
        .extend(facts.unreadable.iter().map(UnreadableBackup::describe));
    check_chain(facts, &mut status);
    check_backup_age(facts, &mut status);
    check_drills(facts, now, &mut status);
    check_size(facts, &mut status);
    if facts.forgotten > 0 {
        status.problems.push(format!(
            "retention is overdue: {} backups the policy no longer keeps are still stored (run `dr prune`)",
            facts.forgotten
        ));
    }
    let wal_problems = facts.archive.iter().flat_map(|a| &a.problems);
    status
        .problems
        .extend(wal_problems.map(|p| format!("WAL archive: {p}")));
    check_copies(facts, &mut status);
    status
}

/// The newest backup's incremental chain: every backup it needs is committed and readable.
fn check_chain(facts: &SourceFacts, status: &mut SourceStatus) {
    let Some(newest) = facts.backups.first() else {
        return;
    };
    let mut pending = newest.depends_on.clone();
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = pending.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        match facts.backups.iter().find(|m| m.id == id) {
            Some(base) => pending.extend(base.depends_on.iter().cloned()),
            None => status.problems.push(format!(
                "the newest backup {} needs backup {id}, which is {}: it cannot be restored (take a full backup)",
                newest.id,
                if facts.unreadable.iter().any(|u| u.id == id) {
                    "unreadable"
                } else {
                    "gone"
                }
            )),
        }
    }
}

fn check_backup_age(facts: &SourceFacts, status: &mut SourceStatus) {
    let Some(age) = status.rpo_now_s else {
        status
            .problems
            .push(format!("no backup yet: run `dr backup {}`", facts.source));
        return;
    };
    if let Some(rpo) = facts.objectives.rpo
        && age > rpo.as_secs_f64()
    {
        status.problems.push(format!(
            "the newest recoverable point is {} old, more than the RPO objective of {}",
            span(age),
            humantime::format_duration(rpo)
        ));
    }
}

/// The newest drill failing is a problem whether or not drills are scheduled: a restore that
/// was tried and did not work is the one thing status must not call ok. `drill_every` adds
/// "never drilled" and "drilled too long ago".
fn check_drills(facts: &SourceFacts, now: DateTime<Utc>, status: &mut SourceStatus) {
    let every = facts.objectives.drill_every;
    match facts.drills.last() {
        None => {
            if let Some(every) = every {
                status.problems.push(format!(
                    "never drilled (drill_every = {}): run `dr drill {}`",
                    humantime::format_duration(every),
                    facts.source
                ));
            }
        }
        Some(d) if !d.passed() => status.problems.push(format!(
            "the newest drill ({}) failed: {}",
            d.started_at.format("%Y-%m-%d %H:%M UTC"),
            if d.problems.is_empty() {
                "an objective was missed".to_owned()
            } else {
                d.problems.join("; ")
            }
        )),
        Some(d) => {
            let age = seconds(now - d.started_at);
            if let Some(every) = every.filter(|e| age > e.as_secs_f64()) {
                status.problems.push(format!(
                    "the newest drill is {} old, more than drill_every = {}",
                    span(age),
                    humantime::format_duration(every)
                ));
            }
        }
    }
}

/// The newest backup's size against the median of the ones before it: more than twice
/// or less than half is reported (a dump that suddenly shrank is the classic silent failure).
fn check_size(facts: &SourceFacts, status: &mut SourceStatus) {
    let Some((newest, earlier)) = facts.backups.split_first() else {
        return;
    };
    let mut sizes: Vec<u64> = earlier
        .iter()
        .take(SIZE_WINDOW)
        .map(Manifest::plain_size)
        .collect();
    if sizes.len() < SIZE_MIN_HISTORY {
        return;
    }
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2] as f64;
    let size = newest.plain_size() as f64;
    if median > 0.0 && (size > 2.0 * median || size < 0.5 * median) {
        status.problems.push(format!(
            "the newest backup is {} bytes, {:.0} % of the median of the {} before it ({} bytes)",
            newest.plain_size(),
            100.0 * size / median,
            sizes.len(),
            median as u64
        ));
    }
}

fn check_copies(facts: &SourceFacts, status: &mut SourceStatus) {
    let Some(newest) = facts.backups.first() else {
        return;
    };
    for copy in &facts.copies {
        let holds = copy.backup_ids.as_ref().map(|ids| ids.contains(&newest.id));
        match holds {
            None => status
                .problems
                .push(format!("the copy at {} cannot be read", copy.destination)),
            Some(false) => status.problems.push(format!(
                "the copy at {} lacks the newest backup {} (run `dr copy`)",
                copy.destination, newest.id
            )),
            Some(true) => {}
        }
        status.copies.push((copy.destination.clone(), holds));
    }
}

fn seconds(delta: chrono::TimeDelta) -> f64 {
    delta.num_milliseconds() as f64 / 1000.0
}

fn span(secs: f64) -> String {
    humantime::format_duration(Duration::from_secs(secs.max(0.0) as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(ok: bool, started_at: DateTime<Utc>) -> DrillRecord {
        DrillRecord {
            source: "app".into(),
            kind: "sqlite".into(),
            backup_id: "b1".into(),
            point_id: None,
            started_at,
            ok,
            rto_ms: 1200,
            recoverable_until: started_at,
            rpo_s: 0.0,
            objectives: Objectives::default(),
            passed: Vec::new(),
            problems: if ok {
                Vec::new()
            } else {
                vec!["check rows failed".into()]
            },
        }
    }

    fn facts(drills: Vec<DrillRecord>, drill_every: Option<Duration>) -> SourceFacts {
        SourceFacts {
            source: "app".into(),
            objectives: Objectives {
                drill_every,
                ..Objectives::default()
            },
            drills,
            ..SourceFacts::default()
        }
    }

    #[test]
    fn a_failed_newest_drill_is_a_problem_without_a_drill_schedule() {
        let now = Utc::now();
        let failed = evaluate(&facts(vec![drill(false, now)], None), now);
        assert!(!failed.is_ok());
        assert!(
            failed
                .problems
                .iter()
                .any(|p| p.contains("check rows failed")),
            "{:?}",
            failed.problems
        );
        let passed = evaluate(&facts(vec![drill(false, now), drill(true, now)], None), now);
        assert!(
            passed.problems.iter().all(|p| !p.contains("drill")),
            "{:?}",
            passed.problems
        );
    }

    #[test]
    fn a_drill_schedule_adds_never_and_overdue() {
        let now = Utc::now();
        let day = Some(Duration::from_secs(86_400));
        let never = evaluate(&facts(Vec::new(), day), now);
        assert!(never.problems.iter().any(|p| p.contains("never drilled")));
        let old = now - chrono::TimeDelta::days(3);
        let overdue = evaluate(&facts(vec![drill(true, old)], day), now);
        assert!(
            overdue
                .problems
                .iter()
                .any(|p| p.contains("more than drill_every"))
        );
        let unscheduled = evaluate(&facts(vec![drill(true, old)], None), now);
        assert!(unscheduled.problems.iter().all(|p| !p.contains("drill")));
    }
}
