//! Verification: generic checksums, then a restore into a scratch file with checks.

use std::path::PathBuf;

use dr_core::{
    BackupReader, Error, Findings, KindVerifier, ProblemKind, Result, Verify, VerifyLevel,
    VerifyReport, async_trait, verify_backup,
};

use crate::DB_ARTIFACT;
use crate::check::{Integrity, UserCheck, check_restored, recorded_rows};

/// Verifies SQLite backups; at [`VerifyLevel::Restore`] restores into a scratch file and runs
/// `integrity_check`, `foreign_key_check`, the recorded row counts and the user checks.
#[derive(Debug, Clone, Default)]
pub struct SqliteVerifier {
    user_checks: Vec<UserCheck>,
    scratch_dir: Option<PathBuf>,
}

impl SqliteVerifier {
    /// A verifier with no user checks, scratch files in the system temp directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds user checks.
    pub fn with_checks(mut self, checks: Vec<UserCheck>) -> Self {
        self.user_checks = checks;
        self
    }

    /// Where scratch restores go.
    pub fn with_scratch_dir(mut self, dir: PathBuf) -> Self {
        self.scratch_dir = Some(dir);
        self
    }
}

#[async_trait]
impl Verify for SqliteVerifier {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        verify_backup(backup, level, self).await
    }
}

#[async_trait]
impl KindVerifier for SqliteVerifier {
    fn can_test_restore(&self) -> bool {
        true
    }

    async fn test_restore(&self, backup: &BackupReader) -> Result<Findings> {
        let outcome = self.restore_and_check(backup).await?;
        let names: Vec<String> = self.user_checks.iter().map(|c| c.name.clone()).collect();
        Ok(Findings::from_words(
            outcome.passed,
            outcome.problems,
            &names,
            ProblemKind::Structure,
        ))
    }
}

impl SqliteVerifier {
    async fn restore_and_check(&self, backup: &BackupReader) -> Result<crate::CheckOutcome> {
        let scratch = match &self.scratch_dir {
            Some(dir) => tempfile::tempdir_in(dir),
            None => tempfile::tempdir(),
        }
        .map_err(|e| Error::io("creating a scratch directory", e))?;
        let path = scratch.path().join("restored.db");
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| Error::io("creating the scratch file", e))?;
        backup.copy_artifact(DB_ARTIFACT, &mut file).await?;
        drop(file);
        let expected = recorded_rows(&backup.manifest().source_info);
        let checks = self.user_checks.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            check_restored(&path, expected.as_ref(), &checks, Integrity::Full)
        })
        .await
        .map_err(|e| Error::internal("the SQLite checks", e))??;
        Ok(outcome)
        // `scratch` is removed here, whatever happened.
    }
}
