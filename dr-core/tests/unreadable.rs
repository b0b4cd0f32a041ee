//! Unreadable manifests never shrink the repository: a committed backup whose manifest is
//! invalid JSON, of a newer format, or cannot be fetched at all is listed as unreadable,
//! keeps every object through orphan removal, blocks a "latest" that would have been it, and
//! fails the verification of every backup that depends on it.

use std::sync::Arc;

use dr_core::object_store::memory::InMemory;
use dr_core::object_store::path::Path;
use dr_core::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use dr_core::{BackupOptions, BackupSelector, Error, Identities, Repository, VerifyLevel};
use dr_testing::{FaultyStore, StreamSource};
use futures::TryStreamExt;

#[derive(Debug, Clone, Copy)]
enum Damage {
    InvalidJson,
    NewerFormat,
    GetAlwaysFails,
}

const DAMAGES: [Damage; 3] = [
    Damage::InvalidJson,
    Damage::NewerFormat,
    Damage::GetAlwaysFails,
];

async fn keys(store: &dyn ObjectStore) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// A repository with a base backup and an incremental over it, then the base's manifest
/// damaged as `damage` says; returns the repository (over the damaging store), the raw
/// store, and the base's and increment's ids.
async fn damaged_chain(damage: Damage) -> (Repository, Arc<dyn ObjectStore>, String, String) {
    let raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ids = Identities::generate();
    let writer = Repository::init(raw.clone(), "memory://", &ids.to_recipients())
        .await
        .unwrap();
    let source = StreamSource {
        seed: 7,
        size: 300_000,
    };
    let base = writer
        .backup("db", &source, &BackupOptions::default())
        .await
        .unwrap();
    let mut opts = BackupOptions::default();
    opts.depends_on = vec![base.id.clone()];
    // Ids sort by the second they start in: make the increment the newer one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let increment = writer.backup("db", &source, &opts).await.unwrap();
    let key = format!("backups/db/{}/manifest.json", base.id);
    let store: Arc<dyn ObjectStore> = match damage {
        Damage::InvalidJson => {
            put(&raw, &key, b"{\"format_version\": 1, \"id\": ").await;
            raw.clone()
        }
        Damage::NewerFormat => {
            let mut json: serde_json::Value =
                serde_json::from_slice(&base.to_json().unwrap()).unwrap();
            json["format_version"] = 99.into();
            put(&raw, &key, &serde_json::to_vec(&json).unwrap()).await;
            raw.clone()
        }
        Damage::GetAlwaysFails => Arc::new(FaultyStore::new(raw.clone()).fail_gets_of(key)),
    };
    let repo = Repository::open(store, "memory://")
        .await
        .unwrap()
        .with_identities(ids);
    (repo, raw, base.id, increment.id)
}

async fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: &[u8]) {
    store
        .put(&Path::from(key), PutPayload::from(bytes.to_vec()))
        .await
        .unwrap();
}

#[tokio::test]
async fn unreadable_manifests_are_listed_beside_the_readable() {
    for damage in DAMAGES {
        let (repo, _, base, increment) = damaged_chain(damage).await;
        let listing = repo.list(None).await.unwrap();
        let readable: Vec<&str> = listing.backups.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(readable, [increment.as_str()], "{damage:?}");
        assert_eq!(listing.unreadable.len(), 1, "{damage:?}");
        let unreadable = &listing.unreadable[0];
        assert_eq!(
            (unreadable.source.as_str(), unreadable.id.as_str()),
            ("db", base.as_str())
        );
        assert_eq!(
            unreadable.newer_format,
            matches!(damage, Damage::NewerFormat),
            "{damage:?}: {unreadable:?}"
        );
        assert!(!listing.is_complete());
        // The same through a listing of the one source.
        assert_eq!(repo.list(Some("db")).await.unwrap().unreadable.len(), 1);
    }
}

#[tokio::test]
async fn orphan_removal_with_zero_grace_deletes_nothing_of_them() {
    for damage in DAMAGES {
        let (repo, raw, base, _) = damaged_chain(damage).await;
        let before = keys(raw.as_ref()).await;
        assert!(
            before.iter().filter(|k| k.contains(&base)).count() >= 3,
            "{before:?}"
        );
        assert!(repo.orphans().await.unwrap().is_empty(), "{damage:?}");
        let future = chrono::Utc::now() + chrono::TimeDelta::days(1);
        let removed = repo.remove_orphans(future).await.unwrap();
        assert!(removed.is_empty(), "{damage:?}: removed {removed:?}");
        assert_eq!(keys(raw.as_ref()).await, before, "{damage:?}");
    }
}

#[tokio::test]
async fn real_orphans_beside_them_are_still_removed() {
    let (repo, raw, _, _) = damaged_chain(Damage::InvalidJson).await;
    put(
        &raw,
        "backups/db/20200101T000000Z-dead/db.000000.zst.age",
        b"left",
    )
    .await;
    let future = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let removed = repo.remove_orphans(future).await.unwrap();
    let removed: Vec<&str> = removed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        removed,
        ["backups/db/20200101T000000Z-dead/db.000000.zst.age"]
    );
}

