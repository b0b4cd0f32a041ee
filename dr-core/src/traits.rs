//! The three traits a datastore backend implements.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manifest::SourceInfo;
use crate::pipeline::{BackupReader, BackupWriter};

/// Captures a source into a backup.
///
/// # Contract
/// - Write every byte through `out` (one or more artifacts, each finished with
///   [`crate::ArtifactWriter::finish`]); never write to the store directly.
/// - Return `Err` if the capture is not complete and consistent (a child process that exited
///   non-zero, a dropped connection): the repository then commits nothing.
/// - Never modify the source.
#[async_trait]
pub trait Backup: Send + Sync {
    /// Stable kind recorded in the manifest, e.g. `sqlite`, `postgres.logical`, `redis.rdb`.
    fn kind(&self) -> &'static str;
    /// Streams the source into `out`; returns kind-specific facts for the manifest.
    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo>;
    /// Ids of the backups a restore of this one needs (an incremental backup's parent and
    /// the backups holding its unchanged data). The backup declares them itself: the
    /// repository records them in the manifest, and retention keeps them.
    fn depends_on(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Restores a backup into a target.
///
/// # Contract
/// - Never destroy the current data before the new data is complete and verified: write
///   beside the target, verify, then swap, keeping the previous data.
/// - Consume artifact readers to their end before committing anything: a checksum mismatch
///   is only reported at the part it affects, and the end of the stream is only reached
///   when every part checked.
#[async_trait]
pub trait Restore: Send + Sync {
    /// Restores `backup` according to `opts`.
    async fn restore(&self, backup: &BackupReader, opts: &RestoreOptions) -> Result<RestoreReport>;
}

/// Kind-specific verification of a backup (generic checksums live in the repository).
#[async_trait]
pub trait Verify: Send + Sync {
    /// Checks `backup` at `level`.
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport>;
}

/// Where and how to restore. Each kind honours the options it supports and refuses the
/// others with [`crate::Error::Usage`] before anything is read or written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Target path or name; `None` means the source's original location.
    pub target: Option<PathBuf>,
    /// Replace the target even if it is in use (the previous data is still kept).
    pub force: bool,
    /// For kinds that restore beside the original (a PostgreSQL database): after the checks
    /// pass, swap the restored copy in and keep the original under another name.
    pub swap: bool,
    /// Restore into the live target itself after a safety backup of it (label
    /// `pre-restore`) is taken into the repository (PostgreSQL).
    pub in_place: bool,
    /// Restore onto another server (`postgres://...`, `redis://...`).
    pub server: Option<String>,
    /// Restore only these paths or globs (directories) or keys (buckets).
    pub only: Vec<String>,
    /// Give files their recorded owners: `None` decides by privilege (yes as root).
    pub owners: Option<bool>,
    /// How long to wait for sessions to leave or locks to be granted.
    #[serde(with = "wait_ms")]
    pub wait: Duration,
    /// Apply only the backup's roles (PostgreSQL globals).
    pub globals: bool,
    /// Restore roles with their password hashes.
    pub with_role_passwords: bool,
    /// Point-in-time recovery target (a time, `latest`, a WAL position).
    pub recovery_target: Option<String>,
    /// Only plan: say what would be read and written.
    pub dry_run: bool,
    /// Start the restored server on this port and wait for it (physical PostgreSQL).
    pub start_port: Option<u16>,
    /// Keep the backup's archive settings in the restored server.
    pub keep_archiving: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            target: None,
            force: false,
            swap: false,
            in_place: false,
            server: None,
            only: Vec::new(),
            owners: None,
            wait: Duration::from_secs(30),
            globals: false,
            with_role_passwords: false,
            recovery_target: None,
            dry_run: false,
            start_port: None,
            keep_archiving: false,
        }
    }
}

