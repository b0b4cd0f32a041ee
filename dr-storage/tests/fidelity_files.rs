//! Fidelity of directory restores: a corpus of awkward entries (hard links, FIFO, device,
//! odd symlinks, xattrs, ACLs, sparse file, set-id modes, nanosecond mtimes, odd names,
//! owners) fingerprinted with lstat/getfacl before the backup, then restored into a new
//! directory (with and without --owners), from an incremental chain into an empty directory,
//! and in place over a modified tree: every restored tree equals the source field by field.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use dr_core::{BackupOptions, Identities, Manifest, Repository, RestoreOptions};
use dr_storage::files::{DirectorySource, DirectoryTarget, TreeReport, read_index};
use dr_testing::fidelity::files::{
    fields_under, fingerprint_tree, is_root, make_corpus, modify_corpus, with_source_entries,
    without_owners,
};
use dr_testing::fidelity::{Fingerprint, assert_faithful};

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://fidelity", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

async fn restore(
    repo: &Repository,
    backup: &Manifest,
    source: &Path,
    to: Option<&Path>,
    owners: bool,
) -> TreeReport {
    let mut options = RestoreOptions::default();
    if let Some(to) = to {
        options = options.with_target(to);
    }
    DirectoryTarget::new(source, repo.clone())
        .with_owners(owners)
        .restore_tree(&repo.reader(backup.clone()), &options)
        .await
        .unwrap()
        .1
}

