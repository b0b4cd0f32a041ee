//! Progress events of the pipeline, as a front end sees them: every event names its
//! operation, source, backup and artifact; a phase starts, advances by the bytes processed
//! (adding up to the artifact's plain size) and finishes, or fails.

use std::sync::{Arc, Mutex};

use dr_core::object_store::ObjectStore;
use dr_core::object_store::memory::InMemory;
use dr_core::object_store::path::Path;
use dr_core::{
    BackupOptions, BackupWriter, Event, Identities, Operation, PipelineOptions, Progress,
    ProgressHandle, Repository, Scope, SourceInfo, VerifyLevel,
};
use dr_testing::MixedData;

#[derive(Default)]
struct Recorder(Mutex<Vec<(Scope, Event)>>);

impl Progress for Recorder {
    fn event(&self, scope: &Scope, event: &Event) {
        self.0.lock().unwrap().push((scope.clone(), event.clone()));
    }
}

impl Recorder {
    fn take(&self) -> Vec<(Scope, Event)> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// Two artifacts: `a` of 300 kB (several 64 KiB parts) and `b` of 70 kB.
struct TwoArtifacts;

#[dr_core::async_trait]
impl dr_core::Backup for TwoArtifacts {
    fn kind(&self) -> &'static str {
        "test.two"
    }
    async fn backup(&self, out: &mut BackupWriter) -> dr_core::Result<SourceInfo> {
        out.put_artifact("a", &mut MixedData::new(1, 300_000))
            .await?;
        out.put_artifact("b", &mut MixedData::new(2, 70_000))
            .await?;
        Ok(SourceInfo::new())
    }
}

async fn repository(sink: Arc<Recorder>) -> (Repository, Arc<dyn ObjectStore>) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ids = Identities::generate();
    let repo = Repository::init(store.clone(), "memory://", &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids)
        .with_pipeline(PipelineOptions::default().with_part_size(64 * 1024))
        .with_progress_handle(ProgressHandle::new(sink));
    (repo, store)
}

/// The events of `artifact`, as (phase or kind, bytes) in order.
fn artifact_events(events: &[(Scope, Event)], artifact: &str) -> Vec<Event> {
    events
        .iter()
        .filter(|(s, _)| s.artifact.as_deref() == Some(artifact))
        .map(|(_, e)| e.clone())
        .collect()
}

/// Checks Started(phase, total) + Advanced... summing to `bytes` + Finished.
fn assert_phase(events: &[Event], phase: &str, total: Option<u64>, bytes: u64) {
    let (first, rest) = events.split_first().expect("events");
    assert_eq!(
        first,
        &Event::Started {
            phase: phase.into(),
            total_bytes: total
        }
    );
    let (last, middle) = rest.split_last().expect("an end event");
    assert_eq!(last, &Event::Finished, "{events:?}");
    let advanced: u64 = middle
        .iter()
        .map(|e| match e {
            Event::Advanced { bytes } => *bytes,
            other => panic!("unexpected {other:?} inside the phase"),
        })
        .sum();
    assert_eq!(advanced, bytes);
    assert!(middle.len() > 1 || bytes < 64 * 1024, "one event per part");
}

#[tokio::test]
async fn backup_and_restore_of_two_artifacts_report_each_with_scope_and_bytes() {
    let sink = Arc::new(Recorder::default());
    let (repo, _) = repository(sink.clone()).await;
    let manifest = repo
        .backup("db", &TwoArtifacts, &BackupOptions::default())
        .await
        .unwrap();
    let events = sink.take();
    for (scope, _) in &events {
        assert_eq!(scope.operation, Some(Operation::Backup));
        assert_eq!(scope.source.as_deref(), Some("db"));
        assert_eq!(scope.backup_id.as_deref(), Some(manifest.id.as_str()));
    }
    assert_phase(&artifact_events(&events, "a"), "write", None, 300_000);
    assert_phase(&artifact_events(&events, "b"), "write", None, 70_000);
    let whole: Vec<&Event> = events
        .iter()
        .filter(|(s, _)| s.artifact.is_none())
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        whole.len(),
        2,
        "the backup's own Started and Finished: {whole:?}"
    );
    assert_eq!(whole[1], &Event::Finished);

    let restore = repo.with_progress_handle(
        ProgressHandle::new(sink.clone()).narrowed(|_| Scope::of(Operation::Restore)),
    );
    let reader = restore.reader(manifest.clone());
    for name in ["a", "b"] {
        reader
            .copy_artifact(name, &mut tokio::io::sink())
            .await
            .unwrap();
    }
    let events = sink.take();
    for (scope, _) in &events {
        assert_eq!(scope.operation, Some(Operation::Restore));
        assert_eq!(scope.source.as_deref(), Some("db"));
        assert_eq!(scope.backup_id.as_deref(), Some(manifest.id.as_str()));
    }
    assert_phase(
        &artifact_events(&events, "a"),
        "read",
        Some(300_000),
        300_000,
    );
    assert_phase(&artifact_events(&events, "b"), "read", Some(70_000), 70_000);
}

