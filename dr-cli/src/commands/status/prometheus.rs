//! `dr status --prometheus`: the report in the Prometheus text exposition format (version
//! 0.0.4), one gauge per figure and source. The metric names are an interface (dashboards,
//! alerts, the README): never rename one.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use dr_core::ops::status::StatusReport;
use dr_core::status::SourceStatus;

/// One gauge: name, help text, and its value for a source (none: not exported).
type Gauge = (&'static str, &'static str, fn(&SourceStatus) -> Option<f64>);

/// Every per-source gauge `dr status --prometheus` exports.
const GAUGES: [Gauge; 11] = [
    (
        "dr_backup_last_success_timestamp_seconds",
        "When the newest backup finished (Unix time).",
        |s| unix(s.last_backup_at),
    ),
    (
        "dr_recoverable_until_timestamp_seconds",
        "The newest moment one can recover to (Unix time).",
        |s| unix(s.recoverable_until),
    ),
    (
        "dr_backup_last_bytes",
        "Plain size of the newest backup.",
        |s| s.last_backup_bytes.map(|b| b as f64),
    ),
    (
        "dr_backup_last_stored_bytes",
        "Stored (compressed, encrypted) size of the newest backup.",
        |s| s.last_backup_stored_bytes.map(|b| b as f64),
    ),
    (
        "dr_backup_last_duration_seconds",
        "How long the newest backup took.",
        |s| s.last_backup_duration_s,
    ),
    (
        "dr_rpo_seconds",
        "Data that would be lost now: seconds since the newest recoverable point.",
        |s| s.rpo_now_s,
    ),
    (
        "dr_drill_last_timestamp_seconds",
        "When the newest drill started (Unix time).",
        |s| unix(s.last_drill_at),
    ),
    (
        "dr_drill_last_success",
        "1 when the newest drill passed, 0 when it failed.",
        |s| s.last_drill_passed.map(|p| f64::from(u8::from(p))),
    ),
    (
        "dr_drill_last_rto_seconds",
        "Measured RTO of the newest drill.",
        |s| s.last_drill_rto_s,
    ),
    (
        "dr_drill_last_rpo_seconds",
        "Measured RPO of the newest drill.",
        |s| s.last_drill_rpo_s,
    ),
    (
        "dr_status_problems",
        "Problems dr status reports (0: all is well).",
        |s| Some(s.problems.len() as f64),
    ),
];

/// The report as Prometheus text exposition format (version 0.0.4).
pub fn render(report: &StatusReport) -> String {
    let (statuses, now) = (&report.sources[..], report.computed_at);
    let mut out = String::new();
    for (name, help, value) in GAUGES {
        gauge(&mut out, name, help, statuses, value);
    }
    gauge(
        &mut out,
        "dr_rpo_objective_seconds",
        "The RPO objective.",
        statuses,
        |s| s.objectives.rpo.map(|d| d.as_secs_f64()),
    );
    gauge(
        &mut out,
        "dr_rto_objective_seconds",
        "The RTO objective.",
        statuses,
        |s| s.objectives.rto.map(|d| d.as_secs_f64()),
    );
    copy_gauge(&mut out, statuses);
    let _ = writeln!(
        out,
        "# HELP dr_status_timestamp_seconds When this status was computed (Unix time)."
    );
    let _ = writeln!(out, "# TYPE dr_status_timestamp_seconds gauge");
    let _ = writeln!(
        out,
        "dr_status_timestamp_seconds {}",
        unix(Some(now)).unwrap_or_default()
    );
    out
}

fn unix(t: Option<DateTime<Utc>>) -> Option<f64> {
    t.map(|t| t.timestamp_millis() as f64 / 1000.0)
}

fn gauge(
    out: &mut String,
    name: &str,
    help: &str,
    statuses: &[SourceStatus],
    value: impl Fn(&SourceStatus) -> Option<f64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for s in statuses {
        if let Some(v) = value(s) {
            let _ = writeln!(out, "{name}{{source=\"{}\"}} {v}", escape(&s.source));
        }
    }
}

fn copy_gauge(out: &mut String, statuses: &[SourceStatus]) {
    let name = "dr_copy_has_newest_backup";
    let _ = writeln!(
        out,
        "# HELP {name} 1 when the copy holds the source's newest backup, 0 when not or unreadable."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for s in statuses {
        for (destination, holds) in &s.copies {
            let _ = writeln!(
                out,
                "{name}{{source=\"{}\",destination=\"{}\"}} {}",
                escape(&s.source),
                escape(destination),
                u8::from(*holds == Some(true))
            );
        }
    }
}

/// Label values: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
