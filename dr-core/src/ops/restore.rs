//! The restore operation: one source (between its hooks, timed until its health check
//! passed), or a whole recovery point (members checked first, then restored in restore
//! order, each into its own place, between the group's hooks).

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ops::System;
use crate::ops::hooks::{self, HealthReport, HookEnv, HookPhase, HookRun, Hooks};
use crate::progress::{Operation, ProgressHandle, Scope};
use crate::registry::RestoreRequest;
use crate::repository::Repository;
use crate::selector::BackupSelector;
use crate::traits::{RestoreOptions, RestoreReport};

mod point;

pub use point::{PointRestoreOptions, PointRestoreReport, restore_point};

/// The options of [`restore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RestoreRunOptions {
    /// The source to restore.
    pub source: String,
    /// Which of its backups.
    pub selector: BackupSelector,
    /// Where and how.
    pub options: RestoreOptions,
}

impl Default for RestoreRunOptions {
    fn default() -> Self {
        RestoreRunOptions {
            source: String::new(),
            selector: BackupSelector::Latest,
            options: RestoreOptions::default(),
        }
    }
}

impl RestoreRunOptions {
    /// The newest backup of `source` into its own place.
    pub fn source(source: impl Into<String>) -> Self {
        RestoreRunOptions {
            source: source.into(),
            ..RestoreRunOptions::default()
        }
    }

    /// With the backup to restore.
    pub fn with_selector(mut self, selector: BackupSelector) -> Self {
        self.selector = selector;
        self
    }

    /// With where and how.
    pub fn with_options(mut self, options: RestoreOptions) -> Self {
        self.options = options;
        self
    }
}

/// What restoring one source did.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct RestoreRunReport {
    /// The source.
    pub source: String,
    /// The backup restored (resolved from the selector before anything ran).
    pub backup_id: String,
    /// The backend's report, when the restore succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreReport>,
    /// The hooks that ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRun>,
    /// The health check, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthReport>,
    /// From the start until the restored service passed its health check (until the
    /// restore finished without one); `None` when it failed.
    pub rto_ms: Option<u64>,
    /// Why the restore failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure itself, for the exit code.
    #[serde(skip)]
    pub failure: Option<Error>,
}

impl RestoreRunReport {
    fn new(source: &str, backup_id: &str) -> Self {
        RestoreRunReport {
            source: source.to_owned(),
            backup_id: backup_id.to_owned(),
            restore: None,
            hooks: Vec::new(),
            health: None,
            rto_ms: None,
            error: None,
            failure: None,
        }
    }

    /// Every hook and health failure, one line each.
    pub fn hook_failures(&self) -> Vec<String> {
        let mut lines = hooks::failures(&self.hooks);
        if let Some(h) = self.health.as_ref().filter(|h| !h.passed) {
            lines.push(format!(
                "the health check did not pass after {} attempts in {} ms: {}",
                h.attempts,
                h.elapsed_ms,
                h.error.as_deref().unwrap_or("failed")
            ));
        }
        lines
    }

    /// Whether the restore, the hooks and the health check succeeded.
    pub fn is_success(&self) -> bool {
        self.failure.is_none() && self.hook_failures().is_empty()
    }
}

/// Restores one backup of a configured source: the backup is found and the secret key
/// checked first (a dry run needs no key), then the `before_restore` hooks, the source's whole restore
/// ([`crate::Source::restore`]), the `after_restore` hooks (always) and the health check.
/// A dry run runs no hooks.
///
/// # Errors
/// Before anything ran: [`Error::NoIdentity`] without a secret key, [`Error::Usage`] for
/// an unknown source, [`Error::BackupNotFound`]; a failing `before_restore` hook
/// ([`Error::HookFailed`], the target untouched). A failure of the restore itself is in the
/// report (`error`, `failure`), with the after-hooks that ran.
pub async fn restore(
    repo: &Repository,
    system: &System,
    options: &RestoreRunOptions,
    progress: &ProgressHandle,
) -> Result<RestoreRunReport> {
    let started = Instant::now();
    if !options.options.dry_run {
        require_identity(repo)?;
    }
    let name = options.source.as_str();
    let configured = system.source(name)?;
    let reader = repo.open_backup(name, &options.selector).await?;
    if !options.options.dry_run {
        // Before the hooks stop anything: a key that cannot decrypt the backup is refused.
        repo.check_identities_for(reader.manifest())?;
    }
    let backup_id = reader.id().to_owned();
    let mut report = RestoreRunReport::new(name, &backup_id);
    let env = restore_env(name, &backup_id, &options.options);
    let hooks = if options.options.dry_run {
        Hooks::default()
    } else {
        configured.hooks.clone()
    };
    let before = hooks
        .run_before(HookPhase::BeforeRestore, &env, &mut report.hooks)
        .await;
    if let Err(e) = before {
        hooks.run_after(HookPhase::AfterRestore, &env).await;
        return Err(e);
    }
    let progress = progress.narrowed(|_| {
        Scope::of(Operation::Restore)
            .with_source(name)
            .with_backup(&backup_id)
    });
    let repo = repo.clone().with_progress_handle(progress.clone());
    // The backup found above, unless the kind picks its base from a recovery target.
    let selector = if configured.source.restores_by_point_in_time() {
        options.selector.clone()
    } else {
        BackupSelector::Id(backup_id.clone())
    };
    let request = RestoreRequest::new(&repo, name, &selector, &options.options);
    progress.start("restore", None);
    let restored = configured.source.restore(&request).await;
    match restored {
        Ok(done) => {
            progress.finish();
            if !done.backup_id.is_empty() {
                // A point-in-time restore picks its base backup from the recovery target.
                report.backup_id.clone_from(&done.backup_id);
            }
            report.restore = Some(done);
        }
        Err(e) => {
            let e = configured.source.explain(e);
            progress.fail(e.to_string());
            report.error = Some(e.to_string());
            report.failure = Some(e);
        }
    }
    finish(&mut report, &hooks, &env, started).await;
    Ok(report)
}

/// The after-hooks (always), then the health check and the RTO after a success.
async fn finish(report: &mut RestoreRunReport, hooks: &Hooks, env: &HookEnv, started: Instant) {
    let after = hooks.run_after(HookPhase::AfterRestore, env).await;
    report.hooks.extend(after);
    if report.failure.is_some() {
        return;
    }
    report.health = hooks.wait_healthy(env).await;
    if report.health.as_ref().is_none_or(|h| h.passed) {
        report.rto_ms = Some(crate::ops::elapsed_ms(started));
    }
}

fn restore_env(source: &str, backup_id: &str, options: &RestoreOptions) -> HookEnv {
    let target = options
        .target
        .as_ref()
        .map(|t| t.display().to_string())
        .or_else(|| options.server.as_deref().map(crate::redact_url))
        .unwrap_or_default();
    HookEnv::new("restore")
        .with_source(source)
        .with_backup(backup_id)
        .with_target(target)
}

/// Refuses a restore before anything is read when no secret key is loaded.
fn require_identity(repo: &Repository) -> Result<()> {
    if repo.identities().is_empty() {
        return Err(Error::NoIdentity);
    }
    Ok(())
}
