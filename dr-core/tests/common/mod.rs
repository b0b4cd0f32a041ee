//! Test kinds for the operations: a blob source that test-restores and checks its bytes, a
//! kind with no test restore, and a kind with a fake continuous archive.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use dr_core::registry::{Archive, ArchiveFindings, ArchivePrune};
use dr_core::{
    Backup, BackupReader, BackupWriter, Findings, Identities, KindSupport, KindVerifier, Manifest,
    ProblemKind, Registry, Repository, Restore, RestoreOptions, RestoreReport, RestoreRequest,
    Result, Source, SourceInfo, Verify, VerifyLevel, VerifyProblem, VerifyReport, async_trait,
    verify_backup,
};

/// A backup of fixed bytes under `kind`.
pub struct Blob {
    pub kind: &'static str,
    pub data: Vec<u8>,
}

#[async_trait]
impl Backup for Blob {
    fn kind(&self) -> &'static str {
        self.kind
    }
    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        out.put_artifact("data", &mut &self.data[..]).await?;
        Ok(SourceInfo::new())
    }
}

/// A backup that always fails (a server that went away): the repository records the failure.
pub struct Failing;

#[async_trait]
impl Backup for Failing {
    fn kind(&self) -> &'static str {
        "test"
    }
    async fn backup(&self, _: &mut BackupWriter) -> Result<SourceInfo> {
        Err(dr_core::Error::backend("source", "backup", "the server went away").retryable())
    }
}

/// Test-restores by reading `data` in full; the user check "starts" wants `prefix`.
pub struct BlobVerifier {
    pub prefix: Vec<u8>,
}

#[async_trait]
impl KindVerifier for BlobVerifier {
    fn can_test_restore(&self) -> bool {
        true
    }
    async fn test_restore(&self, backup: &BackupReader) -> Result<Findings> {
        let mut bytes = Vec::new();
        backup.copy_artifact("data", &mut bytes).await?;
        let mut found = Findings::passed([format!("read {} bytes back", bytes.len())]);
        if !bytes.starts_with(&self.prefix) {
            found.problems.push(
                VerifyProblem::new(ProblemKind::FailedCheck, "check starts: no")
                    .with_object("starts"),
            );
        }
        Ok(found)
    }
}

#[async_trait]
impl Verify for BlobVerifier {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        verify_backup(backup, level, self).await
    }
}

/// The configured blob source.
pub struct BlobSource {
    pub data: Vec<u8>,
    pub prefix: Vec<u8>,
}

#[async_trait]
impl Source for BlobSource {
    fn kind(&self) -> &str {
        "test.blob"
    }
    async fn backup(&self, _: &Repository, _: &str, _: bool) -> Result<Box<dyn Backup>> {
        Ok(Box::new(Blob {
            kind: "test.blob",
            data: self.data.clone(),
        }))
    }
    async fn restore(&self, _: &RestoreRequest<'_>) -> Result<RestoreReport> {
        Err(dr_core::Error::refused(
            dr_core::Refusal::Unsupported,
            "no restores in tests",
        ))
    }
    fn verifier(&self, _: &Repository) -> Result<Box<dyn Verify>> {
        Ok(Box::new(BlobVerifier {
            prefix: self.prefix.clone(),
        }))
    }
    fn scratch_restorer(&self, _: &Repository, dir: &Path) -> Option<Box<dyn Restore>> {
        Some(Box::new(FileRestorer(dir.to_path_buf())))
    }
}

/// Restores `data` into a file in a scratch directory.
pub struct FileRestorer(pub std::path::PathBuf);

#[async_trait]
impl Restore for FileRestorer {
    async fn restore(&self, backup: &BackupReader, _: &RestoreOptions) -> Result<RestoreReport> {
        let path = self.0.join("data");
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| dr_core::Error::io("creating", e))?;
        let n = backup.copy_artifact("data", &mut file).await?;
        let mut report = RestoreReport::default();
        report.backup_id = backup.id().to_owned();
        report.restored_bytes = n;
        report.target = path.display().to_string();
        Ok(report)
    }
}

/// A kind with a fake archive: `problems_for` ids get a gap; prune calls are recorded.
pub struct WalKind {
    pub archive: Arc<FakeArchive>,
}

impl KindSupport for WalKind {
    fn kind(&self) -> &str {
        "test.wal"
    }
    fn verifier(&self, _: &Repository) -> Option<Box<dyn Verify>> {
        Some(Box::new(BlobVerifier { prefix: Vec::new() }))
    }
    fn archive(&self) -> Option<Arc<dyn Archive>> {
        Some(self.archive.clone())
    }
}

/// Records what it was asked; finds a gap for the backups in `gap_for`.
#[derive(Default)]
pub struct FakeArchive {
    pub gap_for: Mutex<Vec<String>>,
    pub pruned_with: Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl Archive for FakeArchive {
    async fn check(
        &self,
        _: &Repository,
        _: &str,
        backups: &[Manifest],
        _: VerifyLevel,
    ) -> Result<Vec<ArchiveFindings>> {
        let gaps = self.gap_for.lock().unwrap().clone();
        Ok(backups
            .iter()
            .map(|m| {
                let mut f = ArchiveFindings::default();
                f.backup_id = m.id.clone();
                if gaps.contains(&m.id) {
                    f.problems.push("gap after 000000010000000000000003".into());
                } else {
                    f.passed.push("archive continuous".into());
                }
                f
            })
            .collect())
    }

    async fn prune(
        &self,
        _: &Repository,
        _: &str,
        kept: &[Manifest],
        _: bool,
    ) -> Result<ArchivePrune> {
        self.pruned_with
            .lock()
            .unwrap()
            .push(kept.iter().map(|m| m.id.clone()).collect());
        let mut p = ArchivePrune::default();
        p.unneeded.push("000000010000000000000001".into());
        Ok(p)
    }
}

/// A kind without a verifier: checksums only.
pub struct PlainKind;

impl KindSupport for PlainKind {
    fn kind(&self) -> &str {
        "test.plain"
    }
    fn verifier(&self, _: &Repository) -> Option<Box<dyn Verify>> {
        None
    }
}

/// The registry of the test kinds, and its fake archive.
pub fn registry() -> (Registry, Arc<FakeArchive>) {
    let archive = Arc::new(FakeArchive::default());
    let mut registry = Registry::new();
    registry
        .register_kind(Arc::new(WalKind {
            archive: archive.clone(),
        }))
        .register_kind(Arc::new(PlainKind));
    (registry, archive)
}

/// An in-memory repository with a fresh identity loaded.
pub async fn repository() -> Repository {
    let identities = Identities::generate();
    let store = Arc::new(dr_core::object_store::memory::InMemory::new());
    Repository::init(store, "memory://", &identities.to_recipients())
        .await
        .unwrap()
        .with_identities(identities)
}

/// Backs up `data` as `kind` for `source`.
pub async fn backup(repo: &Repository, source: &str, kind: &'static str, data: &[u8]) -> Manifest {
    repo.backup(
        source,
        &Blob {
            kind,
            data: data.to_vec(),
        },
        &dr_core::BackupOptions::default(),
    )
    .await
    .unwrap()
}
