//! The logical source (`method = "logical"`): pg_dump backups of one database, restored
//! into a new database (optionally swapped in), in place after a safety backup, onto
//! another server with the roles first, or only the roles (`globals`).

use std::time::Instant;

use dr_core::checks::UserCheck;
use dr_core::registry::RestoreRequest;
use dr_core::{
    Backup, BackupOptions, BackupReader, Error, Repository, Restore, RestoreOptions, RestoreReport,
    Result, SAFETY_LABEL, Source, Verify, async_trait,
};
use serde::Serialize;

use super::{PostgresSettings, append, refuse, summary};
use crate::backup::{GLOBALS_ARTIFACT, KIND, PostgresSource};
use crate::conn::PgConnection;
use crate::globals::{GlobalsOutcome, apply_globals};
use crate::restore::{PostgresTarget, check_whole_backup};
use crate::verify::PostgresVerifier;

/// A configured logical PostgreSQL source.
#[derive(Debug, Clone)]
pub struct LogicalSource {
    settings: PostgresSettings,
    checks: Vec<UserCheck>,
}

/// The roles a restore applied (`RestoreReport::details` of a `globals` restore, and the
/// `roles` of a `server` restore).
#[derive(Debug, Clone, Serialize)]
pub struct GlobalsDetails {
    /// The server the roles went to (without a password).
    pub server: String,
    /// What was created, left alone, granted and skipped; `None` when the backup holds no
    /// roles (taken with `globals = false`).
    pub outcome: Option<GlobalsOutcome>,
}

/// `RestoreReport::details` of a logical restore.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogicalDetails {
    /// The roles applied before a `server` restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<GlobalsDetails>,
    /// Whether the whole backup was read and checked before anything was written (in place).
    pub checked_before_writing: bool,
}

impl LogicalSource {
    /// The source of these settings; `checks` run on every restored copy.
    pub fn new(settings: PostgresSettings, checks: Vec<UserCheck>) -> Self {
        LogicalSource { settings, checks }
    }

    /// The settings.
    pub fn settings(&self) -> &PostgresSettings {
        &self.settings
    }

    fn capture(&self) -> Result<PostgresSource> {
        Ok(PostgresSource::new(self.settings.connection()?)
            .with_exact_counts(self.settings.exact_counts)
            .with_globals(self.settings.globals)
            .with_timestamp_columns(self.settings.timestamp_columns.clone()))
    }

    /// Refuses what a logical restore cannot do, before anything is read.
    fn refuse_unsupported(options: &RestoreOptions) -> Result<()> {
        let physical = "is for physical PostgreSQL sources (method = \"physical\")";
        if options.dry_run {
            return Err(refuse("dry_run", physical));
        }
        if options.start_port.is_some() {
            return Err(refuse("start_port", physical));
        }
        if options.keep_archiving {
            return Err(refuse("keep_archiving", physical));
        }
        if options.recovery_target.is_some() {
            return Err(refuse(
                "recovery_target",
                "is for physical PostgreSQL sources: choose the logical backup with the selector (an id, latest, or the newest at or before a time)",
            ));
        }
        if !options.only.is_empty() {
            return Err(refuse("only", "is for directory and bucket sources"));
        }
        if options.owners.is_some() {
            return Err(refuse("owners", "is for directory sources"));
        }
        if options.with_role_passwords && options.server.is_none() && !options.globals {
            return Err(refuse(
                "with_role_passwords",
                "is for globals and server restores (the roles a restore creates)",
            ));
        }
        if options.globals && (options.in_place || options.swap || options.target.is_some()) {
            return Err(refuse(
                "globals",
                "restores only the roles: it takes no in_place, swap or target",
            ));
        }
        if options.in_place && (options.server.is_some() || options.target.is_some()) {
            return Err(refuse(
                "in_place",
                "restores into the source's own database (its safety backup is of that database): it takes no server or target",
            ));
        }
        Ok(())
    }

    async fn restore_roles(
        &self,
        request: &RestoreRequest<'_>,
        conn: &PgConnection,
    ) -> Result<RestoreReport> {
        let started = Instant::now();
        let reader = request.open().await?;
        let outcome = apply_globals(
            &conn.with_database("postgres"),
            &reader,
            request.options.with_role_passwords,
        )
        .await?;
        let mut report = RestoreReport::default();
        report.backup_id = reader.id().to_owned();
        report.target = conn.with_database("postgres").to_string();
        report.elapsed_ms = elapsed_ms(started);
        report.summary = summary::roles(&report.backup_id, &report.target, &outcome);
        report.details = details(&GlobalsDetails {
            server: report.target.clone(),
            outcome: Some(outcome),
        })?;
        Ok(report)
    }

