//! Ransomware-proof repositories through the CLI, on a real S3-compatible server (moto) on
//! 127.0.0.1, with boto3 (not dr) reading what S3 holds: backups on a lock-enabled bucket
//! are locked until their keep date plus the margin, `dr verify --locks` says so, prune keeps
//! what is still locked; on a versioned bucket `--as-of` lists and restores a backup an
//! attacker deleted; a bucket without Object Lock fails `verify --locks`.

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, TimeDelta, Utc};
use dr_testing::{LockOracle, S3Server};

mod common;

struct Site {
    work: tempfile::TempDir,
    s3: S3Server,
}

impl Site {
    fn new(repository: &str) -> Site {
        let site = Site {
            work: tempfile::tempdir().unwrap(),
            s3: S3Server::start(),
        };
        let db = rusqlite::Connection::open(site.dir().join("app.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('before the attack'), ('second row');",
        )
        .unwrap();
        std::fs::write(
            site.dir().join("dr.toml"),
            format!(
                "identity = \"./key.txt\"\n{repository}\n[retention]\nkeep_last = 1\nkeep_daily = 3\n\n[sources.app]\nkind = \"sqlite\"\npath = \"./app.db\"\n"
            ),
        )
        .unwrap();
        site
    }

    fn dir(&self) -> &Path {
        self.work.path()
    }

    fn dr(&self, args: &[&str]) -> (i32, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
        command
            .args(args)
            .current_dir(self.dir())
            .env_remove("DR_REPOSITORY")
            .env_remove("DR_AS_OF");
        for (name, value) in self.s3.options() {
            command.env(name.to_uppercase(), value);
        }
        common::output_of(command)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out) = self.dr(args);
        assert_eq!(code, 0, "dr {args:?}: {out}");
        out
    }

    fn ids(&self, args: &[&str]) -> Vec<String> {
        let listed: serde_json::Value = serde_json::from_str(&self.ok(args)).unwrap();
        let mut ids: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }
}

fn rows(db: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(db).unwrap();
    let mut statement = db.prepare("SELECT x FROM t ORDER BY rowid").unwrap();
    statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn backups_on_a_locked_bucket_are_locked_verified_and_kept_by_prune_while_locked() {
    let site = Site::new("[repository]\nurl = \"s3://locked/repo\"\nlock_margin = \"2d\"\n");
    let oracle = LockOracle::new(&site.s3);
    oracle.create_locked_bucket("locked");
    site.ok(&["keygen"]);
    site.ok(&["init"]);
    site.ok(&["backup", "app"]);
    site.ok(&["backup", "app"]);
    let two = site.ids(&["list", "--json", "app"]);
    assert_eq!(two.len(), 2);

    // keep_daily = 3 guarantees 3 days; plus the 2-day margin: locked about 5 days.
    let expected = Utc::now() + TimeDelta::days(5);
    let seen = oracle.retention("locked", "repo/backups/app/");
    assert!(seen.len() >= 6, "{seen:?}");
    for (key, (mode, until)) in &seen {
        assert_eq!(mode.as_deref(), Some("GOVERNANCE"), "{key}");
        let until: DateTime<Utc> = until.unwrap_or_else(|| panic!("{key} is not locked"));
        assert!(
            (until - expected).num_minutes().abs() < 10,
            "{key} locked until {until}, expected about {expected}"
        );
    }
    site.ok(&["backup", "--all"]);
    let points = oracle.retention("locked", "repo/points/");
    assert_eq!(points.len(), 1, "{points:?}");
    assert!(
        points.values().all(|(_, until)| until.is_some()),
        "the recovery point's record is locked: {points:?}"
    );
    let out = site.ok(&["verify", "--locks"]);
    assert!(out.contains("OK locks"), "{out}");

    // keep_last = 1 and one day: retention forgets the older backups, the lock holds them.
    let ids = site.ids(&["list", "--json", "app"]);
    assert_eq!(ids.len(), 3);
    let out = site.ok(&["prune"]);
    assert!(
        out.contains("locked until"),
        "prune says why it kept it: {out}"
    );
    assert_eq!(site.ids(&["list", "--json", "app"]), ids, "nothing deleted");
    let (_, status) = site.dr(&["status", "--json"]);
    assert!(!status.contains("not locked long enough"), "{status}");
    assert!(
        !status.contains("overdue"),
        "locked backups are not overdue: {status}"
    );
}

#[test]
fn as_of_lists_and_restores_a_backup_an_attacker_deleted() {
    let site = Site::new("repository = \"s3://versioned/repo\"\n");
    let oracle = LockOracle::new(&site.s3);
    oracle.create_versioned_bucket("versioned");
    site.ok(&["keygen"]);
    site.ok(&["init"]);
    site.ok(&["backup", "app"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = Utc::now().to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    oracle.overwrite_all("versioned", "repo/");
    oracle.delete_all("versioned", "repo/");
    let (code, out) = site.dr(&["list"]);
    assert_ne!(code, 0, "the live repository is gone: {out}");

    assert_eq!(
        site.ids(&["list", "--json", "app", "--as-of", &before])
            .len(),
        1
    );
    site.ok(&["restore", "app", "--to", "restored.db", "--as-of", &before]);
    assert_eq!(
        rows(&site.dir().join("restored.db")),
        rows(&site.dir().join("app.db"))
    );

    for writes in [&["prune"][..], &["backup", "app"]] {
        let mut args = writes.to_vec();
        args.extend(["--as-of", &before]);
        let (code, out) = site.dr(&args);
        assert_eq!(code, 2, "{args:?} is refused up front: {out}");
        assert!(out.contains("only goes with"), "{out}");
    }
    let (code, out) = site.dr(&["list", "--as-of", "yesterday"]);
    assert_eq!(
        code, 2,
        "a time that does not parse is a usage error: {out}"
    );
    assert!(out.contains("RFC 3339"), "{out}");
}

#[test]
fn verify_locks_on_a_bucket_without_object_lock_fails_and_says_why() {
    let site = Site::new("repository = \"s3://dr-test/plain\"\n");
    site.ok(&["keygen"]);
    site.ok(&["init"]);
    site.ok(&["backup", "app"]);
    let (code, out) = site.dr(&["verify", "--locks"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("has no Object Lock"), "{out}");
}
