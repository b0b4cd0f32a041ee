//! The physical source (`method = "physical"`): base backups and the WAL archive, restored
//! by point-in-time recovery into a new data directory, drilled by a real recovery.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dr_core::checks::UserCheck;
use dr_core::registry::{DrillSetup, RestoreRequest};
use dr_core::{
    Backup, BackupReader, BackupSelector, Error, Repository, RestoreOptions, RestoreReport, Result,
    Source, Verify, async_trait,
};
use serde::Serialize;

use super::archive::check_plan_wal;
use super::logical::details;
use super::{PostgresSettings, refuse, restore_command, summary};
use crate::base::{BASE_KIND, PostgresBaseSource};
use crate::base_verify::BaseVerifier;
use crate::continuity::check_archive;
use crate::drill::RecoveryDrill;
use crate::pitr::{self, PitrPlan, RecoveryTarget};
use crate::recover::{PitrOptions, restore_pitr};

/// A configured physical PostgreSQL source.
#[derive(Debug, Clone)]
pub struct PhysicalSource {
    settings: PostgresSettings,
    checks: Vec<UserCheck>,
    self_command: Vec<String>,
}

/// `RestoreReport::details` of a point-in-time restore (and of its dry run).
#[derive(Debug, Clone, Serialize)]
pub struct PitrDetails {
    /// What is (or would be) read: the base backup, the WAL, the timeline, the reach.
    pub plan: PitrPlan,
    /// Only planned: nothing was read or written.
    pub dry_run: bool,
    /// The new data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Whether the server was started and has promoted (`start_port`).
    pub promoted: bool,
    /// What PostgreSQL said about where recovery stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_stopped: Option<String>,
    /// The server log of the recovery, when started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
}

