//! The corruption sweep shared by the tests of each kind: every object of a backup flipped,
//! truncated and deleted on a fresh copy of the repository, the manifest also replaced with
//! invalid JSON, and data parts swapped with each other or with a part of another backup (the
//! manifest's stored checksums rewritten to match, so that only the plain SHA-256 can tell);
//! `dr verify` must name the object (exit 3), `dr restore` must refuse without writing its
//! target, and `dr prune` must delete nothing of a backup whose manifest is still there.

use std::path::{Path, PathBuf};

use super::dr;

/// One way of damaging an object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Damage {
    Flip,
    Truncate,
    Delete,
    InvalidJson,
    /// This part's bytes swapped with the next part's of the same artifact.
    SwapParts,
    /// This part replaced by a valid part of another backup.
    ForeignPart,
}

/// Damages file `object` as `how` says (not for the part swaps: see `replace_part`).
pub fn damage(object: &Path, how: Damage) {
    use dr_testing::Damage as Bytes;
    let bytes = match how {
        Damage::Flip => Bytes::Flip,
        Damage::Truncate => Bytes::Truncate,
        Damage::Delete => Bytes::Delete,
        Damage::InvalidJson => Bytes::InvalidJson,
        Damage::SwapParts | Damage::ForeignPart => unreachable!("see replace_part"),
    };
    dr_testing::damage::damage_file(object, bytes);
}

/// Copies the tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
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
pub fn config_for(dir: &Path, config: &Path, repo: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap().replace(
        &format!("{}/repo\"", dir.display()),
        &format!("{}\"", repo.display()),
    );
    let path = repo.with_extension("toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Replaces part `object` of the backup in `backup_dir` by `with` (bytes of another valid
/// part) and rewrites the stored size and SHA-256 of the manifest and SHA256SUMS to match:
/// what an attacker who can write the store would do. Only the plain SHA-256 tells.
fn replace_part(backup_dir: &Path, object: &str, with: &[u8]) {
    let stored = dr_core::sha256_hex(with);
    let manifest_path = backup_dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let mut sums = String::new();
    for artifact in manifest["artifacts"].as_array_mut().unwrap() {
        for part in artifact["parts"].as_array_mut().unwrap() {
            if part["object"] == object {
                part["stored_sha256"] = stored.clone().into();
                part["stored_size"] = with.len().into();
            }
            sums.push_str(&format!(
                "{}  {}\n",
                part["stored_sha256"].as_str().unwrap(),
                part["object"].as_str().unwrap()
            ));
        }
    }
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::write(backup_dir.join("SHA256SUMS"), sums).unwrap();
    std::fs::write(backup_dir.join(object), with).unwrap();
}

/// A valid part from another backup in the repository, if there is one.
fn foreign_part(repo: &Path, source: &str, id: &str) -> Option<Vec<u8>> {
    let backups = repo.join("backups");
    for source_dir in std::fs::read_dir(&backups).ok()?.flatten() {
        for backup in std::fs::read_dir(source_dir.path()).ok()?.flatten() {
            if source_dir.file_name() == source && backup.file_name() == id {
                continue;
            }
            let part = std::fs::read_dir(backup.path())
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".zst.age"));
            if let Some(part) = part {
                return std::fs::read(part).ok();
            }
        }
    }
    None
}

/// The damages that apply to `object`, among `objects` of the backup.
fn damages_for(object: &str, objects: &[String]) -> Vec<Damage> {
    let mut damages = vec![Damage::Flip, Damage::Truncate, Damage::Delete];
    if object == "manifest.json" {
        damages.push(Damage::InvalidJson);
    }
    if object.ends_with(".zst.age") {
        if next_part(object, objects).is_some() {
            damages.push(Damage::SwapParts);
        }
        damages.push(Damage::ForeignPart);
    }
    damages
}

/// The part after `object` in the same artifact (`db.000000.zst.age` -> `db.000001.zst.age`).
fn next_part(object: &str, objects: &[String]) -> Option<String> {
    let (artifact, rest) = object.rsplit_once(".zst.age")?.0.rsplit_once('.')?;
    let index: u32 = rest.parse().ok()?;
    let next = format!("{artifact}.{:06}.zst.age", index + 1);
    objects.contains(&next).then_some(next)
}

