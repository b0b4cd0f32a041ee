//! Verifying file-tree backups (directories and buckets): at the `Restore` level the whole
//! tree is restored into a scratch directory, every file checked against its SHA-256 and the
//! chain of incremental parents resolved, then the scratch directory is removed.

use dr_core::{
    BackupReader, Repository, RestoreOptions, Result, Verify, VerifyLevel, VerifyReport,
    async_trait,
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
        let mut report = backup
            .verify_objects(level.min(VerifyLevel::Checksums))
            .await?;
        if level < VerifyLevel::Restore || !report.is_ok() {
            return Ok(report);
        }
        let scratch = tempfile::Builder::new()
            .prefix("dr-verify-tree-")
            .tempdir()
            .map_err(|e| dr_core::Error::io("creating a scratch directory", e))?;
        let target = scratch.path().join("tree");
        let restored = DirectoryTarget::new(&target, self.repo.clone())
            .restore_tree(backup, &RestoreOptions::default().with_target(&target))
            .await;
        match restored {
            Ok((_, tree)) => {
                report.passed.push(format!(
                    "test restore: {} files, {} bytes, every SHA-256 matched",
                    tree.files, tree.bytes
                ));
                if !tree.changed_during_backup.is_empty() {
                    report.passed.push(format!(
                        "note: {} files changed while they were backed up",
                        tree.changed_during_backup.len()
                    ));
                }
            }
            Err(e) => report.problems.push(format!("test restore failed: {e}")),
        }
        Ok(report)
    }
}
