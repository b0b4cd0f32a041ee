//! `dr list [SOURCE]`, `dr list --points` and `dr show ID`: call
//! [`dr_core::ops::list::list`] and [`dr_core::ops::list::show`] and render what they return
//! (a table, or `--json`: the backups, the points, or the manifest).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use dr_core::Manifest;
use dr_core::ops::list::{CopyRepository, ListOptions, ListReport, ListedBackup};
use dr_core::registry::ArchiveWindow;

use crate::app::App;
use crate::config::{as_pairs, store_options};
use crate::exit::{CliError, CliResult};
use crate::output;

/// `dr list [SOURCE]`.
pub async fn list(app: &App, source: Option<&str>) -> CliResult<()> {
    let options = ListOptions::default()
        .with_source(source.map(str::to_owned))
        .with_copies(copies(app).await);
    let report = run(app, &options).await?;
    if app.global.json {
        return output::json(&report.backups);
    }
    print!("{}", render(&report));
    Ok(())
}

/// `dr list --points`; exit 3 when a point record is unreadable or does not match the
/// backups it names (said on stderr).
pub async fn list_points(app: &App) -> CliResult<()> {
    let options = ListOptions::default().with_points(true).with_windows(false);
    let report = run(app, &options).await?;
    if app.global.json {
        output::json(&report.points)?;
    } else {
        print!("{}", render_points(&report));
    }
    for problem in &report.point_problems {
        eprintln!("PROBLEM {problem}");
    }
    points_outcome(&report)
}

/// `dr show ID`.
pub async fn show(app: &App, id: &str) -> CliResult<()> {
    let repo = app.read_repository(None).await?;
    let manifest = dr_core::ops::list::show(&repo, id)
        .await
        .map_err(CliError::from)?;
    if app.global.json {
        return output::json(&manifest);
    }
    print!("{}", render_show(&manifest));
    Ok(())
}

async fn run(app: &App, options: &ListOptions) -> CliResult<ListReport> {
    let repo = app.read_repository(None).await?;
    let system = app.system()?;
    dr_core::ops::list::list(&repo, &system, options, repo.progress())
        .await
        .map_err(|e| match e {
            e @ dr_core::Error::BackupNotFound { .. } => CliError::from(e),
            e => CliError::from(e).context("listing backups"),
        })
}

/// The configured copies, each opened (or marked unreadable).
pub(super) async fn copies(app: &App) -> Vec<CopyRepository> {
    let mut all = Vec::new();
    for copy in &app.config.copies {
        let (url, options) = (copy.url(), store_options(copy.ca_file()));
        all.push(match dr_storage::open_repository(url, &as_pairs(&options)).await {
            Ok(repo) => CopyRepository::opened(url, repo),
            Err(e) => {
                tracing::debug!(copy = %dr_core::redact_url(url), error = %e, "copy unavailable");
                CopyRepository::unreadable(url)
            }
        });
    }
    all
}

/// Exit 3 when the recovery points are damaged.
fn points_outcome(report: &ListReport) -> CliResult<()> {
    if report.point_problems.is_empty() {
        return Ok(());
    }
    Err(CliError::verification(
        "recovery points are damaged (see above): do not rely on them",
    ))
}

/// The backups as the table `dr list` prints, then the archive windows and the unreadable.
pub fn render(report: &ListReport) -> String {
    if report.backups.is_empty() {
        let of = report.source.as_ref().map(|s| format!(" of {s}"));
        return format!("no backups{}\n", of.unwrap_or_default());
    }
    let rows: Vec<Vec<String>> = report.backups.iter().map(row).collect();
    let header = [
        "SOURCE",
        "ID",
        "STARTED (UTC)",
        "KIND",
        "SIZE",
        "STORED",
        "LABELS",
        "COPIES",
    ];
    let mut out = output::table_text(&header, &rows);
    for window in &report.windows {
        render_window(&mut out, window);
    }
    for unreadable in &report.unreadable {
        let _ = writeln!(out, "PROBLEM {}", unreadable.describe());
    }
    out
}

fn row(b: &ListedBackup) -> Vec<String> {
    let size = |bytes| {
        if b.problem.is_some() {
            "?".into()
        } else {
            output::size(bytes)
        }
    };
    vec![
        b.source.clone(),
        b.id.clone(),
        b.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        b.kind.clone(),
        size(b.plain_bytes),
        size(b.stored_bytes),
        b.labels.join(","),
        copies_cell(&b.copies),
    ]
}

