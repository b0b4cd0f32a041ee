//! The kind registry: the one place that maps a configured source type to its backend, and a
//! manifest kind to what can verify, restore or archive it.
//!
//! dr-core knows no datastore. The facade crate `dr` fills a [`Registry`] with the built-in
//! backends (`dr::registry()`); a program adds its own kinds with
//! [`Registry::register_source_type`] and [`Registry::register_kind`], and from then on
//! every operation (backup, verify, restore, drill, bench, prune, status) serves them like the
//! built-in ones.
//!
//! Two sides:
//! - a [`SourceFactory`] builds a [`Source`] from a source's settings (a `[sources.NAME]`
//!   table of dr.toml, or a struct a service serializes): what to back up, how to restore it
//!   and how to verify it, with this source's location and checks;
//! - a [`KindSupport`] serves backups of one manifest kind when no configured source is at
//!   hand (a repository read on another host, a drill into scratch, a bench), and owns the
//!   kind's continuous archive ([`Archive`], PostgreSQL's WAL) if it has one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checks::UserCheck;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::pipeline::BackupReader;
use crate::repository::Repository;
use crate::selector::BackupSelector;
use crate::traits::{Backup, Restore, RestoreOptions, RestoreReport, Verify, VerifyLevel};

/// The settings of one configured source, as its factory receives them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SourceSettings {
    /// The kind-specific settings (the `[sources.NAME]` table without the generic keys
    /// `kind`, `retention`, `checks`, `objectives` and `hooks`). Factories deserialize it
    /// with `deny_unknown_fields`, so a typo is refused.
    pub values: serde_json::Value,
    /// User checks run on a restored copy (verify at restore level, restore, drill).
    pub checks: Vec<UserCheck>,
    /// The argv that runs this front end again, for commands a datastore calls back (e.g.
    /// PostgreSQL's `restore_command` running `dr --config FILE wal-fetch %f %p --source
    /// NAME`); empty when the front end has none.
    #[serde(default)]
    pub self_command: Vec<String>,
}

impl SourceSettings {
    /// Settings from kind-specific `values` (a JSON object).
    pub fn new(values: serde_json::Value) -> Self {
        SourceSettings {
            values,
            checks: Vec::new(),
            self_command: Vec::new(),
        }
    }

    /// With the argv that runs this front end again.
    pub fn with_self_command(mut self, argv: Vec<String>) -> Self {
        self.self_command = argv;
        self
    }

    /// With user checks.
    pub fn with_checks(mut self, checks: Vec<UserCheck>) -> Self {
        self.checks = checks;
        self
    }

    /// The values deserialized as `T`, or a usage error naming `source_type`.
    ///
    /// # Errors
    /// [`Error::Usage`] when the values do not fit `T` (a missing field, a typo).
    pub fn parse<T: serde::de::DeserializeOwned>(&self, source_type: &str) -> Result<T> {
        serde_json::from_value(self.values.clone()).map_err(|e| {
            Error::Usage(format!(
                "bad settings for a source of kind {source_type:?}: {e}"
            ))
        })
    }
}

/// Builds configured sources of one type (`kind = "sqlite"` in dr.toml).
pub trait SourceFactory: Send + Sync {
    /// The type name used in configurations, e.g. `sqlite`, `postgres`, `directory`.
    fn source_type(&self) -> &str;
    /// Builds the source from its settings.
    ///
    /// # Errors
    /// [`Error::Usage`] for settings that are wrong (with what to write instead).
    fn build(&self, settings: &SourceSettings) -> Result<Arc<dyn Source>>;
}

/// Where a source comes in a whole-system restore (the seeds' order: databases, then caches,
/// then files and buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreRank {
    /// Databases (PostgreSQL, SQLite).
    Database,
    /// Caches (Redis).
    Cache,
    /// Files and buckets.
    Files,
}

/// Refuses a restore that sets an option its kind does not support, before anything is read:
/// every `(set, why)` that is set is named in one [`Error::Usage`] that says nothing was read
/// or written. Each kind lists its own rows; [`pitr_only`] is the row every kind without a
/// continuous archive shares.
///
/// # Errors
/// [`Error::Usage`] naming every option set.
pub fn refuse_unsupported(refused: &[(bool, &str)]) -> Result<()> {
    refuse_unsupported_by(None, refused)
}

