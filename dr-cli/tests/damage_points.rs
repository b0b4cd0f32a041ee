//! The damage sweep of a recovery point record, `points/<id>.json`: flipped bytes (in the
//! middle, and in each field naming something), truncated, replaced by invalid JSON,
//! deleted. `dr verify`, `dr list --points` and `dr restore --point` report it and never
//! take the point as fine; a restore writes nothing; `dr prune` deletes no backup.

mod common;

use std::path::Path;

use common::sweep::{Damage, config_for, copy_dir, damage, listing_of};
use common::{dr, ok};

/// Every `backups/<source>/<id>/manifest.json` of the repository.
fn manifests(repo: &Path) -> Vec<String> {
    let backups = repo.join("backups");
    let mut found = Vec::new();
    for source in listing_of(&backups) {
        for id in listing_of(&backups.join(&source)) {
            if backups
                .join(&source)
                .join(&id)
                .join("manifest.json")
                .exists()
            {
                found.push(format!("{source}/{id}"));
            }
        }
    }
    found
}

/// Byte offsets to flip: inside each value that names something, a field name, the middle.
fn flip_offsets(text: &str) -> Vec<(String, usize)> {
    let mut offsets = vec![("middle".to_owned(), text.len() / 2)];
    for key in [
        "id",
        "group",
        "source",
        "backup_id",
        "kind",
        "finished_at",
        "created_at",
    ] {
        let pattern = format!("\"{key}\": \"");
        for (n, (at, _)) in text.match_indices(&pattern).enumerate() {
            offsets.push((format!("{key}{n}"), at + pattern.len() + 1));
        }
    }
    let members = text.find("\"members\"").unwrap();
    offsets.push(("key-members".into(), members + 2));
    offsets
}

#[test]
fn a_damaged_recovery_point_is_reported_refused_and_keeps_its_backups() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let db = rusqlite::Connection::open(dir.join("app.db")).unwrap();
    db.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")
        .unwrap();
    drop(db);
    std::fs::create_dir_all(dir.join("tree")).unwrap();
    std::fs::write(dir.join("tree/a.txt"), b"a").unwrap();
    let config = dir.join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[retention]\nkeep_last = 1\n[sources.app]\nkind = \"sqlite\"\npath = \"{0}/app.db\"\n[sources.tree]\nkind = \"directory\"\npath = \"{0}/tree\"\n",
            dir.display()
        ),
    )
    .unwrap();
    ok(&config, &["keygen"]);
    ok(&config, &["init"]);
    ok(&config, &["backup", "--all"]);
    // A newer backup of app: keep_last = 1 alone would forget the point's app backup.
    ok(&config, &["backup", "app"]);
    ok(&config, &["verify"]);
    ok(&config, &["list", "--points"]);
    let plan = ok(&config, &["prune", "--dry-run"]);
    assert!(plan.contains("member of kept recovery point"), "{plan}");
    let points = listing_of(&dir.join("repo/points"));
    assert_eq!(points.len(), 1, "{points:?}");
    let point_id = points[0].strip_suffix(".json").unwrap().to_owned();
    let record = dir.join("repo/points").join(&points[0]);
    let text = std::fs::read_to_string(&record).unwrap();
    // A system loss: the restores below must not bring anything back.
    std::fs::remove_file(dir.join("app.db")).unwrap();
    std::fs::remove_dir_all(dir.join("tree")).unwrap();

    let mut cases: Vec<(String, Option<usize>, Damage)> = flip_offsets(&text)
        .into_iter()
        .map(|(name, at)| (format!("flip-{name}"), Some(at), Damage::Flip))
        .collect();
    for how in [Damage::Truncate, Damage::InvalidJson, Damage::Delete] {
        cases.push((format!("{how:?}"), None, how));
    }
    for (case, at, how) in &cases {
        let repo = dir.join("cases").join(case);
        copy_dir(&dir.join("repo"), &repo);
        let case_config = config_for(dir, &config, &repo);
        let object = repo.join("points").join(&points[0]);
        match at {
            Some(at) => {
                let mut bytes = text.clone().into_bytes();
                bytes[*at] ^= 0x40;
                std::fs::write(&object, bytes).unwrap();
            }
            None => damage(&object, *how),
        }
        let before = manifests(&repo);
        for point in [point_id.as_str(), "latest"] {
            let (code, out) = dr(&case_config, &["restore", "--point", point]);
            assert_ne!(code, 0, "{case}: restore --point {point} succeeded:\n{out}");
            assert!(
                !dir.join("app.db").exists() && !dir.join("tree").exists(),
                "{case}: restore --point {point} wrote:\n{out}"
            );
        }
        if *how != Damage::Delete {
            let (code, out) = dr(&case_config, &["verify"]);
            assert_eq!(code, 3, "{case}: verify passed:\n{out}");
            assert!(out.contains(&point_id), "{case}: point not named:\n{out}");
            let (code, out) = dr(&case_config, &["list", "--points"]);
            assert_eq!(code, 3, "{case}: list --points passed:\n{out}");
            assert!(out.contains(&point_id), "{case}: point not named:\n{out}");
            let (code, out) = dr(&case_config, &["prune", "--orphan-grace", "0s"]);
            assert_eq!(code, 3, "{case}: prune said nothing:\n{out}");
            assert_eq!(manifests(&repo), before, "{case}: prune deleted:\n{out}");
        }
        std::fs::remove_dir_all(&repo).unwrap();
    }
    println!("{} point damage cases checked", cases.len());
}
