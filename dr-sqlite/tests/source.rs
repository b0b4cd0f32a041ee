//! SQLite through the kind registry, as dr-cli and library users will call it: built from
//! settings, backed up, restored (in place and to another path), compared with the `sqlite3`
//! fingerprint (dr_testing::fidelity::sqlite); settings typos and options SQLite does not
//! support are refused with nothing changed.

use std::sync::Arc;

use dr_core::object_store::local::LocalFileSystem;
use dr_core::{
    BackupOptions, BackupSelector, Error, Identities, Manifest, Registry, Repository,
    RestoreOptions, RestoreRank, RestoreRequest, Source, SourceSettings, VerifyLevel,
};
use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::sqlite::{Journal, fingerprint_database, make_corpus, sqlite3};
use serde_json::json;

async fn repository(dir: &std::path::Path) -> Repository {
    std::fs::create_dir(dir.join("repo")).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.join("repo")).unwrap());
    let ids = Identities::generate();
    Repository::init(store, "local", &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids)
}

fn build(values: serde_json::Value) -> dr_core::Result<Arc<dyn Source>> {
    let mut registry = Registry::new();
    dr_sqlite::register(&mut registry);
    registry.build_source("sqlite", &SourceSettings::new(values))
}

async fn backup(repo: &Repository, source: &dyn Source) -> Manifest {
    let capture = source.backup(repo, "app", false).await.unwrap();
    repo.backup("app", capture.as_ref(), &BackupOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn registry_round_trip_is_faithful() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path()).await;
    let db = dir.path().join("app.db");
    make_corpus(&db, 4096, Journal::Wal);
    let source = build(json!({ "path": db, "restore_integrity": "full" })).unwrap();
    assert_eq!(source.kind(), "sqlite");
    assert_eq!(source.restore_rank(), RestoreRank::Database);
    let original = fingerprint_database(&db);
    let manifest = backup(&repo, source.as_ref()).await;
    assert_eq!(manifest.kind, "sqlite");

    sqlite3(&db, &["DELETE FROM items; PRAGMA user_version = 42;"]);
    let selector = BackupSelector::Latest;
    let options = RestoreOptions::default();
    let report = source
        .restore(&RestoreRequest::new(&repo, "app", &selector, &options))
        .await
        .unwrap();
    assert_eq!(report.backup_id, manifest.id);
    assert!(report.previous_kept_at.is_some(), "{report:?}");
    assert_faithful("restored in place", &original, &fingerprint_database(&db));

    let elsewhere = dir.path().join("other/copy.db");
    let options = RestoreOptions::default().with_target(&elsewhere);
    source
        .restore(&RestoreRequest::new(&repo, "app", &selector, &options))
        .await
        .unwrap();
    let copy = fingerprint_database(&elsewhere);
    assert_eq!(copy.get("content_sha3"), original.get("content_sha3"));
    assert_eq!(copy.get("journal_mode"), original.get("journal_mode"));

    let verified = source
        .verifier(&repo)
        .unwrap()
        .verify(&repo.reader(manifest.clone()), VerifyLevel::Restore)
        .await
        .unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);

    // The kind alone (a repository read on another host): verify and a scratch restore.
    let mut registry = Registry::new();
    dr_sqlite::register(&mut registry);
    let kind = registry.kind("sqlite").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let restorer = kind.scratch_restorer(&repo, scratch.path()).unwrap();
    restorer
        .restore(&repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap();
    let scratch_copy = fingerprint_database(&dr_sqlite::scratch_path(scratch.path()));
    assert_eq!(
        scratch_copy.get("content_sha3"),
        original.get("content_sha3")
    );
}

#[test]
fn unknown_and_missing_settings_are_refused() {
    let typo = build(json!({ "path": "/srv/app.db", "count_row": false }));
    assert!(
        matches!(&typo, Err(Error::Usage(m)) if m.contains("count_row")),
        "{:?}",
        typo.err()
    );
    let missing = build(json!({ "count_rows": false }));
    assert!(
        matches!(&missing, Err(Error::Usage(m)) if m.contains("path")),
        "{:?}",
        missing.err()
    );
}

#[tokio::test]
async fn unsupported_options_are_refused_with_nothing_changed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path()).await;
    let db = dir.path().join("app.db");
    make_corpus(&db, 4096, Journal::Delete);
    let source = build(json!({ "path": db })).unwrap();
    backup(&repo, source.as_ref()).await;
    sqlite3(&db, &["PRAGMA user_version = 42;"]);
    let changed = fingerprint_database(&db);
    let selector = BackupSelector::Latest;
    let cases = [
        ("in_place", RestoreOptions::default().with_in_place(true)),
        ("swap", RestoreOptions::default().with_swap(true)),
        (
            "server",
            RestoreOptions::default().with_server(Some("postgres://x/y".into())),
        ),
        (
            "only",
            RestoreOptions::default().with_only(vec!["a".into()]),
        ),
        ("globals", RestoreOptions::default().with_globals(true)),
        (
            "recovery_target",
            RestoreOptions::default().with_recovery_target(Some("latest".into())),
        ),
        ("dry_run", RestoreOptions::default().with_dry_run(true)),
        (
            "start_port",
            RestoreOptions::default().with_start_port(Some(5999)),
        ),
        (
            "keep_archiving",
            RestoreOptions::default().with_keep_archiving(true),
        ),
    ];
    for (name, options) in cases {
        let options = options.with_force(true);
        let refused = source
            .restore(&RestoreRequest::new(&repo, "app", &selector, &options))
            .await;
        assert!(
            matches!(&refused, Err(Error::Usage(m)) if m.contains("nothing was read or written")),
            "{name}: {refused:?}"
        );
        assert_faithful(name, &changed, &fingerprint_database(&db));
    }
    assert_eq!(sqlite3(&db, &["PRAGMA user_version;"]).trim(), "42");
}