#[tokio::test]
async fn a_damaged_part_fails_the_read_and_the_checksum_phase() {
    let sink = Arc::new(Recorder::default());
    let (repo, store) = repository(sink.clone()).await;
    let manifest = repo
        .backup("db", &TwoArtifacts, &BackupOptions::default())
        .await
        .unwrap();
    let part = &manifest.artifact("a").unwrap().parts[1];
    let key = Path::from(format!("backups/db/{}/{}", manifest.id, part.object));
    dr_testing::damage::damage_object(store.as_ref(), &key, dr_testing::Damage::Flip).await;
    sink.take();

    let reader = repo.reader(manifest.clone());
    let read = reader.copy_artifact("a", &mut tokio::io::sink()).await;
    assert!(read.is_err());
    let events = artifact_events(&sink.take(), "a");
    assert!(matches!(events.first(), Some(Event::Started { .. })));
    match events.last() {
        Some(Event::Failed { message }) => {
            assert!(message.contains(part.object.as_str()), "{message}")
        }
        other => panic!("expected Failed last, got {other:?} in {events:?}"),
    }
    assert!(!events.contains(&Event::Finished));

    let report = reader.verify_objects(VerifyLevel::Checksums).await.unwrap();
    assert_eq!(report.problems.len(), 1);
    let events = sink.take();
    let stored: u64 = manifest.parts().map(|p| p.stored_size).sum();
    assert_eq!(
        events.first().map(|(_, e)| e),
        Some(&Event::Started {
            phase: "checksums".into(),
            total_bytes: Some(stored)
        })
    );
    assert!(matches!(events.last(), Some((_, Event::Failed { .. }))));
}

#[tokio::test]
async fn a_failing_backup_reports_failed() {
    let sink = Arc::new(Recorder::default());
    let (repo, _) = repository(sink.clone()).await;
    let failing = dr_testing::FailingSource {
        fail_after: 100_000,
    };
    assert!(
        repo.backup("db", &failing, &BackupOptions::default())
            .await
            .is_err()
    );
    let events = sink.take();
    let failed: Vec<&Scope> = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Failed { .. }))
        .map(|(s, _)| s)
        .collect();
    assert!(
        failed.iter().any(|s| s.artifact.is_some()),
        "the artifact failed: {events:?}"
    );
    assert!(
        failed.iter().any(|s| s.artifact.is_none()),
        "the backup failed: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_backups_of_different_sources_are_told_apart() {
    let sink = Arc::new(Recorder::default());
    let (repo, _) = repository(sink.clone()).await;
    let big = dr_testing::StreamSource {
        seed: 5,
        size: 400_000,
    };
    let small = dr_testing::StreamSource {
        seed: 6,
        size: 150_000,
    };
    let opts = BackupOptions::default();
    let (one, two) = tokio::join!(
        repo.backup("one", &big, &opts),
        repo.backup("two", &small, &opts)
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    let events = sink.take();
    for (source, manifest, size) in [("one", &one, 400_000), ("two", &two, 150_000)] {
        let mine: Vec<(Scope, Event)> = events
            .iter()
            .filter(|(s, _)| s.source.as_deref() == Some(source))
            .cloned()
            .collect();
        assert!(
            mine.iter()
                .all(|(s, _)| s.backup_id.as_deref() == Some(manifest.id.as_str()))
        );
        assert_phase(&artifact_events(&mine, "data"), "write", None, size);
    }
    assert!(events.iter().all(|(s, _)| s.source.is_some()));
}
