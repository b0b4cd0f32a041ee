//! Several backups, orphan removal with no grace period and verification at once on one
//! repository (local and S3): everything committed survives and verifies, and nothing a
//! running backup is writing is removed (its lease protects it). Leases of dead backups do
//! not protect anything: the parts they left are removed.

use std::sync::Arc;
use std::time::Duration;

use dr_core::object_store::path::Path;
use dr_core::object_store::{ObjectStore, ObjectStoreExt};
use dr_core::{BackupOptions, Identities, PipelineOptions, Repository, VerifyLevel};
use dr_testing::{MixedData, S3Server, StreamSource};

async fn repository(store: Arc<dyn ObjectStore>) -> Repository {
    // Slow uploads (each put returns 150 ms after the object is there), so that the janitor
    // runs many times while parts are written and not yet committed.
    let store: Arc<dyn ObjectStore> =
        Arc::new(dr_testing::FaultyStore::new(store).with_put_delay(Duration::from_millis(150)));
    let identities = Identities::generate();
    Repository::init(store, "concurrency", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
        .with_pipeline(
            PipelineOptions::default()
                .with_part_size(dr_testing::conformance::SMALL_PART)
                .with_threads(2),
        )
}

async fn at_once(repo: Repository) {
    let mut tasks = tokio::task::JoinSet::new();
    for seed in 0..4u64 {
        let repo = repo.clone();
        tasks.spawn(async move {
            let source = StreamSource {
                seed,
                size: 2 << 20,
            };
            repo.backup(
                &format!("s{}", seed % 2),
                &source,
                &BackupOptions::default(),
            )
            .await
            .map(|m| (seed, m))
        });
    }
    // Meanwhile: orphan removal with no grace at all, and verification of what is listed.
    let janitor = repo.clone();
    let cleaning = tokio::spawn(async move {
        let mut removed = 0;
        for _ in 0..20 {
            removed += remove_all_orphans(&janitor).await.len();
            for m in janitor.list(None).await.unwrap().backups {
                let report = janitor
                    .reader(m)
                    .verify_objects(VerifyLevel::Checksums)
                    .await
                    .unwrap();
                assert!(report.is_ok(), "{:?}", report.problems);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        removed
    });
    let mut committed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        committed.push(
            done.unwrap()
                .expect("a backup lost its parts to orphan removal"),
        );
    }
    assert_eq!(cleaning.await.unwrap(), 0, "nothing was an orphan");
    assert_eq!(repo.list(None).await.unwrap().len(), 4);
    for (seed, manifest) in committed {
        let mut sink = dr_testing::data::HashingSink::default();
        repo.reader(manifest)
            .copy_artifact("data", &mut sink)
            .await
            .unwrap();
        assert_eq!(sink.hex(), MixedData::sha256(seed, 2 << 20));
    }
}

/// Plants one part of backup `id` of `s9` and its lease held by `host`/`pid`; returns the
/// part's and the lease's keys.
async fn plant(repo: &Repository, id: &str, host: &str, pid: u32) -> (Path, Path) {
    let store = repo.store();
    let part = Path::from(format!("backups/s9/{id}/data.000000.zst.age"));
    store.put(&part, b"partial".to_vec().into()).await.unwrap();
    let lease = serde_json::json!({
        "source": "s9", "backup_id": id, "host": host, "pid": pid,
        "expires_at": "2999-01-01T00:00:00Z"
    });
    let key = Path::from(format!("locks/s9/{id}.json"));
    store
        .put(&key, serde_json::to_vec(&lease).unwrap().into())
        .await
        .unwrap();
    (part, key)
}

/// Orphan removal with no grace period at all.
async fn remove_all_orphans(repo: &Repository) -> Vec<dr_core::Orphan> {
    repo.remove_orphans(chrono::Utc::now() + chrono::TimeDelta::days(1))
        .await
        .unwrap()
}

/// A dead backup (a lease of a process that no longer exists on this host) is cleaned up;
/// a live lease of another host protects its backup's parts until it expires.
async fn dead_backup_is_cleaned(repo: &Repository) {
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let (_, dead_lease) = plant(repo, "20200101T000000Z-dead", here.trim(), 999_999_999).await;
    let removed = remove_all_orphans(repo).await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        repo.store().head(&dead_lease).await.is_err(),
        "the stale lease is removed too"
    );

    let (live_part, _) = plant(repo, "20200101T000000Z-live", "elsewhere", 1).await;
    let removed = remove_all_orphans(repo).await;
    assert!(removed.is_empty(), "{removed:?}");
    assert!(repo.store().head(&live_part).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory() {
    let root = tempfile::tempdir().unwrap();
    let store = dr_storage::open_store(root.path().to_str().unwrap(), &[], true)
        .unwrap()
        .store();
    let repo = repository(store).await;
    at_once(repo.clone()).await;
    dead_backup_is_cleaned(&repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_compatible_server() {
    let server = S3Server::start();
    let options = server.options();
    let opts: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let store = dr_storage::open_store(&server.url("concurrency"), &opts, false)
        .unwrap()
        .store();
    let repo = repository(store).await;
    at_once(repo.clone()).await;
    dead_backup_is_cleaned(&repo).await;
}
