//! The status and list operations over test kinds: the newest backup against the RPO,
//! retention, the continuous archive through the registry, recorded failures, recovery
//! points, and `show`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{BlobSource, backup, registry, repository};
use dr_core::drill::Objectives;
use dr_core::object_store::ObjectStoreExt;
use dr_core::ops::list::{ListOptions, list, show};
use dr_core::ops::status::{StatusOptions, status};
use dr_core::ops::{ConfiguredSource, System};
use dr_core::{
    Backup, BackupOptions, BackupWriter, Error, ProgressHandle, Result, RetentionPolicy,
    SourceInfo, async_trait,
};

fn system(rpo: Duration) -> System {
    let blob = BlobSource {
        data: b"hello".to_vec(),
        prefix: Vec::new(),
    };
    let objectives = Objectives {
        rpo: Some(rpo),
        ..Objectives::default()
    };
    let app = ConfiguredSource::new("app", Arc::new(blob)).with_objectives(objectives);
    System::new(registry().0).with_source(app)
}

fn progress() -> ProgressHandle {
    ProgressHandle::default()
}

#[tokio::test]
async fn status_reports_the_latest_backup_and_flags_one_older_than_its_rpo() {
    let repo = repository().await;
    let system = system(Duration::from_secs(3600));
    let none = status(&repo, &system, &StatusOptions::default(), &progress())
        .await
        .unwrap();
    assert!(
        none.sources[0].problems[0].contains("no backup yet"),
        "{none:?}"
    );

    backup(&repo, "app", "test.blob", b"hello").await;
    let newest = backup(&repo, "app", "test.blob", b"hello again").await;
    let fresh = status(&repo, &system, &StatusOptions::default(), &progress())
        .await
        .unwrap();
    assert!(fresh.is_ok(), "{:?}", fresh.sources);
    let app = &fresh.sources[0];
    assert_eq!(app.source, "app");
    assert_eq!(app.last_backup_id.as_deref(), Some(newest.id.as_str()));
    assert_eq!(app.last_backup_bytes, Some(11));
    assert_eq!(app.backup_count, 2);
    assert_eq!(app.retention.forgotten, 0);

    let later = chrono::Utc::now() + chrono::TimeDelta::hours(2);
    let options = StatusOptions::default().with_now(later);
    let stale = status(&repo, &system, &options, &progress()).await.unwrap();
    assert_eq!(stale.computed_at, later);
    assert_eq!(stale.problem_count(), 1, "{:?}", stale.sources);
    let problem = &stale.sources[0].problems[0];
    assert!(
        problem.contains("more than the RPO objective of 1h"),
        "{problem}"
    );
    assert!(stale.sources[0].rpo_now_s.unwrap() > 7000.0);
    let failing: Vec<&str> = stale.failing().map(|s| s.source.as_str()).collect();
    assert_eq!(failing, ["app"]);
}

#[tokio::test]
async fn status_reports_retention_the_archive_missing_parts_and_failures() {
    let repo = repository().await;
    let keep_one = RetentionPolicy {
        keep_last: 1,
        ..RetentionPolicy::default()
    };
    let (kinds, archive) = registry();
    let system = System::new(kinds).with_default_retention(keep_one);
    backup(&repo, "db", "test.wal", b"base 1").await;
    let base = backup(&repo, "db", "test.wal", b"base 2").await;
    archive.gap_for.lock().unwrap().push(base.id.clone());
    let failed = repo.backup("db", &Failing, &BackupOptions::default()).await;
    assert!(failed.is_err());

    let report = status(&repo, &system, &StatusOptions::default(), &progress())
        .await
        .unwrap();
    let db = &report.sources[0];
    assert_eq!((db.retention.kept, db.retention.forgotten), (1, 1));
    assert!(
        db.problems
            .iter()
            .any(|p| p.contains("retention is overdue"))
    );
    let window = db
        .archive
        .as_ref()
        .expect("the archive has a gap to report");
    assert!(window.problems[0].contains("gap after"), "{window:?}");
    assert!(
        db.problems
            .iter()
            .any(|p| p.starts_with("WAL archive: gap"))
    );
    assert_eq!(db.failures_since_last_backup, 1);
    assert!(db.last_failure.as_ref().unwrap().error.contains("refuses"));

    // A part of the newest backup gone: status says it cannot be restored as it is.
    let part = &base.artifacts[0].parts[0].object;
    let key = format!("backups/db/{}/{part}", base.id);
    repo.store()
        .delete(&dr_core::object_store::path::Path::from(key))
        .await
        .unwrap();
    let report = status(&repo, &system, &StatusOptions::default(), &progress())
        .await
        .unwrap();
    let gone = &report.sources[0].problems;
    assert!(
        gone.iter()
            .any(|p| p.contains("cannot be restored as it is")),
        "{gone:?}"
    );
}

#[tokio::test]
async fn list_returns_backups_points_windows_and_show_finds_one() {
    let repo = repository().await;
    let (kinds, archive) = registry();
    let system = System::new(kinds);
    let app = backup(&repo, "app", "test.plain", b"one").await;
    let db = backup(&repo, "db", "test.wal", b"base").await;
    archive.gap_for.lock().unwrap().push(db.id.clone());
    repo.record_point("all", &[app.clone(), db.clone()], Vec::new(), Vec::new())
        .await
        .unwrap();

    let report = list(&repo, &system, &ListOptions::default(), &progress())
        .await
        .unwrap();
    let ids: Vec<&str> = report.backups.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, [db.id.as_str(), app.id.as_str()], "newest first");
    assert_eq!(report.backups[0].kind, "test.wal");
    assert_eq!(report.backups[1].plain_bytes, 3);
    assert!(!report.backups[0].incremental);
    assert_eq!(report.windows.len(), 1);
    assert_eq!(report.windows[0].source, "db");
    assert!(report.points.is_empty(), "points only when asked for");

    let options = ListOptions::default().with_points(true).with_windows(false);
    let with_points = list(&repo, &system, &options, &progress()).await.unwrap();
    assert_eq!(with_points.points.len(), 1);
    assert_eq!(with_points.points[0].members.len(), 2);
    assert!(with_points.point_problems.is_empty());
    assert!(with_points.windows.is_empty());

    let options = ListOptions::default().with_source(Some("app".into()));
    let of_app = list(&repo, &system, &options, &progress()).await.unwrap();
    assert_eq!(of_app.backups.len(), 1);
    let options = ListOptions::default().with_source(Some("nosuch".into()));
    let unknown = list(&repo, &system, &options, &progress()).await;
    match unknown {
        Err(Error::BackupNotFound { selector }) => {
            assert!(selector.contains("app, db"), "{selector}")
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(show(&repo, &app.id).await.unwrap().id, app.id);
    assert!(matches!(
        show(&repo, "20200101T000000Z-abcd").await,
        Err(Error::BackupNotFound { .. })
    ));
}

/// A backup that fails, so that the repository records the failure.
struct Failing;

#[async_trait]
impl Backup for Failing {
    fn kind(&self) -> &'static str {
        "test.wal"
    }
    async fn backup(&self, _: &mut BackupWriter) -> Result<SourceInfo> {
        Err(Error::io(
            "reading the test source",
            std::io::Error::other("the test source refuses"),
        ))
    }
}
