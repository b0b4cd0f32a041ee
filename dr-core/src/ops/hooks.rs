//! Commands run before and after backups and restores, and health checks.
//!
//! A hook is an argument array run as is: no shell sees it unless the user writes
//! `["sh", "-c", "..."]`. Each has a timeout (5 minutes by default); a hook still running
//! then is killed with its whole process group. Hooks learn what is happening from the
//! environment: `DR_OPERATION` (`backup`, `restore`), `DR_SOURCE`, `DR_BACKUP_ID`,
//! `DR_TARGET`, and for the hooks of a group `DR_GROUP` and `DR_POINT`.
//!
//! A failing *before* hook aborts the operation with nothing changed; *after* hooks always
//! run (after a failed operation or a failed before hook too, so that a service stopped by
//! a before hook is started again) and their failures are reported. A `health` check runs after
//! a restore, retried every `interval` until it passes or its `timeout` is over.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod run;

pub use run::HookEnv;

/// The default timeout of one hook command.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// The hooks of a source or a group (`[sources.NAME.hooks]`, `[groups.NAME.hooks]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Hooks {
    /// Run before a backup; one failing aborts the backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before_backup: Vec<HookCommand>,
    /// Run after a backup, whether it succeeded or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_backup: Vec<HookCommand>,
    /// Run before a restore; one failing aborts the restore with the target untouched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before_restore: Vec<HookCommand>,
    /// Run after a restore, whether it succeeded or not (e.g. start the service again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_restore: Vec<HookCommand>,
    /// Checked after a successful restore: the restore's RTO runs until it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

impl Hooks {
    /// Whether no hook and no health check is configured.
    pub fn is_empty(&self) -> bool {
        self == &Hooks::default()
    }

    /// With a command run before backups.
    pub fn with_before_backup(mut self, command: HookCommand) -> Self {
        self.before_backup.push(command);
        self
    }

    /// With a command run after backups.
    pub fn with_after_backup(mut self, command: HookCommand) -> Self {
        self.after_backup.push(command);
        self
    }

    /// With a command run before restores.
    pub fn with_before_restore(mut self, command: HookCommand) -> Self {
        self.before_restore.push(command);
        self
    }

    /// With a command run after restores.
    pub fn with_after_restore(mut self, command: HookCommand) -> Self {
        self.after_restore.push(command);
        self
    }

    /// With a health check.
    pub fn with_health(mut self, health: HealthCheck) -> Self {
        self.health = Some(health);
        self
    }

    /// The commands of `phase`.
    pub fn commands(&self, phase: HookPhase) -> &[HookCommand] {
        match phase {
            HookPhase::BeforeBackup => &self.before_backup,
            HookPhase::AfterBackup => &self.after_backup,
            HookPhase::BeforeRestore => &self.before_restore,
            HookPhase::AfterRestore => &self.after_restore,
        }
    }

    /// Runs the *before* hooks of `phase` in order, stopping at the first that fails.
    ///
    /// # Errors
    /// [`Error::HookFailed`] naming the hook that
    /// failed and saying nothing was changed; the runs so far are in `runs`.
    pub async fn run_before(
        &self,
        phase: HookPhase,
        env: &HookEnv,
        runs: &mut Vec<HookRun>,
    ) -> Result<()> {
        for command in self.commands(phase) {
            let run = command.run(phase, env).await;
            let failed = run.error.clone();
            runs.push(run);
            if let Some(error) = failed {
                return Err(Error::HookFailed {
                    phase: phase.name(),
                    command: command.shown(),
                    error,
                    undone: phase.undone(),
                });
            }
        }
        Ok(())
    }

    /// Runs every *after* hook of `phase`, also when one fails; the failures are in the runs.
    pub async fn run_after(&self, phase: HookPhase, env: &HookEnv) -> Vec<HookRun> {
        let mut runs = Vec::new();
        for command in self.commands(phase) {
            runs.push(command.run(phase, env).await);
        }
        runs
    }

    /// Runs the health check until it passes or its timeout is over; `None` without one.
    pub async fn wait_healthy(&self, env: &HookEnv) -> Option<HealthReport> {
        match &self.health {
            Some(health) => Some(health.wait(env).await),
            None => None,
        }
    }
}

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPhase {
    /// Before a backup.
    BeforeBackup,
    /// After a backup.
    AfterBackup,
    /// Before a restore.
    BeforeRestore,
    /// After a restore.
    AfterRestore,
}

