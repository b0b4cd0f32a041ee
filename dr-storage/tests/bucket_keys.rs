//! Awkward object keys on the S3-compatible server, written and checked with boto3 (not dr,
//! not object_store): every key object_store can address is backed up and restored to the
//! same key with the same bytes; a key it cannot address (`a//b`, `./x`, `a/../b`, a leading
//! or trailing `/`, a control character) fails the backup with an error naming the key and
//! the reason, never a credentials hint, and commits nothing.

mod common;

use std::sync::Arc;

use common::s3_oracle::{Oracle, sha256};
use dr_core::object_store::ObjectStore;
use dr_core::{BackupOptions, Identities, Repository};
use dr_storage::files::{BucketSource, BucketTarget, read_index};
use dr_testing::S3Server;

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://keys", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

fn open(server: &S3Server, url: &str) -> Arc<dyn ObjectStore> {
    let options = server.options();
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    dr_storage::open_store(url, &options, true).unwrap().store()
}

/// Keys S3 accepts and object_store addresses unchanged.
fn representable() -> Vec<(String, Vec<u8>)> {
    let keys = [
        "p%20q",
        "p%2Fq",
        "100%",
        "%%",
        "%zz",
        "ünïcödé/文件.txt",
        "emoji/🦀.bin",
        "h#x",
        "s p/with spaces ",
        "a",
        "a/b",
        "a/b/c",
        "ab",
        "q?x=1&y=2",
        "x+y",
        "~tilde",
        "[brackets]{braces}^|`\\",
        "semi;colon:eq=\"quote\"<>",
        "-leading-dash",
        ".hidden",
        "...",
        "a/.b/..c",
    ];
    let mut all: Vec<(String, Vec<u8>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), format!("{i}:{k}").into_bytes()))
        .collect();
    all.push((format!("long/{}", "é".repeat(200)), b"long".to_vec()));
    all.push(("empty".into(), Vec::new()));
    all
}