/// [`refuse_unsupported`], followed by what a restore of this kind does instead
/// (`kind_does`: "a bucket restore writes checked objects into ...").
///
/// # Errors
/// [`Error::Usage`] naming every option set.
pub fn refuse_unsupported_by(kind_does: Option<&str>, refused: &[(bool, &str)]) -> Result<()> {
    let reasons: Vec<&str> = refused
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, why)| *why)
        .collect();
    if reasons.is_empty() {
        return Ok(());
    }
    let instead = kind_does
        .map(|does| format!(": {does}"))
        .unwrap_or_default();
    Err(Error::Usage(format!(
        "{}{instead} (nothing was read or written)",
        reasons.join("; ")
    )))
}

/// The options only a point-in-time restore takes (`dry_run`, `start_port`,
/// `keep_archiving`), as a row for [`refuse_unsupported`].
pub fn pitr_only(options: &RestoreOptions) -> (bool, &'static str) {
    (
        options.dry_run || options.start_port.is_some() || options.keep_archiving,
        "--dry-run, --start and --keep-archiving are for physical PostgreSQL sources",
    )
}

/// What a restore of one source is asked to do: the backup, the options, the repository.
#[derive(Clone)]
#[non_exhaustive]
pub struct RestoreRequest<'a> {
    /// The repository holding the backup (with identities loaded).
    pub repo: &'a Repository,
    /// The source's name in the repository.
    pub source_name: &'a str,
    /// Which backup.
    pub selector: &'a BackupSelector,
    /// Where and how.
    pub options: &'a RestoreOptions,
}

impl<'a> RestoreRequest<'a> {
    /// A request for `selector` of `source_name` in `repo`.
    pub fn new(
        repo: &'a Repository,
        source_name: &'a str,
        selector: &'a BackupSelector,
        options: &'a RestoreOptions,
    ) -> Self {
        RestoreRequest {
            repo,
            source_name,
            selector,
            options,
        }
    }

    /// Opens the selected backup.
    ///
    /// # Errors
    /// [`Error::NoSuchBackup`] and the repository's errors.
    pub async fn open(&self) -> Result<BackupReader> {
        self.repo.open_backup(self.source_name, self.selector).await
    }
}

/// One configured source: what to back up, how to restore and verify it.
#[async_trait]
pub trait Source: Send + Sync {
    /// The manifest kind of this source's backups (`sqlite`, `postgres.logical`...).
    fn kind(&self) -> &str;

    /// Whether a restore picks its point by [`RestoreOptions::recovery_target`] (a time or
    /// position replayed from a continuous archive) instead of a backup selector: a front
    /// end then passes a user's "restore as of TIME" as the recovery target.
    fn restores_by_point_in_time(&self) -> bool {
        false
    }

    /// Whether a restore into the source's own place needs [`RestoreOptions::swap`]: the
    /// kind restores beside the original, checks, then swaps it in (PostgreSQL logical). A
    /// point restore sets `swap` for these; other kinds restore their own place safely
    /// without it.
    fn swaps_into_own_place(&self) -> bool {
        false
    }

    /// Where it comes in a whole-system restore.
    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Database
    }

    /// The capture for the next backup of `source_name`, chosen with the repository in view:
    /// an incremental source reads its newest backup here (unless `full`) and declares
    /// what it depends on through [`Backup::depends_on`].
    ///
    /// # Errors
    /// When the parent cannot be read (say to pass `full`), or settings are wrong.
    async fn backup(
        &self,
        repo: &Repository,
        source_name: &str,
        full: bool,
    ) -> Result<Box<dyn Backup>>;

    /// The whole restore of this kind as `request` asks: open the backup, the checks and
    /// safety copies the kind needs, then the restore. Options a kind does not support are
    /// refused with [`Error::Usage`] before anything is read or written.
    ///
    /// # Errors
    /// Anything that stopped the restore; the target is as it was unless the report says.
    async fn restore(&self, request: &RestoreRequest<'_>) -> Result<RestoreReport>;

    /// The verifier of this source's backups (with its user checks).
    ///
    /// # Errors
    /// Settings that are wrong.
    fn verifier(&self, repo: &Repository) -> Result<Box<dyn Verify>>;

    /// A restorer of this source's backups into a scratch directory `scratch` for drills and
    /// benches (with its user checks), or `None` when the kind restores only to a server.
    fn scratch_restorer(&self, repo: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        let _ = (repo, scratch);
        None
    }

    /// What a drill of `backup` runs: by default the source's verifier at restore level;
    /// a kind may recover through its archive instead and say until when it can recover.
    ///
    /// # Errors
    /// When the drill cannot be prepared (it is then recorded as failed).
    async fn drill(&self, repo: &Repository, backup: &BackupReader) -> Result<DrillSetup> {
        let _ = backup;
        Ok(DrillSetup {
            verifier: self.verifier(repo)?,
            recoverable_until: None,
        })
    }

    /// `error` with a hint of this source's own (e.g. which variable holds a password).
    fn explain(&self, error: Error) -> Error {
        error
    }
}

