//! Bucket restores into a live S3 target (moto), checked with boto3: a damaged backup (or a
//! damaged earlier backup of the chain) fails before the first write; a target that refuses
//! writes midway gets an error that counts what was written and names the file listing
//! exactly those keys, and running the restore again finishes it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::s3_oracle::{Oracle, sha256};
use dr_core::object_store::ObjectStore;
use dr_core::{BackupOptions, Identities, Manifest, PipelineOptions, Repository};
use dr_storage::files::{BucketSource, BucketTarget, read_index};
use dr_testing::{FaultyStore, S3Server};

const OBJECTS: usize = 40;

fn open(server: &S3Server, prefix: &str) -> Arc<dyn ObjectStore> {
    let options = server.options();
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    dr_storage::open_store(&server.url(prefix), &options, true)
        .unwrap()
        .store()
}

/// A local repository (its parts are files a test can damage) with small parts.
async fn repository(dir: &Path) -> Repository {
    let identities = Identities::generate();
    let store = dr_storage::open_store(dir.to_str().unwrap(), &[], true)
        .unwrap()
        .store();
    Repository::init(store, "local", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
        .with_pipeline(PipelineOptions::default().with_part_size(64 << 10))
}

/// A full backup of `OBJECTS` objects and an increment over it (one object changed).
async fn chain(server: &S3Server, oracle: &Oracle<'_>, repo: &Repository) -> (Manifest, Manifest) {
    let objects: Vec<(String, Vec<u8>)> = (0..OBJECTS)
        .map(|i| {
            let body = (0..20_000)
                .map(|j| ((i * 31 + j * 7) % 251) as u8)
                .collect();
            (format!("obj/{i:03}"), body)
        })
        .collect();
    oracle.put("dr-test", "src/", &objects);
    let source = open(server, "src");
    let full = repo
        .backup(
            "b",
            &BucketSource::new(source.clone(), None),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    oracle.put(
        "dr-test",
        "src/",
        &[("obj/000".into(), b"changed".to_vec())],
    );
    let index = read_index(&repo.reader(full.clone())).await.unwrap();
    let mut options = BackupOptions::default();
    options.depends_on = vec![full.id.clone()];
    let increment = repo
        .backup(
            "b",
            &BucketSource::new(source, None).with_parent(&full.id, index),
            &options,
        )
        .await
        .unwrap();
    assert_eq!(increment.source_info["stored_files"], 1);
    (full, increment)
}

/// The files of a backup's `files.tar` parts, in order.
fn tar_parts(repo_dir: &Path, backup: &Manifest) -> Vec<PathBuf> {
    let dir = repo_dir.join("backups/b").join(&backup.id);
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("files.tar.")
        })
        .collect();
    parts.sort();
    parts
}

fn flip_a_byte(path: &Path) {
    dr_testing::damage::damage_file(path, dr_testing::Damage::Flip);
}

#[tokio::test]
async fn a_damaged_chain_writes_nothing_into_the_target() {
    let server = S3Server::start();
    let oracle = Oracle::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path()).await;
    let (full, increment) = chain(&server, &oracle, &repo).await;
    let parts = tar_parts(dir.path(), &full);
    assert!(parts.len() > 4, "the tar spans parts: {parts:?}");
    // The last part of the full backup: a restore streaming in order would have written
    // most objects before reaching it.
    flip_a_byte(parts.last().unwrap());
    let err = BucketTarget::new(open(&server, "dst"), None, repo.clone())
        .restore_objects(&repo.reader(increment), &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("backup {} is damaged", full.id)),
        "{err}"
    );
    assert!(err.contains("nothing was written into the target"), "{err}");
    assert!(
        oracle.dump("dr-test", "dst/").is_empty(),
        "the target was written"
    );
}

#[tokio::test]
async fn a_restore_failing_midway_lists_what_it_wrote() {
    let server = S3Server::start();
    let oracle = Oracle::new(&server);
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path()).await;
    let (_, increment) = chain(&server, &oracle, &repo).await;
    let journal = tempfile::tempdir().unwrap();
    let refusing: Arc<dyn ObjectStore> =
        Arc::new(FaultyStore::new(open(&server, "dst")).fail_put_from(13));
    let err = BucketTarget::new(refusing, None, repo.clone())
        .with_journal_dir(journal.path())
        .restore_objects(&repo.reader(increment.clone()), &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("12 objects were written"), "{err}");
    assert!(
        err.contains("Run the same restore again to finish"),
        "{err}"
    );
    let listed: Vec<PathBuf> = std::fs::read_dir(journal.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(listed.len(), 1);
    assert!(err.contains(&listed[0].display().to_string()), "{err}");
    let mut keys: Vec<String> = std::fs::read_to_string(&listed[0])
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    let written: Vec<String> = oracle.dump("dr-test", "dst/").into_keys().collect();
    assert_eq!(
        keys, written,
        "the file lists exactly the objects in the target"
    );

    // Running it again finishes the restore.
    BucketTarget::new(open(&server, "dst"), None, repo.clone())
        .restore_objects(&repo.reader(increment), &[])
        .await
        .unwrap();
    let source = oracle.dump("dr-test", "src/");
    assert_eq!(source.len(), OBJECTS);
    assert_eq!(source["obj/000"], sha256(b"changed"));
    assert_eq!(oracle.dump("dr-test", "dst/"), source);
}
