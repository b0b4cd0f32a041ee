//! The conformance suite: every repository kind (local directory, memory, S3) runs these.
//! Each function takes a fresh, empty store and panics with a message on failure.

use std::sync::Arc;

use dr_core::object_store::path::Path;
use dr_core::object_store::{ObjectStore, ObjectStoreExt};
use dr_core::{
    BackupOptions, BackupSelector, Error, Identities, Manifest, PipelineOptions, Repository,
    VerifyLevel,
};

use crate::damage::{Damage, damage_object, restore_object};
use crate::data::{HashingSink, MixedData};
use crate::faulty::FaultyStore;
use crate::sources::{FailingSource, StreamSource};

/// Part size used by the boundary cases, so that "one part + 1 byte" stays small.
pub const SMALL_PART: usize = 256 * 1024;

/// A repository on `store` with a fresh identity and small parts.
pub async fn new_repo(store: Arc<dyn ObjectStore>, part_size: usize) -> Repository {
    let identities = Identities::generate();
    Repository::init(store, "test://", &identities.to_recipients())
        .await
        .expect("init repository")
        .with_identities(identities)
        .with_pipeline(PipelineOptions::default().with_part_size(part_size))
}

/// Backs up `size` bytes, restores them and compares hash and size; returns the manifest.
pub async fn roundtrip_one(repo: &Repository, seed: u64, size: u64) -> Manifest {
    let manifest = repo
        .backup(
            "stream",
            &StreamSource { seed, size },
            &BackupOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("backup of {size} bytes: {e}"));
    let reader = repo.reader(manifest.clone());
    let mut sink = HashingSink::default();
    reader
        .copy_artifact("data", &mut sink)
        .await
        .expect("restore");
    assert_eq!(sink.bytes, size, "restored size");
    assert_eq!(
        sink.hex(),
        MixedData::sha256(seed, size),
        "restored bytes differ for size {size}"
    );
    manifest
}

/// 0 B, 1 B, exactly one part, one part + 1 B, several parts.
pub async fn roundtrip_boundaries(store: Arc<dyn ObjectStore>) {
    let repo = new_repo(store, SMALL_PART).await;
    let part = SMALL_PART as u64;
    for (seed, size, parts) in [
        (1, 0, 1),
        (2, 1, 1),
        (3, part, 1),
        (4, part + 1, 2),
        (5, 5 * part + 17, 6),
    ] {
        let manifest = roundtrip_one(&repo, seed, size).await;
        assert_eq!(
            manifest.artifacts[0].parts.len(),
            parts,
            "parts for {size} bytes"
        );
        assert_eq!(manifest.artifacts[0].plain_size, size);
    }
}

/// A large round trip with the default part size, checked byte for byte by hash.
pub async fn roundtrip_large(store: Arc<dyn ObjectStore>, size: u64) {
    let identities = Identities::generate();
    let repo = Repository::init(store, "test://", &identities.to_recipients())
        .await
        .expect("init")
        .with_identities(identities);
    let manifest = roundtrip_one(&repo, 99, size).await;
    let verify = repo
        .reader(manifest)
        .verify_objects(VerifyLevel::Checksums)
        .await
        .expect("verify");
    assert!(verify.is_ok(), "{:?}", verify.problems);
}

