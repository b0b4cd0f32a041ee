//! Append-only backup hosts: with every delete refused (as S3 refuses a role without
//! `s3:DeleteObject`), backups and copies succeed, a failed backup still reports the
//! source's error and leaves only orphans, and its lease ends without a delete; prune from
//! the admin side (full rights on the same store) then deletes what retention forgets and
//! the orphans.

use std::sync::Arc;

use dr_core::object_store::ObjectStore;
use dr_core::object_store::local::LocalFileSystem;
use dr_core::ops::System;
use dr_core::ops::prune::{PruneOptions, prune};
use dr_core::registry::Registry;
use dr_core::{BackupOptions, Identities, ProgressHandle, Repository, RetentionPolicy};
use dr_testing::{AppendOnlyStore, FailingSource, StreamSource};

struct Stores {
    _dir: tempfile::TempDir,
    admin: Arc<dyn ObjectStore>,
    backup_host: Arc<AppendOnlyStore>,
}

fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let admin: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let backup_host = Arc::new(AppendOnlyStore::new(admin.clone()));
    Stores {
        _dir: dir,
        admin,
        backup_host,
    }
}

async fn objects(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let prefix = dr_core::object_store::path::Path::from(prefix);
    let mut keys: Vec<String> = store
        .list(Some(&prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// The repository as the append-only backup host sees it (1 MiB parts: a failing backup
/// leaves parts behind).
async fn backup_host(stores: &Stores, identities: &Identities) -> Repository {
    Repository::init(
        stores.backup_host.clone(),
        "backup-host",
        &identities.to_recipients(),
    )
    .await
    .unwrap()
    .with_cache_dir(None)
    .with_pipeline(dr_core::PipelineOptions::default().with_part_size(1 << 20))
}

fn keep_last_one() -> System {
    let policy = RetentionPolicy {
        keep_last: 1,
        ..RetentionPolicy::default()
    };
    System::new(Registry::default()).with_default_retention(policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_and_copies_need_no_delete_and_prune_from_the_admin_side_cleans_up() {
    let stores = stores();
    let identities = Identities::generate();
    let host = backup_host(&stores, &identities).await;
    let opts = BackupOptions::default();
    let first = host
        .backup(
            "app",
            &StreamSource {
                seed: 1,
                size: 2 << 20,
            },
            &opts,
        )
        .await
        .expect("a backup needs no delete");
    host.backup(
        "app",
        &StreamSource {
            seed: 2,
            size: 2 << 20,
        },
        &opts,
    )
    .await
    .expect("a second one either");
    assert!(
        stores.backup_host.refused_deletes() >= 2,
        "leases were offered for deletion"
    );
    let leases = objects(stores.admin.as_ref(), "locks").await;
    assert_eq!(
        leases.len(),
        2,
        "the leases stay, marked expired: {leases:?}"
    );

    let failed = host
        .backup(
            "app",
            &FailingSource {
                fail_after: 3 << 20,
            },
            &opts,
        )
        .await
        .unwrap_err();
    assert!(
        failed.to_string().contains("simulated source failure"),
        "the source's error, not the refused cleanup: {failed}"
    );
    let orphans = host.orphans().await.unwrap();
    assert!(
        !orphans.is_empty(),
        "the failed backup's parts are left to prune"
    );

    // A copy to an append-only destination.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy_store = Arc::new(AppendOnlyStore::new(Arc::new(
        LocalFileSystem::new_with_prefix(copy_dir.path()).unwrap(),
    )));
    let copy = dr_core::copy::open_or_init_like(&host, copy_store.clone(), "copy")
        .await
        .unwrap();
    dr_core::copy::copy_backup(&host, &copy, &first)
        .await
        .expect("a copy needs no delete");
    assert_eq!(copy.list(Some("app")).await.unwrap().backups.len(), 1);

    // The admin side: full rights on the same store.
    let admin = Repository::open(stores.admin.clone(), "admin")
        .await
        .unwrap()
        .with_cache_dir(None);
    let system = keep_last_one();
    let options = PruneOptions::default().with_orphan_grace(std::time::Duration::ZERO);
    let report = prune(&admin, &system, &options, &ProgressHandle::default())
        .await
        .expect("prune with delete rights");
    assert_eq!(report.deleted, vec![first.id.clone()]);
    assert!(!report.orphans_removed.is_empty(), "{report:?}");
    assert_eq!(admin.list(None).await.unwrap().backups.len(), 1);
    assert!(admin.orphans().await.unwrap().is_empty());
    assert!(
        objects(stores.admin.as_ref(), "locks").await.is_empty(),
        "expired leases removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_with_append_only_credentials_fails_and_the_backups_stay() {
    let stores = stores();
    let identities = Identities::generate();
    let host = backup_host(&stores, &identities).await;
    for seed in 1..=2 {
        host.backup(
            "app",
            &StreamSource {
                seed,
                size: 1 << 20,
            },
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    }
    let system = keep_last_one();
    let err = prune(
        &host,
        &system,
        &PruneOptions::default(),
        &ProgressHandle::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("denied")
            || err.to_string().contains("DeleteObject"),
        "{err}"
    );
    assert_eq!(
        host.list(None).await.unwrap().backups.len(),
        2,
        "both still listed"
    );
}