/// One line per source: the window one can recover to, then its problems.
fn render_window(out: &mut String, w: &ArchiveWindow) {
    let time = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "?".into(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        )
    };
    let _ = writeln!(
        out,
        "{}: recoverable from {} to {} (newest archived {})",
        w.source,
        time(w.recoverable_from),
        time(w.recoverable_until),
        w.newest_archived.as_deref().unwrap_or("none")
    );
    for problem in &w.problems {
        let _ = writeln!(out, "  PROBLEM {problem}");
    }
}

/// `2/2`, `1/2`, `?` when a copy could not be read; empty without copies.
fn copies_cell(copies: &[Option<bool>]) -> String {
    if copies.is_empty() {
        return String::new();
    }
    let held = copies.iter().filter(|c| **c == Some(true)).count();
    let unknown = if copies.iter().any(Option::is_none) {
        " ?"
    } else {
        ""
    };
    format!("{held}/{}{unknown}", copies.len())
}

/// The recovery points as the table `dr list --points` prints.
pub fn render_points(report: &ListReport) -> String {
    if report.points.is_empty() {
        return "no recovery points (dr backup --all or --group NAME records one)\n".into();
    }
    let rows: Vec<Vec<String>> = report
        .points
        .iter()
        .map(|p| {
            let members: Vec<String> = p
                .members
                .iter()
                .map(|m| format!("{} {}", m.source, m.backup_id))
                .chain(p.failed.iter().map(|f| format!("{} FAILED", f.source)))
                .collect();
            let state = if p.is_complete() {
                "complete"
            } else {
                "INCOMPLETE"
            };
            vec![
                p.id.clone(),
                p.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                p.group.clone(),
                state.into(),
                members.join(", "),
            ]
        })
        .collect();
    output::table_text(
        &["POINT", "CREATED (UTC)", "GROUP", "STATE", "BACKUPS"],
        &rows,
    )
}

/// One backup's manifest as `dr show` prints it.
pub fn render_show(m: &Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "backup     {}", m.id);
    let _ = writeln!(out, "source     {} ({})", m.source, m.kind);
    let _ = writeln!(out, "started    {}", m.started_at.to_rfc3339());
    let _ = writeln!(out, "finished   {}", m.finished_at.to_rfc3339());
    let _ = writeln!(
        out,
        "size       {} stored as {}",
        output::size(m.plain_size()),
        output::size(m.stored_size())
    );
    if !m.depends_on.is_empty() {
        let _ = writeln!(out, "depends on {}", m.depends_on.join(", "));
    }
    let _ = writeln!(out, "encrypted  to {}", m.recipients.join(", "));
    for a in &m.artifacts {
        let _ = writeln!(
            out,
            "artifact   {}: {} in {} parts",
            a.name,
            output::size(a.plain_size),
            a.parts.len()
        );
    }
    for (key, value) in &m.source_info {
        let _ = writeln!(out, "{key:<10} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report built by hand: a full and an incremental backup held by one of two copies,
    /// an unreadable one, a PITR window with a gap, a complete and an incomplete point.
    fn sample() -> ListReport {
        serde_json::from_str(include_str!("../../tests/snapshots/list.json"))
            .expect("the sample report parses")
    }

    #[test]
    fn table_rendering() {
        let sample = sample();
        let text = format!("{}{}", render(&sample), render_points(&sample));
        output::assert_snapshot("tests/snapshots/list.txt", &text);
    }

    #[test]
    fn json_schema_round_trips() {
        let json = serde_json::to_value(sample()).expect("serializes");
        let expected: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/snapshots/list.json")).expect("parses");
        assert_eq!(json, expected, "field names or shape changed");
    }

    #[test]
    fn damaged_points_exit_3() {
        let err = points_outcome(&sample()).expect_err("damaged points fail");
        assert_eq!(err.exit_code(), std::process::ExitCode::from(3));
    }

    #[test]
    fn empty_listing_says_so() {
        let report: ListReport =
            serde_json::from_str(r#"{"source":"app","backups":[],"unreadable":[],"windows":[],"points":[],"point_problems":[],"elapsed_ms":0}"#)
                .expect("parses");
        assert_eq!(render(&report), "no backups of app\n");
        assert!(render_points(&report).starts_with("no recovery points"));
    }
}