/// `init` refuses an existing repository, `open` refuses an empty store, list, selectors and
/// delete behave.
pub async fn repository_lifecycle(store: Arc<dyn ObjectStore>) {
    let err = Repository::open(store.clone(), "test://")
        .await
        .expect_err("open empty store");
    assert!(matches!(err, Error::NotInitialised { .. }), "{err}");
    let repo = new_repo(store.clone(), SMALL_PART).await;
    let again = Repository::init(
        store.clone(),
        "test://",
        &repo.recipients().expect("recipients"),
    )
    .await;
    assert!(
        matches!(again, Err(Error::RepositoryExists { .. })),
        "second init must fail"
    );
    let reopened = Repository::open(store.clone(), "test://")
        .await
        .expect("reopen");
    assert_eq!(reopened.config().recipients, repo.config().recipients);

    let mut made = Vec::new();
    for seed in 0..3 {
        made.push(roundtrip_one(&repo, seed, 1000 + seed).await);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let listed = repo.list(Some("stream")).await.expect("list").backups;
    let ids: Vec<&str> = listed.iter().map(|m| m.id.as_str()).collect();
    let expected: Vec<&str> = made.iter().rev().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, expected, "list is newest first");
    let latest = repo
        .find("stream", &BackupSelector::Latest)
        .await
        .expect("latest");
    assert_eq!(latest.id, made[2].id);
    let middle = repo
        .find("stream", &BackupSelector::AtOrBefore(made[1].started_at))
        .await
        .expect("at or before");
    assert_eq!(middle.id, made[1].id);
    let by_id = repo
        .find("stream", &BackupSelector::Id(made[0].id.clone()))
        .await
        .expect("by id");
    assert_eq!(by_id, made[0]);
    let missing = repo
        .find(
            "stream",
            &BackupSelector::Id("20000101T000000Z-0000".into()),
        )
        .await;
    assert!(matches!(missing, Err(Error::BackupNotFound { .. })));

    repo.delete(&made[1]).await.expect("delete");
    assert_eq!(repo.list(None).await.expect("list").len(), 2);
    assert!(
        repo.orphans().await.expect("orphans").is_empty(),
        "delete leaves no orphans"
    );
}

/// `SHA256SUMS` lists every stored object with its hash, as `sha256sum -c` reads it.
pub async fn sha256sums_object(store: Arc<dyn ObjectStore>) {
    let repo = new_repo(store.clone(), SMALL_PART).await;
    let manifest = roundtrip_one(&repo, 11, 3 * SMALL_PART as u64).await;
    let dir = format!("backups/stream/{}", manifest.id);
    let sums = get(&store, &format!("{dir}/SHA256SUMS")).await;
    let text = String::from_utf8(sums).expect("utf8");
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        let (hash, name) = line.split_once("  ").expect("two-space separator");
        let object = get(&store, &format!("{dir}/{name}")).await;
        assert_eq!(dr_core::sha256_hex(&object), hash, "{name}");
    }
}

/// Every object of a backup flipped, truncated and deleted in turn: verify names it, a
/// restore fails with a typed error naming it.
pub async fn damage_is_detected(store: Arc<dyn ObjectStore>) {
    let repo = new_repo(store.clone(), SMALL_PART).await;
    let manifest = roundtrip_one(&repo, 21, 2 * SMALL_PART as u64 + 5).await;
    let dir = format!("backups/stream/{}", manifest.id);
    let mut objects: Vec<String> = manifest.parts().map(|p| p.object.clone()).collect();
    objects.push("SHA256SUMS".into());
    for object in &objects {
        let key = Path::from(format!("{dir}/{object}"));
        let damages = [
            Damage::Flip,
            Damage::FlipHeader,
            Damage::TruncateTail,
            Damage::Delete,
        ];
        for damage in damages {
            let original = damage_object(store.as_ref(), &key, damage).await;
            let report = repo
                .reader(manifest.clone())
                .verify_objects(VerifyLevel::Checksums)
                .await
                .expect("verify");
            assert!(
                report.problems.iter().any(|p| p.contains(object.as_str())),
                "{damage:?} of {object} not reported: {:?}",
                report.problems
            );
            if object != "SHA256SUMS" {
                let err = repo
                    .reader(manifest.clone())
                    .decode_all()
                    .await
                    .expect_err("restore must fail");
                assert!(
                    err.to_string().contains(object.as_str()),
                    "{damage:?} of {object}: {err}"
                );
                assert!(
                    matches!(
                        err,
                        Error::CorruptPart { .. }
                            | Error::DamagedPart { .. }
                            | Error::MissingObject { .. }
                    ),
                    "{damage:?}: {err:?}"
                );
            }
            restore_object(store.as_ref(), &key, original).await;
        }
    }
    let clean = repo
        .reader(manifest)
        .verify_objects(VerifyLevel::Checksums)
        .await
        .expect("verify");
    assert!(
        clean.is_ok(),
        "restored objects verify clean: {:?}",
        clean.problems
    );
}

