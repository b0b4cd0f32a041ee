//! Directory and bucket sources through the kind registry, as every front end will use
//! them: `dr_storage::register`, `build_source("directory" | "bucket", settings)`, the
//! source choosing its incremental parent and declaring its dependencies, and the whole
//! restore flow; restored trees and buckets compared with the oracles of
//! `dr_testing::fidelity` (lstat/getfacl, boto3), never with dr.

use std::path::Path;
use std::sync::Arc;

use dr_core::{
    BackupOptions, BackupSelector, Error, Identities, Manifest, Registry, Repository,
    RestoreOptions, RestoreReport, RestoreRequest, Source, SourceSettings,
};
use dr_storage::files::{BucketRestored, BucketSettings, DirectorySettings, TreeReport};
use dr_testing::S3Server;
use dr_testing::fidelity::buckets::{Object, fingerprint_bucket, put_objects};
use dr_testing::fidelity::files::{
    fields_under, fingerprint_tree, is_root, make_corpus, modify_corpus, with_source_entries,
    without_owners,
};
use dr_testing::fidelity::{Fingerprint, assert_faithful};
use serde_json::json;

async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://registry", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    dr_storage::register(&mut registry);
    registry
}

fn directory(root: &Path) -> Arc<dyn Source> {
    let settings = DirectorySettings::new(root).to_source_settings().unwrap();
    registry().build_source("directory", &settings).unwrap()
}

async fn back_up(repo: &Repository, source: &dyn Source, name: &str, full: bool) -> Manifest {
    let backup = source.backup(repo, name, full).await.unwrap();
    repo.backup(name, backup.as_ref(), &BackupOptions::default())
        .await
        .unwrap()
}

async fn restore(
    repo: &Repository,
    source: &dyn Source,
    id: &str,
    options: &RestoreOptions,
) -> dr_core::Result<RestoreReport> {
    let selector = BackupSelector::Id(id.to_owned());
    source
        .restore(&RestoreRequest::new(repo, "files", &selector, options))
        .await
}

fn tree(report: &RestoreReport) -> TreeReport {
    serde_json::from_value(report.details.clone()).unwrap()
}

