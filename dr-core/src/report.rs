//! The recovery report: from the recorded drills, the committed backups and the recorded
//! backup failures, per source: RTO and RPO actual against the objectives, drill success
//! rate, backup success rate, drills per month, and the trend over the history. A pure
//! function of its inputs; rendered as JSON (serde) and Markdown.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::drill::{BackupFailure, DrillRecord, Objectives};
use crate::manifest::Manifest;

/// The report over a period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// When it was made.
    pub generated_at: DateTime<Utc>,
    /// Start of the period it covers.
    pub since: DateTime<Utc>,
    /// One entry per source that has backups or drills in the period.
    pub sources: Vec<SourceReport>,
    /// Drills that passed (succeeded and met their objectives) over all drills, percent.
    pub drill_success_rate_pct: Option<f64>,
    /// Committed backups over attempted ones, percent.
    pub backup_success_rate_pct: Option<f64>,
}

/// One source's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceReport {
    /// Source name.
    pub source: String,
    /// The objectives of its newest drill.
    pub objectives: Objectives,
    /// The newest drill's measured RTO, seconds.
    pub rto_actual_s: Option<f64>,
    /// The newest drill's measured RPO, seconds.
    pub rpo_actual_s: Option<f64>,
    /// Whether the newest drill succeeded and met its objectives.
    pub last_drill_passed: Option<bool>,
    /// What the newest drill found wrong.
    pub last_drill_problems: Vec<String>,
    /// Drills in the period.
    pub drills: usize,
    /// Drills that passed, percent.
    pub drill_success_rate_pct: Option<f64>,
    /// Backups committed in the period.
    pub backups: usize,
    /// Backups that failed in the period.
    pub backup_failures: usize,
    /// Committed over attempted, percent.
    pub backup_success_rate_pct: Option<f64>,
    /// Drills per calendar month (`2026-11` -> 4).
    pub drills_per_month: BTreeMap<String, usize>,
    /// The newest drill's RTO against the median of the earlier ones: `rising`,
    /// `falling`, `steady`, or `-` with fewer than two drills.
    pub rto_trend: String,
    /// Every drill of the period, oldest first.
    pub history: Vec<DrillRecord>,
}

impl RecoveryReport {
    /// Builds the report for the period from `since` to `now`.
    pub fn build(
        drills: &[DrillRecord],
        backups: &[Manifest],
        failures: &[BackupFailure],
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        let drills: Vec<&DrillRecord> = drills.iter().filter(|d| d.started_at >= since).collect();
        let backups: Vec<&Manifest> = backups.iter().filter(|m| m.started_at >= since).collect();
        let failures: Vec<&BackupFailure> =
            failures.iter().filter(|f| f.started_at >= since).collect();
        let names: BTreeSet<&str> = drills
            .iter()
            .map(|d| d.source.as_str())
            .chain(backups.iter().map(|m| m.source.as_str()))
            .chain(failures.iter().map(|f| f.source.as_str()))
            .collect();
        let sources = names
            .into_iter()
            .map(|name| source_report(name, &drills, &backups, &failures))
            .collect();
        let passed = drills.iter().filter(|d| d.passed()).count();
        RecoveryReport {
            generated_at: now,
            since,
            sources,
            drill_success_rate_pct: percent(passed, drills.len()),
            backup_success_rate_pct: percent(backups.len(), backups.len() + failures.len()),
        }
    }

    /// The report as Markdown: a summary table, then each source's drill history.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Recovery report\n");
        let _ = writeln!(
            md,
            "Period: {} to {}. Drill success rate: {}. Backup success rate: {}.\n",
            self.since.format("%Y-%m-%d %H:%M UTC"),
            self.generated_at.format("%Y-%m-%d %H:%M UTC"),
            pct(self.drill_success_rate_pct),
            pct(self.backup_success_rate_pct)
        );
        md.push_str("| source | RTO actual | RTO objective | RPO actual | RPO objective | last drill | drills | drill success | backups | backup success | RTO trend |\n");
        md.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for s in &self.sources {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.source,
                secs(s.rto_actual_s),
                objective(s.objectives.rto),
                secs(s.rpo_actual_s),
                objective(s.objectives.rpo),
                verdict(s.last_drill_passed),
                s.drills,
                pct(s.drill_success_rate_pct),
                s.backups,
                pct(s.backup_success_rate_pct),
                s.rto_trend
            );
        }
        for s in self.sources.iter().filter(|s| !s.history.is_empty()) {
            history_markdown(&mut md, s);
        }
        md
    }
}

fn source_report(
    name: &str,
    drills: &[&DrillRecord],
    backups: &[&Manifest],
    failures: &[&BackupFailure],
) -> SourceReport {
    let history: Vec<DrillRecord> = drills
        .iter()
        .filter(|d| d.source == name)
        .map(|d| (*d).clone())
        .collect();
    let committed = backups.iter().filter(|m| m.source == name).count();
    let failed = failures.iter().filter(|f| f.source == name).count();
    let last = history.last();
    let mut per_month = BTreeMap::new();
    for d in &history {
        *per_month
            .entry(d.started_at.format("%Y-%m").to_string())
            .or_insert(0) += 1;
    }
    SourceReport {
        source: name.to_owned(),
        objectives: last.map(|d| d.objectives).unwrap_or_default(),
        rto_actual_s: last.map(|d| d.rto_ms as f64 / 1000.0),
        rpo_actual_s: last.map(|d| d.rpo_s),
        last_drill_passed: last.map(DrillRecord::passed),
        last_drill_problems: last.map(|d| d.problems.clone()).unwrap_or_default(),
        drills: history.len(),
        drill_success_rate_pct: percent(
            history.iter().filter(|d| d.passed()).count(),
            history.len(),
        ),
        backups: committed,
        backup_failures: failed,
        backup_success_rate_pct: percent(committed, committed + failed),
        drills_per_month: per_month,
        rto_trend: rto_trend(&history),
        history,
    }
}

/// The newest RTO against the median of the earlier ones, with a 20 % dead band.
fn rto_trend(history: &[DrillRecord]) -> String {
    let Some((last, earlier)) = history.split_last() else {
        return "-".into();
    };
    if earlier.is_empty() {
        return "-".into();
    }
    let mut times: Vec<u64> = earlier.iter().map(|d| d.rto_ms).collect();
    times.sort_unstable();
    let median = times[times.len() / 2] as f64;
    let ratio = last.rto_ms as f64 / median.max(1.0);
    match ratio {
        r if r > 1.2 => "rising",
        r if r < 0.8 => "falling",
        _ => "steady",
    }
    .into()
}

fn history_markdown(md: &mut String, s: &SourceReport) {
    let _ = writeln!(md, "\n## {}\n", s.source);
    md.push_str("| drill started (UTC) | backup | RTO | RPO | result |\n|---|---|---|---|---|\n");
    for d in &s.history {
        let result = if d.passed() {
            "passed".to_owned()
        } else if d.ok {
            "objective missed".to_owned()
        } else {
            format!("FAILED: {}", d.problems.join("; "))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} s | {:.1} s | {result} |",
            d.started_at.format("%Y-%m-%d %H:%M:%S"),
            d.backup_id,
            d.rto_ms as f64 / 1000.0,
            d.rpo_s
        );
    }
}

fn percent(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.0} %"))
}

fn secs(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.2} s"))
}

fn objective(value: Option<std::time::Duration>) -> String {
    value.map_or_else(|| "-".into(), |d| humantime::format_duration(d).to_string())
}

fn verdict(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "passed",
        Some(false) => "FAILED",
        None => "-",
    }
}
