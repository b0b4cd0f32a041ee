//! The quickstart: a real backup, a disaster, a restore and a verification, on the embedded
//! default (SQLite + a local-directory repository), with no server and no flags.
//!
//! `cargo run --release --example quickstart`
//!
//! Everything lands in `target/dr-quickstart/` so you can look at it afterwards (the
//! repository, the key, the kept pre-restore file) and try FORMAT.md's manual recovery.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dr::sqlite::{
    Integrity, SqliteSource, SqliteTarget, SqliteVerifier, UserCheck, check_database,
};
use dr::{
    BackupOptions, BackupSelector, Error, Identities, Restore, RestoreOptions, Result, Verify,
    VerifyLevel,
};
use rusqlite::Connection;

const JOBS: usize = 200_000;

#[tokio::main]
async fn main() -> Result<()> {
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dr-quickstart");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| Error::io("creating target/dr-quickstart", e))?;
    let db = work.join("app.db");

    step(
        1,
        &format!(
            "creating a sample database like the Rendiff seed: {}",
            db.display()
        ),
    );
    create_sample(&db)
        .map_err(|e| Error::backend("sqlite", "creating the sample", e.to_string()))?;

    step(2, "generating a key and creating a local repository");
    let key = work.join("key.txt");
    let public = dr::generate_identity_file(&key, None)?;
    let identities = Identities::from_file(&key)?;
    let repo_url = work.join("repo").display().to_string();
    let repo = dr::storage::init_repository(&repo_url, &[], &identities.to_recipients())
        .await?
        .with_identities(identities);
    println!("   repository {} (encrypted to {public})", repo.location());

    step(
        3,
        "backing up the live database (consistent snapshot -> zstd -> age -> repository)",
    );
    let started = Instant::now();
    let manifest = repo
        .backup("app", &SqliteSource::new(&db), &BackupOptions::default())
        .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "   backup {}: {:.1} MiB -> {:.1} MiB stored in {secs:.2} s; rows {}",
        manifest.id,
        mib(manifest.plain_size()),
        mib(manifest.stored_size()),
        manifest
            .source_info
            .get("row_counts")
            .map(|v| v.to_string())
            .unwrap_or_default()
    );

    step(4, "listing the repository");
    let listing = repo.list(None).await?;
    for unreadable in &listing.unreadable {
        println!("   PROBLEM {}", unreadable.describe());
    }
    for m in listing.backups {
        println!(
            "   {}  {:<5} {}  {}  {:.1} MiB",
            m.started_at.format("%F %T"),
            m.source,
            m.id,
            m.kind,
            mib(m.plain_size())
        );
    }

    step(
        5,
        "verifying: checksums, then a test restore with integrity_check, row counts and a user check",
    );
    let checks = vec![UserCheck {
        name: "api keys present".into(),
        sql: "SELECT count(*) FROM api_keys".into(),
        expect: ">= 1".into(),
    }];
    let reader = repo.open_backup("app", &BackupSelector::Latest).await?;
    let report = SqliteVerifier::new()
        .with_checks(checks.clone())
        .verify(&reader, VerifyLevel::Restore)
        .await?;
    for line in &report.passed {
        println!("   ok: {line}");
    }
    if !report.is_ok() {
        return Err(Error::Usage(format!(
            "verification failed: {:?}",
            report.problems
        )));
    }

    step(6, "disaster: the database file gets corrupted");
    corrupt(&db)?;
    let damaged = check_database(&db, None, &[], Integrity::Full);
    match damaged {
        Ok(outcome) if !outcome.problems.is_empty() => println!(
            "   integrity_check now says: {}",
            short(&outcome.problems[0])
        ),
        Ok(_) => println!("   (the damage went unnoticed by integrity_check)"),
        Err(e) => println!("   the file no longer opens: {}", short(&e.to_string())),
    }

    step(
        7,
        "restoring the latest backup in place (the damaged file is kept aside)",
    );
    let started = Instant::now();
    let restored = SqliteTarget::new(&db)
        .with_checks(checks)
        .restore(&reader, &RestoreOptions::default())
        .await?;
    let rto = started.elapsed();
    println!(
        "   restored {:.1} MiB into {}",
        mib(restored.restored_bytes),
        restored.target
    );
    if let Some(kept) = &restored.previous_kept_at {
        println!("   damaged file kept as {kept}");
    }

    step(8, "checking the restored database");
    let outcome = check_database(&db, None, &[], Integrity::Full)?;
    let jobs: i64 = Connection::open(&db)
        .and_then(|c| c.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)))
        .map_err(|e| Error::backend("sqlite", "counting jobs", e.to_string()))?;
    println!(
        "   {}; jobs: {jobs} (expected {JOBS})",
        outcome.passed.join("; ")
    );
    if !outcome.problems.is_empty() || jobs != JOBS as i64 {
        return Err(Error::Usage(format!(
            "restored database is wrong: {:?}",
            outcome.problems
        )));
    }
    println!(
        "\nRecovered in {:.2} s (restore, checks and swap). Look around: {}",
        rto.as_secs_f64(),
        work.display()
    );
    Ok(())
}

fn create_sample(path: &Path) -> rusqlite::Result<()> {
    let db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.execute_batch(
        "CREATE TABLE api_keys (id INTEGER PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL, created_at TEXT NOT NULL);
         CREATE TABLE jobs (id INTEGER PRIMARY KEY, api_key_id INTEGER NOT NULL REFERENCES api_keys(id),
             status TEXT NOT NULL, input_path TEXT NOT NULL, output_path TEXT, progress REAL NOT NULL,
             created_at TEXT NOT NULL, completed_at TEXT);
         CREATE INDEX jobs_status ON jobs(status);
         INSERT INTO api_keys (name, key_hash, created_at) VALUES
             ('web', 'sha256:2f1c', '2026-01-05T10:00:00Z'), ('batch', 'sha256:9ab0', '2026-02-11T08:30:00Z');",
    )?;
    let tx = db.unchecked_transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO jobs (api_key_id, status, input_path, output_path, progress, created_at, completed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for i in 0..JOBS {
            let status = [
                "completed",
                "completed",
                "completed",
                "failed",
                "processing",
                "queued",
            ][i % 6];
            let done = status == "completed";
            insert.execute(rusqlite::params![
                1 + (i % 2) as i64,
                status,
                format!("/storage/input/upload-{i:07}.mp4"),
                done.then(|| format!("/storage/output/upload-{i:07}-1080p.mp4")),
                if done { 100.0 } else { (i % 100) as f64 },
                format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + i % 22, i % 24, i % 60),
                done.then(|| format!("2026-11-{:02}T{:02}:{:02}:30Z", 1 + i % 22, i % 24, i % 60)),
            ])?;
        }
    }
    tx.commit()?;
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

/// Overwrites a stretch in the middle of the file, as a failing disk would.
fn corrupt(path: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io("reading the database size", e))?
        .len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("opening the database", e))?;
    file.seek(SeekFrom::Start(len / 2))
        .map_err(|e| Error::io("seeking", e))?;
    file.write_all(&vec![0xA5; 64 * 1024])
        .map_err(|e| Error::io("corrupting", e))?;
    file.sync_all().map_err(|e| Error::io("syncing", e))
}

fn step(n: u32, text: &str) {
    println!("{n}. {text}");
}

fn short(text: &str) -> String {
    text.replace('\n', " ").chars().take(120).collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}
