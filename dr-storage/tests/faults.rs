//! Backup, restore, verify, copy and delete under a faulty store (local directory and moto
//! S3 behind `FaultyStore`): transient faults (every n-th call fails once) are retried and
//! every operation succeeds with the right bytes; permanent faults fail with a clear error,
//! nothing half-written is listed and no committed backup is damaged.

use std::sync::Arc;

use dr_core::copy::copy_backup;
use dr_core::object_store::ObjectStore;
use dr_core::{BackupOptions, Identities, PipelineOptions, Repository, VerifyLevel};
use dr_testing::data::HashingSink;
use dr_testing::{FaultyStore, MixedData, S3Server, StreamSource};

const SIZE: u64 = 3 << 20;

fn pipeline() -> PipelineOptions {
    PipelineOptions::default()
        .with_part_size(dr_testing::conformance::SMALL_PART)
        .with_threads(2)
}

async fn repo_on(store: Arc<dyn ObjectStore>, identities: &Identities) -> Repository {
    let repo = match Repository::open(store.clone(), "faulty").await {
        Ok(repo) => repo,
        Err(_) => Repository::init(store, "faulty", &identities.to_recipients())
            .await
            .unwrap(),
    };
    repo.with_identities(identities.clone())
        .with_pipeline(pipeline())
}

async fn restored_hash(repo: &Repository, manifest: dr_core::Manifest) -> dr_core::Result<String> {
    let mut sink = HashingSink::default();
    repo.reader(manifest)
        .copy_artifact("data", &mut sink)
        .await?;
    Ok(sink.hex())
}

/// The matrix on one kind of store; `fresh(name)` gives an empty store.
async fn matrix(fresh: impl Fn(&str) -> Arc<dyn ObjectStore>) {
    let identities = Identities::generate();
    let expected = MixedData::sha256(7, SIZE);

    // Transient: every 3rd call of each kind fails once; everything still works.
    let inner = fresh("transient");
    let flaky: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(inner.clone()).fail_every_nth(3));
    let repo = repo_on(flaky.clone(), &identities).await;
    let source = StreamSource {
        seed: 7,
        size: SIZE,
    };
    let manifest = repo
        .backup("db", &source, &BackupOptions::default())
        .await
        .unwrap();
    assert!(manifest.parts().count() > 10, "enough calls to hit faults");
    assert_eq!(
        restored_hash(&repo, manifest.clone()).await.unwrap(),
        expected
    );
    let report = repo
        .reader(manifest.clone())
        .verify_objects(VerifyLevel::Checksums)
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let copy_store: Arc<dyn ObjectStore> =
        Arc::new(FaultyStore::new(fresh("copy")).fail_every_nth(4));
    let copy = repo_on(copy_store, &identities).await;
    copy_backup(&repo, &copy, &manifest).await.unwrap();
    assert_eq!(
        restored_hash(&copy, manifest.clone()).await.unwrap(),
        expected
    );
    assert_eq!(repo.list(None).await.unwrap().len(), 1);
    repo.delete(&manifest).await.unwrap();
    assert!(repo.list(None).await.unwrap().is_empty());

    // Permanent put failures: the backup fails, saying so; nothing is listed; the backup
    // committed before is untouched.
    let inner = fresh("permanent");
    let clean = repo_on(inner.clone(), &identities).await;
    let kept = clean
        .backup("db", &source, &BackupOptions::default())
        .await
        .unwrap();
    let broken: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(inner.clone()).fail_put_from(4));
    let failing = repo_on(broken, &identities).await;
    let err = failing
        .backup(
            "db",
            &StreamSource {
                seed: 8,
                size: SIZE,
            },
            &BackupOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("injected failure on put"), "{err}");
    let listed = clean.list(None).await.unwrap().backups;
    assert_eq!(listed.len(), 1, "only the committed backup is listed");
    assert_eq!(listed[0].id, kept.id);
    assert_eq!(restored_hash(&clean, kept.clone()).await.unwrap(), expected);

    // Permanent get failures: the restore fails before it ever reports the end.
    let unreadable: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(inner).fail_get_from(3));
    let reading = repo_on(unreadable, &identities).await;
    let err = restored_hash(&reading, kept).await.unwrap_err().to_string();
    assert!(err.contains("injected failure on get"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_under_faults() {
    let root = tempfile::tempdir().unwrap();
    matrix(|case| {
        let path = root.path().join(case);
        dr_storage::open_store(path.to_str().unwrap(), &[], true)
            .unwrap()
            .store()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_under_faults() {
    let server = S3Server::start();
    let options = server.options();
    matrix(|case| {
        let opts: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
        dr_storage::open_store(&server.url(case), &opts, false)
            .unwrap()
            .store()
    })
    .await;
}
