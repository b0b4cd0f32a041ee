//! The backup operation: one source, a group, or every source (recorded as one recovery
//! point), with the hooks of each source and of the group around them.

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, backup_notes};
use crate::ops::System;
use crate::ops::hooks::{self, HookEnv, HookPhase, HookRun, Hooks};
use crate::points::{FailedMember, RecoveryPoint};
use crate::progress::{Operation, ProgressHandle};
use crate::repository::{BackupOptions, Repository};

/// What a backup run backs up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackupTarget {
    /// One source (no recovery point).
    Source(String),
    /// A group named in the configuration, recorded as one recovery point.
    Group(String),
    /// Every configured source (the group `all`), recorded as one recovery point.
    #[default]
    All,
}

/// The options of [`backup`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BackupRunOptions {
    /// What to back up.
    pub target: BackupTarget,
    /// Labels recorded with every backup (and the point).
    pub labels: Vec<String>,
    /// Incremental sources: store everything, with no parent.
    pub full: bool,
}

impl BackupRunOptions {
    /// Backs up the source `name`.
    pub fn source(name: impl Into<String>) -> Self {
        BackupRunOptions {
            target: BackupTarget::Source(name.into()),
            ..BackupRunOptions::default()
        }
    }

    /// Backs up the group `name` as one recovery point.
    pub fn group(name: impl Into<String>) -> Self {
        BackupRunOptions {
            target: BackupTarget::Group(name.into()),
            ..BackupRunOptions::default()
        }
    }

    /// Backs up every source as one recovery point.
    pub fn all() -> Self {
        BackupRunOptions::default()
    }

    /// With labels.
    pub fn with_labels(mut self, labels: Vec<String>) -> Self {
        self.labels = labels;
        self
    }

    /// Full backups of incremental sources.
    pub fn with_full(mut self, full: bool) -> Self {
        self.full = full;
        self
    }
}

/// What backing up one source did.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct SourceBackupReport {
    /// The source.
    pub source: String,
    /// The new backup's id (none when it failed).
    pub id: Option<String>,
    /// The manifest kind.
    pub kind: Option<String>,
    /// Plain bytes backed up.
    pub plain_bytes: u64,
    /// Bytes stored (compressed and encrypted).
    pub stored_bytes: u64,
    /// Wall time of the backup (hooks not counted).
    pub elapsed_ms: u64,
    /// What the backend wants the user to know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why it failed (credentials redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The hooks of the source that ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRun>,
    /// The failure itself, for the exit code.
    #[serde(skip)]
    pub failure: Option<Error>,
    /// The manifest of the new backup.
    #[serde(skip)]
    pub manifest: Option<Manifest>,
}

impl SourceBackupReport {
    fn new(source: &str) -> Self {
        SourceBackupReport {
            source: source.to_owned(),
            id: None,
            kind: None,
            plain_bytes: 0,
            stored_bytes: 0,
            elapsed_ms: 0,
            notes: Vec::new(),
            error: None,
            hooks: Vec::new(),
            failure: None,
            manifest: None,
        }
    }

    fn failed(&mut self, error: Error) {
        self.error = Some(error.to_string());
        self.failure = Some(error);
    }
}

/// What a backup run did.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct BackupRunReport {
    /// Each source attempted, in order.
    pub sources: Vec<SourceBackupReport>,
    /// The recovery point recorded for a group (with its failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<RecoveryPoint>,
    /// The group's hooks that ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_hooks: Vec<HookRun>,
    /// Wall time of the whole run.
    pub elapsed_ms: u64,
}

impl BackupRunReport {
    /// The sources whose backup failed.
    pub fn failed(&self) -> impl Iterator<Item = &SourceBackupReport> {
        self.sources.iter().filter(|s| s.error.is_some())
    }

    /// The manifests of the backups made.
    pub fn manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.sources.iter().filter_map(|s| s.manifest.as_ref())
    }

    /// Every hook failure (source and group hooks), one line each.
    pub fn hook_failures(&self) -> Vec<String> {
        let source_runs = self.sources.iter().flat_map(|s| s.hooks.iter());
        let all: Vec<HookRun> = source_runs.chain(&self.group_hooks).cloned().collect();
        hooks::failures(&all)
    }

    /// Whether every backup and every hook succeeded.
    pub fn is_success(&self) -> bool {
        self.failed().next().is_none() && self.hook_failures().is_empty()
    }
}