/// Restored with owners as root (the default), as the restoring user otherwise.
fn faithful(mode: &str, source: &Fingerprint, restored: &Path) {
    let found = fingerprint_tree(restored);
    if is_root() {
        assert_faithful(mode, source, &found);
    } else {
        assert_faithful(mode, &without_owners(source), &without_owners(&found));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_source_chains_increments_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    make_corpus(&root);
    let first_fp = fingerprint_tree(&root);
    let repo = repository().await;
    let source = directory(&root);
    assert_eq!(source.kind(), "files");
    assert_eq!(source.restore_rank(), dr_core::RestoreRank::Files);

    let first = back_up(&repo, source.as_ref(), "files", false).await;
    assert!(first.depends_on.is_empty(), "{:?}", first.depends_on);
    modify_corpus(&root);
    let second_fp = fingerprint_tree(&root);
    let second = back_up(&repo, source.as_ref(), "files", false).await;
    assert_eq!(
        second.depends_on,
        vec![first.id.clone()],
        "the source chose its parent"
    );
    let stored = second.source_info["stored_files"].as_u64().unwrap();
    assert!(
        stored < second.source_info["files"].as_u64().unwrap() && stored > 0,
        "{:?}",
        second.source_info
    );
    std::fs::write(root.join("third.txt"), b"third\n").unwrap();
    let third_fp = fingerprint_tree(&root);
    let third = back_up(&repo, source.as_ref(), "files", false).await;
    assert_eq!(
        third.source_info["stored_files"], 1,
        "{:?}",
        third.source_info
    );
    assert_eq!(
        third.depends_on,
        [first.id.clone(), second.id.clone()],
        "the parent and the backup holding the files unchanged since the first"
    );
    let full = back_up(&repo, source.as_ref(), "files", true).await;
    assert!(full.depends_on.is_empty());
    let info = &full.source_info;
    assert_eq!(
        info["stored_files"].as_u64(),
        Some(info["files"].as_u64().unwrap() - info["hard_links"].as_u64().unwrap()),
        "a full backup stores every file (second names of a file are links): {info:?}"
    );

    let chain = work.path().join("chain");
    let report = restore(
        &repo,
        source.as_ref(),
        &third.id,
        &RestoreOptions::default().with_target(&chain),
    )
    .await
    .unwrap();
    faithful("a chain of three into a new directory", &third_fp, &chain);
    assert_eq!(report.backup_id, third.id);
    let details = tree(&report);
    assert!(
        details.files > 10 && details.merged.is_none(),
        "{details:?}"
    );
    assert_eq!(report.restored_bytes, details.bytes);

    // Over the source's own tree (no target): the second backup's tree comes back and the
    // live one is kept.
    let report = restore(
        &repo,
        source.as_ref(),
        &second.id,
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    faithful("in place, from an increment", &second_fp, &root);
    let kept = report.previous_kept_at.expect("the replaced tree is kept");
    assert!(Path::new(&kept).join("third.txt").is_file(), "{kept}");
    let _ = first_fp;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_puts_the_selection_into_the_live_tree() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    make_corpus(&root);
    let source_fp = fingerprint_tree(&root);
    let repo = repository().await;
    let source = directory(&root);
    let backup = back_up(&repo, source.as_ref(), "files", false).await;
    std::fs::remove_file(root.join("xattr.txt")).unwrap();
    std::fs::write(root.join("plain.txt"), b"modified after the backup\n").unwrap();
    std::fs::write(root.join("newer"), b"newer than the backup\n").unwrap();
    let live = fingerprint_tree(&root);

    let options = RestoreOptions::default().with_only(vec!["xattr.txt".into(), "plain.txt".into()]);
    let report = restore(&repo, source.as_ref(), &backup.id, &options)
        .await
        .unwrap();
    let merged = tree(&report).merged.expect("a merge into the live tree");
    assert_eq!(merged.placed, ["plain.txt", "xattr.txt"], "{merged:?}");
    assert_eq!(merged.kept_aside.len(), 1, "{merged:?}");
    assert_eq!(merged.kept_aside[0].path, "plain.txt");
    assert!(
        report.summary.iter().any(|n| n.contains("kept aside 1")),
        "{:?}",
        report.summary
    );
    let mut expected = with_source_entries(&live, &source_fp, &["xattr.txt", "plain.txt"]);
    let kept_at = Path::new(&merged.kept_aside[0].kept_at);
    let name = kept_at.file_name().unwrap().to_str().unwrap();
    for (field, value) in fields_under(&live, "plain.txt", name) {
        expected.set(field, value);
    }
    faithful("--only in place", &expected, &root);
    assert_eq!(
        std::fs::read(root.join("newer")).unwrap(),
        b"newer than the backup\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_settings_and_unsupported_options_are_refused() {
    let registry = registry();
    let usage = |result: dr_core::Result<Arc<dyn Source>>| match result {
        Err(Error::Usage(message)) => message,
        Err(e) => panic!("not a usage error: {e}"),
        Ok(_) => panic!("accepted"),
    };
    let typo = SourceSettings::new(json!({"path": "/srv", "exlude": ["cache"]}));
    assert!(usage(registry.build_source("directory", &typo)).contains("exlude"));
    let typo = SourceSettings::new(json!({"url": "/srv/bucket", "option": {}}));
    assert!(usage(registry.build_source("bucket", &typo)).contains("option"));
    let missing = SourceSettings::new(json!({"include": ["*"]}));
    assert!(usage(registry.build_source("directory", &missing)).contains("path"));
    let unknown = usage(registry.build_source("directorie", &typo));
    assert!(unknown.contains("bucket, directory"), "{unknown}");
    let check = dr_core::checks::UserCheck {
        name: "rows".into(),
        sql: "SELECT 1".into(),
        expect: ">= 1".into(),
    };
    let with_checks = DirectorySettings::new("/srv")
        .to_source_settings()
        .unwrap()
        .with_checks(vec![check]);
    assert!(usage(registry.build_source("directory", &with_checks)).contains("checks"));
    // A scheme whose feature is not compiled in is named (the tests build `aws` only).
    let gcs = BucketSettings::new("gs://media/photos")
        .to_source_settings()
        .unwrap();
    let message = match registry.build_source("bucket", &gcs) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("gs:// accepted without the gcp feature"),
    };
    assert!(message.contains("`gcp` feature"), "{message}");

    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    make_corpus(&root);
    let repo = repository().await;
    let source = directory(&root);
    let backup = back_up(&repo, source.as_ref(), "files", false).await;
    std::fs::write(root.join("plain.txt"), b"changed\n").unwrap();
    let before = fingerprint_tree(&root);
    for (options, named) in [
        (RestoreOptions::default().with_in_place(true), "in_place"),
        (
            RestoreOptions::default().with_server(Some("redis://x".into())),
            "server",
        ),
        (RestoreOptions::default().with_globals(true), "globals"),
        (
            RestoreOptions::default().with_recovery_target(Some("latest".into())),
            "recovery_target",
        ),
        (
            RestoreOptions::default().with_dry_run(true).with_swap(true),
            "swap",
        ),
    ] {
        match restore(&repo, source.as_ref(), &backup.id, &options).await {
            Err(Error::Usage(message)) => assert!(message.contains(named), "{message}"),
            other => panic!("{named}: {other:?}"),
        }
    }
    assert_eq!(
        fingerprint_tree(&root),
        before,
        "a refused restore changed the tree"
    );
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

fn bucket_corpus(changed: bool) -> Vec<Object> {
    let mut objects = vec![
        Object {
            key: "site/index.html".into(),
            body: b"<html>hello</html>".to_vec(),
            headers: vec![("ContentType", "text/html; charset=utf-8".into())],
            metadata: vec![("team", "web")],
        },
        Object {
            key: "media/ünïcödé video.mp4".into(),
            body: (0..9u32 << 20).map(|i| (i % 251) as u8).collect(),
            headers: vec![("CacheControl", "public, max-age=60".into())],
            metadata: vec![("source", "camera-7")],
        },
        Object {
            key: "empty".into(),
            body: Vec::new(),
            headers: Vec::new(),
            metadata: Vec::new(),
        },
    ];
    if changed {
        objects.truncate(1);
        objects[0].body = b"<html>changed</html>".to_vec();
    }
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_source_backs_up_incrementally_and_restores_against_s3() {
    let server = S3Server::start();
    put_objects(&server, "dr-test", "src/", &bucket_corpus(false));
    let settings = BucketSettings::new(server.url("src")).with_options(server.options());
    let source = registry()
        .build_source("bucket", &settings.to_source_settings().unwrap())
        .unwrap();
    let repo = repository().await;
    let first = back_up(&repo, source.as_ref(), "files", false).await;
    assert!(first.depends_on.is_empty());
    put_objects(&server, "dr-test", "src/", &bucket_corpus(true));
    let changed = fingerprint_bucket(&server, "dr-test", "src/");
    let second = back_up(&repo, source.as_ref(), "files", false).await;
    assert_eq!(second.depends_on, vec![first.id.clone()]);
    assert_eq!(
        second.source_info["stored_files"], 1,
        "{:?}",
        second.source_info
    );

    let options = RestoreOptions::default().with_target(server.url("restored"));
    let report = restore(&repo, source.as_ref(), &second.id, &options)
        .await
        .unwrap();
    assert_faithful(
        "a bucket increment into another prefix",
        &changed,
        &fingerprint_bucket(&server, "dr-test", "restored/"),
    );
    let restored: BucketRestored = serde_json::from_value(report.details.clone()).unwrap();
    assert_eq!(restored.objects, 3);
    assert!(report.target.contains("restored"), "{}", report.target);

    let options = RestoreOptions::default()
        .with_target(server.url("one"))
        .with_only(vec!["site".into()]);
    restore(&repo, source.as_ref(), &second.id, &options)
        .await
        .unwrap();
    let one = fingerprint_bucket(&server, "dr-test", "one/");
    assert_eq!(
        one.get("site/index.html sha256"),
        changed.get("site/index.html sha256")
    );
    assert_eq!(one.get("keys"), Some("site/index.html"), "{one:?}");

    // Owners are for trees: refused before anything is written.
    let options = RestoreOptions::default()
        .with_target(server.url("owned"))
        .with_owners(Some(true));
    match restore(&repo, source.as_ref(), &second.id, &options).await {
        Err(Error::Usage(message)) => assert!(message.contains("owners"), "{message}"),
        other => panic!("{other:?}"),
    }
    let owned = fingerprint_bucket(&server, "dr-test", "owned/");
    assert!(owned.get("keys").is_none_or(str::is_empty), "{owned:?}");
}