/// What a drill runs, prepared by [`Source::drill`].
#[non_exhaustive]
pub struct DrillSetup {
    /// Runs the test restore and the checks (at restore level).
    pub verifier: Box<dyn Verify>,
    /// Until when a recovery can go (the RPO is measured to it when set).
    pub recoverable_until: Option<DateTime<Utc>>,
}

impl DrillSetup {
    /// A drill run by `verifier`.
    pub fn new(verifier: Box<dyn Verify>, recoverable_until: Option<DateTime<Utc>>) -> Self {
        DrillSetup {
            verifier,
            recoverable_until,
        }
    }
}

/// What dr knows about one manifest kind without a configured source.
pub trait KindSupport: Send + Sync {
    /// The manifest kind served.
    fn kind(&self) -> &str;

    /// A verifier for backups of this kind; `None`: checksums only (and the report says that
    /// no test restore exists for the kind).
    fn verifier(&self, repo: &Repository) -> Option<Box<dyn Verify>>;

    /// A restorer into the scratch directory `scratch` (drill, bench), or `None`.
    fn scratch_restorer(&self, repo: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        let _ = (repo, scratch);
        None
    }

    /// Where backups of this kind come in a whole-system restore.
    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Database
    }

    /// The continuous archive backups of this kind rely on (PostgreSQL WAL), if any.
    fn archive(&self) -> Option<Arc<dyn Archive>> {
        None
    }
}

/// What the archive check found for one backup.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ArchiveFindings {
    /// The backup these findings are about.
    pub backup_id: String,
    /// Checks that passed, in words.
    pub passed: Vec<String>,
    /// Problems (a gap, a damaged file), each naming the file.
    pub problems: Vec<String>,
    /// Notes that are neither.
    pub notes: Vec<String>,
    /// Until when a recovery from this backup can go.
    pub recoverable_until: Option<DateTime<Utc>>,
    /// The earliest moment a recovery from this backup can stop at (its end), when the
    /// archive continues from it.
    #[serde(default)]
    pub recoverable_from: Option<DateTime<Utc>>,
    /// The newest file of the source's archive (PostgreSQL: the newest WAL segment).
    #[serde(default)]
    pub newest_archived: Option<String>,
}

/// What a source's continuous archive lets one recover to, over all its backups: the
/// window `list` and `status` show, with the archive's gaps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ArchiveWindow {
    /// The source.
    pub source: String,
    /// The earliest moment one can recover to (the oldest backup the archive continues).
    pub recoverable_from: Option<DateTime<Utc>>,
    /// The latest moment one can recover to.
    pub recoverable_until: Option<DateTime<Utc>>,
    /// The newest archived file.
    pub newest_archived: Option<String>,
    /// Gaps and damage, in words (each once).
    pub problems: Vec<String>,
    /// What could not be checked, in words (each once).
    pub notes: Vec<String>,
}

impl ArchiveWindow {
    /// The window of `source` from the findings of its backups; `None` when the archive has
    /// nothing to say (no backup it continues, no problem).
    pub fn from_findings(source: &str, findings: &[ArchiveFindings]) -> Option<Self> {
        let mut window = ArchiveWindow {
            source: source.to_owned(),
            ..ArchiveWindow::default()
        };
        for f in findings {
            window.recoverable_from = match (window.recoverable_from, f.recoverable_from) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            window.recoverable_until = window.recoverable_until.max(f.recoverable_until);
            window.newest_archived = window.newest_archived.max(f.newest_archived.clone());
            push_new(&mut window.problems, &f.problems);
            push_new(&mut window.notes, &f.notes);
        }
        let said = window.recoverable_from.is_some()
            || window.recoverable_until.is_some()
            || !window.problems.is_empty();
        said.then_some(window)
    }

