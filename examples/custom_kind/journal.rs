//! A custom source kind, `journal`: an append-only file of JSON lines (an audit log, an
//! event journal). It implements all three traits and registers itself, so that dr's own
//! operations (backup, verify, drill, restore) serve it like a built-in kind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr::registry::{DrillSetup, KindSupport, RestoreRank, RestoreRequest, Source, SourceFactory};
use dr::swap::{Inherit, Staging};
use dr::{
    Backup, BackupReader, BackupWriter, Error, Findings, KindVerifier, ProblemKind, Repository,
    Restore, RestoreOptions, RestoreReport, Result, SourceInfo, SourceSettings, Verify,
    VerifyLevel, VerifyProblem, VerifyReport, verify_backup,
};
use serde::Deserialize;

/// The manifest kind and the source type.
pub const KIND: &str = "journal";
const ARTIFACT: &str = "journal.jsonl";

/// `[sources.NAME] kind = "journal"  path = "..."`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalSettings {
    path: PathBuf,
}

/// Builds journal sources from their settings.
pub struct JournalFactory;

impl SourceFactory for JournalFactory {
    fn source_type(&self) -> &str {
        KIND
    }

    fn build(&self, settings: &SourceSettings) -> Result<Arc<dyn Source>> {
        let parsed: JournalSettings = settings.parse(KIND)?;
        Ok(Arc::new(Journal { path: parsed.path }))
    }
}

/// What dr needs to serve journal backups without a configured source (drills, benches).
pub struct JournalKind;

impl KindSupport for JournalKind {
    fn kind(&self) -> &str {
        KIND
    }

    fn verifier(&self, _repo: &Repository) -> Option<Box<dyn Verify>> {
        Some(Box::new(JournalVerifier))
    }

    fn scratch_restorer(&self, _: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        Some(Box::new(JournalTarget {
            path: scratch.join(ARTIFACT),
        }))
    }

    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Files
    }
}

/// One configured journal.
pub struct Journal {
    path: PathBuf,
}

#[dr::async_trait]
impl Source for Journal {
    fn kind(&self) -> &str {
        KIND
    }

    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Files
    }

    async fn backup(
        &self,
        _repo: &Repository,
        _name: &str,
        _full: bool,
    ) -> Result<Box<dyn Backup>> {
        Ok(Box::new(JournalBackup {
            path: self.path.clone(),
        }))
    }

    async fn restore(&self, request: &RestoreRequest<'_>) -> Result<RestoreReport> {
        let options = request.options;
        if options.in_place || options.server.is_some() || !options.only.is_empty() {
            return Err(Error::Usage(
                "a journal restores as a whole file: use --to PATH for a copy".into(),
            ));
        }
        let reader = request.open().await?;
        let target = options.target.clone().unwrap_or_else(|| self.path.clone());
        JournalTarget { path: target }
            .restore(&reader, options)
            .await
    }

    fn verifier(&self, _repo: &Repository) -> Result<Box<dyn Verify>> {
        Ok(Box::new(JournalVerifier))
    }

    fn scratch_restorer(&self, repo: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        JournalKind.scratch_restorer(repo, scratch)
    }

    async fn drill(&self, repo: &Repository, _backup: &BackupReader) -> Result<DrillSetup> {
        Ok(DrillSetup::new(self.verifier(repo)?, None))
    }
}

/// The capture: the file as it is, with its line count for the manifest.
struct JournalBackup {
    path: PathBuf,
}

#[dr::async_trait]
impl Backup for JournalBackup {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        let lines = check_lines(&bytes)?;
        out.put_artifact(ARTIFACT, &mut bytes.as_slice()).await?;
        let mut info = SourceInfo::new();
        info.insert("lines".into(), lines.into());
        Ok(info)
    }
}

/// Restores the file beside the target, checks it, then swaps it in (the previous file is
/// kept as `<name>.pre-restore-<time>`).
struct JournalTarget {
    path: PathBuf,
}

#[dr::async_trait]
impl Restore for JournalTarget {
    async fn restore(
        &self,
        backup: &BackupReader,
        _opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let started = std::time::Instant::now();
        let mut bytes = Vec::new();
        backup.copy_artifact(ARTIFACT, &mut bytes).await?;
        check_lines(&bytes)?;
        let path = self.path.clone();
        let written = bytes.len() as u64;
        let swapped = tokio::task::spawn_blocking(move || -> Result<_> {
            let staging = Staging::file(&path)?;
            std::fs::write(staging.path(), &bytes)
                .map_err(|e| Error::io("writing the staged journal", e))?;
            staging.commit(&Inherit::Replaced)
        })
        .await
        .map_err(|e| Error::internal("restoring the journal", e))??;
        let mut report = RestoreReport::default();
        report.backup_id = backup.id().to_owned();
        report.target = self.path.display().to_string();
        report.previous_kept_at = swapped.previous.map(|p| p.display().to_string());
        report.restored_bytes = written;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

/// Checks every line of the backup is JSON (structure), and restores it into a scratch
/// directory and checks it there (test restore), through dr's one verify skeleton.
struct JournalVerifier;

#[dr::async_trait]
impl KindVerifier for JournalVerifier {
    async fn check_structure(&self, backup: &BackupReader) -> Option<Result<Findings>> {
        Some(read_and_check(backup).await)
    }

    fn can_test_restore(&self) -> bool {
        true
    }

    async fn test_restore(&self, backup: &BackupReader) -> Result<Findings> {
        let scratch = tempfile::tempdir().map_err(|e| Error::io("creating a scratch dir", e))?;
        let target = JournalTarget {
            path: scratch.path().join(ARTIFACT),
        };
        target.restore(backup, &RestoreOptions::default()).await?;
        let bytes = tokio::fs::read(&target.path)
            .await
            .map_err(|e| Error::io("reading the restored journal", e))?;
        let mut findings = Findings::default();
        match check_lines(&bytes) {
            Ok(n) => findings
                .passed
                .push(format!("test restore: {n} journal lines are JSON")),
            Err(e) => findings
                .problems
                .push(VerifyProblem::new(ProblemKind::TestRestore, e.to_string())),
        }
        Ok(findings)
    }
}

#[dr::async_trait]
impl Verify for JournalVerifier {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        verify_backup(backup, level, self).await
    }
}

async fn read_and_check(backup: &BackupReader) -> Result<Findings> {
    let mut bytes = Vec::new();
    backup.copy_artifact(ARTIFACT, &mut bytes).await?;
    let mut findings = Findings::default();
    match check_lines(&bytes) {
        Ok(n) => findings.passed.push(format!("{n} journal lines are JSON")),
        Err(e) => findings
            .problems
            .push(VerifyProblem::new(ProblemKind::Structure, e.to_string())),
    }
    Ok(findings)
}

/// The number of lines, or which line is not JSON.
fn check_lines(bytes: &[u8]) -> Result<usize> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::invalid_data("journal", format!("it is not UTF-8: {e}")))?;
    for (n, line) in text.lines().enumerate() {
        serde_json::from_str::<serde_json::Value>(line).map_err(|e| {
            Error::invalid_data("journal", format!("line {} is not JSON: {e}", n + 1))
        })?;
    }
    Ok(text.lines().count())
}
