//! The corruption sweep: for every object of a SQLite backup and of a directory backup, a
//! flipped byte, a truncation and a deletion, each on a fresh copy of the repository.
//! `dr verify` reports every case (exit 3) naming the object; `dr restore` refuses every
//! damaged data part and leaves its target as it was (here: not created).

mod common;

use std::path::{Path, PathBuf};

use common::{dr, ok};

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip,
    Truncate,
    Delete,
}

fn damage(object: &Path, how: Damage) {
    match how {
        Damage::Flip => {
            let mut bytes = std::fs::read(object).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x40;
            std::fs::write(object, bytes).unwrap();
        }
        Damage::Truncate => {
            let len = std::fs::metadata(object).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(object)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
        Damage::Delete => std::fs::remove_file(object).unwrap(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A configuration identical to `config` but for the repository path.
fn config_for(dir: &Path, config: &Path, repo: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap().replace(
        &format!("{}/repo\"", dir.display()),
        &format!("{}\"", repo.display()),
    );
    let path = repo.with_extension("toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Sweeps every object of backup `id` of `source`; returns how many cases were checked.
fn sweep(dir: &Path, config: &Path, source: &str, id: &str) -> usize {
    let backup_dir = dir.join("repo/backups").join(source).join(id);
    let mut objects: Vec<String> = std::fs::read_dir(&backup_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n != "manifest.json")
        .collect();
    objects.sort();
    let mut cases = 0;
    for object in &objects {
        for how in [Damage::Flip, Damage::Truncate, Damage::Delete] {
            let case = format!("{source}-{object}-{how:?}");
            let repo = dir.join("cases").join(&case);
            copy_dir(&dir.join("repo"), &repo);
            let case_config = config_for(dir, config, &repo);
            damage(
                &repo.join("backups").join(source).join(id).join(object),
                how,
            );
            let (code, out) = dr(&case_config, &["verify", id]);
            assert_eq!(code, 3, "{case}: verify passed:\n{out}");
            assert!(
                out.contains(object.as_str()),
                "{case}: {object} not named:\n{out}"
            );
            if object != "SHA256SUMS" {
                let target = dir.join("restored").join(&case);
                let (code, out) = dr(
                    &case_config,
                    &["restore", source, id, "--to", target.to_str().unwrap()],
                );
                assert_ne!(code, 0, "{case}: restore succeeded:\n{out}");
                let left = std::fs::read_dir(&target).map_or(0, |d| d.count());
                assert_eq!(left, 0, "{case}: the target was written:\n{out}");
            }
            cases += 1;
        }
    }
    cases
}

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
