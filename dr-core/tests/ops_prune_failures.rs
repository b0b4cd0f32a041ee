//! Prune bounds the failure records: the newest `keep_failures` of each source stay, and so
//! does every failure newer than its newest backup (what `dr status` reports); a dry run
//! only says what would go.

mod common;

use common::{Failing, backup, repository};
use dr_core::ops::System;
use dr_core::ops::prune::{PruneOptions, prune};
use dr_core::registry::Registry;
use dr_core::{BackupOptions, ProgressHandle, Repository};

async fn fail(repo: &Repository, times: usize) {
    for _ in 0..times {
        let failed = repo.backup("db", &Failing, &BackupOptions::default()).await;
        assert!(failed.is_err());
        // Ids are per second: keep each failure its own record.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
}

#[tokio::test]
async fn failure_records_past_the_bound_go_and_recent_ones_stay() {
    let repo = repository().await;
    fail(&repo, 3).await;
    backup(&repo, "db", "test", b"rows").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    fail(&repo, 2).await;
    let old: Vec<String> = repo.backup_failures(Some("db")).await.unwrap()[..3]
        .iter()
        .map(|f| f.id.clone())
        .collect();
    let system = System::new(Registry::new());
    let progress = ProgressHandle::default();

    let options = PruneOptions::default()
        .with_keep_failures(1)
        .with_dry_run(true);
    let planned = prune(&repo, &system, &options, &progress).await.unwrap();
    let db = &planned.failures["db"];
    assert_eq!(db.kept, 2, "the two after the newest backup: {db:?}");
    let mut removed = db.removed.clone();
    removed.sort();
    assert_eq!(removed, old, "the three before the newest backup");
    assert_eq!(
        repo.backup_failures(None).await.unwrap().len(),
        5,
        "dry run"
    );

    let options = PruneOptions::default().with_keep_failures(1);
    prune(&repo, &system, &options, &progress).await.unwrap();
    let left = repo.backup_failures(None).await.unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|f| !old.contains(&f.id)), "{left:?}");

    let options = PruneOptions::default().with_keep_failures(0);
    let again = prune(&repo, &system, &options, &progress).await.unwrap();
    assert!(
        again.failures.is_empty(),
        "newer than the newest backup: kept"
    );
    assert_eq!(repo.backup_failures(None).await.unwrap().len(), 2);
}
