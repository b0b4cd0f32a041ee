//! Verification: checksums, `pg_restore --list`, and a test restore into a scratch database.

use std::process::Stdio;
use std::time::Instant;

use dr_core::checks::UserCheck;
use dr_core::{
    BackupReader, Error, Findings, KindVerifier, ProblemKind, Result, Verify, VerifyLevel,
    VerifyProblem, VerifyReport, async_trait, verify_backup,
};

use crate::backup::DUMP_ARTIFACT;
use crate::child;
use crate::conn::PgConnection;
use crate::restore::PostgresTarget;

/// Verifies logical backups; `Restore` level restores into a scratch database on the server
/// of `conn`, checks it and drops it, reporting the time taken (a measured RTO).
#[derive(Debug, Clone)]
pub struct PostgresVerifier {
    conn: PgConnection,
    user_checks: Vec<UserCheck>,
}

impl PostgresVerifier {
    /// Scratch databases go on the server of `conn`.
    pub fn new(conn: PgConnection) -> Self {
        PostgresVerifier {
            conn,
            user_checks: Vec::new(),
        }
    }

    /// User checks run on the scratch database.
    pub fn with_checks(mut self, checks: Vec<UserCheck>) -> Self {
        self.user_checks = checks;
        self
    }
}

#[async_trait]
impl Verify for PostgresVerifier {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        verify_backup(backup, level, self).await
    }
}

#[async_trait]
impl KindVerifier for PostgresVerifier {
    /// The dump read to its end by `pg_restore --list`.
    async fn check_structure(&self, backup: &BackupReader) -> Option<Result<Findings>> {
        Some(Ok(match list_archive(backup).await {
            Ok(entries) => Findings::passed([format!(
                "pg_restore --list reads the archive ({entries} entries)"
            )]),
            Err(e) => Findings::default()
                .with_problem(VerifyProblem::from_error(&e, ProblemKind::Structure)),
        }))
    }

    fn can_test_restore(&self) -> bool {
        true
    }

    /// A restore into a scratch database on the server, checked and dropped.
    async fn test_restore(&self, backup: &BackupReader) -> Result<Findings> {
        let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
        let scratch = format!("{}_verify_{stamp}", self.conn.database());
        let target = PostgresTarget::new(self.conn.clone()).with_checks(self.user_checks.clone());
        let started = Instant::now();
        let outcome = target.restore_into_new(backup, &scratch, false).await?;
        let mut found = Findings::passed(outcome.passed);
        found.passed.push(format!(
            "test restore into {scratch} took {:.1} s (measured RTO)",
            started.elapsed().as_secs_f64()
        ));
        if let Err(e) = drop_database(&self.conn, &scratch).await {
            found.problems.push(VerifyProblem::new(
                ProblemKind::Other,
                format!("could not drop the scratch database {scratch}: {e}"),
            ));
        }
        Ok(found)
    }
}

async fn drop_database(conn: &PgConnection, name: &str) -> Result<()> {
    let admin = conn.with_database("postgres").connect().await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            crate::conn::quote_ident(name)
        ))
        .await
        .map_err(|e| conn.explain("dropping a scratch database on", &e))
}

/// Streams the dump through `pg_restore --list`; returns the number of TOC entries.
async fn list_archive(backup: &BackupReader) -> Result<usize> {
    let mut command = tokio::process::Command::new("pg_restore");
    command
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut running = child::spawn(command, "pg_restore")?;
    let (Some(mut stdin), Some(mut stdout)) =
        (running.child.stdin.take(), running.child.stdout.take())
    else {
        return Err(running
            .abort(Error::internal(
                "starting pg_restore",
                "pg_restore has no pipes",
            ))
            .await);
    };
    let reader = tokio::spawn(async move {
        let mut listing = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut listing).await;
        listing
    });
    let fed = backup.copy_artifact(DUMP_ARTIFACT, &mut stdin).await;
    drop(stdin);
    // An I/O error is pg_restore closing its stdin early: its exit status tells why.
    match fed {
        Err(e) if !matches!(e, Error::Io { .. }) => return Err(running.abort(e).await),
        _ => {}
    }
    running.finish().await?;
    let listing = reader.await.unwrap_or_default();
    Ok(listing
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .count())
}