/// Without --owners every entry belongs to the restoring user: owners are not compared.
fn faithful(mode: &str, source: &Fingerprint, restored: &Path, owners: bool) {
    let found = fingerprint_tree(restored);
    if owners {
        assert_faithful(mode, source, &found);
    } else {
        assert_faithful(mode, &without_owners(source), &without_owners(&found));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_restores_keep_every_attribute() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    make_corpus(&root);
    let first = fingerprint_tree(&root);
    oracle_sees_the_awkward_cases(&first);
    let repo = repository().await;
    let full = repo
        .backup(
            "files",
            &DirectorySource::new(&root),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        fingerprint_tree(&root),
        first,
        "the backup changed the source"
    );
    if is_root() {
        assert_eq!(
            full.source_info["special_files"], 2,
            "{:?}",
            full.source_info
        );
    }
    assert_eq!(full.source_info["hard_links"], 2, "{:?}", full.source_info);

    let fresh = work.path().join("fresh");
    let tree = restore(&repo, &full, &root, Some(&fresh), false).await;
    faithful("into a new directory", &first, &fresh, false);
    assert_eq!(tree.hard_links, 2);
    assert!(
        tree.special_not_created.is_empty(),
        "{:?}",
        tree.special_not_created
    );
    // Only the second and third names of a hard-linked file (its bytes are in the tar under
    // the first, `elsewhere/c`): they come back, linked to each other.
    let some = work.path().join("some");
    let (_, tree) = DirectoryTarget::new(&root, repo.clone())
        .with_selection(vec!["links".into()])
        .restore_tree(
            &repo.reader(full.clone()),
            &RestoreOptions::default().with_target(&some),
        )
        .await
        .unwrap();
    assert_eq!((tree.files, tree.hard_links), (2, 1));
    let selected = fingerprint_tree(&some);
    assert_eq!(selected.get("hard links"), Some("links/a = links/b"));
    assert_eq!(selected.get("links/b sha256"), first.get("links/b sha256"));
    assert!(!some.join("elsewhere").exists());
    if is_root() {
        let owned = work.path().join("owned");
        restore(&repo, &full, &root, Some(&owned), true).await;
        faithful("into a new directory with --owners", &first, &owned, true);
    }

    modify_corpus(&root);
    let second = fingerprint_tree(&root);
    let mut options = BackupOptions::default();
    options.depends_on = vec![full.id.clone()];
    let index = read_index(&repo.reader(full.clone())).await.unwrap();
    let increment = repo
        .backup(
            "files",
            &DirectorySource::new(&root).with_parent(&full.id, index),
            &options,
        )
        .await
        .unwrap();
    assert!(
        increment.source_info["stored_files"].as_u64().unwrap() < 10,
        "{:?}",
        increment.source_info
    );
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    restore(&repo, &increment, &root, Some(&empty), is_root()).await;
    faithful(
        "an incremental chain into an empty directory",
        &second,
        &empty,
        is_root(),
    );

    // A third backup after one new file: the hard-linked file is referenced from the second
    // backup, its second name a link in this one's tar.
    std::fs::write(root.join("third.txt"), b"third\n").unwrap();
    let third_fp = fingerprint_tree(&root);
    let mut options = BackupOptions::default();
    options.depends_on = vec![full.id.clone(), increment.id.clone()];
    let index = read_index(&repo.reader(increment.clone())).await.unwrap();
    let third = repo
        .backup(
            "files",
            &DirectorySource::new(&root).with_parent(&increment.id, index),
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        third.source_info["stored_files"], 1,
        "{:?}",
        third.source_info
    );
    let chain = work.path().join("chain");
    restore(&repo, &third, &root, Some(&chain), is_root()).await;
    faithful("a chain of three", &third_fp, &chain, is_root());
    std::fs::remove_file(root.join("third.txt")).unwrap();

    // In place over the (again modified) tree: the full backup's tree comes back exactly,
    // without what the second backup added, the root included.
    modify_more(&root);
    restore(&repo, &full, &root, None, is_root()).await;
    faithful("in place over a modified tree", &first, &root, is_root());
    restore(&repo, &increment, &root, None, is_root()).await;
    faithful(
        "in place, from the incremental chain",
        &second,
        &root,
        is_root(),
    );
}

fn modify_more(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(root.join("stray"), b"not in any backup\n").unwrap();
    std::fs::remove_file(root.join("pipe")).unwrap();
}

/// The oracle looks at what the corpus made (so a restore losing it cannot pass).
fn oracle_sees_the_awkward_cases(fp: &Fingerprint) {
    let expect = |field: &str, value: &str| {
        assert_eq!(
            fp.get(field),
            Some(value),
            "source fingerprint field {field}"
        );
    };
    expect("hard links", "elsewhere/c = links/a = links/b");
    expect("sparse.img sparse", "sparse");
    expect("pipe type", "fifo");
    expect("non-utf8-target target", "caf\\xe9/\\xff");
    expect("setuid mode", "4755");
    expect("sticky mode", "1777");
    expect("setgid mode", "2750");
    expect("read-only mode", "0555");
    expect(". mode", "0750");
    expect(". mtime", "1650000000.000000042");
    expect("plain.txt mtime", "1.000000001");
    expect("empty mtime", "4102444800.999999999");
    expect(
        "xattr.txt xattrs",
        "user.binary=00ff010a user.comment=68656c6c6f",
    );
    assert!(
        fp.get("acl acl.txt")
            .is_some_and(|a| a.contains("user:65534:r--")),
        "{fp:?}"
    );
    assert!(
        fp.get("acl acl-dir")
            .is_some_and(|a| a.contains("default:user:65534:rwx")),
        "{fp:?}"
    );
    assert!(fp.get("long-target target").is_some_and(|t| t.len() > 100));
    assert!(fp.get("new\\nline type").is_some(), "{fp:?}");
    if is_root() {
        expect("null device", "1:3");
        expect("owned/by-nobody owner", "65534:65534");
    }
}

async fn restore_only(
    repo: &Repository,
    backup: &Manifest,
    root: &Path,
    to: Option<&Path>,
    only: &[&str],
) -> dr_core::Result<TreeReport> {
    let mut options = RestoreOptions::default();
    if let Some(to) = to {
        options = options.with_target(to);
    }
    DirectoryTarget::new(root, repo.clone())
        .with_owners(is_root())
        .with_selection(only.iter().map(|s| (*s).to_owned()).collect())
        .restore_tree(&repo.reader(backup.clone()), &options)
        .await
        .map(|(_, tree)| tree)
}

fn same(mode: &str, expected: &Fingerprint, tree: &Path) {
    faithful(mode, expected, tree, is_root());
    let leftovers: Vec<_> = std::fs::read_dir(tree.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("dr-restore"))
        .collect();
    assert!(leftovers.is_empty(), "{mode}: staging left {leftovers:?}");
}

/// `--only` over the live tree puts the selection back into it: a deleted file and the
/// deleted directory of another come back with their recorded attributes, a modified file
/// is restored with the modified one kept aside, a directory is replaced whole (the old one
/// kept aside); everything else (files newer than the backup included) stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_in_place_puts_the_selection_into_the_live_tree() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    make_corpus(&root);
    let source = fingerprint_tree(&root);
    let repo = repository().await;
    let full = repo
        .backup(
            "files",
            &DirectorySource::new(&root),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    std::fs::write(
        root.join("created-after-backup"),
        b"newer than the backup\n",
    )
    .unwrap();
    std::fs::write(root.join("data/newer.bin"), b"also newer\n").unwrap();
    std::fs::remove_file(root.join("xattr.txt")).unwrap();
    std::fs::remove_file(root.join("data/random.bin")).unwrap();
    std::fs::set_permissions(
        root.join("read-only"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::remove_dir_all(root.join("read-only")).unwrap();
    std::fs::write(root.join("plain.txt"), b"modified after the backup\n").unwrap();
    std::fs::write(root.join("links/newer"), b"new in a restored directory\n").unwrap();
    std::fs::remove_file(root.join("pipe")).unwrap();
    std::fs::remove_file(root.join("relative")).unwrap();
    std::os::unix::fs::symlink("elsewhere", root.join("relative")).unwrap();

    // Deleted files, one in a directory that is there, one in a directory that is gone.
    let live = fingerprint_tree(&root);
    let only = [
        "xattr.txt",
        "data/random.bin",
        "read-only/inside.txt",
        "pipe",
    ];
    let tree = restore_only(&repo, &full, &root, None, &only)
        .await
        .unwrap();
    let merged = tree.merged.clone().expect("a merge into the live tree");
    assert_eq!(
        merged.placed,
        ["data/random.bin", "pipe", "read-only", "xattr.txt"],
        "{merged:?}"
    );
    assert!(merged.kept_aside.is_empty(), "{merged:?}");
    assert_eq!(tree.files, 3);
    let expected = with_source_entries(&live, &source, &["xattr.txt", "data/random.bin", "pipe"]);
    let expected = with_source_entries(&expected, &source, &["read-only"]);
    same("--only deleted files, in place", &expected, &root);

    // A modified file and a symlink pointing elsewhere: restored, the live ones kept aside.
    let live = fingerprint_tree(&root);
    let tree = restore_only(&repo, &full, &root, None, &["plain.txt", "relative"])
        .await
        .unwrap();
    let merged = tree.merged.unwrap();
    assert_eq!(merged.placed, ["plain.txt", "relative"]);
    let mut expected = with_source_entries(&live, &source, &["plain.txt", "relative"]);
    for (kept, path) in merged.kept_aside.iter().zip(["plain.txt", "relative"]) {
        assert_eq!(kept.path, path, "{merged:?}");
        let kept_at = Path::new(&kept.kept_at);
        let name = kept_at.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(&format!("{path}.pre-restore-")),
            "{kept:?}"
        );
        assert_eq!(kept_at.parent(), Some(root.as_path()));
        for (field, value) in fields_under(&live, path, name) {
            expected.set(field, value);
        }
    }
    assert_eq!(merged.kept_aside.len(), 2, "{merged:?}");
    assert_eq!(
        std::fs::read_link(root.join("relative")).unwrap(),
        Path::new("plain.txt")
    );
    same(
        "--only a modified file and a changed symlink, in place",
        &expected,
        &root,
    );

    // A directory: replaced whole by the recorded one, the live one (with a newer file)
    // kept aside; its hard links come back linked to each other.
    let live = fingerprint_tree(&root);
    let tree = restore_only(&repo, &full, &root, None, &["links"])
        .await
        .unwrap();
    let merged = tree.merged.unwrap();
    assert_eq!(merged.placed, ["links"]);
    let kept_name = Path::new(&merged.kept_aside[0].kept_at)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut expected = with_source_entries(&live, &source, &["links"]);
    for (field, value) in fields_under(&live, "links", &kept_name) {
        expected.set(field, value);
    }
    expected.set(
        "hard links",
        format!("elsewhere/c = {kept_name}/a = {kept_name}/b; links/a = links/b"),
    );
    same("--only a directory, in place", &expected, &root);
    assert_eq!(
        std::fs::read(root.join(&kept_name).join("newer")).unwrap(),
        b"new in a restored directory\n"
    );

    // A glob matching a directory but not what is in it (`s*`: `setgid`, not
    // `setgid/file`): that directory is merged, never replaced by an empty one.
    std::fs::write(
        root.join("setgid/newer"),
        b"in a partly selected directory\n",
    )
    .unwrap();
    let live = fingerprint_tree(&root);
    let tree = restore_only(&repo, &full, &root, None, &["s*"])
        .await
        .unwrap();
    let merged = tree.merged.unwrap();
    let whole = ["setuid", "sparse.img", "sticky"];
    assert_eq!(merged.placed, whole, "{merged:?}");
    let mut expected = with_source_entries(&live, &source, &whole);
    for kept in &merged.kept_aside {
        let name = Path::new(&kept.kept_at)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        for (field, value) in fields_under(&live, &kept.path, name) {
            expected.set(field, value);
        }
    }
    assert_eq!(merged.kept_aside.len(), 3, "{merged:?}");
    same(
        "--only a glob matching part of a directory",
        &expected,
        &root,
    );

    // A selection of nothing is refused, the tree untouched.
    let live = fingerprint_tree(&root);
    let refused = restore_only(&repo, &full, &root, None, &["no-such-path"]).await;
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("matches nothing"), "{message}");
    same("a refused selection", &live, &root);

    // Into a non-empty --to directory: merged the same way.
    let other = work.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), b"already here\n").unwrap();
    let before = fingerprint_tree(&other);
    restore_only(&repo, &full, &root, Some(&other), &["xattr.txt"])
        .await
        .unwrap();
    let expected = with_source_entries(&before, &source, &["xattr.txt"]);
    same("--only into a non-empty --to directory", &expected, &other);
}