#[tokio::test]
async fn latest_never_quietly_skips_an_unreadable_newest_backup() {
    let (repo, _, base, increment) = damaged_chain(Damage::InvalidJson).await;
    // The newest is readable: latest is it.
    let latest = repo.find("db", &BackupSelector::Latest).await.unwrap();
    assert_eq!(latest.id, increment);
    // A time before the increment would have chosen the unreadable base: refused.
    let before_increment = latest.started_at - chrono::TimeDelta::milliseconds(500);
    let err = repo
        .find("db", &BackupSelector::AtOrBefore(before_increment))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnreadableManifest { .. }), "{err}");
    assert!(err.to_string().contains(&base), "{err}");
    // By id: the manifest's own error.
    let err = repo
        .find("db", &BackupSelector::Id(base))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadManifest { .. }), "{err}");
}

#[tokio::test]
async fn a_damaged_base_fails_the_verification_of_its_increment() {
    for damage in DAMAGES {
        let (repo, _, base, increment) = damaged_chain(damage).await;
        let manifest = repo
            .find("db", &BackupSelector::Id(increment))
            .await
            .unwrap();
        let problems = repo
            .verify_dependencies(&manifest, VerifyLevel::Checksums)
            .await
            .unwrap();
        assert_eq!(problems.len(), 1, "{damage:?}: {problems:?}");
        assert!(problems[0].contains(&base), "{problems:?}");
    }
}

#[tokio::test]
async fn a_damaged_part_of_the_base_fails_the_increment_naming_the_object() {
    let raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ids = Identities::generate();
    let repo = Repository::init(raw.clone(), "memory://", &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids);
    let source = StreamSource {
        seed: 3,
        size: 1000,
    };
    let base = repo
        .backup("db", &source, &BackupOptions::default())
        .await
        .unwrap();
    let mut opts = BackupOptions::default();
    opts.depends_on = vec![base.id.clone()];
    let increment = repo.backup("db", &source, &opts).await.unwrap();
    let part = format!(
        "backups/db/{}/{}",
        base.id, base.artifacts[0].parts[0].object
    );
    let mut bytes = raw
        .get(&Path::from(part.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    put(&raw, &part, &bytes).await;
    for level in [
        VerifyLevel::Quick,
        VerifyLevel::Checksums,
        VerifyLevel::Restore,
    ] {
        let problems = repo.verify_dependencies(&increment, level).await.unwrap();
        if level == VerifyLevel::Quick {
            // A same-size flip is only seen by reading.
            assert!(problems.is_empty(), "{problems:?}");
            continue;
        }
        assert_eq!(problems.len(), 1, "{level:?}: {problems:?}");
        assert!(problems[0].contains(&part), "{problems:?}");
    }
}

#[tokio::test]
async fn status_reports_a_newest_backup_whose_base_is_unreadable_or_gone() {
    let (repo, _, base, _) = damaged_chain(Damage::InvalidJson).await;
    let listing = repo.list(None).await.unwrap();
    let mut facts = dr_core::status::SourceFacts {
        source: "db".into(),
        backups: listing.backups.clone(),
        unreadable: listing.unreadable.clone(),
        ..Default::default()
    };
    let status = dr_core::status::evaluate(&facts, chrono::Utc::now());
    let chain: Vec<&String> = status
        .problems
        .iter()
        .filter(|p| p.contains("cannot be restored"))
        .collect();
    assert_eq!(chain.len(), 1, "{:?}", status.problems);
    assert!(chain[0].contains(&base) && chain[0].contains("unreadable"));
    assert!(
        status
            .problems
            .iter()
            .any(|p| p.contains("manifest is unreadable"))
    );
    facts.unreadable.clear();
    let status = dr_core::status::evaluate(&facts, chrono::Utc::now());
    assert!(
        status.problems.iter().any(|p| p.contains("which is gone")),
        "{:?}",
        status.problems
    );
}

#[tokio::test]
async fn the_base_of_a_kept_increment_is_never_an_orphan_even_without_its_manifest() {
    let (repo, raw, base, _) = damaged_chain(Damage::InvalidJson).await;
    let manifest = format!("backups/db/{base}/manifest.json");
    raw.delete(&Path::from(manifest.as_str())).await.unwrap();
    let before: Vec<String> = keys(raw.as_ref())
        .await
        .into_iter()
        .filter(|k| k.contains(&base))
        .collect();
    assert!(!before.is_empty());
    let future = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let removed = repo.remove_orphans(future).await.unwrap();
    assert!(removed.is_empty(), "removed {removed:?}");
    let after: Vec<String> = keys(raw.as_ref())
        .await
        .into_iter()
        .filter(|k| k.contains(&base))
        .collect();
    assert_eq!(after, before);
}
