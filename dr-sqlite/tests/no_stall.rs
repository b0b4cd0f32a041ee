//! No blocking on the async runtime: backup, restore in place over a 48 MiB database and
//! verify at restore level run beside a 10 ms ticker on a current-thread runtime
//! (dr_testing::stall), and the ticker is never more than 500 ms late.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use dr_core::object_store::local::LocalFileSystem;
use dr_core::{
    BackupOptions, BackupSelector, Identities, Manifest, Registry, Repository, Restore,
    RestoreOptions, RestoreRequest, SourceSettings, Verify, VerifyLevel,
};
use dr_sqlite::{SqliteSource, SqliteTarget, SqliteVerifier};
use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::sqlite::fingerprint_database;
use dr_testing::stall::assert_no_stall;
use rusqlite::Connection;

/// Size of the database the tests work on.
const MIB: u64 = 48;

struct Fixture {
    dir: tempfile::TempDir,
    repo: Repository,
    db: PathBuf,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("repo")).unwrap());
    let ids = Identities::generate();
    let repo = Repository::init(store, "local", &ids.to_recipients())
        .await
        .unwrap()
        .with_identities(ids);
    let db = dir.path().join("app.db");
    big_database(&db, MIB);
    Fixture { dir, repo, db }
}

/// `mib` MiB of random 4 KiB blobs (incompressible) with an index, rollback-journal mode.
fn big_database(path: &Path, mib: u64) {
    let rows = mib * 256;
    Connection::open(path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE blobs (id INTEGER PRIMARY KEY, tag TEXT, body BLOB);
             CREATE INDEX blobs_tag ON blobs (tag);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO blobs SELECT i, 'tag-' || (i % 97), randomblob(4000) FROM n;"
        ))
        .unwrap();
}

/// An application switched to WAL mode, rewrote every row without a checkpoint and was
/// killed: a WAL as large as the database lies beside it (SQLite recovers and checkpoints it
/// on the next open, all blocking I/O).
fn crash_with_big_wal(path: &Path) {
    let mut child = Command::new("sqlite3")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; UPDATE blobs SET body = randomblob(4000); UPDATE blobs SET tag = tag || 'x', body = randomblob(4000); SELECT 'ready';"
    )
    .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.as_mut().unwrap());
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "sqlite3 ended early");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let wal = dr_core::sibling_path(path, "-wal");
    let wal_bytes = std::fs::metadata(&wal).unwrap().len();
    assert!(wal_bytes >= MIB * 1024 * 1024, "WAL of {wal_bytes} bytes");
}

async fn backup(fx: &Fixture) -> Manifest {
    fx.repo
        .backup("app", &SqliteSource::new(&fx.db), &BackupOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn backup_does_not_block_the_runtime() {
    let fx = fixture().await;
    let manifest = assert_no_stall("SQLite backup", backup(&fx)).await;
    let plain: u64 = manifest.artifacts.iter().map(|a| a.plain_size).sum();
    assert!(plain >= MIB * 1024 * 1024, "{plain} bytes");
}

#[tokio::test]
async fn restore_in_place_does_not_block_the_runtime() {
    let fx = fixture().await;
    let manifest = backup(&fx).await;
    let before = fingerprint_database(&fx.db);
    crash_with_big_wal(&fx.db);
    let reader = fx.repo.reader(manifest);
    let report = assert_no_stall(
        "SQLite restore in place",
        SqliteTarget::new(&fx.db).restore(&reader, &RestoreOptions::default()),
    )
    .await
    .unwrap();
    assert!(report.previous_kept_at.is_some());
    assert_faithful("restored in place", &before, &fingerprint_database(&fx.db));
}

#[tokio::test]
async fn registry_restore_in_place_does_not_block_the_runtime() {
    let fx = fixture().await;
    let mut registry = Registry::new();
    dr_sqlite::register(&mut registry);
    let source = registry
        .build_source(
            "sqlite",
            &SourceSettings::new(serde_json::json!({ "path": fx.db })),
        )
        .unwrap();
    let capture = source.backup(&fx.repo, "app", false).await.unwrap();
    let manifest = assert_no_stall(
        "SQLite backup through the registry",
        fx.repo
            .backup("app", capture.as_ref(), &BackupOptions::default()),
    )
    .await
    .unwrap();
    let before = fingerprint_database(&fx.db);
    Connection::open(&fx.db)
        .unwrap()
        .execute_batch("DELETE FROM blobs WHERE id % 3 = 0;")
        .unwrap();
    let selector = BackupSelector::Id(manifest.id.clone());
    let options = RestoreOptions::default();
    let request = RestoreRequest::new(&fx.repo, "app", &selector, &options);
    assert_no_stall(
        "SQLite restore through the registry",
        source.restore(&request),
    )
    .await
    .unwrap();
    assert_faithful("restored in place", &before, &fingerprint_database(&fx.db));
}

#[tokio::test]
async fn verify_at_restore_level_does_not_block_the_runtime() {
    let fx = fixture().await;
    let manifest = backup(&fx).await;
    let reader = fx.repo.reader(manifest);
    let verifier = SqliteVerifier::new().with_scratch_dir(fx.dir.path().to_owned());
    let report = assert_no_stall(
        "SQLite verify at restore level",
        verifier.verify(&reader, VerifyLevel::Restore),
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
