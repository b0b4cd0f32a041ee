//! The `dr` process killed with SIGKILL at seeded random moments of a backup, a prune and a
//! restore. Afterwards every listed backup verifies and restores, the next backup works (no
//! stale lock), prune removes what the crash left, and a restore target is either the old
//! database or the new one, never half of either.
//!
//! Three trials by default; `DR_LONG_TESTS=1` runs 100 of each (about 15 minutes).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{dr, ok, spawn_quiet};
use rusqlite::Connection;

fn trials() -> u64 {
    if std::env::var_os("DR_LONG_TESTS").is_some() {
        100
    } else {
        3
    }
}

/// A deterministic delay for trial `n` below `max_ms` (a small LCG: the same every run).
fn delay(n: u64, max_ms: u64) -> Duration {
    let x = n
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    Duration::from_millis((x >> 33) % max_ms)
}

/// Runs `args`, SIGKILLs it after `after` unless it ended; true when it was killed.
fn kill_after(config: &Path, args: &[&str], after: Duration) -> bool {
    let mut child = spawn_quiet(config, args);
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    killed
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    // Sparse, so it is quick to make and takes a while to read, hash and compress.
    std::fs::File::create(tree.join("disk.img"))
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    for i in 0..50 {
        std::fs::write(tree.join(format!("f{i}")), vec![i as u8; 20_000]).unwrap();
    }
    let db = Connection::open(dir.path().join("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) INSERT INTO t SELECT hex(randomblob(40)) FROM n;",
    )
    .unwrap();
    let config = dir.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[retention]\nkeep_last = 1\n[sources.tree]\nkind = \"directory\"\npath = \"{0}/tree\"\n[sources.app]\nkind = \"sqlite\"\npath = \"{0}/app.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    (dir, config)
}

/// Every listed backup verifies by decoding every part.
fn every_listed_backup_verifies(config: &Path) {
    let listed: serde_json::Value = serde_json::from_str(&ok(config, &["list", "--json"])).unwrap();
    for backup in listed.as_array().unwrap() {
        ok(config, &["verify", backup["id"].as_str().unwrap()]);
    }
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[test]
fn killed_backups_and_prunes_leave_a_clean_repository() {
    let (dir, config) = setup();
    let mut killed = 0;
    for n in 0..trials() {
        killed += u64::from(kill_after(&config, &["backup", "tree"], delay(n, 1000)));
        every_listed_backup_verifies(&config);
        // The next backup is not blocked by anything the crash left.
        ok(&config, &["backup", "tree"]);
        killed += u64::from(kill_after(&config, &["prune"], delay(n + 1000, 60)));
        every_listed_backup_verifies(&config);
    }
    assert!(killed > 0, "no trial killed a running process");
    // Clean up: orphans go, the newest backup restores.
    ok(&config, &["prune", "--orphan-grace", "0s"]);
    // A second real prune finds nothing left (a dry run does not look for orphans).
    let out = ok(&config, &["prune", "--orphan-grace", "0s"]);
    assert!(out.contains("0 orphaned objects removed"), "{out}");
    let restored = dir.path().join("restored");
    ok(
        &config,
        &["restore", "tree", "--to", restored.to_str().unwrap()],
    );
    assert_eq!(files_under(&restored), 51);
}

#[test]
fn a_killed_restore_leaves_the_old_or_the_new_database() {
    let (dir, config) = setup();
    ok(&config, &["backup", "app"]);
    let db = dir.path().join("app.db");
    let count = || -> i64 {
        let conn = Connection::open(&db).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    for n in 0..trials() {
        // The live database moves on; a restore brings back the backup's 50000 rows.
        Connection::open(&db)
            .unwrap()
            .execute("INSERT INTO t VALUES ('after the backup')", [])
            .unwrap();
        let before = count();
        kill_after(&config, &["restore", "app", "--force"], delay(n, 300));
        let after = count();
        assert!(after == before || after == 50_000, "{before} -> {after}");
    }
    // The next restore removes the staged files killed restores left, then succeeds.
    let (code, out) = dr(&config, &["restore", "app", "--force"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(count(), 50_000);
    let staged: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".dr-restore-"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
}
