//! A backup must not block the application's writers for longer than a local copy takes,
//! however slow the upload: a writer with a 300 ms busy timeout never gets SQLITE_BUSY.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dr_core::object_store::local::LocalFileSystem;
use dr_core::{BackupOptions, Identities, PipelineOptions, Repository};
use dr_sqlite::SqliteSource;
use dr_testing::FaultyStore;
use rusqlite::Connection;

async fn writer_never_busy_during_a_slow_upload(wal: bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    let local = Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("repo")).unwrap());
    let ids = Identities::generate();
    Repository::init(local.clone(), "local", &ids.to_recipients())
        .await
        .unwrap();
    // Every stored part waits 80 ms: ~130 parts of 64 KiB take seconds to upload.
    let slow = FaultyStore::new(local).with_put_delay(Duration::from_millis(80));
    let repo = Repository::open(Arc::new(slow), "slow")
        .await
        .unwrap()
        .with_pipeline(PipelineOptions::default().with_part_size(64 * 1024));
    let db = dir.path().join("app.db");
    {
        let c = Connection::open(&db).unwrap();
        if wal {
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
        }
        c.execute_batch(
            "CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO blobs (b) SELECT randomblob(4000) FROM n;
             CREATE TABLE events (id INTEGER PRIMARY KEY, at TEXT);",
        )
        .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (commits, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let longest = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        let (commits, busy, longest) = (commits.clone(), busy.clone(), longest.clone());
        std::thread::spawn(move || {
            let c = Connection::open(&db).unwrap();
            c.busy_timeout(Duration::from_millis(300)).unwrap();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                match c.execute("INSERT INTO events (at) VALUES (datetime('now'))", []) {
                    Ok(_) => commits.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        eprintln!("writer: {e}");
                        busy.fetch_add(1, Ordering::SeqCst)
                    }
                };
                longest.fetch_max(started.elapsed().as_millis() as u64, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    while commits.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = commits.load(Ordering::SeqCst);
    let started = Instant::now();
    let manifest = repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await
        .unwrap();
    let backup_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let during = commits.load(Ordering::SeqCst) - before;
    eprintln!(
        "wal={wal}: backup {backup_time:?} by {}, {during} commits during it, longest insert {} ms, {} busy",
        manifest.source_info["snapshot_method"],
        longest.load(Ordering::SeqCst),
        busy.load(Ordering::SeqCst)
    );
    assert!(
        backup_time > Duration::from_secs(2),
        "the upload is slow ({backup_time:?}): the test means something"
    );
    assert_eq!(
        busy.load(Ordering::SeqCst),
        0,
        "the writer got SQLITE_BUSY during the backup"
    );
    assert!(
        during > 100,
        "the writer kept committing during the backup ({during})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_journal_writer_is_not_blocked_by_a_slow_upload() {
    writer_never_busy_during_a_slow_upload(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_writer_is_not_blocked_by_a_slow_upload() {
    writer_never_busy_during_a_slow_upload(true).await;
}
