//! The corruption sweep shared by the tests of each kind: every object of a backup flipped,
//! truncated and deleted on a fresh copy of the repository; `dr verify` must name it (exit 3)
//! and `dr restore` must refuse a damaged data part without writing its target.

use std::path::{Path, PathBuf};

use super::dr;

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
pub fn sweep(dir: &Path, config: &Path, source: &str, id: &str) -> usize {
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
                let left = match std::fs::read_dir(&target) {
                    Ok(entries) => entries.count(),
                    Err(_) => usize::from(target.exists()),
                };
                assert_eq!(left, 0, "{case}: the target was written:\n{out}");
            }
            cases += 1;
        }
    }
    cases
}
