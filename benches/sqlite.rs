//! SQLite backup and restore of a ~1 GiB WAL-mode database, side by side with
//! `sqlite3 db ".backup out.db"`, `cp`, and `.backup` in reverse (`sqlite3 new.db ".restore"`).
//!
//! `cargo bench --bench sqlite -- [--size-mib 1024] [--level 3,1]`
//!
//! Needs the Debian package `sqlite3`. The database (rows of JSON-like text with a random
//! blob in about a third of them) is built once in `target/bench-sqlite/`.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench binary: failing loudly is right

mod common;

use std::path::{Path, PathBuf};

use common::{MIB, arg, list, measure, path, row};
use dr::sqlite::{Integrity, SqliteSource, SqliteTarget};
use dr::{BackupOptions, BackupSelector, Identities, PipelineOptions, Restore, RestoreOptions};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        common::child(&args[1..], prepare, work);
        return;
    }
    let size_mib: u64 = arg(&args, "--size-mib").map_or(1024, |v| v.parse().expect("--size-mib"));
    let levels: Vec<i32> = list(&args, "--level", "3,1");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-sqlite");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let db = dir.join("app.db");
    if std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) < size_mib * MIB * 9 / 10 {
        let _ = std::fs::remove_file(&db);
        make_database(&db, size_mib * MIB);
    }
    let bytes = std::fs::metadata(&db).expect("db").len();
    let key = dir.join("key.txt");
    let _ = std::fs::remove_file(&key);
    dr::generate_identity_file(&key, None).expect("keygen");
    let (db_s, key_s) = (path(&db).to_owned(), path(&key).to_owned());
    let out = dir.join("out.db");
    let out_s = path(&out).to_owned();

    println!("database: {:.0} MiB, WAL mode", bytes as f64 / MIB as f64);
    println!("| operation | settings | MB/s | seconds | peak RSS MiB | vs `.backup` |");
    println!("|---|---|---|---|---|---|");
    let dot_backup = measure(&[
        "shell",
        &format!("rm -f {out_s}; sqlite3 {db_s} \".backup {out_s}\""),
    ]);
    row("`sqlite3 .backup`", "-", bytes, dot_backup, "1.00x");
    let ratio = |m: (f64, u64)| format!("{:.2}x", m.0 / dot_backup.0);
    let cp = measure(&["shell", &format!("cp {db_s} {out_s}")]);
    row("`cp`", "-", bytes, cp, &ratio(cp));
    let restore_copy = dir.join("restored-by-sqlite3.db");
    let reverse = measure(&[
        "shell",
        &format!(
            "rm -f {0}; sqlite3 {0} \".restore {out_s}\"",
            path(&restore_copy)
        ),
    ]);
    row(
        "`sqlite3 new.db .restore` (reverse)",
        "-",
        bytes,
        reverse,
        &ratio(reverse),
    );
    for level in levels {
        let repo = dir.join(format!("repo-{level}"));
        let level_s = level.to_string();
        let m = measure(&["backup", &db_s, path(&repo), &key_s, &level_s]);
        row(
            "dr backup (snapshot, zstd, age, repository)",
            &format!("level {level}"),
            bytes,
            m,
            &ratio(m),
        );
        for integrity in ["quick", "full"] {
            let m = measure(&["restore", &db_s, path(&repo), &key_s, &level_s, integrity]);
            let name = format!("dr restore (decode, write, fsync, {integrity} check, rename)");
            row(&name, &format!("level {level}"), bytes, m, &ratio(m));
        }
    }
}

/// Before the clock starts: a fresh repository for backups, one backup present for restores.
fn prepare(args: &[String]) {
    match args[0].as_str() {
        "backup" => {
            let _ = std::fs::remove_dir_all(&args[2]);
        }
        "restore" => {
            let _ = std::fs::remove_file(restore_target(&args[2]));
        }
        _ => {}
    }
}

fn restore_target(repo: &str) -> PathBuf {
    PathBuf::from(format!("{repo}-restored.db"))
}

fn work(args: &[String]) {
    let (db, repo, key) = (
        PathBuf::from(&args[1]),
        args[2].clone(),
        PathBuf::from(&args[3]),
    );
    let level: i32 = args[4].parse().expect("level");
    common::runtime(2).block_on(async {
        let ids = Identities::from_file(&key).expect("identity");
        let pipeline = PipelineOptions::default().with_zstd_level(level);
        if args[0] == "backup" {
            let repo = dr::storage::init_repository(&repo, &[], &ids.to_recipients())
                .await
                .expect("init");
            let repo = repo.with_pipeline(pipeline);
            repo.backup("app", &SqliteSource::new(&db), &BackupOptions::default())
                .await
                .expect("backup");
        } else {
            let integrity = if args[5] == "full" {
                Integrity::Full
            } else {
                Integrity::Quick
            };
            let repo = dr::storage::open_repository(&repo, &[])
                .await
                .expect("open");
            let repo = repo.with_identities(ids).with_pipeline(pipeline);
            let reader = repo
                .open_backup("app", &BackupSelector::Latest)
                .await
                .expect("latest");
            let target = SqliteTarget::new(restore_target(&args[2])).with_integrity(integrity);
            target
                .restore(&reader, &RestoreOptions::default())
                .await
                .expect("restore");
        }
    });
}

/// Rows of JSON-like text, a third with a 512-byte random blob, until `size` bytes.
fn make_database(path: &Path, size: u64) {
    let db = rusqlite::Connection::open(path).expect("create db");
    db.pragma_update(None, "journal_mode", "WAL").expect("wal");
    db.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, created_at TEXT NOT NULL,
                              payload TEXT NOT NULL, attachment BLOB);
         CREATE INDEX events_kind ON events(kind, created_at);",
    )
    .expect("schema");
    let mut rng = StdRng::seed_from_u64(7);
    let rows = size / 900;
    let tx = db.unchecked_transaction().expect("tx");
    {
        let mut insert = tx
            .prepare("INSERT INTO events (kind, created_at, payload, attachment) VALUES (?1, ?2, ?3, ?4)")
            .expect("prepare");
        for i in 0..rows {
            let kind =
                ["upload", "transcode", "thumbnail", "webhook", "billing"][rng.random_range(0..5)];
            let payload = format!(
                "{{\"user\":\"user{}\",\"job\":{i},\"input\":\"/storage/in/{:08x}.mp4\",\"preset\":\"1080p\",\"bitrate\":{},\"status\":\"{}\",\"note\":\"{}\"}}",
                rng.random_range(0..20000),
                rng.random::<u32>(),
                rng.random_range(500..8000),
                ["queued", "running", "done", "failed"][rng.random_range(0..4)],
                "lorem ipsum dolor sit amet ".repeat(rng.random_range(4..16)),
            );
            let blob = (i % 3 == 0).then(|| {
                let mut b = vec![0u8; 512];
                rng.fill_bytes(&mut b);
                b
            });
            let at = format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60);
            insert
                .execute(rusqlite::params![kind, at, payload, blob])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
}
