//! `dr prune`: calls [`dr_core::ops::prune`] and renders its report.

use dr_core::ops::prune::{PruneOptions, PruneReport};

use crate::app::App;
use crate::exit::{CliError, CliResult, Context};
use crate::output;

/// `dr prune [--dry-run]`.
pub async fn prune(app: &App, dry_run: bool, orphan_grace: std::time::Duration) -> CliResult<()> {
    let repo = app.repository(None).await?;
    let system = app.system()?;
    let options = PruneOptions::default()
        .with_dry_run(dry_run)
        .with_orphan_grace(orphan_grace);
    let report = dr_core::ops::prune::prune(&repo, &system, &options, repo.progress())
        .await
        .doing(|| "pruning".into())?;
    if app.global.json {
        output::json(&report)?;
    } else {
        print!("{}", render(&report));
    }
    outcome(&report)
}

/// The table and summary lines of a prune report.
pub fn render(report: &PruneReport) -> String {
    let rows: Vec<Vec<String>> = report
        .decisions
        .iter()
        .map(|d| {
            let action = match (d.keep, report.dry_run) {
                (true, _) => "keep",
                (false, true) => "would delete",
                (false, false) => "deleted",
            };
            vec![
                d.source.clone(),
                d.id.clone(),
                d.time.format("%Y-%m-%d %H:%M").to_string(),
                action.into(),
                d.reasons.join(", "),
            ]
        })
        .collect();
    let mut text = output::table_text(
        &["SOURCE", "ID", "STARTED (UTC)", "ACTION", "REASONS"],
        &rows,
    );
    let verb = if report.dry_run {
        "would be deleted (dry run)"
    } else {
        "deleted"
    };
    let orphans = if report.dry_run {
        "orphaned objects are looked for and removed only by a real prune".to_owned()
    } else {
        format!("{} orphaned objects removed", report.orphans_removed.len())
    };
    text.push_str(&format!(
        "{} kept, {} {verb}; {orphans}\n",
        report.kept(),
        report.forgotten(),
    ));
    for (source, failures) in &report.failures {
        text.push_str(&format!(
            "{source}: {} old failure records {}, {} kept\n",
            failures.removed.len(),
            if report.dry_run {
                "would be removed"
            } else {
                "removed"
            },
            failures.kept
        ));
    }
    for (source, archive) in &report.archives {
        match &archive.kept_all_because {
            Some(why) => text.push_str(&format!("{source}: archive kept whole: {why}\n")),
            None => text.push_str(&format!(
                "{source}: {} archived WAL files older than the oldest kept base backup {}\n",
                archive.unneeded.len(),
                if report.dry_run {
                    "would be deleted"
                } else {
                    "deleted"
                }
            )),
        }
    }
    for unreadable in &report.unreadable {
        text.push_str(&format!("PROBLEM {}\n", unreadable.describe()));
    }
    for problem in &report.point_problems {
        text.push_str(&format!("PROBLEM {problem}\n"));
    }
    text
}

/// Exit 3 when a committed backup's manifest could not be read, or a recovery point is
/// damaged: prune kept their objects, but the repository needs attention.
fn outcome(report: &PruneReport) -> CliResult<()> {
    if !report.point_problems.is_empty() {
        return Err(CliError::verification(
            "a recovery point is damaged; prune kept every backup (see above)",
        ));
    }
    if report.unreadable.is_empty() {
        return Ok(());
    }
    Err(CliError::verification(format!(
        "{} committed backups have unreadable manifests; prune kept every object of them (see above)",
        report.unreadable.len()
    )))
}
