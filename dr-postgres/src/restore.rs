//! Restores into a new database, checked, then (on request) swapped in by rename.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dr_core::Refusal;
use dr_core::checks::UserCheck;
use dr_core::{
    BackupReader, Error, Restore, RestoreOptions, RestoreReport, Result, VerifyLevel, async_trait,
};
use tokio_postgres::Client;

use crate::backup::{DUMP_ARTIFACT, GLOBALS_ARTIFACT};
use crate::checks::{
    CheckOutcome, Expectations, NewestValues, TimestampColumns, check_restored_with,
};
use crate::conn::{PgConnection, quote_ident};
use crate::dbprops::DatabaseProperties;
use crate::pgrestore::{run_pg_restore, run_pg_restore_waiting};
use crate::sessions::{apply_properties, swap, warn_on_other_locale};

/// How long a swap waits for sessions to leave, and an in-place restore for a lock, unless
/// told otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Restores a logical backup on the server of `conn`; the database of `conn` is the original
/// that `swap` replaces.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    conn: PgConnection,
    user_checks: Vec<UserCheck>,
    in_place: bool,
    wait: Duration,
}

impl PostgresTarget {
    /// Restores beside the database named in `conn`.
    pub fn new(conn: PgConnection) -> Self {
        PostgresTarget {
            conn,
            user_checks: Vec::new(),
            in_place: false,
            wait: DEFAULT_WAIT,
        }
    }

    /// How long a swap waits for the sessions connected to the original to leave (without
    /// `force`, it then gives up and names them; with `force` it ends them at once), and an
    /// in-place restore's statements wait for a lock (`lock_timeout`). Default 30 s.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Restores into the existing database itself: `pg_restore --clean --if-exists
    /// --single-transaction`, so a failure midway rolls back and leaves it as it was. Take a
    /// safety backup first (`dr restore --in-place` does): once committed, the previous
    /// content is only in that backup.
    pub fn with_in_place(mut self, in_place: bool) -> Self {
        self.in_place = in_place;
        self
    }

    /// Checks that must pass on the restored database before it counts (and before a swap).
    pub fn with_checks(mut self, checks: Vec<UserCheck>) -> Self {
        self.user_checks = checks;
        self
    }

    /// Restores into a new database named `name`, runs the checks, and drops the database
    /// again if anything failed. Returns the checks' outcome.
    ///
    /// # Errors
    /// [`Error::Backend`] for pg_restore or connection failures, [`Error::ChecksFailed`].
    pub async fn restore_into_new(
        &self,
        backup: &BackupReader,
        name: &str,
        force: bool,
    ) -> Result<CheckOutcome> {
        let props = DatabaseProperties::recorded(backup).await?;
        let admin = self.conn.with_database("postgres").connect().await?;
        drop_abandoned_restores(&admin, &self.conn).await?;
        prepare_database(&admin, &self.conn, name, force, props.as_ref()).await?;
        // A session held on the new database while it is being filled tells concurrent
        // restores that it is not abandoned.
        let _in_use = self.conn.with_database(name).connect().await?;
        mark(
            &admin,
            &self.conn,
            name,
            &format!("{INCOMPLETE} of backup {}", backup.id()),
        )
        .await?;
        let mut outcome = self.fill_and_check(backup, name).await;
        if outcome.is_ok() {
            outcome = match &props {
                // The database's own comment, owner, privileges and settings replace the mark.
                Some(props) => apply_properties(&admin, &self.conn, props, name)
                    .await
                    .and(outcome),
                None => {
                    let done = format!(
                        "dr: restored from backup {} at {} (a backup without its database properties: owner, privileges and settings are the server's defaults)",
                        backup.id(),
                        chrono::Utc::now().to_rfc3339()
                    );
                    mark(&admin, &self.conn, name, &done).await.and(outcome)
                }
            };
        }
        if outcome.is_err() {
            let dropped = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(name)
                ))
                .await;
            if let Err(e) = dropped {
                tracing::warn!(database = name, error = %e, "could not drop the half-restored database");
            }
        }
        outcome
    }

    async fn fill_and_check(&self, backup: &BackupReader, name: &str) -> Result<CheckOutcome> {
        let target = self.conn.with_database(name);
        run_pg_restore(&target, backup, &[]).await?;
        self.check(&target, backup, name).await
    }

    async fn check(
        &self,
        target: &PgConnection,
        backup: &BackupReader,
        name: &str,
    ) -> Result<CheckOutcome> {
        let client = target.connect().await?;
        let expected = recorded_counts(backup);
        let (columns, newest) = recorded_newest(backup);
        let newest = columns.as_ref().zip(newest.as_ref());
        let expectations = Expectations {
            row_counts: expected.as_ref(),
            newest,
            user_checks: &self.user_checks,
            extra_tables_ok: self.in_place,
        };
        let outcome = check_restored_with(&client, &expectations)
            .await
            .map_err(|e| target.explain("checking", &e))?;
        if !outcome.problems.is_empty() {
            return Err(Error::ChecksFailed {
                subject: format!("database {name} restored from backup {}", backup.id()),
                problems: outcome.problems.join("; "),
            });
        }
        Ok(outcome)
    }
}

