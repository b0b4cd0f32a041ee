//! SQLite in the kind registry: the `kind = "sqlite"` source type ([`SqliteSourceFactory`]
//! building a [`SqliteConfigured`] from [`SqliteSettings`]) and the `sqlite` manifest kind
//! ([`SqliteKind`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_core::{
    Backup, KindSupport, Repository, Restore, RestoreOptions, RestoreRank, RestoreReport,
    RestoreRequest, Result, Source, SourceFactory, SourceSettings, Verify, async_trait,
};
use serde::{Deserialize, Serialize};

use crate::{
    Integrity, KIND, SqliteOptions, SqliteSource, SqliteTarget, SqliteVerifier, UserCheck,
};

/// The settings of a `kind = "sqlite"` source (the `[sources.NAME]` table of dr.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SqliteSettings {
    /// The database file.
    pub path: PathBuf,
    /// Record exact row counts (default true).
    #[serde(default = "yes")]
    pub count_rows: bool,
    /// Where the temporary snapshot goes.
    #[serde(default)]
    pub temp_dir: Option<PathBuf>,
    /// Check run on a restored copy before the swap: `quick` (default) or `full`.
    #[serde(default = "quick")]
    pub restore_integrity: Integrity,
}

impl SqliteSettings {
    /// The settings of the database at `path`, every other setting at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteSettings {
            path: path.into(),
            count_rows: true,
            temp_dir: None,
            restore_integrity: Integrity::Quick,
        }
    }
}

fn yes() -> bool {
    true
}

fn quick() -> Integrity {
    Integrity::Quick
}

/// Builds `kind = "sqlite"` sources.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteSourceFactory;

impl SourceFactory for SqliteSourceFactory {
    fn source_type(&self) -> &str {
        KIND
    }

    fn build(&self, settings: &SourceSettings) -> Result<Arc<dyn Source>> {
        let parsed: SqliteSettings = settings.parse(KIND)?;
        Ok(Arc::new(SqliteConfigured::new(
            parsed,
            settings.checks.clone(),
        )))
    }
}

/// One configured SQLite source: its settings and user checks.
#[derive(Debug, Clone)]
pub struct SqliteConfigured {
    settings: SqliteSettings,
    checks: Vec<UserCheck>,
}

impl SqliteConfigured {
    /// The source with these settings and user checks.
    pub fn new(settings: SqliteSettings, checks: Vec<UserCheck>) -> Self {
        SqliteConfigured { settings, checks }
    }

    /// Its settings.
    pub fn settings(&self) -> &SqliteSettings {
        &self.settings
    }

    /// The restorer to the source's path (or `options.target`).
    pub fn target(&self) -> SqliteTarget {
        SqliteTarget::new(&self.settings.path)
            .with_checks(self.checks.clone())
            .with_integrity(self.settings.restore_integrity)
    }
}

#[async_trait]
impl Source for SqliteConfigured {
    fn kind(&self) -> &str {
        KIND
    }

    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Database
    }

    async fn backup(&self, _: &Repository, _: &str, _full: bool) -> Result<Box<dyn Backup>> {
        let mut options = SqliteOptions::default().with_count_rows(self.settings.count_rows);
        if let Some(dir) = &self.settings.temp_dir {
            options = options.with_temp_dir(dir);
        }
        Ok(Box::new(
            SqliteSource::new(&self.settings.path).with_options(options),
        ))
    }

    async fn restore(&self, request: &RestoreRequest<'_>) -> Result<RestoreReport> {
        refuse_unsupported(request.options)?;
        let backup = request.open().await?;
        self.target().restore(&backup, request.options).await
    }

    fn verifier(&self, _: &Repository) -> Result<Box<dyn Verify>> {
        Ok(Box::new(
            SqliteVerifier::new().with_checks(self.checks.clone()),
        ))
    }

    fn scratch_restorer(&self, _: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        Some(Box::new(
            SqliteTarget::new(scratch_path(scratch))
                .with_checks(self.checks.clone())
                .with_integrity(self.settings.restore_integrity),
        ))
    }
}

/// The `sqlite` manifest kind, without a configured source.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteKind;

impl KindSupport for SqliteKind {
    fn kind(&self) -> &str {
        KIND
    }

    fn verifier(&self, _: &Repository) -> Option<Box<dyn Verify>> {
        Some(Box::new(SqliteVerifier::new()))
    }

    fn scratch_restorer(&self, _: &Repository, scratch: &Path) -> Option<Box<dyn Restore>> {
        Some(Box::new(SqliteTarget::new(scratch_path(scratch))))
    }

    fn restore_rank(&self) -> RestoreRank {
        RestoreRank::Database
    }
}

/// Where a scratch restore puts the database: `<scratch>/restored.sqlite`.
pub fn scratch_path(scratch: &Path) -> PathBuf {
    scratch.join("restored.sqlite")
}

/// Refuses the restore options SQLite has no use for, saying what it does instead.
fn refuse_unsupported(options: &RestoreOptions) -> Result<()> {
    let refused: &[(bool, &str)] = &[
        (
            options.in_place,
            "--in-place is for PostgreSQL: a SQLite restore is always staged beside the file, checked and swapped in, and keeps the previous file as <name>.pre-restore-<time>",
        ),
        (
            options.swap,
            "--swap is for PostgreSQL: a SQLite restore always swaps the checked copy in and keeps the previous file",
        ),
        (
            options.server.is_some(),
            "--server is for PostgreSQL and Redis: a SQLite database is a file; restore it elsewhere with --to PATH",
        ),
        (
            !options.only.is_empty(),
            "--only is for directory and bucket sources: a SQLite backup is one database file, restored whole",
        ),
        (
            options.globals || options.with_role_passwords,
            "--globals and --with-role-passwords are for PostgreSQL roles: SQLite has none",
        ),
        (
            options.recovery_target.is_some(),
            "a recovery target is for physical PostgreSQL: SQLite restores are whole backups; pick one by id or --at TIME",
        ),
        dr_core::registry::pitr_only(options),
    ];
    dr_core::registry::refuse_unsupported(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_those_of_dr_toml() {
        let parsed: SqliteSettings =
            SourceSettings::new(serde_json::json!({ "path": "/srv/app.db" }))
                .parse(KIND)
                .unwrap();
        assert_eq!(parsed, SqliteSettings::new("/srv/app.db"));
        assert!(refuse_unsupported(&RestoreOptions::default()).is_ok());
        let err = refuse_unsupported(
            &RestoreOptions::default()
                .with_force(true)
                .with_in_place(true),
        );
        assert!(matches!(err, Err(dr_core::Error::Usage(m)) if m.contains("pre-restore")));
    }
}
