use super::*;
use crate::sibling_path;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn is_root() -> bool {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().metadata().unwrap().uid() == 0
}

#[test]
fn a_new_target_is_created_and_nothing_is_left_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sub/app.db");
    let staging = Staging::file(&target).unwrap();
    std::fs::write(staging.path(), b"new").unwrap();
    let swapped = staging.commit(&Inherit::Replaced).unwrap();
    assert!(swapped.previous.is_none());
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert_eq!(names(&dir.path().join("sub")), ["app.db"]);
}

#[test]
fn a_replaced_file_gives_its_mode_and_xattrs_and_is_kept_with_its_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("app.db");
    std::fs::write(&target, b"old").unwrap();
    std::fs::write(sibling_path(&target, "-wal"), b"old wal").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let xattrs = xattr::set(&target, "user.dr-test", b"kept").is_ok();
    let staging = Staging::file(&target)
        .unwrap()
        .with_sidecars(&["-wal", "-shm"]);
    std::fs::write(staging.path(), b"new").unwrap();
    std::fs::write(sibling_path(staging.path(), "-shm"), b"stray").unwrap();
    let kept = staging
        .commit(&Inherit::Replaced)
        .unwrap()
        .previous
        .unwrap();

    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    if xattrs {
        assert_eq!(
            xattr::get(&target, "user.dr-test").unwrap().as_deref(),
            Some(&b"kept"[..])
        );
    }
    assert_eq!(std::fs::read(&kept).unwrap(), b"old");
    assert_eq!(
        std::fs::read(sibling_path(&kept, "-wal")).unwrap(),
        b"old wal"
    );
    let kept_name = kept.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        names(dir.path()),
        [
            "app.db".to_owned(),
            kept_name.clone(),
            format!("{kept_name}-wal")
        ]
    );
}

#[test]
fn the_owner_of_the_replaced_file_is_given_when_root() {
    if !is_root() {
        eprintln!("skipped: changing owners needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("dump.rdb");
    std::fs::write(&target, b"old").unwrap();
    std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
    let staging = Staging::file(&target).unwrap();
    std::fs::write(staging.path(), b"new").unwrap();
    staging.commit(&Inherit::Replaced).unwrap();
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
}

#[test]
fn two_restores_in_one_second_keep_both_previous_versions() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("app.db");
    std::fs::write(&target, b"first").unwrap();
    let mut kept = Vec::new();
    for content in [&b"second"[..], b"third"] {
        let staging = Staging::file(&target).unwrap();
        std::fs::write(staging.path(), content).unwrap();
        kept.push(
            staging
                .commit(&Inherit::Replaced)
                .unwrap()
                .previous
                .unwrap(),
        );
    }
    assert_ne!(kept[0], kept[1]);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), b"first");
    assert_eq!(std::fs::read(&kept[1]).unwrap(), b"second");
    assert_eq!(std::fs::read(&target).unwrap(), b"third");
}

#[test]
fn a_directory_is_exchanged_and_the_old_tree_kept() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("uploads");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("old.txt"), b"old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o750)).unwrap();
    let staging = Staging::dir(&target).unwrap();
    std::fs::write(staging.path().join("new.txt"), b"new").unwrap();
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o705)).unwrap();
    let kept = staging.commit(&Inherit::Staged).unwrap().previous.unwrap();
    assert_eq!(names(&target), ["new.txt"]);
    assert_eq!(names(&kept), ["old.txt"]);
    assert_eq!(
        std::fs::metadata(&target).unwrap().mode() & 0o7777,
        0o705,
        "Inherit::Staged keeps the restored root's own mode"
    );
    assert_eq!(names(dir.path()).len(), 2, "{:?}", names(dir.path()));
}

#[test]
fn a_directory_inherits_the_replaced_roots_mode_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("tree");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o751)).unwrap();
    let staging = Staging::dir(&target).unwrap();
    staging.commit(&Inherit::Replaced).unwrap();
    assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o751);
}

#[test]
fn a_staging_dropped_without_commit_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("app.db");
    std::fs::write(&target, b"old").unwrap();
    {
        let staging = Staging::file(&target).unwrap().with_sidecars(&["-wal"]);
        std::fs::write(staging.path(), b"half").unwrap();
        std::fs::write(sibling_path(staging.path(), "-wal"), b"half").unwrap();
        let tree = Staging::dir(&dir.path().join("tree")).unwrap();
        std::fs::write(tree.path().join("f"), b"half").unwrap();
    }
    assert_eq!(names(dir.path()), ["app.db"]);
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
}

