//! How long a backup blocks the application's writers: a writer thread with a 300 ms busy
//! timeout inserts continuously into a ~200 MiB database while `sqlite3 DB ".backup OUT"`,
//! then dr, backs it up; reports the writer's longest wait and its SQLITE_BUSY failures.
//!
//! `cargo bench --bench sqlite_writers -- [--size-mib 200] [--journal delete,wal]`
//!
//! Needs the Debian package `sqlite3`. Databases are built once in `target/bench-sqlite-writers/`.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dr::sqlite::SqliteSource;
use dr::{BackupOptions, Identities};

const MIB: u64 = 1024 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let size_mib: u64 = value("--size-mib").map_or(200, |v| v.parse().expect("--size-mib"));
    let journals = value("--journal").unwrap_or_else(|| "delete,wal".into());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-sqlite-writers");
    std::fs::create_dir_all(&dir).expect("bench dir");
    println!(
        "| journal | backup by | seconds | writer commits | longest insert ms | SQLITE_BUSY |"
    );
    println!("|---|---|---|---|---|---|");
    for journal in journals.split(',') {
        let db = dir.join(format!("app-{journal}.db"));
        if std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) < size_mib * MIB * 9 / 10 {
            let _ = std::fs::remove_file(&db);
            make_database(&db, size_mib * MIB, journal);
        }
        let out = dir.join("dot-backup.db");
        let _ = std::fs::remove_file(&out);
        let dot = format!(".backup {}", out.display());
        let run = under_writer(&db, || {
            let mut child = std::process::Command::new("sqlite3")
                .arg(&db)
                .args([".timeout 5000", &dot])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("sqlite3");
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().expect("wait").is_none() {
                if Instant::now() > deadline {
                    child.kill().expect("kill");
                    child.wait().expect("wait");
                    return Err("did not finish in 60 s, killed".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let out = child.wait_with_output().expect("sqlite3");
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            if out.status.success() && stderr.is_empty() {
                Ok(())
            } else {
                Err(stderr)
            }
        });
        run.print(journal, "`sqlite3 .timeout 5000 .backup`");
        let repo = dir.join(format!("repo-{journal}"));
        let _ = std::fs::remove_dir_all(&repo);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let recipients = Identities::generate().to_recipients();
        let repository = runtime
            .block_on(dr::storage::init_repository(path(&repo), &[], &recipients))
            .expect("init");
        let run = under_writer(&db, || {
            runtime
                .block_on(repository.backup(
                    "app",
                    &SqliteSource::new(&db),
                    &BackupOptions::default(),
                ))
                .map(|m| {
                    let info = &m.source_info;
                    eprintln!(
                        "{journal}: dr snapshot by {}, read lock held for the copy {} ms",
                        info["snapshot_method"], info["snapshot_ms"]
                    );
                })
                .map_err(|e| e.to_string())
        });
        run.print(journal, "dr backup");
    }
}

struct Run {
    outcome: Result<(), String>,
    seconds: f64,
    commits: u64,
    longest_ms: u64,
    busy: u64,
}

impl Run {
    fn print(&self, journal: &str, by: &str) {
        let seconds = match &self.outcome {
            Ok(()) => format!("{:.2}", self.seconds),
            Err(e) => format!("failed after {:.2}: {e}", self.seconds),
        };
        println!(
            "| {journal} | {by} | {seconds} | {} | {} | {} |",
            self.commits, self.longest_ms, self.busy
        );
    }
}

/// Runs `backup` while a writer (busy timeout 300 ms) inserts as fast as it can.
fn under_writer(db: &Path, backup: impl FnOnce() -> Result<(), String>) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let (commits, busy, longest) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let writer = {
        let (db, stop) = (db.to_owned(), stop.clone());
        let (commits, busy, longest) = (commits.clone(), busy.clone(), longest.clone());
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).expect("writer");
            c.busy_timeout(Duration::from_millis(300)).expect("timeout");
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                match c.execute(
                    "INSERT INTO writes (at, note) VALUES (datetime('now'), 'bench')",
                    [],
                ) {
                    Ok(_) => commits.fetch_add(1, Ordering::SeqCst),
                    Err(_) => busy.fetch_add(1, Ordering::SeqCst),
                };
                longest.fetch_max(started.elapsed().as_millis() as u64, Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = commits.load(Ordering::SeqCst);
    longest.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let outcome = backup();
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread");
    Run {
        outcome,
        seconds,
        commits: commits.load(Ordering::SeqCst) - before,
        longest_ms: longest.load(Ordering::SeqCst),
        busy: busy.load(Ordering::SeqCst),
    }
}

/// Rows of hex text (compressible by half) and random blobs, until about `size` bytes.
fn make_database(path: &Path, size: u64, journal: &str) {
    let db = rusqlite::Connection::open(path).expect("create db");
    db.pragma_update(None, "journal_mode", journal)
        .expect("journal mode");
    let rows = size / 2200;
    db.execute_batch(&format!(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT, attachment BLOB);
         CREATE TABLE writes (id INTEGER PRIMARY KEY, at TEXT, note TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO events (payload, attachment) SELECT hex(randomblob(500)), randomblob(1000) FROM n;"
    ))
    .expect("fill");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
