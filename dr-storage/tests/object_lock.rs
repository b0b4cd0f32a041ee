//! S3 Object Lock against a real S3-compatible server (moto) on 127.0.0.1: a backup on a
//! lock-enabled bucket is locked until its keep date, which boto3 (not dr) confirms and an
//! attacker's deletes cannot undo; a bucket without lock gets none and says so.

use chrono::{TimeDelta, Utc};
use dr_core::{BackupOptions, Identities, Repository};
use dr_testing::sources::StreamSource;
use dr_testing::{LockOracle, S3Server};

fn options(server: &S3Server) -> Vec<(&'static str, String)> {
    server.options()
}

async fn repository(server: &S3Server, url: &str) -> Repository {
    let opts = options(server);
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let identities = Identities::generate();
    dr_storage::init_repository(url, &opts, &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_on_a_locked_bucket_is_locked_until_its_keep_date() {
    let server = S3Server::start();
    let oracle = LockOracle::new(&server);
    oracle.create_locked_bucket("locked");
    let repo = repository(&server, "s3://locked/repo").await;
    let lock = repo.bucket_lock().await.unwrap();
    assert!(
        lock.is_some(),
        "Object Lock not detected on a lock-enabled bucket"
    );

    let until = Utc::now() + TimeDelta::days(3);
    let mut opts = BackupOptions::default();
    opts.retain_until = Some(until);
    let source = StreamSource {
        seed: 3,
        size: 5 << 20,
    };
    let manifest = repo.backup("app", &source, &opts).await.unwrap();

    let dir = format!("repo/backups/app/{}/", manifest.id);
    let seen = oracle.retention("locked", &dir);
    assert!(seen.len() >= 3, "parts, SHA256SUMS and manifest: {seen:?}");
    for (key, (mode, locked_until)) in &seen {
        assert_eq!(mode.as_deref(), Some("GOVERNANCE"), "{key}");
        let locked_until = locked_until.unwrap_or_else(|| panic!("{key} has no retention"));
        assert!(
            (locked_until - until).num_seconds().abs() <= 1,
            "{key}: locked until {locked_until}, asked {until}"
        );
    }

    // An attacker with delete rights cannot remove a locked version.
    let attempts = oracle.purge("locked", &dir);
    assert!(!attempts.is_empty());
    for (version, outcome) in &attempts {
        assert_ne!(
            outcome, "deleted",
            "{version} of a locked backup was deleted"
        );
    }

    let kept = [(&manifest, Utc::now() + TimeDelta::days(2))];
    let report = repo.check_locks(&kept).await.unwrap();
    assert!(report.bucket_locked);
    assert_eq!(report.objects_checked, seen.len());
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    let longer = [(&manifest, Utc::now() + TimeDelta::days(10))];
    let report = repo.check_locks(&longer).await.unwrap();
    assert_eq!(
        report.problems.len(),
        seen.len(),
        "every object is short-locked"
    );
    assert!(report.problems[0].to_string().contains("locked only until"));

    // Extending never shortens, and extends every object.
    let extended = repo
        .lock_backup(&manifest, Utc::now() + TimeDelta::days(11))
        .await
        .unwrap();
    assert_eq!(extended, seen.len());
    assert!(repo.check_locks(&longer).await.unwrap().problems.is_empty());
    let shorter = repo.lock_backup(&manifest, until).await.unwrap();
    assert_eq!(shorter, 0, "a shorter lock must not be requested");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_without_object_lock_gets_no_locks_and_says_so() {
    let server = S3Server::start();
    let repo = repository(&server, &server.url("plain")).await;
    assert_eq!(repo.bucket_lock().await.unwrap(), None);
    let source = StreamSource {
        seed: 4,
        size: 1 << 20,
    };
    let manifest = repo
        .backup("app", &source, &BackupOptions::default())
        .await
        .unwrap();
    let report = repo
        .check_locks(&[(&manifest, Utc::now() + TimeDelta::days(1))])
        .await
        .unwrap();
    assert!(!report.bucket_locked, "nothing can be locked here");
    assert_eq!(repo.lock_backup(&manifest, Utc::now()).await.unwrap(), 0);
}
