//! `ops::drill`, `ops::report` and `ops::bench` with the test kinds: drills that pass, fail a
//! check, miss the RPO or cannot be prepared, all recorded and reported; a bench whose
//! figures add up.

mod common;

use std::sync::Arc;
use std::time::Duration;

use dr_core::drill::Objectives;
use dr_core::ops::bench::{BenchOptions, BenchPhase, RestoreChoice, bench};
use dr_core::ops::drill::{DrillOptions, DrillTarget, DrillVerdict, drill};
use dr_core::ops::report::{ReportOptions, report};
use dr_core::ops::{ConfiguredSource, System};
use dr_core::registry::{DrillSetup, RestoreRequest, Source};
use dr_core::{
    Backup, BackupReader, Error, Identities, NoProgress, ProgressHandle, Repository, RestoreReport,
    Result, Verify, async_trait,
};

fn progress() -> ProgressHandle {
    ProgressHandle::new(Arc::new(NoProgress))
}

fn objectives(rpo: Duration) -> Objectives {
    Objectives {
        rto: Some(Duration::from_secs(3600)),
        rpo: Some(rpo),
        drill_every: None,
    }
}

/// The blob source `app` whose check wants `prefix`, with an RPO objective of `rpo`.
fn system(prefix: &[u8], rpo: Duration) -> System {
    let (registry, _) = common::registry();
    let source = common::BlobSource {
        data: Vec::new(),
        prefix: prefix.to_vec(),
    };
    System::new(registry).with_source(
        ConfiguredSource::new("app", Arc::new(source)).with_objectives(objectives(rpo)),
    )
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn a_drill_restores_checks_measures_and_records() {
    let repo = common::repository().await;
    let made = common::backup(&repo, "app", "test.blob", b"hello world").await;
    let run = drill(
        &repo,
        &system(b"hello", DAY),
        &DrillOptions::default(),
        &progress(),
    )
    .await
    .unwrap();
    assert!(run.is_success() && run.failure().is_none(), "{run:?}");
    let entry = &run.drills[0];
    assert_eq!(entry.verdict, DrillVerdict::Passed);
    assert_eq!((entry.rto_met, entry.rpo_met), (Some(true), Some(true)));
    assert_eq!(entry.record.backup_id, made.id);
    assert!(entry.record.rto_ms > 0);
    assert!(
        entry
            .record
            .passed
            .iter()
            .any(|p| p == "read 11 bytes back"),
        "{entry:?}"
    );
    let recorded = repo.drills(Some("app")).await.unwrap();
    assert_eq!(
        recorded,
        std::slice::from_ref(&entry.record),
        "recorded as reported"
    );
    // The JSON of an entry is its record with the verdict beside it.
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(json["drills"][0]["verdict"], "passed");
    assert_eq!(json["drills"][0]["source"], "app");
}

#[tokio::test]
async fn a_failing_check_fails_the_drill_and_the_report_says_so() {
    let repo = common::repository().await;
    common::backup(&repo, "app", "test.blob", b"hello world").await;
    let run = drill(
        &repo,
        &system(b"xx", DAY),
        &DrillOptions::default(),
        &progress(),
    )
    .await
    .unwrap();
    assert!(!run.is_success());
    let entry = &run.drills[0];
    assert_eq!(entry.verdict, DrillVerdict::Failed);
    assert!(!entry.record.ok);
    assert!(
        entry
            .record
            .problems
            .iter()
            .any(|p| p.contains("check starts: no")),
        "{entry:?}"
    );
    let why = run.failure().unwrap();
    assert!(why.contains("1 of 1 drills did not pass (app)"), "{why}");
    let history = report(&repo, &ReportOptions::default(), &progress())
        .await
        .unwrap();
    let app = &history.sources[0];
    assert_eq!(app.last_drill_passed, Some(false));
    assert_eq!(app.drill_success_rate_pct, Some(0.0));
    assert!(history.to_markdown().contains("FAILED: check starts: no"));
}

#[tokio::test]
async fn an_rpo_over_its_objective_is_flagged() {
    let repo = common::repository().await;
    common::backup(&repo, "app", "test.blob", b"hello world").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let tight = system(b"hello", Duration::from_millis(10));
    let run = drill(&repo, &tight, &DrillOptions::default(), &progress())
        .await
        .unwrap();
    let entry = &run.drills[0];
    assert!(entry.record.ok, "restored and checked: {entry:?}");
    assert_eq!(entry.verdict, DrillVerdict::ObjectiveMissed);
    assert_eq!((entry.rto_met, entry.rpo_met), (Some(true), Some(false)));
    assert!(entry.record.rpo_s >= 0.03, "{}", entry.record.rpo_s);
    assert!(!run.is_success());
}

#[tokio::test]
async fn sources_without_configuration_are_drilled_by_their_kind_and_targets_are_checked() {
    let repo = common::repository().await;
    common::backup(&repo, "wal", "test.wal", b"segments").await;
    let system = system(b"hello", DAY);
    let only = DrillOptions::default().with_target(DrillTarget::Source("wal".into()));
    let run = drill(&repo, &system, &only, &progress()).await.unwrap();
    assert_eq!(run.drills.len(), 1);
    assert_eq!(run.drills[0].verdict, DrillVerdict::Passed, "{run:?}");
    // `app` is configured but has no backup: nothing is drilled.
    let err = drill(&repo, &system, &DrillOptions::default(), &progress())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BackupNotFound { .. }), "{err}");
    let keyless = repo.clone().with_identities(Identities::default());
    let err = drill(&keyless, &system, &only, &progress())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoIdentity), "{err}");
}

