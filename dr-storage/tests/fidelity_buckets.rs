//! Fidelity of bucket restores: objects put through boto3 with every standard header a user
//! sets (Content-Type, Content-Encoding, Cache-Control, Content-Disposition,
//! Content-Language) and user metadata, small and multipart-sized, fingerprinted through the
//! S3 API (boto3) before the backup and after restores of a full backup and of an increment
//! taken after an in-place metadata change (same bytes, same ETag).

use std::sync::Arc;

use dr_core::object_store::ObjectStore;
use dr_core::{BackupOptions, Identities, Manifest, Repository};
use dr_storage::files::{BucketSource, BucketTarget, read_index};
use dr_testing::S3Server;
use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::buckets::{Object, fingerprint_bucket, put_objects, replace_metadata};

fn open(server: &S3Server, prefix: &str) -> Arc<dyn ObjectStore> {
    let options = server.options();
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    dr_storage::open_store(&server.url(prefix), &options, true)
        .unwrap()
        .store()
}

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://buckets", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

fn corpus() -> Vec<Object> {
    let headers = |kind: &str| {
        vec![
            ("ContentType", kind.to_owned()),
            ("ContentEncoding", "gzip".to_owned()),
            (
                "CacheControl",
                "public, max-age=31536000, immutable".to_owned(),
            ),
            (
                "ContentDisposition",
                "attachment; filename=\"report 2026.pdf\"".to_owned(),
            ),
            ("ContentLanguage", "de-CH".to_owned()),
        ]
    };
    vec![
        Object {
            key: "site/index.html".into(),
            body: b"<html>hello</html>".to_vec(),
            headers: headers("text/html; charset=utf-8"),
            metadata: vec![("team", "web"), ("reviewed-by", "ana")],
        },
        Object {
            key: "plain/no-headers".into(),
            body: b"bytes only".to_vec(),
            headers: Vec::new(),
            metadata: Vec::new(),
        },
        Object {
            key: "media/ünïcödé video.mp4".into(),
            body: (0..12u32 << 20).map(|i| (i % 251) as u8).collect(),
            headers: headers("video/mp4"),
            metadata: vec![("source", "camera-7")],
        },
        Object {
            key: "empty".into(),
            body: Vec::new(),
            headers: vec![("ContentType", "application/x-empty".to_owned())],
            metadata: vec![("why", "a marker")],
        },
    ]
}

async fn restore(repo: &Repository, server: &S3Server, backup: &Manifest, prefix: &str) {
    BucketTarget::new(open(server, ""), Some(prefix), repo.clone())
        .restore_objects(&repo.reader(backup.clone()), &[])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_restores_keep_keys_bytes_and_metadata() {
    let server = S3Server::start();
    put_objects(&server, "dr-test", "src/", &corpus());
    let first = fingerprint_bucket(&server, "dr-test", "src/");
    assert_eq!(
        first.get("site/index.html metadata"),
        Some("reviewed-by=ana team=web"),
        "the oracle sees user metadata: {first:?}"
    );
    assert_eq!(first.get("site/index.html content-language"), Some("de-CH"));
    let repo = repository().await;
    let source = open(&server, "src");
    let full = repo
        .backup(
            "b",
            &BucketSource::new(source.clone(), None),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    restore(&repo, &server, &full, "restored").await;
    assert_faithful(
        "bucket restore into another prefix",
        &first,
        &fingerprint_bucket(&server, "dr-test", "restored/"),
    );

    // New metadata, same bytes: S3 keeps the ETag; the increment must still see the change.
    replace_metadata(
        &server,
        "dr-test",
        "src/",
        "plain/no-headers",
        &[("ContentType", "text/plain".to_owned())],
        &[("changed", "yes")],
    );
    let second = fingerprint_bucket(&server, "dr-test", "src/");
    assert_ne!(first, second);
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
    assert_eq!(
        increment.source_info["stored_files"], 1,
        "{:?}",
        increment.source_info
    );
    restore(&repo, &server, &increment, "again").await;
    assert_faithful(
        "bucket restore of an increment",
        &second,
        &fingerprint_bucket(&server, "dr-test", "again/"),
    );

    // A local directory cannot hold metadata: the bytes are restored and the loss is counted,
    // never reported as a plain success.
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> = Arc::new(
        dr_core::object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
    );
    let restored = BucketTarget::new(local, None, repo.clone())
        .restore_objects(&repo.reader(increment), &[])
        .await
        .unwrap();
    assert_eq!(restored.objects, 4);
    assert_eq!(
        restored.metadata_dropped, 4,
        "every object of the increment has metadata now"
    );
    assert_eq!(
        std::fs::read(dir.path().join("site/index.html")).unwrap(),
        b"<html>hello</html>"
    );
}