/// The pid of a process that has exited (a child reaped by `wait`).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn leftovers_of_killed_restores_are_removed_but_a_swapped_tree_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("tree");
    std::fs::create_dir(&target).unwrap();
    let pid = dead_pid();
    let abandoned = dir.path().join(format!(".tree.dr-restore-{pid}-00000001"));
    std::fs::create_dir(&abandoned).unwrap();
    std::fs::write(abandoned.join("half"), b"x").unwrap();
    let swapping = dir.path().join(format!(".tree.dr-restore-{pid}-00000002"));
    std::fs::create_dir(&swapping).unwrap();
    std::fs::write(swapping.join("previous"), b"precious").unwrap();
    std::fs::write(sibling_path(&swapping, SWAPPING_SUFFIX), b"").unwrap();
    let lone_marker = dir
        .path()
        .join(format!(".tree.dr-restore-{pid}-00000003.swapping"));
    std::fs::write(&lone_marker, b"").unwrap();
    let alive = dir
        .path()
        .join(format!(".tree.dr-restore-{}-00000004", std::process::id()));
    std::fs::create_dir(&alive).unwrap();

    let staging = Staging::dir(&target).unwrap();
    let left = names(dir.path());
    assert!(!abandoned.exists(), "{left:?}");
    assert!(!lone_marker.exists(), "{left:?}");
    assert!(alive.exists(), "a live restore's staging is not touched");
    let kept: Vec<&String> = left.iter().filter(|n| n.contains("pre-restore")).collect();
    assert_eq!(kept.len(), 1, "{left:?}");
    assert_eq!(
        std::fs::read(dir.path().join(kept[0]).join("previous")).unwrap(),
        b"precious"
    );
    drop(staging);
}

#[test]
fn an_owner_that_cannot_be_given_fails_before_the_target_changes() {
    if is_root() {
        eprintln!("skipped: root can give any owner");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("app.db");
    std::fs::write(&target, b"old").unwrap();
    let staging = Staging::file(&target).unwrap();
    let attributes = Attributes {
        uid: 0,
        gid: 0,
        mode: 0o600,
        xattrs: Vec::new(),
    };
    let err = staging.commit(&Inherit::Set(attributes)).unwrap_err();
    assert!(err.to_string().contains("owner 0:0"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"old");
    assert_eq!(names(dir.path()), ["app.db"]);
}

#[test]
fn a_process_holding_a_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("held");
    std::fs::write(&file, b"x").unwrap();
    assert_eq!(process_holding(std::slice::from_ref(&file)), None);
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .stdin(std::fs::File::open(&file).unwrap())
        .spawn()
        .unwrap();
    let held = process_holding(std::slice::from_ref(&file));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(held, Some(child.id()));
}

#[test]
fn acls_inherited_from_where_it_is_restored_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let set = std::process::Command::new("setfacl")
        .args(["-d", "-m", "u:nobody:rwx"])
        .arg(dir.path())
        .status();
    if !set.is_ok_and(|s| s.success()) {
        eprintln!("skipped: setfacl (Debian package acl) is missing or ACLs are unsupported here");
        return;
    }
    let acl = |p: &Path| xattr::get(p, "system.posix_acl_access").unwrap();
    let target = dir.path().join("app.db");
    let staging = Staging::file(&target).unwrap();
    assert_eq!(
        acl(staging.path()),
        None,
        "the staged file inherited an ACL"
    );
    staging.commit(&Inherit::Replaced).unwrap();
    assert_eq!(acl(&target), None);
    let tree = Staging::dir(&dir.path().join("tree")).unwrap();
    assert_eq!(acl(tree.path()), None);
    let child = tree.path().join("f");
    std::fs::write(&child, b"x").unwrap();
    assert_eq!(
        acl(&child),
        None,
        "a child inherited the target directory's default ACL"
    );
}

#[test]
fn sidecars_beside_a_missing_target_are_kept_away_from_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("app.db");
    std::fs::write(sibling_path(&target, "-wal"), b"a stale wal").unwrap();
    let staging = Staging::file(&target)
        .unwrap()
        .with_sidecars(&["-wal", "-shm"]);
    std::fs::write(staging.path(), b"new").unwrap();
    let swapped = staging.commit(&Inherit::Replaced).unwrap();
    assert!(swapped.previous.is_none());
    assert!(
        !sibling_path(&target, "-wal").exists(),
        "{:?}",
        names(dir.path())
    );
    assert_eq!(swapped.sidecars_kept.len(), 1);
    assert_eq!(
        std::fs::read(&swapped.sidecars_kept[0]).unwrap(),
        b"a stale wal"
    );
}

#[test]
fn a_symlinked_target_is_restored_where_the_link_points() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.db");
    std::fs::write(&real, b"old").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("app.db");
    std::os::unix::fs::symlink("real.db", &link).unwrap();
    let staging = Staging::file(&link).unwrap();
    assert_eq!(staging.target(), real);
    std::fs::write(staging.path(), b"new").unwrap();
    staging.commit(&Inherit::Replaced).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&real).unwrap(), b"new");
    assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o7777, 0o640);
}
