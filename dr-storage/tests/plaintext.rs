//! Plaintext holds no names: a directory (with a file that grows while it is read) and a
//! bucket, both full of distinctive names, backed up twice; no object of the repository
//! that is not age-encrypted contains any of those names, nor the root path. The names a
//! holder of the identity needs (files that changed during the backup) are in the index.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use dr_core::{BackupOptions, Identities, Repository};
use dr_storage::files::{BucketSource, DirectorySource, read_index};
use dr_testing::S3Server;

const SECRET: &str = "SECRETNAME";

/// Every file under `dir` not ending in `.age`, with its bytes.
fn plaintext_objects(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.to_string_lossy().ends_with(".age") {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn twice(
    repo: &Repository,
    name: &str,
    make: impl Fn(Option<(&str, dr_storage::files::FileIndex)>) -> Box<dyn dr_core::Backup>,
) -> dr_core::Manifest {
    let full = repo
        .backup(name, make(None).as_ref(), &BackupOptions::default())
        .await
        .unwrap();
    let index = read_index(&repo.reader(full.clone())).await.unwrap();
    let mut options = BackupOptions::default();
    options.depends_on = vec![full.id.clone()];
    repo.backup(name, make(Some((&full.id, index))).as_ref(), &options)
        .await
        .unwrap()
}

#[tokio::test]
async fn no_plaintext_object_names_a_file_or_an_object() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let identities = Identities::generate();
    let store = dr_storage::open_store(repo_dir.to_str().unwrap(), &[], true)
        .unwrap()
        .store();
    let repo = Repository::init(store, "local", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities);

    // A directory: names in the root path, directories, files and a link target.
    let root = work.path().join(format!("{SECRET}-root"));
    std::fs::create_dir_all(root.join(format!("{SECRET}-dir"))).unwrap();
    std::fs::write(root.join(format!("{SECRET}-dir/{SECRET}-file.txt")), b"x").unwrap();
    std::os::unix::fs::symlink(
        format!("{SECRET}-target"),
        root.join(format!("{SECRET}-link")),
    )
    .unwrap();
    // A file that grows while the backup reads it: "changed during backup".
    let growing = root.join(format!("{SECRET}-growing.log"));
    std::fs::write(&growing, vec![b'g'; 8 << 20]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, growing) = (stop.clone(), growing.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(growing)
                .unwrap();
            while !stop.load(Ordering::SeqCst) {
                file.write_all(&[b'h'; 4096]).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let dir_backup = twice(&repo, "dir", |parent| {
        let source = DirectorySource::new(&root);
        Box::new(match parent {
            Some((id, index)) => source.with_parent(id, index),
            None => source,
        })
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(
        dir_backup.source_info["changed_during_backup"], 1,
        "{:?}",
        dir_backup.source_info
    );
    let index = read_index(&repo.reader(dir_backup.clone())).await.unwrap();
    let changed: Vec<String> = index
        .entries
        .iter()
        .filter(|e| e.changed_during_backup)
        .map(|e| e.relative_path().display().to_string())
        .collect();
    assert_eq!(
        changed,
        [format!("{SECRET}-growing.log")],
        "the index names it"
    );

    // A bucket on the S3-compatible server.
    let server = S3Server::start();
    let options = server.options();
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bucket = dr_storage::open_store(&server.url(&format!("{SECRET}-prefix")), &options, true)
        .unwrap()
        .store();
    for i in 0..5 {
        bucket
            .put(
                &ObjectPath::from(format!("{SECRET}-objects/{SECRET}-{i}.bin")),
                PutPayload::from(vec![i as u8; 100]),
            )
            .await
            .unwrap();
    }
    twice(&repo, "bucket", |parent| {
        let source = BucketSource::new(bucket.clone() as Arc<dyn ObjectStore>, None);
        Box::new(match parent {
            Some((id, index)) => source.with_parent(id, index),
            None => source,
        })
    })
    .await;

    let objects = plaintext_objects(&repo_dir);
    assert!(objects.iter().any(|(p, _)| p.ends_with("manifest.json")));
    for (path, bytes) in &objects {
        assert!(
            !contains(bytes, SECRET),
            "{path} holds a name: {}",
            String::from_utf8_lossy(bytes)
        );
        assert!(
            !contains(bytes, &root.display().to_string()),
            "{path} holds the root"
        );
    }
}
