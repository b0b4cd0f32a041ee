//! Verifying base backups: checksums, the tar's structure and `backup_label`, and at
//! `Restore` level an unpacked copy checked file by file with `pg_verifybackup`.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dr_core::{
    BackupReader, Error, Findings, KindVerifier, ProblemKind, Result, Verify, VerifyLevel,
    VerifyProblem, VerifyReport, async_trait, verify_backup,
};

use crate::base::BaseBackupFacts;
use crate::child;
use crate::recover::read_base_tar;

/// Files every base backup must hold.
const REQUIRED: [&str; 4] = [
    "PG_VERSION",
    "backup_label",
    "global/pg_control",
    "backup_manifest",
];

/// Verifies base backups (kind `postgres.base`).
#[derive(Debug, Clone, Default)]
pub struct BaseVerifier {
    scratch_dir: Option<std::path::PathBuf>,
}

impl BaseVerifier {
    /// A verifier unpacking test restores into the system's temp directory.
    pub fn new() -> Self {
        BaseVerifier::default()
    }

    /// Unpacks test restores under `dir` instead (it needs the cluster's size free).
    pub fn with_scratch_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.scratch_dir = Some(dir.into());
        self
    }
}

#[async_trait]
impl Verify for BaseVerifier {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        verify_backup(backup, level, self).await
    }
}

#[async_trait]
impl KindVerifier for BaseVerifier {
    /// The tar read to its end: every required file, `backup_label` as the manifest says.
    async fn check_structure(&self, backup: &BackupReader) -> Option<Result<Findings>> {
        let checked = match BaseBackupFacts::from_info(&backup.manifest().source_info, backup.id())
        {
            Ok(facts) => check_structure(backup, &facts).await,
            Err(e) => Err(e),
        };
        Some(Ok(match checked {
            Ok(line) => Findings::passed([line]),
            Err(e) => Findings::default()
                .with_problem(VerifyProblem::from_error(&e, ProblemKind::Structure)),
        }))
    }

    fn can_test_restore(&self) -> bool {
        true
    }

    /// Unpacked into scratch and checked by `pg_verifybackup`.
    async fn test_restore(&self, backup: &BackupReader) -> Result<Findings> {
        Ok(Findings::passed(self.unpack_and_check(backup).await?))
    }
}

/// Reads the whole tar: every required file present, `backup_label` matching the manifest.
async fn check_structure(backup: &BackupReader, facts: &BaseBackupFacts) -> Result<String> {
    let names = Arc::new(Mutex::new(BTreeSet::new()));
    let label = Arc::new(Mutex::new(String::new()));
    let (seen, label_text) = (names.clone(), label.clone());
    let bytes = read_base_tar(backup, move |mut entry| {
        let path = entry
            .path()
            .map_err(|e| Error::io("reading the tar", e))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if path == "backup_label" {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| Error::io("reading backup_label", e))?;
            *lock(&label_text) = text;
        }
        lock(&seen).insert(path);
        Ok(())
    })
    .await?;
    let names = lock(&names).clone();
    let missing: Vec<&str> = REQUIRED
        .into_iter()
        .filter(|r| !names.contains(*r))
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid_data(
            "base backup",
            format!("it lacks {}", missing.join(", ")),
        ));
    }
    let wanted = format!("START WAL LOCATION: {} ", facts.start_lsn);
    if !lock(&label).contains(&wanted) {
        return Err(Error::invalid_data(
            "base backup",
            format!(
                "its backup_label does not start at {} as the manifest records",
                facts.start_lsn
            ),
        ));
    }
    Ok(format!(
        "tar reads to its end ({} entries, {} bytes); backup_label starts at {} on timeline {}",
        names.len(),
        bytes,
        facts.start_lsn,
        facts.timeline
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BaseVerifier {
    /// Unpacks into a scratch directory and runs `pg_verifybackup` on it (every file against
    /// `backup_manifest`, and the WAL up to the stop position parsed).
    async fn unpack_and_check(&self, backup: &BackupReader) -> Result<Vec<String>> {
        let facts = BaseBackupFacts::from_info(&backup.manifest().source_info, backup.id())?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("dr-verify-base-");
        let scratch = match &self.scratch_dir {
            Some(dir) => builder.tempdir_in(dir),
            None => builder.tempdir(),
        }
        .map_err(|e| Error::io("creating a scratch directory", e))?;
        let started = Instant::now();
        let mut unpacker = dr_core::untar::Unpacker::new(scratch.path());
        let bytes = read_base_tar(backup, move |mut entry| unpacker.unpack(&mut entry)).await?;
        let unpacked = started.elapsed().as_secs_f64();
        let program = child::server_binary("pg_verifybackup", facts.server_version_num);
        let mut command = tokio::process::Command::new(&program);
        command
            .arg(scratch.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let output = child::spawn(command, "pg_verifybackup")?.finish().await?;
        Ok(vec![
            format!("unpacked {bytes} bytes in {unpacked:.1} s"),
            format!(
                "pg_verifybackup: every file matches backup_manifest and the WAL parses ({})",
                output.lines().last().unwrap_or("ok")
            ),
        ])
    }
}