impl PhysicalSource {
    /// The source of these settings; `checks` run on drilled servers; `self_command` runs
    /// the front end again (`restore_command` appends `wal-fetch --source NAME %f %p`).
    pub fn new(
        settings: PostgresSettings,
        checks: Vec<UserCheck>,
        self_command: Vec<String>,
    ) -> Self {
        PhysicalSource {
            settings,
            checks,
            self_command,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &PostgresSettings {
        &self.settings
    }

    fn refuse_unsupported(request: &RestoreRequest<'_>) -> Result<()> {
        let options = request.options;
        let by_time = "does not apply: a physical PostgreSQL source restores by point in time into a new data directory (recovery_target and target)";
        let refused = [
            ("swap", options.swap),
            ("in_place", options.in_place),
            ("server", options.server.is_some()),
            ("globals", options.globals),
            ("with_role_passwords", options.with_role_passwords),
            ("only", !options.only.is_empty()),
            ("owners", options.owners.is_some()),
            ("force", options.force),
        ];
        if let Some((name, _)) = refused.iter().find(|(_, set)| *set) {
            return Err(refuse(name, by_time));
        }
        if *request.selector != BackupSelector::Latest {
            return Err(Error::Usage(
                "a physical PostgreSQL source restores by point in time: select the latest backup and set recovery_target (a time, latest, or a WAL position); the base backup is chosen from it".into(),
            ));
        }
        Ok(())
    }

    async fn plan(&self, request: &RestoreRequest<'_>) -> Result<PitrPlan> {
        let target: RecoveryTarget = request
            .options
            .recovery_target
            .as_deref()
            .unwrap_or("latest")
            .parse()?;
        pitr::plan(request.repo, request.source_name, target).await
    }

    async fn recover(
        &self,
        request: &RestoreRequest<'_>,
        plan: PitrPlan,
        data_dir: &Path,
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let options: &RestoreOptions = request.options;
        if request.repo.identities().is_empty() {
            return Err(Error::NoIdentity);
        }
        let data_dir = std::path::absolute(data_dir)
            .map_err(|e| Error::io(format!("resolving {}", data_dir.display()), e))?;
        let pitr_options = PitrOptions {
            data_dir,
            restore_command: restore_command(&self.self_command, request.source_name)?,
            keep_archiving: options.keep_archiving,
            start_on_port: options.start_port,
        };
        check_plan_wal(request.repo, &plan).await?;
        let done = restore_pitr(request.repo, plan, &pitr_options).await?;
        let mut report = RestoreReport::default();
        report.backup_id = done.plan.base_backup.clone();
        report.target = done.data_dir.display().to_string();
        report.restored_bytes = done.restored_bytes;
        if !done.promoted {
            report.notes.push(format!(
                "recovery is configured (recovery.signal, restore_command): start PostgreSQL on {} to replay the WAL",
                done.data_dir.display()
            ));
        }
        if owned_by_root(&done.data_dir).await {
            report.notes.push(format!(
                "{0} belongs to root and PostgreSQL refuses to run as root: `chown -R postgres: {0}` before starting it (and let postgres read dr.toml and the key, which restore_command uses)",
                done.data_dir.display()
            ));
        }
        report.summary = summary::recovery(done.promoted, done.recovery_stopped.as_deref())
            .into_iter()
            .collect();
        report.details = details(&PitrDetails {
            dry_run: false,
            data_dir: Some(done.data_dir.clone()),
            promoted: done.promoted,
            recovery_stopped: done.recovery_stopped.clone(),
            log_file: done.log_file.clone(),
            plan: done.plan,
        })?;
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}

async fn owned_by_root(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    tokio::fs::metadata(path).await.is_ok_and(|m| m.uid() == 0)
}

#[async_trait]
impl Source for PhysicalSource {
    fn kind(&self) -> &str {
        BASE_KIND
    }

    fn restores_by_point_in_time(&self) -> bool {
        true
    }

    async fn backup(&self, _: &Repository, _: &str, _full: bool) -> Result<Box<dyn Backup>> {
        Ok(Box::new(
            PostgresBaseSource::new(self.settings.connection()?)
                .with_fast_checkpoint(self.settings.fast_checkpoint),
        ))
    }

    async fn restore(&self, request: &RestoreRequest<'_>) -> Result<RestoreReport> {
        Self::refuse_unsupported(request)?;
        let plan = self.plan(request).await?;
        if request.options.dry_run {
            let mut report = RestoreReport::default();
            report.backup_id = plan.base_backup.clone();
            report.target = request
                .options
                .target
                .as_ref()
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            report.summary = summary::plan(&plan);
            report
                .notes
                .push("dry run: nothing was read or written".into());
            report.details = details(&PitrDetails {
                plan,
                dry_run: true,
                data_dir: request.options.target.clone(),
                promoted: false,
                recovery_stopped: None,
                log_file: None,
            })?;
            return Ok(report);
        }
        let Some(data_dir) = request.options.target.clone() else {
            return Err(refuse(
                "target",
                "is required (a new data directory): a point-in-time restore never touches the current data directory",
            ));
        };
        self.recover(request, plan, &data_dir)
            .await
            .map_err(|e| self.explain(e))
    }

    fn verifier(&self, _: &Repository) -> Result<Box<dyn Verify>> {
        Ok(Box::new(BaseVerifier::new()))
    }

    async fn drill(&self, repo: &Repository, backup: &BackupReader) -> Result<DrillSetup> {
        if backup.manifest().kind != BASE_KIND {
            return Ok(DrillSetup::new(self.verifier(repo)?, None));
        }
        let source = backup.manifest().source.as_str();
        let drill = RecoveryDrill::new(
            repo.clone(),
            source,
            self.settings.connection()?,
            restore_command(&self.self_command, source)?,
        )
        .with_checks(self.checks.clone());
        // The probe first, so that the archive's reach is read after it is archived.
        let probe = drill.write_probe().await.map_err(|e| {
            Error::backend("postgres", "backup", format!(
                "the RPO probe could not be written into the live cluster, so the drill's RPO cannot be checked: {e}"
            ))
        })?;
        let drill = drill.with_probe(Some(probe));
        let until = check_archive(repo, source).await?.latest;
        Ok(DrillSetup::new(Box::new(drill), until))
    }

    fn explain(&self, error: Error) -> Error {
        self.settings.explain_auth(error)
    }
}
