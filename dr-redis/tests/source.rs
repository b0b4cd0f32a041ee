//! Redis through the kind registry, as dr-cli and library users will call it: built from
//! settings, backed up, restored as a file and by RESTORE replay (into another server, and
//! into the source's own with a safety backup), compared with the fingerprint of
//! dr_testing::fidelity::redis (redis-cli, not dr); typos and unsupported options refused
//! with nothing changed.

use std::sync::Arc;

use dr_core::{
    BackupOptions, BackupSelector, Error, Identities, Manifest, Registry, Repository,
    RestoreOptions, RestoreRank, RestoreRequest, Source, SourceSettings,
};
use dr_testing::RedisServer;
use dr_testing::fidelity::redis::{
    EXPIRY_TOLERANCE_MS, assert_faithful_within, fingerprint_file, fingerprint_server,
};
use serde_json::json;

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://test", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

fn build(values: serde_json::Value) -> dr_core::Result<Arc<dyn Source>> {
    let mut registry = Registry::new();
    dr_redis::register(&mut registry);
    registry.build_source("redis", &SourceSettings::new(values))
}

async fn backup(repo: &Repository, source: &dyn Source) -> Manifest {
    let capture = source.backup(repo, "cache", false).await.unwrap();
    repo.backup("cache", capture.as_ref(), &BackupOptions::default())
        .await
        .unwrap()
}

async fn restore(
    repo: &Repository,
    source: &dyn Source,
    options: &RestoreOptions,
) -> dr_core::Result<dr_core::RestoreReport> {
    let selector = BackupSelector::Latest;
    source
        .restore(&RestoreRequest::new(repo, "cache", &selector, options))
        .await
}

#[tokio::test]
async fn file_restore_and_replays_are_faithful() {
    let server = RedisServer::start();
    server.load_fidelity_corpus();
    let repo = repository().await;
    let source = build(json!({ "url": server.url() })).unwrap();
    assert_eq!(source.kind(), "redis.rdb");
    assert_eq!(source.restore_rank(), RestoreRank::Cache);
    let original = fingerprint_server(&server);
    let manifest = backup(&repo, source.as_ref()).await;
    assert_eq!(manifest.kind, "redis.rdb");

    // A file restore (options.target; the server saves elsewhere, so it is not refused).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dump.rdb");
    restore(
        &repo,
        source.as_ref(),
        &RestoreOptions::default().with_target(&file),
    )
    .await
    .unwrap();
    assert_eq!(fingerprint_file(&file).get("file.mode"), Some("600"));
    let loaded = RedisServer::start_on(dir, None);
    assert_faithful_within(
        "file restore",
        &original,
        &fingerprint_server(&loaded),
        EXPIRY_TOLERANCE_MS,
    );

    // RESTORE replay into another, empty server.
    let other = RedisServer::start();
    let options = RestoreOptions::default().with_server(Some(other.url()));
    restore(&repo, source.as_ref(), &options).await.unwrap();
    assert_faithful_within(
        "replay",
        &original,
        &fingerprint_server(&other),
        EXPIRY_TOLERANCE_MS,
    );

    // Replay into the source's own server after it changed: refused without force, then a
    // safety backup of the changed server is taken first.
    server.cli(&["SET", "changed", "after the backup"]);
    let refused = restore(&repo, source.as_ref(), &RestoreOptions::default()).await;
    assert!(
        matches!(refused, Err(Error::TargetExists { .. })),
        "{refused:?}"
    );
    let report = restore(
        &repo,
        source.as_ref(),
        &RestoreOptions::default().with_force(true),
    )
    .await
    .unwrap();
    let safety = report.safety_backup_id.clone().expect("a safety backup");
    let listing = repo.list(Some("cache")).await.unwrap();
    let taken = listing.backups.iter().find(|m| m.id == safety).unwrap();
    assert!(
        taken.labels.iter().any(|l| l == "pre-restore"),
        "{:?}",
        taken.labels
    );
    server.cli(&["DEL", "changed"]);
    assert_faithful_within(
        "replay in place",
        &original,
        &fingerprint_server(&server),
        EXPIRY_TOLERANCE_MS,
    );

    // The kind alone: a scratch restore of the RDB.
    let mut registry = Registry::new();
    dr_redis::register(&mut registry);
    let scratch = tempfile::tempdir().unwrap();
    let kind = registry.kind("redis.rdb").unwrap();
    kind.scratch_restorer(&repo, scratch.path())
        .unwrap()
        .restore(&repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap();
    assert!(
        registry
            .kind("redis.logical")
            .unwrap()
            .scratch_restorer(&repo, scratch.path())
            .is_none()
    );
    assert!(dr_redis::scratch_path(scratch.path()).is_file());
    let loaded = RedisServer::start_on(scratch, None);
    assert_faithful_within(
        "scratch restore",
        &original,
        &fingerprint_server(&loaded),
        EXPIRY_TOLERANCE_MS,
    );
}

#[tokio::test]
async fn typos_unsupported_options_and_missing_passwords_are_refused() {
    let typo = build(json!({ "url": "redis://127.0.0.1:1", "rdb_pat": "/x" }));
    assert!(
        matches!(&typo, Err(Error::Usage(m)) if m.contains("rdb_pat")),
        "{:?}",
        typo.err()
    );
    let bad_url = build(json!({ "url": "http://127.0.0.1:1" }));
    assert!(
        matches!(&bad_url, Err(Error::Usage(_))),
        "{:?}",
        bad_url.err()
    );

    let server = RedisServer::start();
    server.load_fidelity_corpus();
    let repo = repository().await;
    let source = build(json!({ "url": server.url(), "mode": "logical" })).unwrap();
    assert_eq!(source.kind(), "redis.logical");
    backup(&repo, source.as_ref()).await;
    server.cli(&["SET", "changed", "after the backup"]);
    let changed = fingerprint_server(&server);
    let cases = [
        RestoreOptions::default().with_in_place(true),
        RestoreOptions::default().with_only(vec!["k".into()]),
        RestoreOptions::default().with_globals(true),
        RestoreOptions::default().with_recovery_target(Some("latest".into())),
        RestoreOptions::default().with_dry_run(true),
        RestoreOptions::default().with_start_port(Some(1)),
    ];
    for options in cases {
        let refused = restore(&repo, source.as_ref(), &options.with_force(true)).await;
        assert!(
            matches!(&refused, Err(Error::Usage(m)) if m.contains("nothing was read or written")),
            "{refused:?}"
        );
    }
    assert_faithful_within(
        "refused restores",
        &changed,
        &fingerprint_server(&server),
        EXPIRY_TOLERANCE_MS,
    );

    let unset =
        build(json!({ "url": server.url(), "password_env": "DR_TEST_UNSET_REDIS_PW" })).unwrap();
    let err = unset.backup(&repo, "cache", false).await.err().unwrap();
    assert!(err.to_string().contains("DR_TEST_UNSET_REDIS_PW"), "{err}");
    let explained = unset.explain(Error::backend(
        "redis",
        "login",
        "WRONGPASS invalid username-password pair",
    ));
    assert!(
        explained.to_string().contains("DR_TEST_UNSET_REDIS_PW"),
        "{explained}"
    );
}
