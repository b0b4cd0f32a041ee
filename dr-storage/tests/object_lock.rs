//! S3 Object Lock against a real S3-compatible server (moto) on 127.0.0.1: a backup on a
//! lock-enabled bucket is locked until its keep date, which boto3 (not dr) confirms and an
//! attacker's deletes cannot undo; a bucket without lock gets none and says so.

use chrono::{TimeDelta, Utc};
use dr_core::ops::System;
use dr_core::ops::prune::PruneReport;
use dr_core::ops::status::StatusReport;
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

async fn prune(repo: &Repository, system: &System) -> dr_core::Result<PruneReport> {
    let options = dr_core::ops::prune::PruneOptions::default();
    dr_core::ops::prune::prune(repo, system, &options, &dr_core::ProgressHandle::default()).await
}

async fn status_of(repo: &Repository, system: &System) -> StatusReport {
    let options = dr_core::ops::status::StatusOptions::default();
    dr_core::ops::status::status(repo, system, &options, &dr_core::ProgressHandle::default())
        .await
        .unwrap()
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
    assert_eq!(extended, seen.len() + 1, "and dr-repo.json");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_with_a_default_retention_still_backs_up_and_prunes() {
    let server = S3Server::start();
    let oracle = LockOracle::new(&server);
    oracle.create_locked_bucket_with_default_retention("defaulted");
    let repo = repository(&server, "s3://defaulted/repo").await;
    let lock = repo.bucket_lock().await.unwrap().expect("lock detected");
    assert_eq!(
        lock.default_mode,
        Some(dr_core::locks::LockMode::Governance)
    );
    assert_eq!(
        lock.default_retention,
        Some(std::time::Duration::from_secs(86_400))
    );
    // Leases (locks/) are deleted after each backup: on a locked bucket that is a delete
    // marker, which S3 allows; the backups themselves are locked by dr for longer.
    for seed in 1..=2 {
        let source = StreamSource {
            seed,
            size: 1 << 20,
        };
        repo.backup("app", &source, &BackupOptions::default())
            .await
            .expect("a backup on a bucket with a default retention");
    }
    let policy = dr_core::RetentionPolicy {
        keep_last: 1,
        ..dr_core::RetentionPolicy::default()
    };
    let system = System::new(dr_core::registry::Registry::default()).with_default_retention(policy);
    let report = prune(&repo, &system)
        .await
        .expect("prune runs on a locked bucket");
    assert_eq!(report.held_by_lock.len(), 1, "{:?}", report.decisions);
    assert!(report.deleted.is_empty());
    assert_eq!(repo.list(Some("app")).await.unwrap().backups.len(), 2);

    // What retention forgot is held, never renewed: a second prune leaves its date alone,
    // so it goes once the lock runs out.
    let held = report.held_by_lock[0].clone();
    let dir = format!("repo/backups/app/{held}/");
    let before = oracle.retention("defaulted", &dir);
    let again = prune(&repo, &system).await.unwrap();
    assert_eq!(again.held_by_lock, vec![held]);
    assert_eq!(
        oracle.retention("defaulted", &dir),
        before,
        "a forgotten backup's lock moved"
    );
    // dr-repo.json, which every restore needs, is locked as long as the kept backups.
    let config = oracle.retention("defaulted", "repo/dr-repo.json");
    let (_, until) = config.values().next().expect("dr-repo.json is listed");
    assert!(
        until.is_some_and(|u| u > Utc::now() + TimeDelta::days(6)),
        "{config:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_a_newest_backup_that_is_not_locked() {
    let server = S3Server::start();
    LockOracle::new(&server).create_locked_bucket("locked");
    let repo = repository(&server, "s3://locked/repo").await;
    // Written by a handle without the lock control plane: nothing locks it.
    let opts = options(&server);
    let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bare = dr_storage::open_store("s3://locked/repo", &opts, false).unwrap();
    let unlocked = Repository::open(bare.store(), "bare").await.unwrap();
    let source = StreamSource {
        seed: 8,
        size: 1 << 20,
    };
    unlocked
        .backup("app", &source, &BackupOptions::default())
        .await
        .unwrap();
    let system = System::new(dr_core::registry::Registry::default());
    let status = status_of(&repo, &system).await;
    let problems = &status.sources[0].problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("not locked long enough")),
        "{problems:?}"
    );
    // Locking it (what prune does for kept backups) clears the problem.
    let manifest = repo.list(Some("app")).await.unwrap().backups.remove(0);
    repo.lock_backup(&manifest, Utc::now() + TimeDelta::days(8))
        .await
        .unwrap();
    let status = status_of(&repo, &system).await;
    assert!(
        !status.sources[0]
            .problems
            .iter()
            .any(|p| p.contains("locked")),
        "{:?}",
        status.sources[0].problems
    );
}
