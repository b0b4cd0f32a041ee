//! Directory backups on real trees: unicode and non-UTF-8 names, long names, empty files,
//! symlinks, modes, deep nesting, a 1 GiB (sparse) file; incremental backups storing only
//! what changed; restores of the whole tree, of selected paths and over the original; an
//! index pointing outside the target refused.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::{
    Backup, BackupOptions, BackupWriter, Identities, Repository, RestoreOptions, SourceInfo,
    async_trait,
};
use dr_storage::files::{DirectorySource, DirectoryTarget, TreeFilter, read_index, walk};
use tokio::io::AsyncWriteExt;

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://files", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

fn build_tree(root: &Path) {
    let write = |rel: &str, bytes: &[u8], mode: u32| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for i in 0..100 {
        write(
            &format!("uploads/{:02}/file-{i}.bin", i % 10),
            &vec![i as u8; 1000 + i * 37],
            0o644,
        );
    }
    write("config/.env", b"SECRET=1\n", 0o600);
    write("config/empty", b"", 0o644);
    write("bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    write("名前/日本語ファイル.txt", "こんにちは".as_bytes(), 0o644);
    write(&format!("long/{}", "n".repeat(180)), b"long name", 0o644);
    let deep: String = (0..25).map(|i| format!("d{i}/")).collect();
    write(&format!("{deep}bottom.txt"), b"deep", 0o644);
    let odd = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&odd, b"latin-1 name").unwrap();
    std::os::unix::fs::symlink("../config/.env", root.join("bin/env-link")).unwrap();
    let big = std::fs::File::create(root.join("big.img")).unwrap();
    big.set_len(1 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    big.write_all_at(b"start", 0).unwrap();
    big.write_all_at(b"end", (1 << 30) - 3).unwrap();
}

/// Path -> (kind, size, mode, mtime, sha256, link target) of a tree.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let entries = walk(root, &TreeFilter::default()).unwrap();
    entries
        .iter()
        .map(|e| {
            let path = e.relative_path();
            let hash = if e.kind == dr_storage::files::EntryKind::File {
                use sha2::Digest;
                let mut hasher = sha2::Sha256::new();
                let mut file = std::fs::File::open(root.join(&path)).unwrap();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut file, &mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                hex::encode(hasher.finalize())
            } else {
                String::new()
            };
            let mtime = if e.kind == dr_storage::files::EntryKind::Symlink {
                0
            } else {
                e.mtime_ns
            };
            (
                path,
                format!(
                    "{:?} {} {:o} {} {hash} {:?}",
                    e.kind, e.size, e.mode, mtime, e.target
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn trees_round_trip_and_increments_store_only_what_changed() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    build_tree(&root);
    let repo = repository().await;
    let full = repo
        .backup(
            "files",
            &DirectorySource::new(&root),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(full.source_info["symlinks"], 1);

    let restored = work.path().join("restored");
    let (_, tree) = DirectoryTarget::new(&root, repo.clone())
        .restore_tree(
            &repo.reader(full.clone()),
            &RestoreOptions::default().with_target(&restored),
        )
        .await
        .unwrap();
    assert_eq!(snapshot(&root), snapshot(&restored));
    assert_eq!(tree.zero_size, ["config/empty"]);

    // Change 1 % of the uploads: the increment stores those files only.
    for i in [3, 42] {
        let path = root.join(format!("uploads/{:02}/file-{i}.bin", i % 10));
        std::fs::write(&path, vec![0xAB; 2000]).unwrap();
    }
    std::fs::write(root.join("uploads/new.txt"), b"new").unwrap();
    // As root (CI), give a file another owner: the index records it, --owners restores it.
    let as_root =
        std::os::unix::fs::lchown(root.join("config/.env"), Some(12345), Some(23456)).is_ok();
    let index = read_index(&repo.reader(full.clone())).await.unwrap();
    let mut options = BackupOptions::default();
    options.depends_on = vec![full.id.clone()];
    let increment = repo
        .backup(
            "files",
            &DirectorySource::new(&root).with_parent(&full.id, index),
            &options,
        )
        .await
        .unwrap();
    // A new owner changes the ctime: that file is stored again too (as GNU tar does).
    let env_size = std::fs::metadata(root.join("config/.env")).unwrap().len();
    let (files, bytes) = if as_root {
        (4, 4003 + env_size)
    } else {
        (3, 4003)
    };
    assert_eq!(
        increment.source_info["stored_files"], files,
        "{:?}",
        increment.source_info
    );
    assert_eq!(increment.source_info["stored_bytes"], bytes);
    let tar_size = |m: &dr_core::Manifest| m.artifact("files.tar").unwrap().plain_size;
    assert!(tar_size(&full) > 1 << 30);
    // The three files plus a 512-byte header for each directory and link entry.
    assert!(tar_size(&increment) < 200_000, "{}", tar_size(&increment));

    let again = work.path().join("again");
    DirectoryTarget::new(&root, repo.clone())
        .restore_tree(
            &repo.reader(increment.clone()),
            &RestoreOptions::default().with_target(&again),
        )
        .await
        .unwrap();
    assert_eq!(snapshot(&root), snapshot(&again));

    // Selected paths only.
    let some = work.path().join("some");
    let (_, tree) = DirectoryTarget::new(&root, repo.clone())
        .with_selection(vec!["config".into(), "*.sh".into()])
        .restore_tree(
            &repo.reader(increment.clone()),
            &RestoreOptions::default().with_target(&some),
        )
        .await
        .unwrap();
    assert_eq!(tree.files, 3);
    assert!(some.join("config/.env").exists() && some.join("bin/run.sh").exists());
    assert!(!some.join("uploads").exists());

    // Owners restored when asked (the tests run as root in CI; elsewhere lchown fails).
    let owned = work.path().join("owned");
    let restored_owners = DirectoryTarget::new(&root, repo.clone())
        .with_owners(true)
        .with_selection(vec!["config".into()])
        .restore_tree(
            &repo.reader(increment.clone()),
            &RestoreOptions::default().with_target(&owned),
        )
        .await;
    if as_root {
        use std::os::unix::fs::MetadataExt;
        restored_owners.unwrap();
        let got = std::fs::metadata(owned.join("config/.env")).unwrap();
        assert_eq!((got.uid(), got.gid()), (12345, 23456));
    } else {
        let err = restored_owners.unwrap_err().to_string();
        assert!(err.contains("needs root"), "{err}");
    }

    // Over the original: staged, swapped in, the previous tree kept.
    std::fs::write(root.join("config/.env"), b"BROKEN").unwrap();
    let (report, _) = DirectoryTarget::new(&root, repo.clone())
        .restore_tree(&repo.reader(increment), &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(root.join("config/.env")).unwrap(),
        b"SECRET=1\n"
    );
    let kept = PathBuf::from(report.previous_kept_at.unwrap());
    assert_eq!(std::fs::read(kept.join("config/.env")).unwrap(), b"BROKEN");
}

/// A hostile backup: its index and tar name `../escaped`.
struct Hostile;

#[async_trait]
impl Backup for Hostile {
    fn kind(&self) -> &'static str {
        "files"
    }

    async fn backup(&self, out: &mut BackupWriter) -> dr_core::Result<SourceInfo> {
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.as_old_mut().name[..10].copy_from_slice(b"../escaped");
        header.set_cksum();
        let mut tar = tar::Builder::new(Vec::new());
        tar.append(&header, &b"x"[..]).unwrap();
        let mut w = out.artifact("files.tar")?;
        w.write_all(&tar.into_inner().unwrap()).await.unwrap();
        w.finish().await?;
        let index = format!(
            r#"{{"version":1,"entries":[{{"path":"../escaped","kind":"file","size":1,"mtime_ns":0,"mode":420,"sha256":"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881","stored_in":"{}"}}]}}"#,
            out.id()
        );
        let mut w = out.artifact("index.json")?;
        w.write_all(index.as_bytes()).await.unwrap();
        w.finish().await?;
        Ok(SourceInfo::new())
    }
}

#[tokio::test]
async fn entries_outside_the_target_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let repo = repository().await;
    let manifest = repo
        .backup("files", &Hostile, &BackupOptions::default())
        .await
        .unwrap();
    let target = work.path().join("target");
    let err = DirectoryTarget::new(&target, repo.clone())
        .restore_tree(&repo.reader(manifest), &RestoreOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the target"), "{err}");
    assert!(!work.path().join("escaped").exists());
}

#[tokio::test]
async fn a_socket_passed_over_is_counted_and_said() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), b"kept").unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("app.sock")).unwrap();
    let repo = repository().await;
    let manifest = repo
        .backup(
            "tree",
            &DirectorySource::new(dir.path()),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(manifest.source_info["sockets_not_backed_up"], 1);
    let notes = dr_core::backup_notes(&manifest.source_info);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("1 sockets were not backed up"),
        "{notes:?}"
    );
    assert!(
        !notes[0].contains("app.sock"),
        "no path in the plaintext manifest"
    );
}
