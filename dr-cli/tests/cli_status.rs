//! `dr status` conditions provoked one by one on a SQLite source (no backup, backup older than
//! the RPO, never drilled, failed drill, size anomaly, overdue retention, a copy lacking the
//! newest backup), each cleared again; and the Prometheus output read back by a real parser
//! of the text exposition format.

mod common;

use std::path::PathBuf;

use common::{dr, ok};
use rusqlite::Connection;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        let db = Connection::open(setup.db()).unwrap();
        db.execute_batch("CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('a');")
            .unwrap();
        setup.configure("rpo = \"1h\"", "");
        ok(&setup.config(), &["keygen"]);
        ok(&setup.config(), &["init"]);
        setup
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("dr.toml")
    }

    fn configure(&self, objectives: &str, extra: &str) {
        std::fs::write(
            self.config(),
            format!(
                "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n{extra}\n[objectives]\n{objectives}\n[sources.app]\nkind = \"sqlite\"\npath = \"{0}/app.db\"\n",
                self.dir.path().display()
            ),
        )
        .unwrap();
    }

    /// `dr status`: exit code and output.
    fn status(&self) -> (i32, String) {
        dr(&self.config(), &["status"])
    }

    fn expect_problem(&self, words: &str) {
        let (code, out) = self.status();
        assert_eq!(code, 3, "{out}");
        assert!(out.contains(words), "expected {words:?} in:\n{out}");
    }

    fn expect_ok(&self) {
        let (code, out) = self.status();
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(" ok"), "{out}");
    }

    fn grow(&self, rows: usize) {
        let db = Connection::open(self.db()).unwrap();
        for _ in 0..rows {
            db.execute("INSERT INTO t VALUES (hex(randomblob(500)))", [])
                .unwrap();
        }
    }
}

#[test]
fn each_condition_is_reported_and_cleared() {
    let s = Setup::new();
    let config = s.config();
    s.expect_problem("no backup yet");
    ok(&config, &["backup", "app"]);
    s.expect_ok();

    // Older than the RPO objective.
    s.configure("rpo = \"1s\"", "");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    s.expect_problem("more than the RPO objective of 1s");

    // Drills: never drilled, then drilled, then a failed one.
    s.configure("rpo = \"1h\"\ndrill_every = \"30d\"", "");
    s.expect_problem("never drilled");
    ok(&config, &["drill", "app"]);
    s.expect_ok();
    s.configure("rpo = \"1h\"\nrto = \"1ms\"\ndrill_every = \"30d\"", "");
    let (code, _) = dr(&config, &["drill", "app"]);
    assert_eq!(code, 3);
    s.expect_problem("the newest drill");
    s.configure("rpo = \"1h\"\ndrill_every = \"30d\"", "");
    ok(&config, &["drill", "app"]);
    s.expect_ok();

    // Size: three backups of about the same size, then one ten times bigger.
    s.grow(20);
    for _ in 0..3 {
        ok(&config, &["backup", "app"]);
    }
    ok(&config, &["drill", "app"]);
    s.expect_ok();
    s.grow(400);
    ok(&config, &["backup", "app"]);
    ok(&config, &["drill", "app"]);
    s.expect_problem("of the median of the");

    // Retention: keep_last = 2 leaves the older ones to prune.
    s.configure("rpo = \"1h\"", "[retention]\nkeep_last = 2\n");
    s.expect_problem("retention is overdue");
    ok(&config, &["prune"]);
    let (_, out) = s.status();
    assert!(!out.contains("retention is overdue"), "{out}");

    // A copy that lacks the newest backup, until `dr copy`.
    let copy = s.dir.path().join("offsite");
    let copies = format!("copies = [\"{}\"]\n", copy.display());
    s.configure("rpo = \"1h\"", &copies);
    ok(&config, &["copy"]);
    ok(&config, &["backup", "app"]);
    s.expect_problem("lacks the newest backup");
    ok(&config, &["copy"]);
    let (_, out) = s.status();
    assert!(!out.contains("lacks the newest backup"), "{out}");
}

#[test]
fn prometheus_output_parses_and_matches_the_repository() {
    let s = Setup::new();
    let config = s.config();
    ok(&config, &["backup", "app"]);
    ok(&config, &["drill", "app"]);
    let textfile = s.dir.path().join("dr.prom");
    let (code, text) = dr(
        &config,
        &[
            "status",
            "--prometheus",
            "--textfile",
            textfile.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(std::fs::read_to_string(&textfile).unwrap(), text);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let value = |name: &str| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("source") == Some("app"))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        match sample.value {
            prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{name} is {other:?}"),
        }
    };
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&config, &["list", "--json"])).unwrap();
    assert_eq!(
        value("dr_backup_last_bytes"),
        listed[0]["plain_bytes"].as_f64().unwrap()
    );
    assert_eq!(value("dr_drill_last_success"), 1.0);
    assert_eq!(value("dr_status_problems"), 0.0);
    assert_eq!(value("dr_rpo_objective_seconds"), 3600.0);
    let age = chrono_now() - value("dr_backup_last_success_timestamp_seconds");
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(value("dr_drill_last_rto_seconds") >= 0.0);
    assert!(
        scrape.docs.contains_key("dr_rpo_seconds"),
        "HELP lines present"
    );
}

fn chrono_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