impl HookPhase {
    /// `before_backup`, `after_restore`...
    pub fn name(self) -> &'static str {
        match self {
            HookPhase::BeforeBackup => "before_backup",
            HookPhase::AfterBackup => "after_backup",
            HookPhase::BeforeRestore => "before_restore",
            HookPhase::AfterRestore => "after_restore",
        }
    }

    fn undone(self) -> &'static str {
        match self {
            HookPhase::BeforeBackup | HookPhase::AfterBackup => "backed up",
            HookPhase::BeforeRestore | HookPhase::AfterRestore => "restored",
        }
    }
}

/// One hook command: an argument array and a timeout. In TOML either the bare array
/// (`["systemctl", "stop", "app"]`) or a table (`{ command = [...], timeout = "30s" }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "run::CommandForm", into = "run::CommandForm")]
#[non_exhaustive]
pub struct HookCommand {
    /// Program and arguments (never given to a shell by dr).
    pub argv: Vec<String>,
    /// How long it may run before it is killed.
    pub timeout: Duration,
}

impl HookCommand {
    /// The command `argv` with the default timeout.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        HookCommand {
            argv: argv.into_iter().map(Into::into).collect(),
            timeout: DEFAULT_HOOK_TIMEOUT,
        }
    }

    /// With a timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command as shown in reports (URLs with passwords redacted).
    pub fn shown(&self) -> String {
        let words: Vec<String> = self.argv.iter().map(|a| crate::redact_url(a)).collect();
        format!("`{}`", words.join(" "))
    }

    /// Runs the command once as a hook of `phase`.
    pub async fn run(&self, phase: HookPhase, env: &HookEnv) -> HookRun {
        let started = Instant::now();
        let outcome = run::run_command(&self.argv, self.timeout, env).await;
        let run = HookRun {
            phase,
            command: self.shown(),
            elapsed_ms: crate::ops::elapsed_ms(started),
            error: outcome.err(),
        };
        match &run.error {
            Some(error) => {
                tracing::warn!(hook = phase.name(), command = %run.command, %error, "hook failed")
            }
            None => tracing::info!(hook = phase.name(), command = %run.command, "hook passed"),
        }
        run
    }
}

/// A command that says whether the restored service answers, retried until it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthCheck {
    /// Program and arguments; exit status 0 means healthy.
    pub command: Vec<String>,
    /// Time between attempts (default 1 s).
    #[serde(default = "default_interval", with = "run::duration")]
    pub interval: Duration,
    /// How long to keep trying (default 60 s); each attempt is killed when it runs past it.
    #[serde(default = "default_health_timeout", with = "run::duration")]
    pub timeout: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(60)
}

impl HealthCheck {
    /// The check `command` with the default interval and timeout.
    pub fn new<S: Into<String>>(command: impl IntoIterator<Item = S>) -> Self {
        HealthCheck {
            command: command.into_iter().map(Into::into).collect(),
            interval: default_interval(),
            timeout: default_health_timeout(),
        }
    }

    /// With the time between attempts.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// With how long to keep trying.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the check until it passes or the timeout is over.
    pub async fn wait(&self, env: &HookEnv) -> HealthReport {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = run::run_command(&self.command, left, env).await;
            let next = Instant::now() + self.interval;
            match outcome {
                Ok(()) => return HealthReport::new(started, attempts, None),
                Err(error) if next >= deadline => {
                    return HealthReport::new(started, attempts, Some(error));
                }
                Err(error) => tracing::debug!(attempts, %error, "not healthy yet"),
            }
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

/// What one hook command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HookRun {
    /// When it ran.
    pub phase: HookPhase,
    /// The command, as shown.
    pub command: String,
    /// How long it ran.
    pub elapsed_ms: u64,
    /// Why it failed (exit status, timeout, not found, with the end of its stderr).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the health check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Whether it passed before its timeout.
    pub passed: bool,
    /// Attempts made.
    pub attempts: u32,
    /// From the first attempt until it passed or gave up.
    pub elapsed_ms: u64,
    /// The last attempt's failure, when it did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HealthReport {
    fn new(started: Instant, attempts: u32, error: Option<String>) -> Self {
        HealthReport {
            passed: error.is_none(),
            attempts,
            elapsed_ms: crate::ops::elapsed_ms(started),
            error,
        }
    }
}

/// The failures among `runs`, one line each.
pub fn failures(runs: &[HookRun]) -> Vec<String> {
    runs.iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("{} hook {} failed: {e}", r.phase.name(), r.command))
        })
        .collect()
}
