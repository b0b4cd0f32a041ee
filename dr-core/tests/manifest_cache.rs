//! The manifest cache: a warm listing GETs nothing, a LIST still decides what exists, and a
//! damaged or stale entry is fetched again, never trusted.

use std::sync::Arc;

use dr_core::object_store::ObjectStore;
use dr_core::object_store::local::LocalFileSystem;
use dr_core::{BackupOptions, BackupSelector, Identities, Repository};
use dr_testing::{CountingStore, StreamSource};

struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    counting: Arc<CountingStore>,
    repo: Repository,
    cache: std::path::PathBuf,
    repo_dir: std::path::PathBuf,
}

async fn fixture(backups: usize) -> Fixture {
    let repo_dir = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(repo_dir.path()).unwrap());
    let counting = Arc::new(CountingStore::new(local));
    let ids = Identities::generate();
    let location = format!("file://{}", repo_dir.path().display());
    let repo = Repository::init(counting.clone(), &location, &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids)
        .with_cache_dir(Some(cache_dir.path().to_owned()));
    let source = StreamSource {
        seed: 1,
        size: 1000,
    };
    for _ in 0..backups {
        repo.backup("db", &source, &BackupOptions::default())
            .await
            .unwrap();
    }
    Fixture {
        cache: cache_dir.path().to_owned(),
        repo_dir: repo_dir.path().to_owned(),
        _dirs: (repo_dir, cache_dir),
        counting,
        repo,
    }
}

fn ids(listing: &dr_core::Listing) -> Vec<String> {
    listing.backups.iter().map(|m| m.id.clone()).collect()
}

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn a_warm_listing_gets_no_manifest_and_lists_the_same() {
    let f = fixture(3).await;
    let uncached = f.repo.clone().with_cache_dir(None);
    let before = f.counting.counts();
    let truth = uncached.list(None).await.unwrap();
    assert_eq!(f.counting.counts().since(&before).gets, 3);

    let before = f.counting.counts();
    let cold = f.repo.list(None).await.unwrap();
    let cold_counts = f.counting.counts().since(&before);
    assert_eq!((cold_counts.lists, cold_counts.gets), (1, 3));
    assert_eq!(cache_files(&f.cache).len(), 3, "one entry per manifest");

    let before = f.counting.counts();
    let warm = f.repo.list(None).await.unwrap();
    let latest = f.repo.find("db", &BackupSelector::Latest).await.unwrap();
    let warm_counts = f.counting.counts().since(&before);
    assert_eq!((warm_counts.lists, warm_counts.gets), (2, 0));
    assert_eq!(ids(&warm), ids(&truth));
    assert_eq!(ids(&cold), ids(&truth));
    assert_eq!(latest.id, truth.backups[0].id);
    assert_eq!(
        warm.backups, truth.backups,
        "cached manifests are the stored ones"
    );
}

#[tokio::test]
async fn deleted_backups_vanish_and_a_new_one_is_fetched_once() {
    let f = fixture(2).await;
    let first = f.repo.list(None).await.unwrap();
    f.repo.delete(&first.backups[1]).await.unwrap();
    // A concurrent writer, through another handle on the same repository.
    let other = Repository::open(f.counting.clone(), f.repo.location())
        .await
        .unwrap()
        .with_cache_dir(None);
    let source = StreamSource { seed: 2, size: 500 };
    let added = other
        .backup("web", &source, &BackupOptions::default())
        .await
        .unwrap();

    let before = f.counting.counts();
    let after = f.repo.list(None).await.unwrap();
    assert_eq!(
        f.counting.counts().since(&before).gets,
        1,
        "only the new manifest"
    );
    let mut want = vec![first.backups[0].id.clone(), added.id.clone()];
    want.sort();
    let mut got = ids(&after);
    got.sort();
    assert_eq!(got, want);
    assert_eq!(
        cache_files(&f.cache).len(),
        2,
        "the deleted backup's entry is dropped"
    );
    let before = f.counting.counts();
    f.repo.list(None).await.unwrap();
    assert_eq!(f.counting.counts().since(&before).gets, 0);
}

#[tokio::test]
async fn a_damaged_or_foreign_cache_entry_is_fetched_again() {
    let f = fixture(2).await;
    let truth = f.repo.list(None).await.unwrap();
    let files = cache_files(&f.cache);
    // One entry truncated, the other replaced by a valid entry of the other backup.
    std::fs::write(&files[0], b"{\"size\": 3").unwrap();
    let other = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[0], &other).unwrap();
    std::fs::write(&files[1], b"not json").unwrap();

    let before = f.counting.counts();
    let listed = f.repo.list(None).await.unwrap();
    assert_eq!(f.counting.counts().since(&before).gets, 2);
    assert_eq!(listed.backups, truth.backups);
    assert!(listed.is_complete());
    let before = f.counting.counts();
    assert_eq!(f.repo.list(None).await.unwrap().backups, truth.backups);
    assert_eq!(
        f.counting.counts().since(&before).gets,
        0,
        "the entries were repaired"
    );
}

#[tokio::test]
async fn a_rewritten_manifest_is_not_served_from_the_cache() {
    let f = fixture(1).await;
    let truth = f.repo.list(None).await.unwrap();
    let m = &truth.backups[0];
    let key = f
        .repo_dir
        .join(format!("backups/{}/{}/manifest.json", m.source, m.id));
    std::fs::write(&key, b"{ rotten").unwrap();
    let listed = f.repo.list(None).await.unwrap();
    assert!(listed.backups.is_empty());
    assert_eq!(
        listed.unreadable.len(),
        1,
        "the damage is reported, not hidden"
    );
}

#[tokio::test]
async fn a_recreated_repository_shares_no_entries_and_the_repository_is_untouched() {
    let f = fixture(1).await;
    f.repo.list(None).await.unwrap();
    let objects_before = cache_files(&f.repo_dir);
    // Same location, new repository: its created_at differs.
    let fresh_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(fresh_dir.path()).unwrap());
    let ids = Identities::generate();
    let recreated = Repository::init(store, f.repo.location(), &ids.to_recipients())
        .await
        .unwrap()
        .with_cache_dir(Some(f.cache.clone()));
    assert!(recreated.list(None).await.unwrap().is_empty());
    f.repo.list(None).await.unwrap();
    assert_eq!(
        cache_files(&f.repo_dir),
        objects_before,
        "no object written by listing"
    );
    assert!(!f.cache.starts_with(&f.repo_dir));
}

#[tokio::test]
async fn memory_repositories_have_no_cache_by_default() {
    let store: Arc<dyn ObjectStore> = Arc::new(dr_core::object_store::memory::InMemory::new());
    let ids = Identities::generate();
    let repo = Repository::init(store, "memory://", &ids.to_recipients())
        .await
        .unwrap();
    assert_eq!(repo.cache_dir(), None);
}
