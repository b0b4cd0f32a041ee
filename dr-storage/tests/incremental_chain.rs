//! A chain of four directory backups (a full and three increments) with same-size rewrites
//! whose mtime is put back (`touch -r`), deletions, renames and type changes (file -> dir,
//! file -> symlink, symlink -> file, dir -> file). Every backup restored alone into a fresh
//! directory equals the tree at its backup time, compared by an oracle listing taken then
//! with `find` and `sha256sum`, not by dr's index.

use std::path::Path;
use std::process::Command;

use dr_core::{BackupOptions, Identities, Manifest, Repository, RestoreOptions};
use dr_storage::files::{DirectorySource, DirectoryTarget, read_index};

/// Type, mode, size, mtime (files, directories), link target (symlinks) and SHA-256 (files)
/// of every path under `root`, sorted.
fn listing(root: &Path) -> Vec<String> {
    let run = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .current_dir(root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let mut lines: Vec<String> = [
        run(&[
            "find",
            ".",
            "-mindepth",
            "1",
            "-type",
            "d",
            "-printf",
            "d %m %T@ %p\n",
        ]),
        run(&["find", ".", "-type", "f", "-printf", "f %m %s %T@ %p\n"]),
        run(&["find", ".", "-type", "l", "-printf", "l %p -> %l\n"]),
        run(&["find", ".", "-type", "f", "-exec", "sha256sum", "{}", "+"]),
    ]
    .iter()
    .flat_map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>())
    .collect();
    lines.sort();
    lines
}

/// Rewrites `path` in place with `bytes` (same length), then puts its mtime back.
fn rewrite_keeping_mtime(path: &Path, bytes: &[u8]) {
    let reference = tempfile::NamedTempFile::new().unwrap();
    let reference = reference.path();
    assert!(
        Command::new("touch")
            .arg("-r")
            .arg(path)
            .arg(reference)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(std::fs::metadata(path).unwrap().len(), bytes.len() as u64);
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
    std::fs::write(path, bytes).unwrap();
    assert!(
        Command::new("touch")
            .arg("-r")
            .arg(reference)
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&after),
        inode,
        "rewritten in place"
    );
}

fn write(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

async fn backup(repo: &Repository, root: &Path, parent: Option<&Manifest>) -> Manifest {
    let mut source = DirectorySource::new(root);
    let mut options = BackupOptions::default();
    if let Some(parent) = parent {
        let index = read_index(&repo.reader(parent.clone())).await.unwrap();
        options.depends_on = index.holders();
        options.depends_on.retain(|id| *id != parent.id);
        options.depends_on.push(parent.id.clone());
        source = source.with_parent(&parent.id, index);
    }
    repo.backup("tree", &source, &options).await.unwrap()
}

#[tokio::test]
async fn every_backup_of_a_chain_restores_its_own_tree() {
    let identities = Identities::generate();
    let store = std::sync::Arc::new(dr_core::object_store::memory::InMemory::new());
    let repo = Repository::init(store, "memory://chain", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    write(&root, "a.txt", b"version one of a");
    write(&root, "b.txt", b"bbbb");
    write(&root, "dir/c.txt", b"c");
    write(&root, "becomes_dir", b"a file first");
    write(&root, "becomes_link", b"a file first");
    write(&root, "keep.bin", &vec![7u8; 300_000]);
    write(&root, "sub/deep/x", b"deep");
    std::os::unix::fs::symlink("a.txt", root.join("link_becomes_file")).unwrap();

    let mut backups = Vec::new();
    let mut listings = Vec::new();
    backups.push(backup(&repo, &root, None).await);
    listings.push(listing(&root));

    // 1: same-size rewrite with its mtime put back, deletion, rename, file -> dir,
    // file -> symlink.
    rewrite_keeping_mtime(&root.join("a.txt"), b"version TWO of a");
    std::fs::remove_file(root.join("b.txt")).unwrap();
    std::fs::rename(root.join("dir/c.txt"), root.join("dir/c-renamed.txt")).unwrap();
    std::fs::remove_file(root.join("becomes_dir")).unwrap();
    write(&root, "becomes_dir/inside", b"now a directory");
    std::fs::remove_file(root.join("becomes_link")).unwrap();
    std::os::unix::fs::symlink("keep.bin", root.join("becomes_link")).unwrap();
    backups.push(backup(&repo, &root, backups.last()).await);
    listings.push(listing(&root));
    assert!(backups[1].source_info["stored_files"].as_u64().unwrap() >= 2);

    // 2: symlink -> file, directory -> file, a big same-size rewrite, a whole subtree gone.
    std::fs::remove_file(root.join("link_becomes_file")).unwrap();
    write(&root, "link_becomes_file", b"was a link");
    std::fs::remove_dir_all(root.join("becomes_dir")).unwrap();
    write(&root, "becomes_dir", b"a file again");
    let mut big = vec![7u8; 300_000];
    big[150_000] = 8;
    rewrite_keeping_mtime(&root.join("keep.bin"), &big);
    std::fs::remove_dir_all(root.join("sub")).unwrap();
    backups.push(backup(&repo, &root, backups.last()).await);
    listings.push(listing(&root));

    // 3: a renamed directory, a mode change only, an empty file, a rename onto an old name.
    std::fs::rename(root.join("dir"), root.join("dir2")).unwrap();
    std::fs::set_permissions(
        root.join("a.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    write(&root, "empty", b"");
    std::fs::rename(root.join("becomes_dir"), root.join("b.txt")).unwrap();
    rewrite_keeping_mtime(&root.join("a.txt"), b"version 3!! of a");
    backups.push(backup(&repo, &root, backups.last()).await);
    listings.push(listing(&root));

    for (i, (manifest, expected)) in backups.iter().zip(&listings).enumerate() {
        let into = work.path().join(format!("restored-{i}"));
        DirectoryTarget::new(&into, repo.clone())
            .restore_tree(&repo.reader(manifest.clone()), &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(&listing(&into), expected, "backup {i} ({})", manifest.id);
    }
    assert_ne!(listings[0], listings[1]);
}