    /// Before a `server` restore: the backup's roles onto that server, if it holds them.
    async fn roles_first(
        conn: &PgConnection,
        reader: &BackupReader,
        with_passwords: bool,
        notes: &mut Vec<String>,
    ) -> Result<GlobalsDetails> {
        let server = conn.with_database("postgres").to_string();
        if reader.manifest().artifact(GLOBALS_ARTIFACT).is_err() {
            notes.push(format!(
                "backup {} holds no roles (globals = false): the roles it needs must exist on the server",
                reader.id()
            ));
            return Ok(GlobalsDetails {
                server,
                outcome: None,
            });
        }
        let outcome = apply_globals(&conn.with_database("postgres"), reader, with_passwords)
            .await
            .map_err(|e| {
                append(
                    e,
                    &format!(" (restoring the roles of backup {})", reader.id()),
                )
            })?;
        Ok(GlobalsDetails {
            server,
            outcome: Some(outcome),
        })
    }

    /// In place: the whole backup checked, then a safety backup of the live database.
    async fn safety_backup(
        &self,
        repo: &Repository,
        source_name: &str,
        reader: &BackupReader,
    ) -> Result<String> {
        check_whole_backup(reader, source_name).await?;
        let mut options = BackupOptions::default();
        options.labels = vec![SAFETY_LABEL.to_owned()];
        let safety = repo
            .backup(source_name, &self.capture()?, &options)
            .await
            .map_err(|e| {
                append(
                    e,
                    &format!(
                        " (taking a safety backup of {source_name} before restoring in place: nothing was written)"
                    ),
                )
            })?;
        Ok(safety.id)
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `value` as report details.
pub(crate) fn details<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::internal("recording the restore's details", e))
}

#[async_trait]
impl Source for LogicalSource {
    fn kind(&self) -> &str {
        KIND
    }

    fn swaps_into_own_place(&self) -> bool {
        true
    }

    async fn backup(&self, _: &Repository, _: &str, _full: bool) -> Result<Box<dyn Backup>> {
        Ok(Box::new(self.capture()?))
    }

    async fn restore(&self, request: &RestoreRequest<'_>) -> Result<RestoreReport> {
        let options = request.options;
        Self::refuse_unsupported(options)?;
        let conn = self.settings.connection_on(options.server.as_deref())?;
        if options.globals {
            return self
                .restore_roles(request, &conn)
                .await
                .map_err(|e| self.explain(e));
        }
        let started = Instant::now();
        let reader = request.open().await?;
        let mut notes = Vec::new();
        let mut facts = LogicalDetails::default();
        if options.server.is_some() {
            // The roles first: the dump's owners and grants name them.
            let roles =
                Self::roles_first(&conn, &reader, options.with_role_passwords, &mut notes).await;
            facts.roles = Some(roles.map_err(|e| self.explain(e))?);
        }
        let mut safety_id = None;
        if options.in_place {
            let id = self
                .safety_backup(request.repo, request.source_name, &reader)
                .await
                .map_err(|e| self.explain(e))?;
            notes.push(format!(
                "backup {} checked (every part's stored and plain SHA-256); safety backup {id} of the current {} taken (label {SAFETY_LABEL})",
                reader.id(),
                request.source_name
            ));
            facts.checked_before_writing = true;
            safety_id = Some(id);
        }
        let target = PostgresTarget::new(conn)
            .with_checks(self.checks.clone())
            .with_in_place(options.in_place)
            .with_wait(options.wait);
        let mut passed = RestoreOptions::default()
            .with_force(options.force)
            .with_swap(options.swap);
        passed.target = options.target.clone();
        let restored = target.restore(&reader, &passed).await.map_err(|e| {
            let e = self.explain(e);
            match &safety_id {
                Some(safety) => append(e, &format!(
                    " (restoring backup {id} of {source} in place: safety backup {safety} holds the database as it was before: to undo, run `dr restore {source} {safety} --in-place`; to finish, fix the cause and run `dr restore {source} {id} --in-place` again)",
                    id = reader.id(),
                    source = request.source_name
                )),
                None => e,
            }
        })?;
        let mut report = restored;
        report.notes.splice(0..0, notes);
        report.safety_backup_id = safety_id;
        if let Some(GlobalsDetails {
            server,
            outcome: Some(outcome),
        }) = &facts.roles
        {
            report.summary = summary::roles(reader.id(), server, outcome);
        }
        report.details = details(&facts)?;
        report.elapsed_ms = elapsed_ms(started);
        Ok(report)
    }

    fn verifier(&self, _: &Repository) -> Result<Box<dyn Verify>> {
        Ok(Box::new(
            PostgresVerifier::new(self.settings.connection()?).with_checks(self.checks.clone()),
        ))
    }

    fn explain(&self, error: Error) -> Error {
        self.settings.explain_auth(error)
    }
}