/// A source whose drill cannot be prepared (as a PostgreSQL drill whose RPO probe fails).
struct Unprepared;

#[async_trait]
impl Source for Unprepared {
    fn kind(&self) -> &str {
        "test.blob"
    }
    async fn backup(&self, _: &Repository, _: &str, _: bool) -> Result<Box<dyn Backup>> {
        Err(Error::Usage("not in this test".into()))
    }
    async fn restore(&self, _: &RestoreRequest<'_>) -> Result<RestoreReport> {
        Err(Error::Usage("not in this test".into()))
    }
    fn verifier(&self, _: &Repository) -> Result<Box<dyn Verify>> {
        Err(Error::Usage("not in this test".into()))
    }
    async fn drill(&self, _: &Repository, _: &BackupReader) -> Result<DrillSetup> {
        Err(Error::Usage("the probe could not be written".into()))
    }
}

#[tokio::test]
async fn a_drill_that_cannot_be_prepared_is_recorded_as_failed() {
    let repo = common::repository().await;
    common::backup(&repo, "app", "test.blob", b"hello world").await;
    let (registry, _) = common::registry();
    let system =
        System::new(registry).with_source(ConfiguredSource::new("app", Arc::new(Unprepared)));
    let run = drill(&repo, &system, &DrillOptions::default(), &progress())
        .await
        .unwrap();
    let entry = &run.drills[0];
    assert_eq!(entry.verdict, DrillVerdict::Failed);
    assert_eq!(entry.record.rto_ms, 0, "nothing was timed");
    assert!(
        entry.record.problems[0].contains("the probe could not be written"),
        "{entry:?}"
    );
    assert_eq!(repo.drills(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_bench_measures_the_pipeline_and_a_restore_with_figures_that_add_up() {
    let repo = common::repository().await;
    let data = vec![7u8; 300_000];
    common::backup(&repo, "app", "test.blob", &data).await;
    common::backup(&repo, "files", "test.plain", b"plain bytes").await;
    let scratch = tempfile::tempdir().unwrap();
    let options = BenchOptions::default()
        .with_size_bytes(256 << 10)
        .with_levels(vec![1])
        .with_threads(vec![1, 2])
        .with_restore_threads(Some(3))
        .with_scratch_dir(Some(scratch.path().to_owned()));
    let system = system(b"", DAY);
    let run = bench(&repo, &system, &options, &progress()).await.unwrap();
    let phases: Vec<BenchPhase> = run.runs.iter().map(|r| r.phase).collect();
    use BenchPhase::*;
    assert_eq!(
        phases,
        [
            PipelineBackup,
            PipelineRestore,
            PipelineBackup,
            PipelineRestore,
            RestoreNullSink,
            RestoreScratch
        ]
    );
    for r in &run.runs {
        assert!(
            r.plain_bytes > 0 && r.stored_bytes > 0 && r.elapsed_ms > 0.0,
            "{r:?}"
        );
        let expected = r.plain_bytes as f64 / 1e6 / (r.elapsed_ms / 1e3);
        assert!((r.mb_per_s - expected).abs() <= 1e-9 * expected, "{r:?}");
    }
    assert_eq!(run.runs[0].plain_bytes, 256 << 10);
    assert_eq!((run.runs[0].zstd_level, run.runs[2].threads), (1, 2));
    let restored = &run.runs[5];
    assert_eq!(restored.plain_bytes, 300_000);
    assert_eq!(restored.source.as_deref(), Some("app"));
    assert_eq!(restored.threads, 3);
    let app = run.projections.iter().find(|p| p.source == "app").unwrap();
    assert!(app.projected_scratch_target_ms.is_some(), "{app:?}");
    assert!(run.notes.is_empty(), "{:?}", run.notes);
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "scratch removed"
    );
    // The scratch prefix is gone: the repository lists only its two backups.
    assert_eq!(repo.list(None).await.unwrap().backups.len(), 2);

    // A kind with neither a scratch restorer nor a test restore: the null sink only.
    let plain = options
        .clone()
        .with_size_bytes(0)
        .with_restore(RestoreChoice::Backup("files".into()));
    let run = bench(&repo, &system, &plain, &progress()).await.unwrap();
    assert_eq!(run.runs.len(), 1);
    assert_eq!(run.runs[0].phase, RestoreNullSink);
    assert!(
        run.notes[0].contains("no scratch restorer"),
        "{:?}",
        run.notes
    );
}
