//! Whole-system recovery from the command line, without servers: a SQLite database, an
//! uploads tree and a configuration directory backed up as one recovery point, a system
//! loss, `dr restore --point latest` in the group's order, drills with objectives, the
//! recovery report, a failed source making the point incomplete, and prune keeping a
//! point whole.

mod common;

use std::path::Path;

use common::{dr, ok};
use rusqlite::Connection;

fn build_system(root: &Path) {
    std::fs::create_dir_all(root.join("storage/uploads")).unwrap();
    std::fs::create_dir_all(root.join("config")).unwrap();
    let db = Connection::open(root.join("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE jobs(id INTEGER PRIMARY KEY, status TEXT);
         CREATE TABLE api_keys(id INTEGER PRIMARY KEY, key TEXT);
         INSERT INTO api_keys(key) VALUES ('k1'), ('k2');",
    )
    .unwrap();
    for i in 0..20 {
        db.execute("INSERT INTO jobs(status) VALUES ('done')", [])
            .unwrap();
        std::fs::write(
            root.join(format!("storage/uploads/video-{i}.mp4")),
            vec![i as u8; 5000],
        )
        .unwrap();
    }
    std::fs::write(root.join("config/.env"), b"API_SECRET=s3cret\n").unwrap();
}

fn config(root: &Path, extra: &str) -> std::path::PathBuf {
    let path = root.join("dr.toml");
    std::fs::write(
        &path,
        format!(
            r#"repository = "{0}/repo"
identity = "{0}/key.txt"

[objectives]
rto = "1h"
rpo = "24h"

[retention]
keep_last = 1

[groups.system]
sources = ["db", "storage", "config"]

[sources.db]
kind = "sqlite"
path = "{0}/app.db"

[[sources.db.checks]]
name = "api keys present"
sql = "SELECT count(*) FROM api_keys"
expect = ">= 1"

[sources.storage]
kind = "directory"
path = "{0}/storage"

[sources.config]
kind = "directory"
path = "{0}/config"
{extra}"#,
            root.display()
        ),
    )
    .unwrap();
    path
}

fn json(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let out = ok(config, &with_json);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_recovery_point_is_backed_up_restored_drilled_and_reported() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    build_system(root);
    let config = config(root, "");
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    let out = ok(
        &config,
        &["backup", "--group", "system", "--label", "daily"],
    );
    assert!(out.contains("complete"), "{out}");
    let points = json(&config, &["list", "--points"]);
    assert_eq!(points.as_array().unwrap().len(), 1);
    let members: Vec<&str> = points[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["source"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["db", "storage", "config"]);

    // Full system loss: the database, the uploads and the configuration are gone.
    std::fs::remove_file(root.join("app.db")).unwrap();
    std::fs::remove_dir_all(root.join("storage")).unwrap();
    std::fs::remove_dir_all(root.join("config")).unwrap();
    let out = ok(&config, &["restore", "--point", "latest"]);
    let order: Vec<usize> = ["  db ", "  storage ", "  config "]
        .iter()
        .map(|s| out.find(s).unwrap_or_else(|| panic!("{s}: {out}")))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "restore order: {out}"
    );
    assert!(out.contains("restored in"), "{out}");
    let db = Connection::open(root.join("app.db")).unwrap();
    let jobs: i64 = db
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(jobs, 20);
    assert_eq!(
        std::fs::read(root.join("storage/uploads/video-7.mp4")).unwrap(),
        vec![7u8; 5000]
    );
    assert_eq!(
        std::fs::read(root.join("config/.env")).unwrap(),
        b"API_SECRET=s3cret\n"
    );

    // A drill of the point: every source test-restored and checked, objectives met.
    let report = root.join("report.md");
    let out = ok(
        &config,
        &[
            "drill",
            "--point",
            "latest",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(out.matches("passed").count(), 3, "{out}");
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("| db |") && md.contains("| storage |"), "{md}");
    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("report.json")).unwrap()).unwrap();
    assert_eq!(figures["drill_success_rate_pct"], 100.0, "{figures}");
    assert_eq!(figures["backup_success_rate_pct"], 100.0, "{figures}");
    let db_report = figures["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "db")
        .unwrap();
    assert!(db_report["rto_actual_s"].as_f64().unwrap() < 3600.0);
    assert_eq!(db_report["objectives"]["rpo"], "1day");

    // A check that fails in the scratch copy fails the drill (exit 3) and is reported.
    let failing = config_with_failing_check(root);
    let (code, out) = dr(&failing, &["drill", "db"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("FAILED") && out.contains("api keys"), "{out}");
    let report = ok(&failing, &["report"]);
    assert!(report.contains("FAILED"), "{report}");
    // The live database was not touched by the failed drill.
    let keys: i64 = db
        .query_row("SELECT count(*) FROM api_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 2);
}

fn config_with_failing_check(root: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root.join("dr.toml"))
        .unwrap()
        .replace("expect = \">= 1\"", "expect = \">= 100\"");
    let path = root.join("failing.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_failed_source_makes_the_point_incomplete_and_prune_keeps_points_whole() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    build_system(root);
    let broken = format!(
        "\n[groups.with-missing]\nsources = [\"db\", \"gone\"]\n[sources.gone]\nkind = \"sqlite\"\npath = \"{}/missing.db\"\n",
        root.display()
    );
    let config = config(root, &broken);
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    let (code, out) = dr(&config, &["backup", "--group", "with-missing"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INCOMPLETE") && out.contains("gone"), "{out}");
    let (code, out) = dr(&config, &["restore", "--point", "latest"]);
    assert_eq!(code, 2, "an incomplete point is never latest: {out}");

    // Two complete points; keep_last = 1 per source would forget the older db and
    // storage backups, but the newest db backup belongs to a point with the older storage.
    ok(&config, &["backup", "--group", "system"]);
    ok(&config, &["backup", "db"]);
    let out = ok(&config, &["prune", "--dry-run"]);
    assert!(out.contains("member of kept recovery point"), "{out}");
    let report = json(&config, &["report"]);
    let gone = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "gone")
        .unwrap();
    assert_eq!(gone["backup_success_rate_pct"], 0.0, "{report}");
}