/// The sorted names in `dir` (empty when it does not exist).
pub fn listing_of(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Damages `object` of the backup in `backup_dir` as `how` says; false when the case does
/// not apply (no other backup to take a part from).
fn apply(
    repo: &Path,
    source: &str,
    id: &str,
    object: &str,
    objects: &[String],
    how: Damage,
) -> bool {
    let backup_dir = repo.join("backups").join(source).join(id);
    match how {
        Damage::SwapParts => {
            let Some(next) = next_part(object, objects) else {
                return false;
            };
            let (a, b) = (
                std::fs::read(backup_dir.join(object)).unwrap(),
                std::fs::read(backup_dir.join(&next)).unwrap(),
            );
            replace_part(&backup_dir, object, &b);
            replace_part(&backup_dir, &next, &a);
        }
        Damage::ForeignPart => {
            let Some(foreign) = foreign_part(repo, source, id) else {
                return false;
            };
            replace_part(&backup_dir, object, &foreign);
        }
        other => damage(&backup_dir.join(object), other),
    }
    true
}

/// Judges a restore that succeeded: `(case, backup id, output)`.
pub type SuccessCheck<'a> = dyn Fn(&str, &str, &str) -> bool + 'a;

/// Where the restore of a case goes, and how to tell that it was written.
pub struct Target<'a> {
    /// The arguments of `dr restore` for case `case` of backup `id`.
    pub restore_args: &'a dyn Fn(&str, &str) -> Vec<String>,
    /// Whether the target of case `case` was written (false: left as it was).
    pub written: &'a dyn Fn(&str) -> bool,
    /// Which objects of the backup to damage (a sample, where the cases share a code path).
    pub objects: &'a dyn Fn(&str) -> bool,
    /// Whether a restore of case `case` of backup `id` that succeeded, printing `out`, is
    /// right all the same (judged without dr: the damage was in a checksum the restore does
    /// not need, or a point-in-time restore took an older base backup). `None`: no restore
    /// of a damaged backup may succeed.
    pub success_ok: Option<&'a SuccessCheck<'a>>,
}

/// Sweeps every object of backup `id` of `source`; returns how many cases were checked.
/// Restores go to a new directory `restored/<case>`, which must not appear.
pub fn sweep(dir: &Path, config: &Path, source: &str, id: &str) -> usize {
    let root = dir.join("restored");
    let path = |case: &str| root.join(case);
    let restore_args = |case: &str, id: &str| {
        let to = path(case).to_str().unwrap().to_owned();
        ["restore", source, id, "--to", &to]
            .map(str::to_owned)
            .to_vec()
    };
    let written = |case: &str| match std::fs::read_dir(path(case)) {
        Ok(entries) => entries.count() > 0,
        Err(_) => path(case).exists(),
    };
    let target = Target {
        restore_args: &restore_args,
        written: &written,
        objects: &|_| true,
        success_ok: None,
    };
    sweep_to(dir, config, source, id, &target)
}

/// [`sweep`] with the restores going to `target`.
pub fn sweep_to(dir: &Path, config: &Path, source: &str, id: &str, target: &Target) -> usize {
    let backup_dir = dir.join("repo/backups").join(source).join(id);
    let objects = listing_of(&backup_dir);
    let mut cases = 0;
    for object in objects.iter().filter(|o| (target.objects)(o)) {
        for how in damages_for(object, &objects) {
            let case = format!("{source}-{object}-{how:?}");
            let repo = dir.join("cases").join(&case);
            copy_dir(&dir.join("repo"), &repo);
            let case_config = config_for(dir, config, &repo);
            if !apply(&repo, source, id, object, &objects, how) {
                std::fs::remove_dir_all(&repo).unwrap();
                continue;
            }
            let (code, verified) = dr(&case_config, &["verify", id]);
            let out = &verified;
            assert_eq!(code, 3, "{case}: verify passed:\n{out}");
            assert!(
                out.contains(object.as_str()),
                "{case}: {object} not named:\n{out}"
            );
            let damaged_dir = repo.join("backups").join(source).join(id);
            if object == "manifest.json" && how != Damage::Delete {
                let before = listing_of(&damaged_dir);
                let (_, out) = dr(&case_config, &["prune", "--orphan-grace", "0s"]);
                assert_eq!(
                    listing_of(&damaged_dir),
                    before,
                    "{case}: prune deleted:\n{out}"
                );
            }
            if object != "SHA256SUMS" {
                let args = (target.restore_args)(&case, id);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let (code, out) = dr(&case_config, &args);
                if code == 0 && target.success_ok.is_some_and(|f| f(&case, id, &out)) {
                    println!("{case}: the restore succeeded and passed the test's own check");
                    std::fs::remove_dir_all(&repo).unwrap();
                    cases += 1;
                    continue;
                }
                assert_ne!(
                    code, 0,
                    "{case}: restore succeeded:\n{out}\nverify said:\n{verified}"
                );
                assert!(
                    !(target.written)(&case),
                    "{case}: the target was written:\n{out}"
                );
            }
            std::fs::remove_dir_all(&repo).unwrap();
            cases += 1;
        }
    }
    cases
}
