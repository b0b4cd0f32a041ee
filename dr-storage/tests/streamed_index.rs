//! The streamed file index: an incremental reads its parent's index beside the walk and
//! declares only the backups it reads; hard links (kept, added, broken) survive a chain,
//! checked with `stat` (inode sharing, link counts) and the bytes; a damaged parent index
//! fails the backup with what to do and lists nothing new.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use dr_core::object_store::local::LocalFileSystem;
use dr_core::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use dr_core::{BackupOptions, Identities, Manifest, Repository, RestoreOptions};
use dr_storage::files::{DirectorySource, DirectoryTarget};
use futures::TryStreamExt;

async fn local_repository(dir: &Path) -> (Repository, Arc<dyn ObjectStore>) {
    let identities = Identities::generate();
    std::fs::create_dir_all(dir).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
    let repo = Repository::init(store.clone(), "file://repo", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities);
    (repo, store)
}

/// Path -> (size, mode, content) and, for names of one inode, the sorted group of names.
fn snapshot(root: &Path) -> (BTreeMap<String, String>, Vec<Vec<String>>) {
    let mut files = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for entry in walkdir(root) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        let rel = entry.strip_prefix(root).unwrap().display().to_string();
        let content = if meta.is_file() {
            String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned()
        } else {
            String::new()
        };
        files.insert(
            rel.clone(),
            format!("{} {:o} {content}", meta.len(), meta.mode()),
        );
        if meta.is_file() && meta.nlink() > 1 {
            inodes.entry(meta.ino()).or_default().push(rel);
        }
    }
    let mut groups: Vec<Vec<String>> = inodes.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    (files, groups)
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walkdir(&path));
        }
    }
    out
}

async fn restore(repo: &Repository, backup: &Manifest, to: &Path) {
    DirectoryTarget::new(to, repo.clone())
        .restore_tree(
            &repo.reader(backup.clone()),
            &RestoreOptions::default().with_target(to),
        )
        .await
        .unwrap();
}

async fn full_backup(repo: &Repository, root: &Path) -> Manifest {
    repo.backup(
        "files",
        &DirectorySource::new(root),
        &BackupOptions::default(),
    )
    .await
    .unwrap()
}

async fn incremental(repo: &Repository, root: &Path, parent: &Manifest) -> Manifest {
    let source = DirectorySource::new(root).with_parent_backup(repo.reader(parent.clone()));
    repo.backup("files", &source, &BackupOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_chain_keeps_hard_links_and_depends_only_on_what_it_reads() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    for dir in ["a", "b", "c"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for i in 0..50 {
        std::fs::write(root.join(format!("a/{i:03}")), format!("first {i}")).unwrap();
    }
    std::fs::write(root.join("b/shared"), "shared bytes").unwrap();
    std::fs::hard_link(root.join("b/shared"), root.join("c/second")).unwrap();
    std::fs::write(root.join("b/outside"), "its other name is outside").unwrap();
    std::fs::hard_link(root.join("b/outside"), work.path().join("elsewhere")).unwrap();
    let (repo, _) = local_repository(&work.path().join("repo")).await;
    let full = full_backup(&repo, &root).await;

    // A new name for the shared file, sorted before its first one; every file of a/ rewritten.
    std::fs::hard_link(root.join("b/shared"), root.join("a/000-third")).unwrap();
    for i in 0..50 {
        std::fs::write(root.join(format!("a/{i:03}")), format!("second {i}")).unwrap();
    }
    let second = incremental(&repo, &root, &full).await;
    assert_eq!(second.depends_on, std::slice::from_ref(&full.id));
    let two = work.path().join("two");
    restore(&repo, &second, &two).await;
    assert_eq!(snapshot(&root), snapshot(&two));

    // Everything rewritten but b/outside: the third backup reads the first (b/outside) and
    // its parent, nothing else; then nothing rewritten: it reads the second and third only.
    std::fs::remove_file(root.join("c/second")).unwrap();
    std::fs::remove_file(root.join("a/000-third")).unwrap();
    std::fs::write(root.join("b/shared"), "rewritten, one name").unwrap();
    for i in 0..50 {
        std::fs::write(root.join(format!("a/{i:03}")), format!("third {i}")).unwrap();
    }
    let third = incremental(&repo, &root, &second).await;
    assert_eq!(third.depends_on, [full.id.clone(), second.id.clone()]);
    let fourth = incremental(&repo, &root, &third).await;
    assert_eq!(fourth.source_info["stored_files"], 0);
    assert_eq!(fourth.depends_on, [full.id.clone(), third.id.clone()]);
    let four = work.path().join("four");
    restore(&repo, &fourth, &four).await;
    assert_eq!(snapshot(&root), snapshot(&four));
    assert_eq!(
        std::fs::read_to_string(four.join("b/outside")).unwrap(),
        "its other name is outside"
    );
}

#[tokio::test]
async fn a_damaged_parent_index_fails_the_incremental_and_says_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..20 {
        std::fs::write(root.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    let (repo, store) = local_repository(&work.path().join("repo")).await;
    let full = full_backup(&repo, &root).await;
    let keys: Vec<_> = store
        .list(None)
        .map_ok(|m| m.location)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.as_ref().contains(&full.id) && k.as_ref().contains("index.json"))
        .collect();
    assert!(!keys.is_empty());
    for key in &keys {
        store
            .put(key, PutPayload::from_static(b"not an age file"))
            .await
            .unwrap();
    }
    std::fs::write(root.join("f3"), "changed").unwrap();
    let source = DirectorySource::new(&root).with_parent_backup(repo.reader(full.clone()));
    let e = repo
        .backup("files", &source, &BackupOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("file index of {}", full.id)) && e.contains("--full"),
        "{e}"
    );
    let listed = repo.list(Some("files")).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
}
