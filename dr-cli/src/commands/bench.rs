//! `dr bench`: calls [`dr_core::ops::bench::bench`] and renders its report.

use std::fmt::Write as _;

use dr_core::ops::bench::{BenchOptions, BenchPhase, BenchReport, BenchRun, RestoreChoice};

use crate::app::App;
use crate::exit::{CliError, CliResult};
use crate::output;

/// What `dr bench` measures.
pub struct BenchArgs {
    /// MiB of generated data per pipeline run.
    pub size_mib: u64,
    /// zstd levels to try.
    pub levels: Vec<i32>,
    /// Parallelism (parts at once) to try.
    pub threads: Vec<usize>,
    /// The backup whose restore is timed (an id or a source; default the largest).
    pub backup: Option<String>,
    /// Parts at once in the timed restore (default: the configured value).
    pub restore_threads: Option<usize>,
    /// Also time the restore with this delay added to every request (`--latency`).
    pub latency: Option<std::time::Duration>,
}

impl BenchArgs {
    fn options(&self) -> BenchOptions {
        let restore = match &self.backup {
            Some(wanted) => RestoreChoice::Backup(wanted.clone()),
            None => RestoreChoice::Largest,
        };
        BenchOptions::default()
            .with_size_bytes(self.size_mib << 20)
            .with_levels(self.levels.clone())
            .with_threads(self.threads.clone())
            .with_restore(restore)
            .with_restore_threads(self.restore_threads)
            .with_added_latency(self.latency)
    }
}

/// `dr bench`.
pub async fn bench(app: &App, args: &BenchArgs) -> CliResult<()> {
    let repo = app.repository(None).await?;
    let system = app.system()?;
    let report = dr_core::ops::bench::bench(&repo, &system, &args.options(), repo.progress())
        .await
        .map_err(|e| match e {
            dr_core::Error::NoIdentity => CliError::usage(format!(
                "timing a restore needs the secret key: {} (or leave the repository without backups)",
                dr_core::LOAD_A_KEY
            )),
            e @ dr_core::Error::BackupNotFound { .. } => {
                CliError::usage(format!("{e} (pass --backup ID or a source name)"))
            }
            e => CliError::from(e).context("benchmarking"),
        })?;
    if app.global.json {
        return output::json(&report);
    }
    print!("{}", render(&report));
    Ok(())
}

/// The report as the tables `dr bench` prints.
pub fn render(report: &BenchReport) -> String {
    let rows: Vec<Vec<String>> = report.runs.iter().map(run_row).collect();
    let mut out = output::table_text(
        &["RUN", "LEVEL", "THREADS", "PLAIN", "STORED", "MS", "MB/S"],
        &rows,
    );
    if !report.projections.is_empty() {
        out.push('\n');
        out.push_str(&projections(report));
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if let Some(bytes) = report.peak_rss_bytes {
        let _ = writeln!(out, "peak RSS of this process: {}", output::size(bytes));
    }
    out
}

fn run_row(r: &BenchRun) -> Vec<String> {
    let backup = || {
        format!(
            "{} {}",
            r.source.as_deref().unwrap_or("?"),
            r.backup_id.as_deref().unwrap_or("?")
        )
    };
    let what = match r.phase {
        BenchPhase::PipelineBackup => "pipeline backup (generated data -> store)".to_owned(),
        BenchPhase::PipelineRestore => "pipeline restore (store -> null sink)".to_owned(),
        BenchPhase::RestoreNullSink => format!("restore {} (null sink)", backup()),
        BenchPhase::RestoreNullSinkFarther => format!(
            "restore {} (null sink, +{} ms a request)",
            backup(),
            r.added_latency_ms
        ),
        BenchPhase::RestoreScratch => format!("restore {} (scratch target)", backup()),
        BenchPhase::TestRestore => format!("restore {} (test restore, checked)", backup()),
        _ => format!("{:?} {}", r.phase, backup()),
    };
    vec![
        what,
        r.zstd_level.to_string(),
        r.threads.to_string(),
        output::size(r.plain_bytes),
        output::size(r.stored_bytes),
        format!("{:.1}", r.elapsed_ms),
        format!("{:.0}", r.mb_per_s),
    ]
}

fn projections(report: &BenchReport) -> String {
    let seconds = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let farther = report
        .runs
        .iter()
        .find(|r| r.phase == BenchPhase::RestoreNullSinkFarther)
        .map(|r| r.added_latency_ms);
    let rows: Vec<Vec<String>> = report
        .projections
        .iter()
        .map(|p| {
            let mut row = vec![
                p.source.clone(),
                p.largest_backup.clone(),
                output::size(p.plain_bytes),
                seconds(p.projected_null_sink_ms),
                p.projected_scratch_target_ms
                    .map_or_else(|| "-".into(), seconds),
            ];
            if farther.is_some() {
                row.push(p.projected_farther_ms.map_or_else(|| "-".into(), seconds));
            }
            row
        })
        .collect();
    let mut headers = vec![
        "SOURCE".to_owned(),
        "LARGEST BACKUP".to_owned(),
        "SIZE".to_owned(),
        "TO READ (NULL SINK)".to_owned(),
        "TO RESTORE (SCRATCH)".to_owned(),
    ];
    if let Some(ms) = farther {
        headers.push(format!("TO READ AT +{ms} MS"));
    }
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    output::table_text(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bench built by hand: one pipeline level x threads, a restore to both targets.
    fn sample() -> BenchReport {
        serde_json::from_str(include_str!("../../tests/snapshots/bench.json"))
            .expect("the sample report parses")
    }

    #[test]
    fn table_rendering() {
        assert_eq!(
            render(&sample()),
            include_str!("../../tests/snapshots/bench.txt")
        );
    }

    #[test]
    fn json_schema_round_trips() {
        let json = serde_json::to_value(sample()).expect("serializes");
        let expected: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/snapshots/bench.json")).expect("parses");
        assert_eq!(json, expected, "field names or shape changed");
    }

    #[test]
    fn arguments_become_options() {
        let args = BenchArgs {
            size_mib: 4,
            levels: vec![1, 3],
            threads: vec![2],
            backup: Some("app".into()),
            restore_threads: Some(3),
            latency: Some(std::time::Duration::from_millis(50)),
        };
        let options = args.options();
        assert_eq!(options.size_bytes, 4 << 20);
        assert_eq!(options.restore, RestoreChoice::Backup("app".into()));
        assert_eq!(options.restore_threads, Some(3));
        assert_eq!(
            options.added_latency,
            Some(std::time::Duration::from_millis(50))
        );
    }
}
