//! `dr verify`: calls [`dr_core::ops::verify::verify`] and renders its report.

use std::fmt::Write as _;

use dr_core::VerifyLevel;
use dr_core::ops::verify::{Subject, VerifyEntry, VerifyOptions, VerifyRunReport};

use crate::app::App;
use crate::exit::{CliError, CliResult};
use crate::output;

/// `dr verify [ID|SOURCE] [--level L]`; exit 3 when any backup has a problem.
pub async fn verify(app: &App, target: Option<&str>, level: &str) -> CliResult<()> {
    let report = run(app, target, level).await?;
    if app.global.json {
        output::json(&report)?;
    } else {
        print!("{}", render(&report));
    }
    outcome(&report)
}

/// `dr verify --locks [SOURCE]`: every backup retention keeps is locked at least until its
/// keep date; exit 3 when one is not, or when nothing can be locked (no Object Lock).
pub async fn verify_locks(app: &App, source: Option<&str>) -> CliResult<()> {
    let repo = app.read_repository(None).await?;
    let system = app.system()?;
    let now = chrono::Utc::now();
    let report = dr_core::ops::locks::verify_locks(&repo, &system, source, now)
        .await
        .map_err(|e| CliError::from(e).context("checking Object Lock"))?;
    if app.global.json {
        output::json(&report)?;
    } else {
        for problem in &report.problems {
            println!("PROBLEM {problem}");
        }
    }
    if !report.bucket_locked {
        return Err(CliError::verification(format!(
            "{} has no Object Lock: nothing is locked, and whoever holds delete rights can delete every backup (create the bucket with Object Lock enabled; see README, \"Ransomware-proof repositories\")",
            repo.location()
        )));
    }
    if !report.problems.is_empty() {
        return Err(CliError::verification(format!(
            "{} objects of kept backups are not locked long enough; `dr prune` extends the locks of what it keeps",
            report.problems.len()
        )));
    }
    if !app.global.json {
        println!(
            "OK locks: {} objects of {} kept backups are locked at least until their keep dates",
            report.objects_checked, report.backups_checked
        );
    }
    Ok(())
}

/// Runs the verification without printing anything.
pub(super) async fn run(
    app: &App,
    target: Option<&str>,
    level: &str,
) -> CliResult<VerifyRunReport> {
    let level: VerifyLevel = level.parse().map_err(CliError::from)?;
    let bar = app.bar();
    let repo = app.read_repository(Some(bar.clone())).await?;
    let system = app.system()?;
    let options = VerifyOptions::default()
        .with_target(target.map(str::to_owned))
        .with_level(level);
    let report = dr_core::ops::verify::verify(&repo, &system, &options, repo.progress()).await;
    bar.finish();
    report.map_err(|e| match e {
        // A key that opens nothing here: the backups cannot be verified (as before, exit 3).
        e @ dr_core::Error::NoMatchingIdentity { .. } => CliError::verification(e.to_string()),
        e => CliError::from(e).context("verifying"),
    })
}

/// Exit 3 when anything has a problem, worded for user checks that failed on intact backups.
pub(super) fn outcome(report: &VerifyRunReport) -> CliResult<()> {
    if report.is_ok() {
        return Ok(());
    }
    if report.recipients_problem.is_some() {
        return Err(CliError::verification(
            "the repository's recipients differ from the pinned ones (see above)",
        ));
    }
    let failed = report.failed().count();
    let total = report.entries.len();
    if report.only_user_checks_failed() {
        return Err(CliError::verification(format!(
            "{failed} of {total} backups failed a user check; the backups themselves are intact (every part matched its checksums and the test restore passed): the data they hold does not satisfy the check"
        )));
    }
    Err(CliError::verification(format!(
        "{failed} of {total} backups failed verification; restore from another backup and investigate the repository"
    )))
}

/// The report as the table `dr verify` prints.
pub fn render(report: &VerifyRunReport) -> String {
    let mut out = String::new();
    for entry in &report.entries {
        render_entry(&mut out, entry);
    }
    if let Some(problem) = &report.recipients_problem {
        let _ = writeln!(out, "PROBLEM {}", problem.message);
    }
    out
}

fn render_entry(out: &mut String, entry: &VerifyEntry) {
    let r = &entry.report;
    let verdict = if r.is_ok() { "OK" } else { "FAILED" };
    let source = entry.source.as_deref().unwrap_or("?");
    let _ = match entry.subject {
        Subject::Backup => writeln!(
            out,
            "{verdict}  {source} {} ({} objects, {}, {} ms)",
            r.backup_id,
            r.checked_objects,
            output::size(r.checked_bytes),
            r.elapsed_ms
        ),
        Subject::UnreadableManifest => {
            writeln!(
                out,
                "{verdict}  {source} {} (manifest unreadable)",
                r.backup_id
            )
        }
        Subject::Headless => writeln!(out, "{verdict}  {source}/{} (no manifest)", r.backup_id),
        Subject::RecoveryPoint => writeln!(out, "{verdict}  recovery point {}", r.backup_id),
        _ => writeln!(out, "{verdict}  {}", r.backup_id),
    };
    for line in &r.passed {
        let _ = writeln!(out, "  ok      {line}");
    }
    for problem in &r.problems {
        let _ = writeln!(out, "  PROBLEM {}", problem.message);
    }
    for note in &r.notes {
        let _ = writeln!(out, "  note    {note}");
    }
    if r.only_user_checks_failed() {
        let _ = writeln!(
            out,
            "  note    the backup is intact (parts, test restore and integrity checks passed); what failed is a user check on the data it holds"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report built by hand: one good backup at restore level, one whose user check failed,
    /// one without a test restore, a headless directory and a damaged point.
    pub(crate) fn sample() -> VerifyRunReport {
        serde_json::from_str(include_str!("../../tests/snapshots/verify.json"))
            .expect("the sample report parses")
    }

    #[test]
    fn table_rendering() {
        assert_eq!(
            render(&sample()),
            include_str!("../../tests/snapshots/verify.txt")
        );
    }

    #[test]
    fn json_schema_round_trips() {
        let json = serde_json::to_value(sample()).expect("serializes");
        let expected: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/snapshots/verify.json"))
                .expect("parses");
        assert_eq!(json, expected, "field names or shape changed");
    }

    #[test]
    fn exit_codes() {
        let report = sample();
        let err = outcome(&report).expect_err("problems fail");
        assert_eq!(err.exit_code(), std::process::ExitCode::from(3));
        assert!(err.message.contains("4 of 5 backups failed verification"));
    }
}
