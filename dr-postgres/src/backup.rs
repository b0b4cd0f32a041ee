//! Logical backups: `pg_dump -Fc -Z0` streamed into the pipeline from one exported snapshot,
//! plus `pg_dumpall --globals-only`.

use std::collections::BTreeMap;
use std::process::Stdio;

use dr_core::{Backup, BackupWriter, Error, Result, SourceInfo, async_trait};

use crate::checks::{newest_timestamps, row_counts};
use crate::child;
use crate::conn::PgConnection;
use crate::dbprops::{DATABASE_ARTIFACT, DatabaseProperties};

/// The artifact holding the `pg_dump -Fc` archive.
pub const DUMP_ARTIFACT: &str = "dump";
/// The artifact holding `pg_dumpall --globals-only` (roles, tablespaces).
pub const GLOBALS_ARTIFACT: &str = "globals";
/// The manifest kind.
pub const KIND: &str = "postgres.logical";

/// A PostgreSQL database to back up logically.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    conn: PgConnection,
    exact_counts: bool,
    with_globals: bool,
    timestamp_columns: BTreeMap<String, String>,
}

impl PostgresSource {
    /// The database named in `conn`, with exact row counts and the globals.
    pub fn new(conn: PgConnection) -> Self {
        PostgresSource {
            conn,
            exact_counts: true,
            with_globals: true,
            timestamp_columns: BTreeMap::new(),
        }
    }

    /// Records `max(column)` of each named table (`schema.table` -> column), e.g. the newest
    /// `created_at`: the backup's real recovery point, checked again after a restore.
    pub fn with_timestamp_columns(mut self, columns: BTreeMap<String, String>) -> Self {
        self.timestamp_columns = columns;
        self
    }

    /// Exact row counts (`count(*)`, default) or the planner's estimates (`reltuples`).
    pub fn with_exact_counts(mut self, exact: bool) -> Self {
        self.exact_counts = exact;
        self
    }

    /// Whether to also dump roles and tablespaces (default on). A role that may not read
    /// pg_authid (not a superuser, not in pg_read_all_data) dumps them without passwords.
    pub fn with_globals(mut self, globals: bool) -> Self {
        self.with_globals = globals;
        self
    }
}

#[async_trait]
impl Backup for PostgresSource {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let (dump_major, dump_version) = child::major_version("pg_dump").await?;
        let client = self.conn.connect().await?;
        let explain = |doing: &str, e: tokio_postgres::Error| self.conn.explain(doing, &e);
        // One snapshot for the facts and the dump: the row counts describe exactly the dump.
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| explain("starting a snapshot on", e))?;
        let snapshot: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| explain("exporting a snapshot of", e))?
            .get(0);
        let mut info = facts(&client, &self.conn, self.exact_counts).await?;
        let newest = newest_timestamps(&client, &self.timestamp_columns)
            .await
            .map_err(|e| explain("reading timestamp columns of", e))?;
        if !newest.is_empty() {
            info.insert(
                "newest".into(),
                serde_json::to_value(newest).unwrap_or_default(),
            );
            let columns = serde_json::to_value(&self.timestamp_columns).unwrap_or_default();
            info.insert("newest_columns".into(), columns);
        }
        let server_major = info
            .get("server_version_num")
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
            / 10000;
        if u64::from(dump_major) < server_major {
            return Err(Error::backend(
                "postgres",
                "backup",
                format!(
                    "pg_dump {dump_major} cannot dump a PostgreSQL {server_major} server: install postgresql-client-{server_major}"
                ),
            ));
        }
        info.insert("pg_dump_version".into(), dump_version.into());
        dump(&self.conn, &snapshot, out).await?;
        let props = DatabaseProperties::read(&client, &self.conn).await?;
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| explain("ending the snapshot on", e))?;
        let json = serde_json::to_vec_pretty(&props)
            .map_err(|e| Error::internal("recording the database properties", e))?;
        out.put_artifact(DATABASE_ARTIFACT, &mut json.as_slice())
            .await?;
        if self.with_globals {
            let passwords = client
                .query_one(
                    "SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')",
                    &[],
                )
                .await
                .map_err(|e| explain("checking access to pg_authid on", e))?
                .get::<_, bool>(0);
            if !passwords {
                tracing::warn!(
                    "{} may not read pg_authid (not a superuser): the roles are backed up without their passwords",
                    self.conn
                );
            }
            info.insert("globals_role_passwords".into(), passwords.into());
            if !passwords {
                info.insert(
                    dr_core::NOTES_KEY.into(),
                    vec![format!(
                        "the roles were backed up without their passwords: the backup role {} may not read pg_authid (not a superuser); a restore onto a new server creates them without passwords",
                        self.conn.user()
                    )]
                    .into(),
                );
            }
            globals(&self.conn, passwords, out).await?;
        }
        Ok(info)
    }
}

