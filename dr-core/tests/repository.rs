//! Repository behaviour on the in-memory store: format versions, names, contract checks.

use std::sync::Arc;

use dr_core::object_store::memory::InMemory;
use dr_core::object_store::path::Path;
use dr_core::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use dr_core::{
    Backup, BackupOptions, BackupWriter, Error, Identities, Repository, Result, SourceInfo,
    async_trait,
};
use dr_testing::StreamSource;

async fn repo() -> (Arc<dyn ObjectStore>, Repository, Identities) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ids = Identities::generate();
    let repo = Repository::init(store.clone(), "memory://", &ids.to_recipients())
        .await
        .unwrap();
    (store, repo.with_identities(ids.clone()), ids)
}

#[tokio::test]
async fn newer_repository_format_is_refused() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let json = br#"{"format_version": 9, "created_at": "2026-01-01T00:00:00Z", "recipients": []}"#;
    store
        .put(&Path::from("dr-repo.json"), PutPayload::from(&json[..]))
        .await
        .unwrap();
    let err = Repository::open(store, "memory://").await.unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedFormat { found: 9, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn manifests_hold_no_secrets_and_are_versioned() {
    let (store, repo, ids) = repo().await;
    let m = repo
        .backup(
            "db",
            &StreamSource { seed: 1, size: 10 },
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    let key = format!("backups/db/{}/manifest.json", m.id);
    let bytes = store
        .get(&Path::from(key.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("\"format_version\": 1"));
    assert!(!text.contains("AGE-SECRET-KEY"));
    assert!(
        text.contains(&ids.to_recipients().to_strings()[0]),
        "recipients are recorded"
    );
}

#[tokio::test]
async fn bad_names_are_refused() {
    let (_, repo, _) = repo().await;
    for name in ["", "../etc", "a/b", ".hidden", "-x", "white space"] {
        let err = repo
            .backup(
                name,
                &StreamSource { seed: 1, size: 1 },
                &BackupOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{name:?}: {err}");
    }
}

struct ForgetsToFinish;

#[async_trait]
impl Backup for ForgetsToFinish {
    fn kind(&self) -> &'static str {
        "test.unfinished"
    }
    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut writer = out.artifact("data")?;
        tokio::io::AsyncWriteExt::write_all(&mut writer, b"half")
            .await
            .unwrap();
        Ok(SourceInfo::new())
    }
}

#[tokio::test]
async fn an_unfinished_artifact_fails_the_backup() {
    let (_, repo, _) = repo().await;
    let err = repo
        .backup("db", &ForgetsToFinish, &BackupOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("never finished"), "{err}");
    assert!(repo.list(None).await.unwrap().is_empty());
}

struct BrokenReader;

#[async_trait]
impl Backup for BrokenReader {
    fn kind(&self) -> &'static str {
        "test.broken"
    }
    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut reader = tokio_test_reader();
        out.put_artifact("data", &mut reader).await?;
        Ok(SourceInfo::new())
    }
}

fn tokio_test_reader() -> impl tokio::io::AsyncRead + Unpin + Send {
    use tokio::io::AsyncReadExt;
    let broken = tokio::io::repeat(0).take(0).chain(FailingRead);
    Box::pin(broken)
}

struct FailingRead;

impl tokio::io::AsyncRead for FailingRead {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "pipe closed",
        )))
    }
}

#[tokio::test]
async fn a_failing_reader_is_a_source_error() {
    let (_, repo, _) = repo().await;
    let err = repo
        .backup("db", &BrokenReader, &BackupOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                system: "source",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("pipe closed"), "{err}");
}

#[tokio::test]
async fn a_safety_backup_is_never_latest_unless_named() {
    use dr_core::{BackupSelector, SAFETY_LABEL};
    let (_store, repo, _ids) = repo().await;
    let source = StreamSource { seed: 3, size: 10 };
    let mut safety_only = BackupOptions::default();
    safety_only.labels = vec![SAFETY_LABEL.into()];
    let first_safety = repo.backup("db", &source, &safety_only).await.unwrap();
    let err = repo.find("db", &BackupSelector::Latest).await.unwrap_err();
    assert!(matches!(err, Error::BackupNotFound { .. }), "{err}");
    assert!(err.to_string().contains(&first_safety.id), "{err}");
    assert!(err.to_string().contains("restored only by id"), "{err}");

    let regular = repo
        .backup("db", &source, &BackupOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let safety = repo.backup("db", &source, &safety_only).await.unwrap();
    let latest = repo.find("db", &BackupSelector::Latest).await.unwrap();
    assert_eq!(
        latest.id, regular.id,
        "the safety backup is newer but not latest"
    );
    let at = BackupSelector::AtOrBefore(safety.started_at);
    assert_eq!(repo.find("db", &at).await.unwrap().id, regular.id);
    let named = BackupSelector::Id(safety.id.clone());
    assert_eq!(repo.find("db", &named).await.unwrap().id, safety.id);
    assert!(safety.is_safety_backup() && !regular.is_safety_backup());
}

#[tokio::test]
async fn a_manifest_whose_recorded_hash_is_not_a_sha256_is_damaged() {
    let (store, repo, _ids) = repo().await;
    let m = repo
        .backup(
            "db",
            &StreamSource { seed: 4, size: 10 },
            &BackupOptions::default(),
        )
        .await
        .unwrap();
    let good = m.to_json().unwrap();
    assert!(dr_core::Manifest::from_json(&good, "k").is_ok());
    let text = String::from_utf8(good).unwrap();
    let hash = &m.parts().next().unwrap().stored_sha256;
    let flipped = text.replacen(hash.as_str(), &format!("r{}", &hash[1..]), 1);
    let err = dr_core::Manifest::from_json(flipped.as_bytes(), "k").unwrap_err();
    assert!(matches!(err, Error::BadManifest { .. }), "{err}");
    assert!(err.to_string().contains("is not a SHA-256"), "{err}");
    drop(store);
}
