//! The `dr` binary end to end: commands, output, JSON and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(retention: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("app.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE api_keys (id INTEGER PRIMARY KEY, name TEXT);
             CREATE TABLE jobs (id INTEGER PRIMARY KEY, api_key_id INTEGER REFERENCES api_keys(id), status TEXT);
             INSERT INTO api_keys (name) VALUES ('web');
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO jobs (api_key_id, status) SELECT 1, 'done' FROM n;",
        )
        .unwrap();
        let config = format!(
            "repository = \"./repo\"\nidentity = \"./key.txt\"\n\n[retention]\n{retention}\n\n\
             [sources.app]\nkind = \"sqlite\"\npath = \"./app.db\"\n\n\
             [[sources.app.checks]]\nname = \"jobs present\"\nsql = \"SELECT count(*) FROM jobs\"\nexpect = \">= 1\"\n"
        );
        std::fs::write(dir.path().join("dr.toml"), config).unwrap();
        Workspace { dir }
    }

    fn dr(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dr"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("DR_REPOSITORY")
            .env_remove("DR_IDENTITY")
            .env_remove("DR_CONFIG")
            .output()
            .unwrap()
    }

    /// Runs and asserts the exit code; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.expect(args, 0).0
    }

    fn expect(&self, args: &[&str], code: i32) -> (String, String) {
        let out = self.dr(args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "dr {args:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        (stdout, stderr)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn jobs(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn backup_list_verify_restore_prune() {
    let ws = Workspace::new("keep_last = 1");
    assert!(ws.ok(&["keygen"]).contains("public key: age1"));
    assert!(ws.ok(&["init"]).contains("created repository"));
    for _ in 0..3 {
        assert!(ws.ok(&["backup", "app"]).contains("backed up app"));
    }
    let table = ws.ok(&["list"]);
    assert!(table.starts_with("SOURCE"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    let listed: serde_json::Value = serde_json::from_str(&ws.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let newest = listed[0]["id"].as_str().unwrap().to_owned();

    let verified = ws.ok(&["verify", "--level", "restore"]);
    assert!(verified.contains("integrity_check ok"), "{verified}");
    assert!(
        verified.contains("check jobs present: 3000 >= 1 ok"),
        "{verified}"
    );
    let shown: serde_json::Value =
        serde_json::from_str(&ws.ok(&["show", &newest, "--json"])).unwrap();
    assert_eq!(shown["source_info"]["row_counts"]["jobs"], 3000);

    let restored = ws.ok(&["restore", "app", "--to", "restored.db"]);
    assert!(restored.contains(&newest), "{restored}");
    assert_eq!(jobs(&ws.path("restored.db")), 3000);

    let plan = ws.ok(&["prune", "--dry-run"]);
    assert_eq!(plan.matches("would delete").count(), 2, "{plan}");
    assert!(plan.contains("newest, last 1/1"), "{plan}");
    assert_eq!(
        ws.ok(&["list", "--json"]).matches("\"id\"").count(),
        3,
        "dry run deletes nothing"
    );
    let pruned: serde_json::Value = serde_json::from_str(&ws.ok(&["prune", "--json"])).unwrap();
    assert_eq!(pruned["deleted"].as_array().unwrap().len(), 2);
    let left: serde_json::Value = serde_json::from_str(&ws.ok(&["list", "--json"])).unwrap();
    assert_eq!(left[0]["id"], newest.as_str());
}

#[test]
fn restore_in_place_keeps_the_previous_file() {
    let ws = Workspace::new("");
    ws.ok(&["keygen"]);
    ws.ok(&["init"]);
    ws.ok(&["backup", "--all"]);
    Connection::open(ws.path("app.db"))
        .unwrap()
        .execute("DELETE FROM jobs", [])
        .unwrap();
    let out = ws.ok(&["restore", "app"]);
    assert!(out.contains("the previous data is kept at"), "{out}");
    assert_eq!(jobs(&ws.path("app.db")), 3000);
}

#[test]
fn exit_codes_and_messages() {
    let ws = Workspace::new("");
    // Usage errors: 2.
    ws.expect(&["frobnicate"], 2);
    let (_, err) = ws.expect(&["restore", "nosuch"], 2);
    assert!(err.contains("no source named \"nosuch\""), "{err}");
    // Operational: no repository yet.
    let (_, err) = ws.expect(&["list"], 1);
    assert!(
        err.contains("No dr repository at") && err.contains("dr init"),
        "{err}"
    );
    ws.ok(&["keygen"]);
    let (_, err) = ws.expect(&["keygen"], 1);
    assert!(err.contains("already exists"), "{err}");
    ws.ok(&["init"]);
    let (_, err) = ws.expect(&["init"], 1);
    assert!(err.contains("already exists"), "{err}");
    ws.ok(&["backup", "app"]);
    // A restore without the key says how to give it.
    let (_, err) = ws.expect(
        &[
            "restore",
            "app",
            "--to",
            "x.db",
            "--identity",
            "/nonexistent/key.txt",
        ],
        1,
    );
    assert!(err.contains("/nonexistent/key.txt"), "{err}");
    // Verification failure: 3, naming the damaged object.
    let part = std::fs::read_dir(ws.path("repo/backups/app"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
        .join("db.000000.zst.age");
    dr_testing::damage::damage_file(&part, dr_testing::Damage::Flip);
    let (out, err) = ws.expect(&["verify"], 3);
    assert!(
        out.contains("PROBLEM") && out.contains("db.000000.zst.age"),
        "{out}"
    );
    assert!(err.contains("failed verification"), "{err}");
    let (_, err) = ws.expect(&["restore", "app", "--to", "y.db"], 3);
    assert!(err.contains("db.000000.zst.age"), "{err}");
    assert!(!ws.path("y.db").exists(), "nothing left at the target");
}