async fn dump(conn: &PgConnection, snapshot: &str, out: &mut BackupWriter) -> Result<()> {
    let mut command = conn.command("pg_dump");
    command
        .args(["--format=custom", "--compress=0", "--no-password"])
        .arg(format!("--snapshot={snapshot}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    stream_child(command, "pg_dump", DUMP_ARTIFACT, out)
        .await
        .map(drop)
}

/// `pg_dumpall --globals-only`; with `--no-role-passwords` where pg_authid is unreadable
/// (a role that is not a superuser), which reads pg_roles instead.
async fn globals(conn: &PgConnection, passwords: bool, out: &mut BackupWriter) -> Result<()> {
    let mut command = conn.command("pg_dumpall");
    command.args(["--globals-only", "--no-password"]);
    if !passwords {
        command.arg("--no-role-passwords");
    }
    command
        .arg(format!("--dbname={}", conn.with_database("postgres")))
        .env("PGDATABASE", "postgres")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    stream_child(command, "pg_dumpall", GLOBALS_ARTIFACT, out)
        .await
        .map(drop)
}

/// Streams a child's stdout into an artifact; the child's exit status decides: a failed
/// child fails the backup even if its output looked complete. Returns the child's stderr.
pub(crate) async fn stream_child(
    command: tokio::process::Command,
    program: &str,
    artifact: &str,
    out: &mut BackupWriter,
) -> Result<String> {
    let mut running = child::spawn(command, program)?;
    let Some(mut stdout) = running.child.stdout.take() else {
        return Err(running
            .abort(Error::internal(
                format!("starting {program}"),
                "it has no stdout",
            ))
            .await);
    };
    match out.put_artifact(artifact, &mut stdout).await {
        Ok(_) => running.finish().await,
        // Reading never fails because the child failed (that is an early EOF, caught by the
        // exit status): this is the pipeline or the store.
        Err(e) => Err(running.abort(e).await),
    }
}

async fn facts(
    client: &tokio_postgres::Client,
    conn: &PgConnection,
    exact: bool,
) -> Result<SourceInfo> {
    let explain = |e: tokio_postgres::Error| conn.explain("reading facts from", &e);
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int8, \
             pg_database_size(current_database())::int8",
            &[],
        )
        .await
        .map_err(explain)?;
    let mut info = SourceInfo::new();
    info.insert("server_version".into(), row.get::<_, String>(0).into());
    info.insert("server_version_num".into(), row.get::<_, i64>(1).into());
    info.insert("database_size".into(), row.get::<_, i64>(2).into());
    info.insert("database".into(), conn.database().into());
    // pg_control_system() is not granted to every role: record it when we may read it.
    if let Ok(row) = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
    {
        info.insert("system_identifier".into(), row.get::<_, String>(0).into());
    }
    let counts: BTreeMap<String, i64> = row_counts(client, exact).await.map_err(explain)?;
    info.insert("row_counts_exact".into(), exact.into());
    info.insert(
        "row_counts".into(),
        serde_json::to_value(counts).unwrap_or_default(),
    );
    Ok(info)
}