    /// The window of an archive that could not be checked, because of `reason`.
    pub fn unchecked(source: &str, reason: impl Into<String>) -> Self {
        ArchiveWindow {
            source: source.to_owned(),
            problems: vec![reason.into()],
            ..ArchiveWindow::default()
        }
    }
}

fn push_new(into: &mut Vec<String>, items: &[String]) {
    for item in items {
        if !into.contains(item) {
            into.push(item.clone());
        }
    }
}

/// What prune decided about an archive.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ArchivePrune {
    /// Archive files no kept backup needs (deleted unless a dry run).
    pub unneeded: Vec<String>,
    /// Why nothing was pruned, when nothing was.
    pub kept_all_because: Option<String>,
}

impl ArchivePrune {
    /// Nothing pruned, because of `why`.
    pub fn kept_all(why: impl Into<String>) -> Self {
        ArchivePrune {
            unneeded: Vec::new(),
            kept_all_because: Some(why.into()),
        }
    }
}

/// A continuous archive beside the backups of a kind (PostgreSQL's WAL): what verify, prune
/// and status need to know about it.
#[async_trait]
pub trait Archive: Send + Sync {
    /// Checks the archive of `source` for each of `backups` (its base backups) at `level`.
    ///
    /// # Errors
    /// When the archive cannot be listed.
    async fn check(
        &self,
        repo: &Repository,
        source: &str,
        backups: &[Manifest],
        level: VerifyLevel,
    ) -> Result<Vec<ArchiveFindings>>;

    /// The archive files of `source` that none of the `kept` backups needs; deleted unless
    /// `dry_run`.
    ///
    /// # Errors
    /// When the archive cannot be listed or a delete failed.
    async fn prune(
        &self,
        repo: &Repository,
        source: &str,
        kept: &[Manifest],
        dry_run: bool,
    ) -> Result<ArchivePrune>;
}

/// The registry: source types and manifest kinds.
#[derive(Default, Clone)]
pub struct Registry {
    source_types: BTreeMap<String, Arc<dyn SourceFactory>>,
    kinds: BTreeMap<String, Arc<dyn KindSupport>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field(
                "source_types",
                &self.source_types.keys().collect::<Vec<_>>(),
            )
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry: every kind is verified by checksums only, nothing restores.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds (or replaces) a source type.
    pub fn register_source_type(&mut self, factory: Arc<dyn SourceFactory>) -> &mut Self {
        self.source_types
            .insert(factory.source_type().to_owned(), factory);
        self
    }

    /// Adds (or replaces) the support of a manifest kind.
    pub fn register_kind(&mut self, support: Arc<dyn KindSupport>) -> &mut Self {
        self.kinds.insert(support.kind().to_owned(), support);
        self
    }

    /// The support of `kind`, if registered.
    pub fn kind(&self, kind: &str) -> Option<&Arc<dyn KindSupport>> {
        self.kinds.get(kind)
    }

    /// The registered source types, sorted.
    pub fn source_types(&self) -> impl Iterator<Item = &str> {
        self.source_types.keys().map(String::as_str)
    }

    /// The registered manifest kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Builds a source of `source_type` from `settings`.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the known types when `source_type` is not registered, and
    /// the factory's errors.
    pub fn build_source(
        &self,
        source_type: &str,
        settings: &SourceSettings,
    ) -> Result<Arc<dyn Source>> {
        let factory = self.source_types.get(source_type).ok_or_else(|| {
            Error::Usage(format!(
                "no source kind {source_type:?} in this build (known: {})",
                self.source_types().collect::<Vec<_>>().join(", ")
            ))
        })?;
        factory.build(settings)
    }

    /// The archive kept beside backups of `kind`, if any.
    pub fn archive(&self, kind: &str) -> Option<Arc<dyn Archive>> {
        self.kinds.get(kind).and_then(|k| k.archive())
    }
}

/// The default time a restore waits for sessions or locks.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