/// Backs up what `options` names. A single source's failure is in its report; for a
/// group every source is attempted even when one fails, and the recovery point records
/// the backups made and the failures. The incremental parent is chosen by each
/// [`crate::Source::backup`].
///
/// # Errors
/// [`Error::Usage`] for an unknown source or group or an empty system; the group's failing
/// `before_backup` hook ([`Error::HookFailed`], nothing backed up); recording the point.
pub async fn backup(
    repo: &Repository,
    system: &System,
    options: &BackupRunOptions,
    progress: &ProgressHandle,
) -> Result<BackupRunReport> {
    let started = Instant::now();
    let progress = progress.narrowed(|_| crate::progress::Scope::of(Operation::Backup));
    let (names, group) = match &options.target {
        BackupTarget::Source(name) => {
            system.source(name)?;
            (vec![name.clone()], None)
        }
        BackupTarget::Group(group) => (system.group_sources(group)?, Some(group.as_str())),
        BackupTarget::All => (system.group_sources("all")?, Some("all")),
    };
    if names.is_empty() {
        return Err(Error::Usage(
            "no sources configured: add [sources.NAME] to dr.toml".into(),
        ));
    }
    let group_hooks = group
        .and_then(|g| system.group(g))
        .map(|g| g.hooks.clone())
        .unwrap_or_default();
    let mut report = BackupRunReport {
        sources: Vec::new(),
        point: None,
        group_hooks: Vec::new(),
        elapsed_ms: 0,
    };
    let env = group.map(|g| HookEnv::new("backup").with_group(g));
    if let Some(env) = &env {
        let before = group_hooks
            .run_before(HookPhase::BeforeBackup, env, &mut report.group_hooks)
            .await;
        if let Err(e) = before {
            group_hooks.run_after(HookPhase::AfterBackup, env).await;
            return Err(e);
        }
    }
    for name in &names {
        let one = backup_source(repo, system, name, options, &progress).await;
        report.sources.push(one);
    }
    if let (Some(group), Some(env)) = (group, env) {
        let point = record_point(repo, group, &report, &options.labels).await;
        let env = match &point {
            Ok(point) => env.with_point(&point.id),
            Err(_) => env,
        };
        let after = group_hooks.run_after(HookPhase::AfterBackup, &env).await;
        report.group_hooks.extend(after);
        report.point = Some(point?);
    }
    report.elapsed_ms = crate::ops::elapsed_ms(started);
    Ok(report)
}

/// Backs up one source between its hooks; every failure lands in the report.
async fn backup_source(
    repo: &Repository,
    system: &System,
    name: &str,
    options: &BackupRunOptions,
    progress: &ProgressHandle,
) -> SourceBackupReport {
    let mut report = SourceBackupReport::new(name);
    let hooks: Hooks = system
        .get(name)
        .map(|s| s.hooks.clone())
        .unwrap_or_default();
    let env = HookEnv::new("backup").with_source(name);
    if let Err(e) = hooks
        .run_before(HookPhase::BeforeBackup, &env, &mut report.hooks)
        .await
    {
        report.failed(e);
        let after = hooks.run_after(HookPhase::AfterBackup, &env).await;
        report.hooks.extend(after);
        return report;
    }
    let progress = progress.narrowed(|s| s.with_source(name));
    progress.start("backup", None);
    let started = Instant::now();
    let made = backup_once(repo, system, name, options, &progress).await;
    report.elapsed_ms = crate::ops::elapsed_ms(started);
    let env = match made {
        Ok(manifest) => {
            progress.finish();
            let env = env.with_backup(&manifest.id);
            fill(&mut report, manifest);
            env
        }
        Err(e) => {
            progress.fail(e.to_string());
            tracing::warn!(source = name, error = %e, "backup failed");
            report.failed(e);
            env
        }
    };
    let after = hooks.run_after(HookPhase::AfterBackup, &env).await;
    report.hooks.extend(after);
    report
}

async fn backup_once(
    repo: &Repository,
    system: &System,
    name: &str,
    options: &BackupRunOptions,
    progress: &ProgressHandle,
) -> Result<Manifest> {
    let configured = system.source(name)?;
    let source = &configured.source;
    let repo = repo.clone().with_progress_handle(progress.clone());
    let capture = source
        .backup(&repo, name, options.full)
        .await
        .map_err(|e| source.explain(e))?;
    let backup_options = BackupOptions {
        labels: options.labels.clone(),
        retain_until: Some(crate::locks::lock_until_at_backup(
            chrono::Utc::now(),
            system.retention_for(name),
            repo.lock_margin(),
        )),
        ..BackupOptions::default()
    };
    repo.backup(name, capture.as_ref(), &backup_options)
        .await
        .map_err(|e| source.explain(e))
}

fn fill(report: &mut SourceBackupReport, manifest: Manifest) {
    report.id = Some(manifest.id.clone());
    report.kind = Some(manifest.kind.clone());
    report.plain_bytes = manifest.plain_size();
    report.stored_bytes = manifest.stored_size();
    report.notes = backup_notes(&manifest.source_info);
    report.manifest = Some(manifest);
}

async fn record_point(
    repo: &Repository,
    group: &str,
    report: &BackupRunReport,
    labels: &[String],
) -> Result<RecoveryPoint> {
    let made: Vec<Manifest> = report.manifests().cloned().collect();
    let failed: Vec<FailedMember> = report
        .failed()
        .map(|s| FailedMember {
            source: s.source.clone(),
            error: s.error.clone().unwrap_or_default(),
        })
        .collect();
    let point = repo
        .record_point(group, &made, failed, labels.to_vec())
        .await?;
    // On an Object Lock bucket the record is locked as long as its longest-locked member.
    let until = made.iter().map(|m| repo.manifest_retention(m));
    let mut longest = None;
    for retention in futures::future::join_all(until).await {
        longest = longest.max(retention.ok().flatten().map(|r| r.until));
    }
    if let Some(until) = longest
        && let Err(e) = repo.lock_point(&point.id, until).await
    {
        tracing::warn!(point = %point.id, error = %e, "recovery point recorded but NOT locked");
    }
    Ok(point)
}
