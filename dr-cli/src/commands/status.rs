//! `dr status`: calls [`dr_core::ops::status::status`] and renders its report: a table,
//! `--json` (the per-source statuses), or the OpenMetrics text format (printed, or written
//! atomically for node_exporter's textfile collector); exit 3 when anything is wrong.

mod prometheus;

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use dr_core::ops::status::{StatusOptions, StatusReport};
use dr_core::status::SourceStatus;

pub use prometheus::{CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE, render as prometheus};

use crate::app::App;
use crate::exit::{CliError, CliResult};
use crate::output;

/// How `dr status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// A table (or `--json`).
    Table,
    /// Prometheus text exposition format.
    Prometheus,
}

/// `dr status [--prometheus] [--textfile PATH]`.
pub async fn status(app: &App, format: StatusFormat, textfile: Option<&Path>) -> CliResult<()> {
    let report = run(app).await?;
    if let Some(path) = textfile {
        write_atomically(path, &prometheus(&report))?;
    }
    match (format, app.global.json) {
        (StatusFormat::Prometheus, _) => print!("{}", prometheus(&report)),
        (StatusFormat::Table, true) => output::json(&report.sources)?,
        (StatusFormat::Table, false) => print!("{}", render(&report)),
    }
    outcome(&report)
}

/// Computes the status of this configuration's repository, printing nothing.
pub(super) async fn run(app: &App) -> CliResult<StatusReport> {
    let repo = app.read_repository(None).await?;
    let system = app.system()?;
    let options = StatusOptions::default().with_copies(super::list::copies(app).await);
    dr_core::ops::status::status(&repo, &system, &options, repo.progress())
        .await
        .map_err(|e| CliError::from(e).context("computing the status"))
}

/// Exit 3 when anything is wrong, naming the sources.
pub(super) fn outcome(report: &StatusReport) -> CliResult<()> {
    let problems = report.problem_count();
    if problems == 0 {
        return Ok(());
    }
    let sources: Vec<&str> = report.failing().map(|s| s.source.as_str()).collect();
    Err(CliError::verification(format!(
        "{problems} {} in {} ({}): see above",
        if problems == 1 { "problem" } else { "problems" },
        if sources.len() == 1 {
            "1 source"
        } else {
            "several sources"
        },
        sources.join(", ")
    )))
}

/// The report as the table `dr status` prints, each problem on a line below it.
pub fn render(report: &StatusReport) -> String {
    let rows: Vec<Vec<String>> = report.sources.iter().map(row).collect();
    let mut out = output::table_text(
        &[
            "SOURCE",
            "LAST BACKUP (UTC)",
            "SIZE",
            "RPO NOW",
            "LAST DRILL",
            "DRILL RTO",
            "STATE",
        ],
        &rows,
    );
    for s in &report.sources {
        for problem in &s.problems {
            let _ = writeln!(out, "  {} PROBLEM {problem}", s.source);
        }
    }
    out
}

fn row(s: &SourceStatus) -> Vec<String> {
    let secs = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0} s"));
    vec![
        s.source.clone(),
        when(s.last_backup_at),
        s.last_backup_bytes.map_or_else(|| "-".into(), output::size),
        secs(s.rpo_now_s),
        match s.last_drill_passed {
            Some(true) => format!("passed {}", when(s.last_drill_at)),
            Some(false) => format!("FAILED {}", when(s.last_drill_at)),
            None => "-".into(),
        },
        s.last_drill_rto_s
            .map_or_else(|| "-".into(), |v| format!("{v:.2} s")),
        if s.is_ok() {
            "ok".into()
        } else {
            format!("{} PROBLEM(S)", s.problems.len())
        },
    ]
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

/// Writes `text` to `path` through a temporary file renamed over it, so that a collector
/// never reads half a file.
fn write_atomically(path: &Path, text: &str) -> CliResult<()> {
    let io = |e| CliError::from(dr_core::Error::io(format!("writing {}", path.display()), e));
    let tmp = dr_core::sibling_path(path, ".dr-tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report built by hand: a source within its objectives with a copy, one whose backup
    /// is older than its RPO and whose drill failed, and one with a WAL gap and no drill.
    fn sample() -> StatusReport {
        let sources: Vec<SourceStatus> =
            serde_json::from_str(include_str!("../../tests/snapshots/status.json"))
                .expect("the sample statuses parse");
        let at = "2026-11-23T12:00:00Z".parse().expect("a time");
        StatusReport::new(at, sources)
    }

    #[test]
    fn table_rendering() {
        output::assert_snapshot("tests/snapshots/status.txt", &render(&sample()));
    }

    #[test]
    fn prometheus_rendering() {
        output::assert_snapshot("tests/snapshots/status.prom", &prometheus(&sample()));
    }

    #[test]
    fn json_schema_round_trips() {
        let json = serde_json::to_value(&sample().sources).expect("serializes");
        let expected: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/snapshots/status.json"))
                .expect("parses");
        assert_eq!(json, expected, "field names or shape changed");
    }

    #[test]
    fn exit_codes() {
        let err = outcome(&sample()).expect_err("problems fail");
        assert_eq!(err.exit_code(), std::process::ExitCode::from(3));
        assert!(
            err.message.contains("in several sources (db, shop)"),
            "{}",
            err.message
        );
        assert!(outcome(&StatusReport::new(sample().computed_at, Vec::new())).is_ok());
    }
}
