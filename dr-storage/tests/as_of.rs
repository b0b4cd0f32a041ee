//! Restores as of before an attack, on a real S3-compatible server (moto) on 127.0.0.1: an
//! attacker overwrites and deletes every object of a versioned repository; the repository
//! read as of before the attack lists the backup again and restores it byte for byte
//! (compared with the generated original, not with anything dr read). On a lock-enabled
//! bucket the attacker cannot even purge the versions.

use chrono::{DateTime, Utc};
use dr_core::{BackupOptions, BackupSelector, Identities, Repository};
use dr_testing::sources::StreamSource;
use dr_testing::{LockOracle, MixedData, S3Server};

const SIZE: u64 = 3 << 20;

fn options(server: &S3Server) -> Vec<(&'static str, String)> {
    server.options()
}

async fn backed_up(server: &S3Server, url: &str, identities: &Identities) -> Repository {
    let opts = options(server);
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let repo = dr_storage::init_repository(url, &opts, &identities.to_recipients())
        .await
        .unwrap();
    let source = StreamSource {
        seed: 9,
        size: SIZE,
    };
    repo.backup("app", &source, &BackupOptions::default())
        .await
        .unwrap();
    repo
}

/// A moment strictly between the backup and the attack (S3 times have second precision).
async fn a_moment_later() -> DateTime<Utc> {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let at = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    at
}

async fn restored_as_of(server: &S3Server, url: &str, at: DateTime<Utc>, id: &Identities) {
    let opts = options(server);
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let repo = dr_storage::as_of::open_repository_as_of(url, &opts, at)
        .await
        .expect("the repository as of before the attack opens")
        .with_identities(id.clone());
    let listing = repo.list(Some("app")).await.unwrap();
    assert_eq!(
        listing.backups.len(),
        1,
        "the deleted backup is listed again"
    );
    assert!(listing.unreadable.is_empty(), "{:?}", listing.unreadable);
    let reader = repo
        .open_backup("app", &BackupSelector::Latest)
        .await
        .unwrap();
    let mut restored = Vec::new();
    reader.copy_artifact("data", &mut restored).await.unwrap();
    assert!(
        restored == MixedData::bytes(9, SIZE),
        "restored bytes differ from the original"
    );
    let err = repo.delete(&listing.backups[0]).await.unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versioned_repository_restores_as_of_before_overwrites_and_deletes() {
    let server = S3Server::start();
    let oracle = LockOracle::new(&server);
    oracle.create_versioned_bucket("versioned");
    let url = "s3://versioned/repo";
    let identities = Identities::generate();
    backed_up(&server, url, &identities).await;
    let before_attack = a_moment_later().await;

    oracle.overwrite_all("versioned", "repo/");
    oracle.delete_all("versioned", "repo/");
    let opts = options(&server);
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let live = dr_storage::open_repository(url, &opts).await;
    assert!(live.is_err(), "the attack removed the live repository");

    restored_as_of(&server, url, before_attack, &identities).await;
    let before_anything = before_attack - chrono::TimeDelta::hours(1);
    let err = dr_storage::as_of::open_repository_as_of(url, &opts, before_anything)
        .await
        .unwrap_err();
    assert!(
        matches!(err, dr_core::Error::NotInitialised { .. }),
        "nothing existed then: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_locked_bucket_an_attacker_cannot_purge_and_as_of_restores() {
    let server = S3Server::start();
    let oracle = LockOracle::new(&server);
    oracle.create_locked_bucket("locked");
    let url = "s3://locked/repo";
    let identities = Identities::generate();
    backed_up(&server, url, &identities).await;
    let before_attack = a_moment_later().await;

    let purged = oracle.purge("locked", "repo/backups/");
    assert!(
        purged.values().all(|outcome| outcome != "deleted"),
        "a locked version was deleted: {purged:?}"
    );
    oracle.delete_all("locked", "repo/");
    restored_as_of(&server, url, before_attack, &identities).await;

    // The 3 AM question: are the versions the view reads still locked? Asked of those
    // versions, not of the deleted current objects.
    let opts = options(&server);
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let view = dr_storage::as_of::open_repository_as_of(url, &opts, before_attack)
        .await
        .unwrap();
    let system = dr_core::ops::System::new(dr_core::registry::Registry::default());
    let report = dr_core::ops::locks::verify_locks(&view, &system, None, Utc::now())
        .await
        .expect("locks of the versions in the view");
    assert!(report.bucket_locked);
    assert!(report.objects_checked >= 3);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_on_a_bucket_without_versioning_is_a_clear_error() {
    let server = S3Server::start();
    let url = server.url("plain");
    let identities = Identities::generate();
    backed_up(&server, &url, &identities).await;
    let opts = options(&server);
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let err = dr_storage::as_of::open_repository_as_of(&url, &opts, Utc::now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("versioning off"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_on_a_store_without_versions_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    dr_storage::init_repository(url, &[], &Identities::generate().to_recipients())
        .await
        .unwrap();
    let err = dr_storage::as_of::open_repository_as_of(url, &[], Utc::now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("versioned bucket"), "{err}");
}
