//! `dr bench` on a real local repository: every level x threads combination of the pipeline
//! measured, the largest backup restored to a null sink and into a scratch target, a
//! projection per source, and nothing left behind in the repository.

mod common;

use common::ok;

#[test]
fn bench_measures_the_pipeline_and_a_restore_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO t SELECT hex(randomblob(50)) FROM n;",
    )
    .unwrap();
    let config = dir.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.app]\nkind = \"sqlite\"\npath = \"{0}/app.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    ok(&config, &["backup", "app"]);
    let out = ok(
        &config,
        &[
            "bench",
            "--size-mib",
            "4",
            "--levels",
            "1,3",
            "--threads",
            "1,2",
            "--json",
        ],
    );
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    let runs = result["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2 * 2 * 2 + 2, "{out}");
    for run in runs {
        let mb_per_s = run["mb_per_s"].as_f64().unwrap();
        assert!(mb_per_s > 0.0, "{run}");
        let from_figures =
            run["plain_bytes"].as_f64().unwrap() / 1e3 / run["elapsed_ms"].as_f64().unwrap();
        assert!((mb_per_s - from_figures).abs() <= 1e-6 * mb_per_s, "{run}");
    }
    let pipeline = &runs[0];
    assert_eq!(pipeline["plain_bytes"], 4 << 20);
    assert!(
        pipeline["stored_bytes"].as_u64().unwrap() < 4 << 20,
        "generated data compresses"
    );
    assert!(
        runs[9]["phase"] == "restore_scratch" && runs[8]["phase"] == "restore_null_sink",
        "{out}"
    );
    let projection = &result["projections"][0];
    assert_eq!(projection["source"], "app");
    assert!(projection["projected_scratch_target_ms"].as_u64().unwrap() > 0);
    assert!(result["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    let left: Vec<String> = std::fs::read_dir(dir.path().join("repo"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".dr-bench"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The repository is as it was: one backup, which still verifies.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&config, &["list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    ok(&config, &["verify"]);
}
