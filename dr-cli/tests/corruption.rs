//! The corruption sweep: for every object of a SQLite backup and of a directory backup, a
//! flipped byte, a truncation and a deletion, each on a fresh copy of the repository.
//! `dr verify` reports every case (exit 3) naming the object; `dr restore` refuses every
//! damaged data part and leaves its target as it was (here: not created).

mod common;

use common::ok;
use common::sweep::sweep;

#[test]
fn every_damaged_object_is_reported_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) INSERT INTO t SELECT hex(randomblob(30)) FROM n;",
    )
    .unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..20 {
        std::fs::write(tree.join(format!("sub/f{i}")), vec![i as u8; 30_000]).unwrap();
    }
    let config = dir.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[pipeline]\npart_size_mib = 1\n[sources.app]\nkind = \"sqlite\"\npath = \"{0}/app.db\"\n[sources.tree]\nkind = \"directory\"\npath = \"{0}/tree\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    ok(&config, &["backup", "--all"]);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&config, &["list", "--json"])).unwrap();
    let mut cases = 0;
    for backup in listed.as_array().unwrap() {
        let (source, id) = (
            backup["source"].as_str().unwrap(),
            backup["id"].as_str().unwrap(),
        );
        cases += sweep(dir.path(), &config, source, id);
    }
    println!("{cases} damage cases checked");
    // SQLite: 2+ parts and SHA256SUMS; tree: tar parts, the index and SHA256SUMS.
    assert!(cases >= 18, "{cases} cases");
}