#[tokio::test]
async fn awkward_keys_round_trip_byte_exact() {
    let server = S3Server::start();
    let oracle = Oracle::new(&server);
    let objects = representable();
    oracle.put("dr-test", "src/", &objects);
    let before = oracle.dump("dr-test", "src/");
    assert_eq!(before.len(), objects.len(), "boto3 wrote every key");

    let repo = repository().await;
    let source = open(&server, &server.url("src"));
    let full = repo
        .backup(
            "keys",
            &BucketSource::new(source.clone(), None),
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(full.source_info["objects"], objects.len() as u64);

    // Same-size rewrites are seen by their ETag; a key that is a prefix of others too.
    let rewritten = vec![
        ("a".to_owned(), b"Z:a".to_vec()),
        ("p%20q".to_owned(), b"Z:p%20q".to_vec()),
    ];
    for (key, body) in &rewritten {
        let before = &objects.iter().find(|(k, _)| k == key).unwrap().1;
        assert_eq!(body.len(), before.len());
        assert_ne!(body, before);
    }
    oracle.put("dr-test", "src/", &rewritten);
    let index = read_index(&repo.reader(full.clone())).await.unwrap();
    let mut options = BackupOptions::default();
    options.depends_on = vec![full.id.clone()];
    let increment = repo
        .backup(
            "keys",
            &BucketSource::new(source, None).with_parent(&full.id, index),
            &options,
        )
        .await
        .unwrap();
    assert_eq!(increment.source_info["stored_files"], 2);
    assert_eq!(
        increment.source_info["change_detection"],
        "size, ETag and last-modified time"
    );

    let target = open(&server, &server.url("dst"));
    let n = BucketTarget::new(target, None, repo.clone())
        .restore_objects(&repo.reader(increment), &[])
        .await
        .unwrap()
        .objects;
    assert_eq!(n, objects.len() as u64);
    let expected = oracle.dump("dr-test", "src/");
    for (key, body) in &rewritten {
        assert_eq!(expected[key], sha256(body));
    }
    assert_eq!(oracle.dump("dr-test", "dst/"), expected);
}

/// Each key alone (with an ordinary neighbour) in its own prefix: the backup fails and says
/// why; nothing is committed.
#[tokio::test]
async fn unaddressable_keys_fail_the_backup_loudly() {
    let server = S3Server::start();
    let oracle = Oracle::new(&server);
    let cases: &[(&str, &[&str], &str)] = &[
        ("empty-segment/", &["a//b"], "a//b"),
        ("dot/", &["./x"], "./x"),
        ("dotdot/", &["a/../b"], "a/../b"),
        ("control/", &["t\ty"], "t\ty"),
        ("trailing/", &["dir/"], "`dir`"),
        ("twins/", &["same", "same/"], "two objects as `same`"),
    ];
    let repo = repository().await;
    for (prefix, keys, named) in cases {
        let mut objects: Vec<(String, Vec<u8>)> = keys
            .iter()
            .map(|k| (k.to_string(), b"x".to_vec()))
            .collect();
        objects.push(("ok".into(), b"fine".to_vec()));
        oracle.put("dr-test", prefix, &objects);
        let source = open(&server, &server.url(prefix.trim_end_matches('/')));
        let err = repo
            .backup(
                "bad",
                &BucketSource::new(source, None),
                &BackupOptions::default(),
            )
            .await
            .expect_err(prefix);
        let message = err.to_string();
        eprintln!("{prefix}: {message}");
        assert!(message.contains(named), "{prefix}: {message}");
        assert!(message.contains("object_store"), "{prefix}: {message}");
        assert!(
            message.contains("Nothing was committed"),
            "{prefix}: {message}"
        );
        assert!(!message.contains("credentials"), "{prefix}: {message}");
    }
    // A leading `/` at the root of a bucket.
    oracle.create_bucket("lead");
    oracle.put(
        "lead",
        "",
        &[
            ("/lead".into(), b"x".to_vec()),
            ("ok".into(), b"y".to_vec()),
        ],
    );
    let err = repo
        .backup(
            "bad",
            &BucketSource::new(open(&server, "s3://lead"), None),
            &BackupOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`lead`"), "{err}");
    assert!(repo.list(Some("bad")).await.unwrap().is_empty());
}

/// An object deleted after the listing, before it is read, is "vanished": the backup
/// succeeds without it, counts it in the manifest and names it in the encrypted index only.
#[tokio::test]
async fn an_object_deleted_during_the_backup_is_vanished() {
    let server = S3Server::start();
    let oracle = Oracle::new(&server);
    // The last is larger than what a bucket backup reads ahead (small objects are read
    // whole, many at once): it is opened only when its turn comes, after the delete.
    let objects: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| {
            let size = if i == 29 { 2 << 20 } else { 256 << 10 };
            (format!("o/{i:02}"), vec![i as u8; size])
        })
        .collect();
    oracle.put("dr-test", "v/", &objects);
    // A slow repository: every part upload waits, so the backup takes seconds.
    let identities = Identities::generate();
    let slow: Arc<dyn ObjectStore> = Arc::new(
        dr_testing::FaultyStore::new(Arc::new(dr_core::object_store::memory::InMemory::new()))
            .with_put_delay(std::time::Duration::from_millis(40)),
    );
    let repo = Repository::init(slow, "memory://slow", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
        .with_pipeline(dr_core::PipelineOptions::default().with_part_size(64 << 10));
    let source = BucketSource::new(open(&server, &server.url("v")), None);
    let backup = tokio::spawn({
        let repo = repo.clone();
        async move { repo.backup("v", &source, &BackupOptions::default()).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(!backup.is_finished(), "the backup was too quick to race");
    oracle.delete("dr-test", "v/", &["o/29"]);
    let manifest = backup.await.unwrap().unwrap();
    assert_eq!(manifest.source_info["vanished_during_backup"], 1);
    assert_eq!(manifest.source_info["objects"], 29);
    let index = read_index(&repo.reader(manifest)).await.unwrap();
    assert_eq!(index.vanished, ["o/29"]);
}