#[async_trait]
impl Restore for PostgresTarget {
    async fn restore(&self, backup: &BackupReader, opts: &RestoreOptions) -> Result<RestoreReport> {
        let started = Instant::now();
        // The roles are not restored, but a backup with a damaged part is refused whole,
        // before anything is written.
        if backup
            .manifest()
            .artifacts
            .iter()
            .any(|a| a.name == GLOBALS_ARTIFACT)
        {
            backup
                .copy_artifact(GLOBALS_ARTIFACT, &mut tokio::io::sink())
                .await?;
        }
        if self.in_place {
            return self.restore_in_place(backup, started).await;
        }
        let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
        let original = self.conn.database().to_owned();
        let name = match &opts.target {
            Some(t) => t.to_string_lossy().into_owned(),
            None => format!("{original}_restored_{stamp}"),
        };
        // Restoring under the original's own name is fine where it does not exist (a lost
        // database, another server); replacing it by force would drop it before the new data
        // is checked, so that is refused: restore beside it and swap, or restore in place.
        if name == original && opts.force {
            return Err(Error::Usage(format!(
                "refusing to drop {original} to restore over it: restore into a new database and swap (--swap), or --in-place"
            )));
        }
        let checked = self.restore_into_new(backup, &name, opts.force).await?;
        if !opts.swap {
            return Ok(report(
                backup,
                self.conn.with_database(&name),
                (None, checked),
                started,
            ));
        }
        let admin = self.conn.with_database("postgres").connect().await?;
        let kept = swap(
            &admin,
            &self.conn,
            (&original, &name),
            &stamp,
            (self.wait, opts.force),
        )
        .await
        .map_err(|e| match e {
            e @ (Error::Refused { .. } | Error::TargetInUse { .. }) => e.with_hint(&format!(
                "; the restored and checked copy is kept as database {name}"
            )),
            e => e,
        })?;
        Ok(report(backup, self.conn.clone(), (kept, checked), started))
    }
}

impl PostgresTarget {
    async fn restore_in_place(
        &self,
        backup: &BackupReader,
        started: Instant,
    ) -> Result<RestoreReport> {
        let name = self.conn.database().to_owned();
        check_whole_backup(backup, &name).await?;
        let props = DatabaseProperties::recorded(backup).await?;
        let admin = self.conn.with_database("postgres").connect().await?;
        // Watching from the database itself names the relations waited for.
        let monitor = self.conn.connect().await?;
        let application = format!("dr-restore-{}", std::process::id());
        let restoring = run_pg_restore_waiting(
            &self.conn,
            backup,
            &["--clean", "--if-exists", "--single-transaction"],
            (&monitor, &application, self.wait),
        );
        restoring.await.map_err(|e| {
            Error::restore("postgres", format!(
                "pg_restore of backup {} into {name} failed and its single transaction was rolled back: {name} is as it was ({e})",
                backup.id()
            ))
        })?;
        if let Some(props) = &props {
            apply_properties(&admin, &self.conn, props, &name).await?;
            warn_on_other_locale(&admin, props, &name).await;
        }
        let checked = self.check(&self.conn, backup, &name).await.map_err(|e| {
            Error::restore(
                "postgres",
                format!(
                    "backup {} was restored into {name} and committed, but checking it failed: {e}",
                    backup.id()
                ),
            )
        })?;
        Ok(report(backup, self.conn.clone(), (None, checked), started))
    }
}

/// Reads every part of `backup` and compares its stored and plain SHA-256 before anything
/// is written into the live database `name`; refuses a damaged or undecryptable backup.
///
/// # Errors
/// [`Error::ChecksFailed`] naming every damaged object (a verification failure, exit 3 in the
/// CLI); [`Error::Refused`] for a backup that is not a logical one; store errors.
pub async fn check_whole_backup(backup: &BackupReader, name: &str) -> Result<()> {
    if !backup.can_decrypt() {
        return Err(Error::NoIdentity);
    }
    let report = backup.verify_objects(VerifyLevel::Checksums).await?;
    if backup.manifest().artifact(DUMP_ARTIFACT).is_err() {
        return Err(Error::refused(
            Refusal::WrongKind,
            format!(
                "backup {} holds no {DUMP_ARTIFACT}: it is not a logical PostgreSQL backup",
                backup.id()
            ),
        ));
    }
    if report.problems.is_empty() {
        return Ok(());
    }
    Err(Error::ChecksFailed {
        subject: format!(
            "backup {} (damaged: read in full before writing, so nothing was written into {name})",
            backup.id()
        ),
        problems: format!(
            "{} (restore another backup: `dr list` shows them, or repair this one from a copy)",
            report.problems_text()
        ),
    })
}

