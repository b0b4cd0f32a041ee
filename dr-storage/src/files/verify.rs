//! Verifying file-tree backups (directories and buckets): at the `Restore` level the whole
//! tree is restored into a scratch directory, every file checked against its SHA-256 and the
//! chain of incremental parents resolved, then the scratch directory is removed.

use dr_core::{
    BackupReader, Findings, KindVerifier, Repository, RestoreOptions, Result, Verify, VerifyLevel,
    VerifyReport, async_trait, verify_backup,
};

use super::restore::DirectoryTarget;

/// Verifies tree backups; needs the repository to reach the parents of incremental ones.
pub struct TreeVerifier {
    repo: Repository,
}

impl TreeVerifier {
    /// A verifier reading parents from `repo`.
    pub fn new(repo: Repository) -> Self {
        TreeVerifier { repo }
    }
}

#[async_trait]
impl Verify for TreeVerifier {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        verify_backup(backup, level, self).await
    }
}

#[async_trait]
impl KindVerifier for TreeVerifier {
    fn can_test_restore(&self) -> bool {
        true
    }

    /// The whole tree restored into scratch, every file checked against its SHA-256.
    async fn test_restore(&self, backup: &BackupReader) -> Result<Findings> {
        let scratch = tempfile::Builder::new()
            .prefix("dr-verify-tree-")
            .tempdir()
            .map_err(|e| dr_core::Error::io("creating a scratch directory", e))?;
        let target = scratch.path().join("tree");
        let (_, tree) = DirectoryTarget::new(&target, self.repo.clone())
            .restore_tree(backup, &RestoreOptions::default().with_target(&target))
            .await?;
        let mut found = Findings::passed([format!(
            "test restore: {} files, {} bytes, every SHA-256 matched",
            tree.files, tree.bytes
        )]);
        if !tree.changed_during_backup.is_empty() {
            found.passed.push(format!(
                "note: {} files changed while they were backed up",
                tree.changed_during_backup.len()
            ));
        }
        Ok(found)
    }
}
