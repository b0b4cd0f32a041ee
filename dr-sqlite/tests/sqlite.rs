//! SQLite end to end against real database files: live snapshots under a writer, restores
//! that keep the previous file, refusal when in use, and a damage matrix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dr_core::object_store::local::LocalFileSystem;
use dr_core::{
    BackupOptions, Error, Identities, PipelineOptions, Repository, Restore, RestoreOptions, Verify,
    VerifyLevel,
};
use dr_sqlite::{SnapshotMethod, SqliteSource, SqliteTarget, SqliteVerifier, UserCheck};
use rusqlite::Connection;

struct Fixture {
    dir: tempfile::TempDir,
    repo: Repository,
    store: Arc<LocalFileSystem>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("repo")).unwrap());
        let ids = Identities::generate();
        let repo = Repository::init(store.clone(), "local", &ids.to_recipients())
            .await
            .unwrap()
            .with_identities(ids)
            .with_pipeline(PipelineOptions::default().with_part_size(64 * 1024));
        Fixture { dir, repo, store }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The seed's shape: jobs and api_keys, with a foreign key.
fn sample_db(path: &Path, jobs: usize, wal: bool) {
    let db = Connection::open(path).unwrap();
    if wal {
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
    }
    db.execute_batch(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE api_keys (id INTEGER PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL);
         CREATE TABLE jobs (id INTEGER PRIMARY KEY, api_key_id INTEGER NOT NULL REFERENCES api_keys(id),
                            status TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL);
         INSERT INTO api_keys (name, key_hash) VALUES ('ci', 'h1'), ('web', 'h2');",
    )
    .unwrap();
    let tx = db.unchecked_transaction().unwrap();
    for i in 0..jobs {
        tx.execute(
            "INSERT INTO jobs (api_key_id, status, payload, created_at) VALUES (?1, ?2, ?3, datetime('now'))",
            rusqlite::params![1 + (i % 2) as i64, ["queued", "done"][i % 2], format!("{{\"input\":\"file{i}.mp4\"}}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn count(path: &Path, table: &str) -> i64 {
    let db = Connection::open(path).unwrap();
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_round_trip_records_facts() {
    let fx = Fixture::new().await;
    let db = fx.path("app.db");
    sample_db(&db, 5000, true);
    let manifest = fx
        .repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    let info = &manifest.source_info;
    assert_eq!(info["journal_mode"], "wal");
    assert_eq!(info["row_counts"]["jobs"], 5000);
    assert_eq!(info["row_counts"]["api_keys"], 2);
    assert!(info["page_count"].as_u64().unwrap() > 10);
    assert_eq!(
        info["snapshot_method"], "direct",
        "an idle WAL database streams directly"
    );
    assert_eq!(
        info["stored_database_bytes"].as_u64().unwrap(),
        manifest.plain_size()
    );
    assert_eq!(
        manifest.plain_size(),
        info["page_size"].as_u64().unwrap() * info["page_count"].as_u64().unwrap()
    );

    let target = fx.path("restored.db");
    let report = SqliteTarget::new(&target)
        .restore(
            &fx.repo.reader(manifest.clone()),
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.previous_kept_at, None);
    assert_eq!(count(&target, "jobs"), 5000);
    let verify = SqliteVerifier::new()
        .with_checks(vec![UserCheck {
            name: "done jobs".into(),
            sql: "SELECT count(*) FROM jobs WHERE status = 'done'".into(),
            expect: ">= 1".into(),
        }])
        .verify(&fx.repo.reader(manifest), VerifyLevel::Restore)
        .await
        .unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
    assert!(
        verify
            .passed
            .iter()
            .any(|p| p.contains("integrity_check ok"))
    );
    assert!(verify.passed.iter().any(|p| p.contains("row counts match")));
    assert!(verify.passed.iter().any(|p| p.contains("check done jobs")));
}

/// A writer commits transfers (two rows summing to zero, plus a counter) during the backup;
/// the snapshot must be one consistent point.
async fn snapshot_under_writes(wal: bool, method: SnapshotMethod) {
    let fx = Fixture::new().await;
    let db = fx.path("live.db");
    {
        let c = Connection::open(&db).unwrap();
        if wal {
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
        }
        c.execute_batch(
            "CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount INTEGER, memo TEXT);
             CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0);",
        )
        .unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for i in 0..20000 {
            tx.execute(
                "INSERT INTO ledger (amount, memo) VALUES (?1, ?2)",
                rusqlite::params![if i % 2 == 0 { 5 } else { -5 }, "x".repeat(200)],
            )
            .unwrap();
        }
        tx.execute("UPDATE counter SET n = 10000", []).unwrap();
        tx.commit().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, commits) = (db.clone(), stop.clone(), commits.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&db).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut i = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let tx = c.unchecked_transaction().unwrap();
                tx.execute("INSERT INTO ledger (amount, memo) VALUES (?1, 'w')", [i])
                    .unwrap();
                tx.execute("INSERT INTO ledger (amount, memo) VALUES (?1, 'w')", [-i])
                    .unwrap();
                tx.execute("UPDATE counter SET n = n + 1", []).unwrap();
                if tx.commit().is_ok() {
                    commits.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
        })
    };
    while commits.load(Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = commits.load(Ordering::SeqCst);
    let options = dr_sqlite::SqliteOptions::default()
        .with_pages_per_step(64)
        .with_method(method);
    let manifest = fx
        .repo
        .backup(
            "live",
            &SqliteSource::new(&db).with_options(options),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(
        commits.load(Ordering::SeqCst) > before,
        "the writer kept committing"
    );
    let used = manifest.source_info["snapshot_method"]
        .as_str()
        .unwrap()
        .to_owned();
    eprintln!("wal={wal} method={method:?}: snapshot taken by {used}");
    if method == SnapshotMethod::BackupApi || wal {
        // In WAL mode under constant writes the WAL is rarely empty: the backup API is used.
        assert!(used == "backup_api" || wal, "{used}");
    } else {
        assert_eq!(
            used, "file_copy",
            "rollback journal: copied under the shared lock, streamed after it"
        );
    }

    let target = fx.path("snapshot.db");
    SqliteTarget::new(&target)
        .restore(
            &fx.repo.reader(manifest.clone()),
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    let c = Connection::open(&target).unwrap();
    let sum: i64 = c
        .query_row("SELECT sum(amount) FROM ledger", [], |r| r.get(0))
        .unwrap();
    let rows: i64 = c
        .query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))
        .unwrap();
    let n: i64 = c
        .query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sum, 0, "a transfer was torn");
    assert_eq!(rows, 2 * n, "rows and counter from different points");
    assert_eq!(
        manifest.source_info["row_counts"]["ledger"], rows,
        "facts from the same snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_snapshot_under_writes_wal() {
    for _ in 0..5 {
        snapshot_under_writes(true, SnapshotMethod::Auto).await;
    }
    snapshot_under_writes(true, SnapshotMethod::BackupApi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_snapshot_under_writes_rollback_journal() {
    snapshot_under_writes(false, SnapshotMethod::Auto).await;
    snapshot_under_writes(false, SnapshotMethod::BackupApi).await;
}

/// After a burst of writes the WAL holds frames; the checkpoint empties it, the snapshot
/// streams the file directly, and nothing written before the backup is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_frames_are_checkpointed_before_a_direct_snapshot() {
    let fx = Fixture::new().await;
    let db = fx.path("wal.db");
    sample_db(&db, 100, true);
    let writer = Connection::open(&db).unwrap();
    writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    for _ in 0..50 {
        writer
            .execute(
                "INSERT INTO api_keys (name, key_hash) VALUES ('k', 'h')",
                [],
            )
            .unwrap();
    }
    assert!(
        std::fs::metadata(fx.path("wal.db-wal")).unwrap().len() > 0,
        "frames in the WAL"
    );
    let manifest = fx
        .repo
        .backup("wal", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(manifest.source_info["snapshot_method"], "direct");
    let target = fx.path("wal-restored.db");
    SqliteTarget::new(&target)
        .restore(&fx.repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(count(&target, "api_keys"), 52);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_api_path_reports_and_removes_its_temporary_file() {
    let fx = Fixture::new().await;
    let db = fx.path("app.db");
    sample_db(&db, 1000, true);
    let temp_dir = fx.path("tmp");
    std::fs::create_dir(&temp_dir).unwrap();
    let options = dr_sqlite::SqliteOptions::default()
        .with_method(SnapshotMethod::BackupApi)
        .with_temp_dir(&temp_dir);
    let source = SqliteSource::new(&db).with_options(options);
    let manifest = fx
        .repo
        .backup("app", &source, &BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(manifest.source_info["snapshot_method"], "backup_api");
    assert_eq!(
        manifest.source_info["temp_bytes"].as_u64().unwrap(),
        manifest.plain_size()
    );
    assert_eq!(
        std::fs::read_dir(&temp_dir).unwrap().count(),
        0,
        "temporary file removed"
    );
    // Also on failure: a store that refuses writes.
    let broken = Repository::open(
        Arc::new(dr_testing::FaultyStore::new(fx.store.clone()).fail_put_from(1)),
        "faulty",
    )
    .await
    .unwrap();
    assert!(
        broken
            .backup("app", &source, &BackupOptions::default())
            .await
            .is_err()
    );
    assert_eq!(
        std::fs::read_dir(&temp_dir).unwrap().count(),
        0,
        "removed after a failure too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_keeps_the_previous_file_and_its_wal_aside() {
    let fx = Fixture::new().await;
    let db = fx.path("app.db");
    sample_db(&db, 100, true);
    let manifest = fx
        .repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    // Later writes that live in the -wal (no checkpoint): must not be replayed onto the restore.
    {
        let c = Connection::open(&db).unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.execute(
            "INSERT INTO api_keys (name, key_hash) VALUES ('late', 'h3')",
            [],
        )
        .unwrap();
        std::mem::forget(c); // keep the -wal file as a crash would
    }
    assert!(fx.path("app.db-wal").exists());
    let report = SqliteTarget::new(&db)
        .restore(
            &fx.repo.reader(manifest),
            &RestoreOptions::default().with_force(true),
        )
        .await
        .unwrap();
    let kept = PathBuf::from(report.previous_kept_at.unwrap());
    assert!(kept.exists(), "previous file kept");
    assert!(
        PathBuf::from(format!("{}-wal", kept.display())).exists(),
        "its -wal moved beside it"
    );
    assert!(
        !fx.path("app.db-wal").exists(),
        "no stale -wal next to the restored file"
    );
    assert_eq!(
        count(&db, "api_keys"),
        2,
        "restored state, without the later write"
    );
    assert_eq!(
        count(&kept, "api_keys"),
        3,
        "the kept copy still opens with its -wal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_database_in_use() {
    let fx = Fixture::new().await;
    let db = fx.path("busy.db");
    sample_db(&db, 10, false);
    let manifest = fx
        .repo
        .backup("busy", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    let script = "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]); c.execute('select 1').fetchall(); print('open', flush=True); time.sleep(60)";
    let mut holder = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let before = std::fs::read(&db).unwrap();
    let err = SqliteTarget::new(&db)
        .restore(&fx.repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap_err();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("process {}", holder.id())),
        "{err}"
    );
    match &err {
        dr_core::Error::TargetInUse {
            target, holder_pid, ..
        } => {
            assert_eq!(*holder_pid, Some(holder.id()), "{err}");
            assert_eq!(target, &db.display().to_string());
        }
        other => panic!("expected TargetInUse, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(std::fs::read(&db).unwrap(), before, "target untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_user_check_leaves_the_target_untouched() {
    let fx = Fixture::new().await;
    let db = fx.path("app.db");
    sample_db(&db, 10, false);
    let manifest = fx
        .repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let impossible = UserCheck {
        name: "many jobs".into(),
        sql: "SELECT count(*) FROM jobs".into(),
        expect: ">= 1000".into(),
    };
    let err = SqliteTarget::new(&db)
        .with_checks(vec![impossible])
        .restore(&fx.repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChecksFailed { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("check many jobs: 10 >= 1000 failed"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("dr-restore"))
        .collect();
    assert!(leftovers.is_empty(), "staged file removed");
}

/// Every stored object flipped, truncated, deleted; and a wrong key: verify reports it,
/// restore fails, the target file is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_matrix() {
    let fx = Fixture::new().await;
    let db = fx.path("app.db");
    sample_db(&db, 3000, false);
    let manifest = fx
        .repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    assert!(manifest.parts().count() >= 2, "several parts");
    let before = std::fs::read(&db).unwrap();
    let mut objects: Vec<String> = manifest.parts().map(|p| p.object.clone()).collect();
    objects.push("SHA256SUMS".into());
    for object in &objects {
        let key = dr_testing::damage::backup_object(&manifest, object);
        for damage in dr_testing::Damage::BYTES {
            let original = dr_testing::damage::damage_object(fx.store.as_ref(), &key, damage).await;
            let report = SqliteVerifier::new()
                .verify(&fx.repo.reader(manifest.clone()), VerifyLevel::Restore)
                .await
                .unwrap();
            assert!(
                report.problems.iter().any(|p| p.contains(object.as_str())),
                "{damage:?} {object}: {:?}",
                report.problems
            );
            if object != "SHA256SUMS" {
                let err = SqliteTarget::new(&db)
                    .restore(
                        &fx.repo.reader(manifest.clone()),
                        &RestoreOptions::default(),
                    )
                    .await
                    .unwrap_err();
                assert!(
                    err.to_string().contains(object.as_str()),
                    "{damage:?} {object}: {err}"
                );
                assert_eq!(
                    std::fs::read(&db).unwrap(),
                    before,
                    "target untouched after {damage:?} {object}"
                );
            }
            dr_testing::damage::restore_object(fx.store.as_ref(), &key, original).await;
        }
    }
    let stranger = fx.repo.clone().with_identities(Identities::generate());
    let err = SqliteTarget::new(&db)
        .restore(&stranger.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoMatchingIdentity { .. }), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[tokio::test]
async fn missing_database_is_a_clear_error() {
    let fx = Fixture::new().await;
    let err = fx
        .repo
        .backup(
            "app",
            &SqliteSource::new(fx.path("nope.db")),
            &BackupOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no SQLite database at"), "{err}");
    assert!(fx.repo.list(None).await.unwrap().is_empty());
}