/// A wrong identity and a missing identity give the clear errors.
pub async fn identity_errors(store: Arc<dyn ObjectStore>) {
    let repo = new_repo(store.clone(), SMALL_PART).await;
    let manifest = roundtrip_one(&repo, 31, 1000).await;
    let stranger = repo.clone().with_identities(Identities::generate());
    let err = stranger
        .reader(manifest.clone())
        .decode_all()
        .await
        .expect_err("wrong key");
    assert!(matches!(err, Error::NoMatchingIdentity { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&manifest.recipients[0]),
        "names the recipient: {err}"
    );
    let keyless = repo.clone().with_identities(Identities::default());
    let err = keyless
        .reader(manifest.clone())
        .decode_all()
        .await
        .expect_err("no key");
    assert!(matches!(err, Error::NoIdentity), "{err:?}");
    let report = keyless
        .reader(manifest)
        .verify_objects(VerifyLevel::Checksums)
        .await
        .expect("verify");
    assert!(
        report.is_ok() && !report.decoded,
        "key-less checksum verify works: {report:?}"
    );
}

/// A source failing midway commits nothing and leaves no orphans behind.
pub async fn failing_source_is_not_listed(store: Arc<dyn ObjectStore>) {
    let repo = new_repo(store, SMALL_PART).await;
    let err = repo
        .backup(
            "failing",
            &FailingSource {
                fail_after: 3 * SMALL_PART as u64,
            },
            &BackupOptions::default(),
        )
        .await
        .expect_err("must fail");
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(
        repo.list(None).await.expect("list").is_empty(),
        "nothing listed"
    );
    let orphans = repo.orphans().await.expect("orphans");
    assert!(orphans.is_empty(), "failed backup cleaned up: {orphans:?}");
}

/// A store failing midway commits nothing; what it leaves is found by the orphan scan.
pub async fn failing_store_is_not_listed(store: Arc<dyn ObjectStore>) {
    let healthy = new_repo(store.clone(), SMALL_PART).await;
    let faulty: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(store.clone()).fail_put_from(3));
    let repo = Repository::open(faulty, "faulty://")
        .await
        .expect("open")
        .with_pipeline(PipelineOptions::default().with_part_size(SMALL_PART));
    let err = repo
        .backup(
            "stream",
            &StreamSource {
                seed: 1,
                size: 6 * SMALL_PART as u64,
            },
            &BackupOptions::default(),
        )
        .await
        .expect_err("store fails");
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(
        healthy.list(None).await.expect("list").is_empty(),
        "nothing listed"
    );
    let orphans = healthy.orphans().await.expect("orphans");
    let removed = healthy
        .remove_orphans(chrono::Utc::now() + chrono::TimeDelta::minutes(1))
        .await
        .expect("remove orphans");
    assert_eq!(orphans.len(), removed.len());
    assert!(healthy.orphans().await.expect("orphans").is_empty());
}

/// Two backups running at once into one repository both commit.
pub async fn concurrent_backups_commit(store: Arc<dyn ObjectStore>) {
    let repo = new_repo(store, SMALL_PART).await;
    let size = 4 * SMALL_PART as u64;
    let (first, second) = (
        StreamSource { seed: 1, size },
        StreamSource { seed: 2, size },
    );
    let options = BackupOptions::default();
    let (a, b) = tokio::join!(
        repo.backup("stream", &first, &options),
        repo.backup("stream", &second, &options),
    );
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_ne!(a.id, b.id);
    assert_eq!(repo.list(Some("stream")).await.expect("list").len(), 2);
}

/// Runs every case above, each on a fresh store from `fresh`.
pub async fn run_all<F>(fresh: F, large_size: u64)
where
    F: Fn(&str) -> Arc<dyn ObjectStore>,
{
    roundtrip_boundaries(fresh("boundaries")).await;
    repository_lifecycle(fresh("lifecycle")).await;
    sha256sums_object(fresh("sums")).await;
    damage_is_detected(fresh("damage")).await;
    identity_errors(fresh("identity")).await;
    failing_source_is_not_listed(fresh("failing-source")).await;
    failing_store_is_not_listed(fresh("failing-store")).await;
    concurrent_backups_commit(fresh("concurrent")).await;
    if large_size > 0 {
        roundtrip_large(fresh("large"), large_size).await;
    }
}

async fn get(store: &Arc<dyn ObjectStore>, key: &str) -> Vec<u8> {
    let result = store
        .get(&Path::from(key))
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"));
    result.bytes().await.expect("bytes").to_vec()
}