mod wait_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl RestoreOptions {
    /// Restores to `target` instead of the original location.
    pub fn with_target(mut self, target: impl Into<PathBuf>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Replaces the target even if it is in use (the previous data is still kept).
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Swaps the restored copy in place of the original after the checks pass.
    pub fn with_swap(mut self, swap: bool) -> Self {
        self.swap = swap;
        self
    }

    /// Restores into the live target after a safety backup.
    pub fn with_in_place(mut self, in_place: bool) -> Self {
        self.in_place = in_place;
        self
    }

    /// Restores onto the server at `url`.
    pub fn with_server(mut self, url: Option<String>) -> Self {
        self.server = url;
        self
    }

    /// Restores only these paths, globs or keys.
    pub fn with_only(mut self, only: Vec<String>) -> Self {
        self.only = only;
        self
    }

    /// Gives files their recorded owners (`None`: as root only).
    pub fn with_owners(mut self, owners: Option<bool>) -> Self {
        self.owners = owners;
        self
    }

    /// Waits this long for sessions or locks.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Applies only the roles (PostgreSQL globals).
    pub fn with_globals(mut self, globals: bool) -> Self {
        self.globals = globals;
        self
    }

    /// Restores roles with their password hashes.
    pub fn with_role_passwords(mut self, yes: bool) -> Self {
        self.with_role_passwords = yes;
        self
    }

    /// Recovers to this target (physical PostgreSQL).
    pub fn with_recovery_target(mut self, target: Option<String>) -> Self {
        self.recovery_target = target;
        self
    }

    /// Only plans.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Starts the restored server on `port` (physical PostgreSQL).
    pub fn with_start_port(mut self, port: Option<u16>) -> Self {
        self.start_port = port;
        self
    }

    /// Keeps the archive settings of the backup in the restored server.
    pub fn with_keep_archiving(mut self, keep: bool) -> Self {
        self.keep_archiving = keep;
        self
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RestoreReport {
    /// Backup restored.
    pub backup_id: String,
    /// Where the data now is.
    pub target: String,
    /// Where the previous data was kept, if there was any.
    pub previous_kept_at: Option<String>,
    /// Plain bytes written.
    pub restored_bytes: u64,
    /// Wall time.
    pub elapsed_ms: u64,
    /// What the user should know about the restored target (e.g. an owner that could not be
    /// given), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the restore did beyond the bytes, in the kind's own words, one line each (the
    /// files, directories and links of a tree; the roles applied; a recovery plan), for a
    /// front end to print under its one-line header: a custom kind describes itself here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summary: Vec<String>,
    /// The checks the restored data passed before it counted (row counts, integrity, the
    /// user's checks), in words; a restore whose checks fail is an error instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks_passed: Vec<String>,
    /// The safety backup taken of the live target before an in-place restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_backup_id: Option<String>,
    /// Kind-specific facts for front ends (a recovery plan, the paths merged in place, the
    /// roles created), as JSON; `null` when there are none.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// How deep a verification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyLevel {
    /// Every object exists with the recorded size.
    Quick,
    /// Every object is read and hashed; decrypted and decoded too when an identity is loaded.
    Checksums,
    /// A test restore into a scratch target plus the kind's and the user's checks.
    Restore,
}

impl std::str::FromStr for VerifyLevel {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "quick" => Ok(VerifyLevel::Quick),
            "checksums" => Ok(VerifyLevel::Checksums),
            "restore" => Ok(VerifyLevel::Restore),
            other => Err(crate::Error::Usage(format!(
                "unknown verify level {other:?}: use quick, checksums or restore"
            ))),
        }
    }
}

/// The outcome of a verification: what was checked and every problem found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Backup verified.
    pub backup_id: String,
    /// The level asked for.
    pub level_requested: VerifyLevel,
    /// The level actually performed: lower than asked when the kind has no test restore
    /// (a note says so) or a problem stopped the deeper steps.
    pub level_performed: VerifyLevel,
    /// Objects checked.
    pub checked_objects: u64,
    /// Stored bytes read.
    pub checked_bytes: u64,
    /// Whether parts were decrypted and their plain hashes checked.
    pub decoded: bool,
    /// Checks that passed, in words (e.g. `integrity_check ok`).
    pub passed: Vec<String>,
    /// Problems, each naming the object or check that failed.
    pub problems: Vec<crate::verify::VerifyProblem>,
    /// What the reader should know that is neither a pass nor a problem (no test restore
    /// for the kind, no identity loaded).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Time the test restore took (a measured RTO), when one ran.
    #[serde(default)]
    pub test_restore_ms: Option<u64>,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl Default for VerifyReport {
    fn default() -> Self {
        VerifyReport::new("", VerifyLevel::Quick)
    }
}

impl VerifyReport {
    /// An empty report of backup `backup_id` verified at `level`.
    pub fn new(backup_id: impl Into<String>, level: VerifyLevel) -> Self {
        VerifyReport {
            backup_id: backup_id.into(),
            level_requested: level,
            level_performed: level,
            checked_objects: 0,
            checked_bytes: 0,
            decoded: false,
            passed: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            test_restore_ms: None,
            elapsed_ms: 0,
        }
    }

    /// A report of backup `backup_id` that could not be checked at all, for `problem`.
    pub fn failed(backup_id: impl Into<String>, problem: crate::verify::VerifyProblem) -> Self {
        let mut report = VerifyReport::new(backup_id, VerifyLevel::Quick);
        report.problems.push(problem);
        report
    }

    /// Adds a problem of `kind` in words.
    pub fn add_problem(
        &mut self,
        kind: crate::verify::ProblemKind,
        message: impl Into<String>,
    ) -> &mut Self {
        self.problems
            .push(crate::verify::VerifyProblem::new(kind, message));
        self
    }

    /// Adds what a kind-specific step found.
    pub fn add(&mut self, findings: crate::verify::Findings) -> &mut Self {
        self.passed.extend(findings.passed);
        self.problems.extend(findings.problems);
        self
    }

    /// The problems' messages joined with `; `.
    pub fn problems_text(&self) -> String {
        let messages: Vec<&str> = self.problems.iter().map(|p| p.message.as_str()).collect();
        messages.join("; ")
    }

    /// Whether the only problems are failed user checks ([`crate::ProblemKind::FailedCheck`]):
    /// the backup itself is intact (its parts matched, the test restore and integrity
    /// checks passed) and the data in it does not satisfy a check.
    pub fn only_user_checks_failed(&self) -> bool {
        !self.problems.is_empty()
            && self
                .problems
                .iter()
                .all(|p| p.kind == crate::verify::ProblemKind::FailedCheck)
    }

    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}
