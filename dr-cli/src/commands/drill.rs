//! `dr drill` and `dr report`: call [`dr_core::ops::drill::drill`] and
//! [`dr_core::ops::report::report`] and render their reports.

use std::fmt::Write as _;
use std::path::Path;

use dr_core::PointSelector;
use dr_core::ops::drill::{DrillOptions, DrillReport, DrillTarget, DrillVerdict};
use dr_core::ops::report::ReportOptions;
use dr_core::report::RecoveryReport;

use crate::app::App;
use crate::exit::{CliError, CliResult};
use crate::output;

/// `dr drill [SOURCE|--point ID] [--report FILE]`: one drill per backup chosen, recorded;
/// exit 3 when any fails or misses an objective.
pub async fn drill(
    app: &App,
    source: Option<&str>,
    point: Option<&str>,
    report_to: Option<&Path>,
    since: std::time::Duration,
) -> CliResult<()> {
    let options = drill_options(source, point)?;
    let bar = app.bar();
    let repo = app.read_repository(Some(bar.clone())).await?;
    let system = app.system()?;
    let report = dr_core::ops::drill::drill(&repo, &system, &options, repo.progress()).await;
    bar.finish();
    let report = report.map_err(drill_error)?;
    if app.global.json {
        output::json(&report)?;
    } else {
        print!("{}", render(&report));
    }
    if let Some(path) = report_to {
        let history = build_report(&repo, since).await?;
        write_report(app, &history, path)?;
    }
    outcome(&report)
}

fn drill_options(source: Option<&str>, point: Option<&str>) -> CliResult<DrillOptions> {
    let target = match (point, source) {
        (Some(point), _) => DrillTarget::Point(point.parse::<PointSelector>()?),
        (None, Some(source)) => DrillTarget::Source(source.to_owned()),
        (None, None) => DrillTarget::All,
    };
    Ok(DrillOptions::default().with_target(target))
}

fn drill_error(e: dr_core::Error) -> CliError {
    match e {
        dr_core::Error::NoIdentity => CliError::usage(format!(
            "a drill restores, which needs the secret key: {}",
            dr_core::LOAD_A_KEY
        )),
        // A source with nothing to drill fails the drill (exit 3), as a failed restore does.
        e @ dr_core::Error::BackupNotFound { .. } => CliError::verification(e.to_string()),
        e => CliError::from(e).context("drilling"),
    }
}

/// Exit 3 when any drill failed or missed an objective.
fn outcome(report: &DrillReport) -> CliResult<()> {
    match report.failure() {
        None => Ok(()),
        Some(why) => Err(CliError::verification(why)),
    }
}

/// The report as the table `dr drill` prints, with each drill's checks below it.
pub fn render(report: &DrillReport) -> String {
    let objective = |d: Option<std::time::Duration>| {
        d.map_or_else(|| "-".into(), |d| humantime::format_duration(d).to_string())
    };
    let rows: Vec<Vec<String>> = report
        .drills
        .iter()
        .map(|d| {
            let r = &d.record;
            let result = match d.verdict {
                DrillVerdict::Passed => "passed",
                DrillVerdict::ObjectiveMissed => "OBJECTIVE MISSED",
                _ => "FAILED",
            };
            vec![
                r.source.clone(),
                r.backup_id.clone(),
                result.into(),
                format!("{:.2} s", r.rto_ms as f64 / 1000.0),
                objective(r.objectives.rto),
                format!("{:.1} s", r.rpo_s),
                objective(r.objectives.rpo),
            ]
        })
        .collect();
    let mut out = output::table_text(
        &[
            "SOURCE", "BACKUP", "RESULT", "RTO", "RTO GOAL", "RPO", "RPO GOAL",
        ],
        &rows,
    );
    for d in &report.drills {
        let r = &d.record;
        for line in &r.passed {
            let _ = writeln!(out, "  {} ok      {line}", r.source);
        }
        for problem in &r.problems {
            let _ = writeln!(out, "  {} PROBLEM {problem}", r.source);
        }
    }
    out
}

/// `dr report [--to FILE] [--since SPAN]`.
pub async fn report(app: &App, to: Option<&Path>, since: std::time::Duration) -> CliResult<()> {
    let repo = app.read_repository(None).await?;
    let report = build_report(&repo, since).await?;
    match to {
        Some(path) => write_report(app, &report, path),
        None if app.global.json => output::json(&report),
        None => {
            print!("{}", report.to_markdown());
            Ok(())
        }
    }
}

async fn build_report(
    repo: &dr_core::Repository,
    since: std::time::Duration,
) -> CliResult<RecoveryReport> {
    let options = ReportOptions::default().with_since(since);
    dr_core::ops::report::report(repo, &options, repo.progress())
        .await
        .map_err(|e| CliError::from(e).context("building the recovery report"))
}

/// Writes the report as Markdown at `path` and as JSON beside it (`.json`).
fn write_report(app: &App, report: &RecoveryReport, path: &Path) -> CliResult<()> {
    let json_path = path.with_extension("json");
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| CliError::usage(format!("cannot encode the report: {e}")))?;
    let write = |p: &Path, bytes: &[u8]| {
        std::fs::write(p, bytes).map_err(|e| {
            CliError::from(dr_core::Error::io(
                format!("writing the report {}", p.display()),
                e,
            ))
        })
    };
    write(path, report.to_markdown().as_bytes())?;
    write(&json_path, &json)?;
    if !app.global.json {
        println!(
            "recovery report written to {} and {}",
            path.display(),
            json_path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drill run built by hand: one passed, one over its RPO objective, one whose check
    /// failed.
    fn sample() -> DrillReport {
        serde_json::from_str(include_str!("../../tests/snapshots/drill.json"))
            .expect("the sample report parses")
    }

    /// A recovery report built by hand.
    fn sample_history() -> RecoveryReport {
        serde_json::from_str(include_str!("../../tests/snapshots/report.json"))
            .expect("the sample report parses")
    }

    fn json_of<T: serde::Serialize>(value: &T) -> serde_json::Value {
        serde_json::to_value(value).expect("serializes")
    }

    #[test]
    fn table_rendering() {
        assert_eq!(
            render(&sample()),
            include_str!("../../tests/snapshots/drill.txt")
        );
        assert_eq!(
            sample_history().to_markdown(),
            include_str!("../../tests/snapshots/report.md")
        );
    }

    #[test]
    fn json_schema_round_trips() {
        let expected: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/snapshots/drill.json")).expect("parses");
        assert_eq!(json_of(&sample()), expected, "field names or shape changed");
        let expected: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/snapshots/report.json"))
                .expect("parses");
        assert_eq!(
            json_of(&sample_history()),
            expected,
            "report schema changed"
        );
    }

    #[test]
    fn exit_codes() {
        let report = sample();
        let err = outcome(&report).expect_err("a failed drill fails");
        assert_eq!(err.exit_code(), std::process::ExitCode::from(3));
        assert!(
            err.message
                .contains("2 of 3 drills did not pass (cache, files)")
        );
        let mut passing = report;
        passing.drills.truncate(1);
        assert!(outcome(&passing).is_ok());
        let no_key = drill_error(dr_core::Error::NoIdentity);
        assert_eq!(no_key.exit_code(), std::process::ExitCode::from(2));
    }
}