/// The report of a restore into `target`, with where the previous database was kept and the
/// checks the restored one passed.
fn report(
    backup: &BackupReader,
    target: PgConnection,
    (kept, checked): (Option<String>, CheckOutcome),
    started: Instant,
) -> RestoreReport {
    let mut report = RestoreReport::default();
    report.backup_id = backup.id().to_owned();
    report.target = target.to_string();
    report.previous_kept_at = kept;
    report.checks_passed = checked.passed;
    report.restored_bytes = backup
        .manifest()
        .artifact(DUMP_ARTIFACT)
        .map_or(0, |a| a.plain_size);
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report
}

/// The comment a database carries while dr restores into it.
const INCOMPLETE: &str = "dr: incomplete restore";

async fn mark(admin: &Client, conn: &PgConnection, name: &str, comment: &str) -> Result<()> {
    let literal = comment.replace('\'', "''");
    admin
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS '{literal}'",
            quote_ident(name)
        ))
        .await
        .map_err(|e| conn.explain(&format!("marking database {name} on"), &e))
}

/// Drops databases left by a restore that was killed before it could clean up: they carry
/// the incomplete-restore comment and nobody is connected to them (a restore still running
/// has its pg_restore session open).
async fn drop_abandoned_restores(admin: &Client, conn: &PgConnection) -> Result<()> {
    let pattern = format!("{INCOMPLETE}%");
    let abandoned = admin
        .query(
            "SELECT d.datname::text FROM pg_database d \
             WHERE shobj_description(d.oid, 'pg_database') LIKE $1 \
             AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)",
            &[&pattern],
        )
        .await
        .map_err(|e| conn.explain("looking for abandoned restores on", &e))?;
    for row in abandoned {
        let name: String = row.get(0);
        tracing::warn!(database = %name, "dropping the database of an interrupted restore");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&name)))
            .await
            .map_err(|e| conn.explain(&format!("dropping {name} on"), &e))?;
    }
    Ok(())
}

/// Creates the empty target database; an existing one is an error unless `force` (then it
/// is dropped first).
async fn prepare_database(
    admin: &Client,
    conn: &PgConnection,
    name: &str,
    force: bool,
    props: Option<&DatabaseProperties>,
) -> Result<()> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| conn.explain("looking up databases on", &e))?
        .is_some();
    if exists && !force {
        return Err(Error::Usage(format!(
            "database {name} already exists: choose another target name, or force to replace it"
        )));
    }
    let quoted = quote_ident(name);
    if exists {
        admin
            .batch_execute(&format!("DROP DATABASE {quoted} WITH (FORCE)"))
            .await
            .map_err(|e| conn.explain(&format!("dropping {name} on"), &e))?;
    }
    let create = props.map_or(
        format!("CREATE DATABASE {quoted} TEMPLATE template0"),
        |p| p.create_sql(name),
    );
    admin.batch_execute(&create).await.map_err(|e| match (props, e.as_db_error()) {
        // 22023 invalid locale name, 42704 ICU locale or collation missing, 22P03/22021 encoding
        (Some(p), Some(db)) if matches!(db.code().code(), "22023" | "42704" | "42809" | "0A000") => Error::restore("postgres", format!(
            "creating database {name} as the backup's {} was (encoding {}, LC_COLLATE {}, LC_CTYPE {}{}) failed on {conn}: {}; install that locale on the target server (e.g. `locale-gen` / the locales package) and restart it, then restore again",
            p.name,
            p.encoding,
            p.collate,
            p.ctype,
            p.icu_locale.as_deref().map(|l| format!(", ICU locale {l}")).unwrap_or_default(),
            db.message()
        )),
        _ => conn.explain(&format!("creating database {name} on"), &e),
    })
}

fn recorded_counts(backup: &BackupReader) -> Option<BTreeMap<String, i64>> {
    let info = &backup.manifest().source_info;
    if info.get("row_counts_exact").and_then(|v| v.as_bool()) != Some(true) {
        return None;
    }
    info.get("row_counts")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

type Newest = (Option<TimestampColumns>, Option<NewestValues>);

fn recorded_newest(backup: &BackupReader) -> Newest {
    let info = &backup.manifest().source_info;
    let columns = info
        .get("newest_columns")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let newest = info
        .get("newest")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    (columns, newest)
}
