//! No blocking on the runtime: a directory backup and restores of a few thousand files, and
//! a bucket restore, run beside a 10 ms ticker on a current-thread runtime
//! (`dr_testing::stall::assert_no_stall`), so a walk, an fsync, a chown or an xattr call on
//! the runtime thread would show as a late tick.

use std::path::Path;
use std::sync::Arc;

use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{ObjectStoreExt, PutPayload};
use dr_core::{
    BackupOptions, BackupSelector, Identities, Registry, Repository, RestoreOptions,
    RestoreRequest, Source,
};
use dr_storage::files::{BucketSettings, DirectorySettings, TreeReport};
use dr_testing::S3Server;
use dr_testing::stall::assert_no_stall;

const FILES: usize = 4000;

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://stall", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

fn build(source_type: &str, settings: dr_core::SourceSettings) -> Arc<dyn Source> {
    let mut registry = Registry::new();
    dr_storage::register(&mut registry);
    registry.build_source(source_type, &settings).unwrap()
}

/// `FILES` small files in 40 directories, every tenth with an extended attribute.
fn many_files(root: &Path) {
    for i in 0..FILES {
        let dir = root.join(format!("d{:02}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("f{i:05}.txt"));
        std::fs::write(&path, format!("file {i}\n").repeat(1 + i % 7)).unwrap();
        if i % 10 == 0 {
            xattr::set(&path, "user.note", format!("n{i}").as_bytes()).unwrap();
        }
    }
}

async fn restore(
    repo: &Repository,
    source: &dyn Source,
    id: &str,
    options: &RestoreOptions,
) -> dr_core::RestoreReport {
    let selector = BackupSelector::Id(id.to_owned());
    source
        .restore(&RestoreRequest::new(repo, "files", &selector, options))
        .await
        .unwrap()
}

#[tokio::test]
async fn directory_backup_and_restores_do_not_block_the_runtime() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    many_files(&root);
    let source = build(
        "directory",
        DirectorySettings::new(&root).to_source_settings().unwrap(),
    );
    let repo = repository().await;
    let manifest = assert_no_stall("a directory backup of 4000 files", async {
        let backup = source.backup(&repo, "files", false).await.unwrap();
        repo.backup("files", backup.as_ref(), &BackupOptions::default())
            .await
            .unwrap()
    })
    .await;
    assert_eq!(manifest.source_info["files"], FILES);

    // Into a new directory with owners (chown, xattrs, mtimes), then over the original
    // (staging, fsyncs, the swap), then a selection merged into the live tree.
    let fresh = work.path().join("fresh");
    let options = RestoreOptions::default()
        .with_target(&fresh)
        .with_owners(Some(true));
    let options = if dr_testing::fidelity::files::is_root() {
        options
    } else {
        options.with_owners(None)
    };
    let report = assert_no_stall(
        "a directory restore of 4000 files",
        restore(&repo, source.as_ref(), &manifest.id, &options),
    )
    .await;
    let tree: TreeReport = serde_json::from_value(report.details).unwrap();
    assert_eq!(tree.files, FILES as u64);
    assert_eq!(
        xattr::get(fresh.join("d10/f00010.txt"), "user.note").unwrap(),
        Some(b"n10".to_vec())
    );
    assert_no_stall(
        "a directory restore over the original",
        restore(
            &repo,
            source.as_ref(),
            &manifest.id,
            &RestoreOptions::default(),
        ),
    )
    .await;
    std::fs::remove_dir_all(root.join("d07")).unwrap();
    let only = RestoreOptions::default().with_only(vec!["d07".into(), "d0*/f0000*".into()]);
    let report = assert_no_stall(
        "a selection merged into the live tree",
        restore(&repo, source.as_ref(), &manifest.id, &only),
    )
    .await;
    let tree: TreeReport = serde_json::from_value(report.details).unwrap();
    assert!(tree.merged.is_some());
    assert_eq!(
        std::fs::read_dir(root.join("d07")).unwrap().count(),
        FILES / 40
    );
}

#[tokio::test]
async fn bucket_restore_does_not_block_the_runtime() {
    let server = S3Server::start();
    let settings = BucketSettings::new(server.url("src")).with_options(server.options());
    let store = settings.open(&server.url("src")).unwrap();
    for i in 0..300 {
        let body = format!("object {i}\n").repeat(1 + i % 50);
        store
            .put(
                &ObjectPath::from(format!("k/{i:04}")),
                PutPayload::from(body),
            )
            .await
            .unwrap();
    }
    let source = build("bucket", settings.to_source_settings().unwrap());
    let repo = repository().await;
    let backup = source.backup(&repo, "files", false).await.unwrap();
    let manifest = repo
        .backup("files", backup.as_ref(), &BackupOptions::default())
        .await
        .unwrap();
    let options = RestoreOptions::default().with_target(server.url("restored"));
    let report = assert_no_stall(
        "a bucket restore of 300 objects",
        restore(&repo, source.as_ref(), &manifest.id, &options),
    )
    .await;
    assert!(
        report
            .summary
            .iter()
            .any(|l| l.contains("restored 300 objects")),
        "{:?}",
        report.summary
    );
    let restored = settings.open(&server.url("restored")).unwrap();
    let got = restored.get(&ObjectPath::from("k/0042")).await.unwrap();
    assert_eq!(
        got.bytes().await.unwrap(),
        "object 42\n".repeat(43).as_bytes()
    );
}
