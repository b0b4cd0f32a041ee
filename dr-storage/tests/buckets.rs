//! Bucket backups: objects of a local bucket and of the S3-compatible test server backed up
//! (incrementally by ETag), restored into another bucket and prefix, one object alone.

use std::sync::Arc;

use dr_core::object_store::path::Path as ObjectPath;
use dr_core::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use dr_core::{BackupOptions, Identities, Repository};
use dr_storage::files::{BucketSource, BucketTarget, read_index};
use dr_testing::S3Server;

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://buckets", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

fn objects() -> Vec<(String, Vec<u8>)> {
    let mut all = vec![
        (
            "media/videos/intro.mp4".to_owned(),
            (0..12 << 20).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        ("media/empty".to_owned(), Vec::new()),
        (
            "media/ünïcödé/文件.txt".to_owned(),
            "hello".as_bytes().to_vec(),
        ),
        (
            format!("media/long/{}", "n".repeat(150)),
            b"long key".to_vec(),
        ),
    ];
    for i in 0..20 {
        all.push((format!("media/thumbs/{i:03}.jpg"), vec![i as u8; 3000 + i]));
    }
    all.push(("other/not-in-prefix".to_owned(), b"x".to_vec()));
    all
}

async fn fill(store: &Arc<dyn ObjectStore>) {
    for (key, bytes) in objects() {
        store
            .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
            .await
            .unwrap();
    }
}

async fn read(store: &Arc<dyn ObjectStore>, key: &str) -> Vec<u8> {
    store
        .get(&ObjectPath::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn round_trip(source: Arc<dyn ObjectStore>, target: Arc<dyn ObjectStore>) {
    fill(&source).await;
    let repo = repository().await;
    let full = repo
        .backup(
            "media",
            &BucketSource::new(source.clone(), Some("media")),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(full.source_info["objects"], 24);

    // One object changes: the increment copies it alone.
    source
        .put(
            &ObjectPath::from("media/thumbs/005.jpg"),
            PutPayload::from(vec![9u8; 10]),
        )
        .await
        .unwrap();
    let index = read_index(&repo.reader(full.clone())).await.unwrap();
    let mut options = BackupOptions::default();
    options.depends_on = vec![full.id.clone()];
    let increment = repo
        .backup(
            "media",
            &BucketSource::new(source.clone(), Some("media")).with_parent(&full.id, index),
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        increment.source_info["stored_files"], 1,
        "{:?}",
        increment.source_info
    );

    let restore = BucketTarget::new(target.clone(), Some("restored"), repo.clone());
    let objects_written = restore
        .restore_objects(&repo.reader(increment.clone()), &[])
        .await
        .unwrap()
        .objects;
    assert_eq!(objects_written, 24);
    for (key, bytes) in objects() {
        let Some(relative) = key.strip_prefix("media/") else {
            continue;
        };
        let expected = if relative == "thumbs/005.jpg" {
            vec![9u8; 10]
        } else {
            bytes
        };
        assert_eq!(
            read(&target, &format!("restored/{relative}")).await,
            expected,
            "{relative}"
        );
    }

    // One object alone, into another prefix.
    let single = BucketTarget::new(target.clone(), Some("one"), repo.clone());
    let restored = single
        .restore_objects(&repo.reader(increment), &["videos/intro.mp4".into()])
        .await
        .unwrap();
    let (n, bytes) = (restored.objects, restored.bytes);
    assert_eq!((n, bytes), (1, 12 << 20));
    assert_eq!(read(&target, "one/videos/intro.mp4").await.len(), 12 << 20);
}

#[tokio::test]
async fn local_buckets_round_trip() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open = |d: &tempfile::TempDir| {
        dr_storage::open_store(d.path().to_str().unwrap(), &[], true)
            .unwrap()
            .store()
    };
    round_trip(open(&a), open(&b)).await;
}

#[tokio::test]
async fn s3_buckets_round_trip() {
    let server = S3Server::start();
    let options = server.options();
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let open = |prefix: &str| {
        dr_storage::open_store(&server.url(prefix), &options, true)
            .unwrap()
            .store()
    };
    round_trip(open("source"), open("target")).await;
}
