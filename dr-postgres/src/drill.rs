//! Recovery drills of physical sources: the newest base backup restored into a scratch data
//! directory, recovered through the WAL archive to its end, started on a free loopback port
//! and promoted, queried, then stopped and removed. The time this takes is a real
//! recovery's, WAL replay included, which is what a drill's RTO must measure.

use std::path::{Path, PathBuf};

use dr_core::checks::UserCheck;
use dr_core::{
    BackupReader, Error, Repository, Result, Verify, VerifyLevel, VerifyReport, async_trait,
};

use crate::base_verify::BaseVerifier;
use crate::child;
use crate::conn::PgConnection;
use crate::pitr::{self, RecoveryTarget};
use crate::probe::Probe;
use crate::recover::{PitrOptions, restore_pitr};

/// Verifies base backups of `source` by recovering them (at the `Restore` level; lower
/// levels are [`BaseVerifier`]'s). Run as root, where PostgreSQL refuses to start, it falls
/// back to [`BaseVerifier`]'s `pg_verifybackup` test restore and says so.
pub struct RecoveryDrill {
    repo: Repository,
    source: String,
    conn: PgConnection,
    restore_command: String,
    checks: Vec<UserCheck>,
    probe: Option<Probe>,
}

impl RecoveryDrill {
    /// A drill of `source` in `repo`; `conn` gives the user, password and database the
    /// checks connect with (its host and port are replaced by the scratch server's), and
    /// `restore_command` is what the recovering server fetches WAL with (`dr wal-fetch`).
    pub fn new(
        repo: Repository,
        source: &str,
        conn: PgConnection,
        restore_command: String,
    ) -> Self {
        RecoveryDrill {
            repo,
            source: source.to_owned(),
            conn,
            restore_command,
            checks: Vec::new(),
            probe: None,
        }
    }

    /// User checks run on the recovered server (each a query returning one number).
    pub fn with_checks(mut self, checks: Vec<UserCheck>) -> Self {
        self.checks = checks;
        self
    }

    /// The RPO probe written before the drill (see [`crate::probe::write_probe`]): the
    /// recovered cluster must hold it, or the drill fails.
    pub fn with_probe(mut self, probe: Option<Probe>) -> Self {
        self.probe = probe;
        self
    }

    /// Writes the RPO probe into the live cluster and waits until it is archived.
    ///
    /// # Errors
    /// See [`crate::probe::write_probe`].
    pub async fn write_probe(&self) -> Result<Probe> {
        crate::probe::write_probe(&self.conn, std::time::Duration::from_secs(60)).await
    }

    async fn recover(&self) -> Result<Vec<String>> {
        let plan = pitr::plan(&self.repo, &self.source, RecoveryTarget::Latest).await?;
        let version = plan.base.server_version_num;
        let scratch = tokio::task::spawn_blocking(|| {
            tempfile::Builder::new().prefix("dr-drill-pg-").tempdir()
        })
        .await
        .map_err(|e| Error::internal("creating a scratch directory", e))?
        .map_err(|e| Error::io("creating a scratch directory", e))?;
        let data_dir = scratch.path().join("data");
        let port = free_port()?;
        let options = PitrOptions {
            data_dir: data_dir.clone(),
            restore_command: self.restore_command.clone(),
            keep_archiving: false,
            start_on_port: Some(port),
        };
        let outcome = match restore_pitr(&self.repo, plan, &options).await {
            Ok(report) => {
                let mut lines = vec![format!(
                    "recovered base backup {} through the WAL archive and promoted a scratch server in {:.1} s{}",
                    report.plan.base_backup,
                    report.elapsed_ms as f64 / 1000.0,
                    report
                        .recovery_stopped
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                )];
                self.query(port).await.map(|more| {
                    lines.extend(more);
                    lines
                })
            }
            Err(e) => Err(e),
        };
        stop(&data_dir, version).await;
        // Removing a whole data directory is a long walk: not on a runtime thread.
        let removed = tokio::task::spawn_blocking(move || scratch.close()).await;
        if !matches!(removed, Ok(Ok(()))) {
            tracing::warn!("could not remove the drill's scratch directory");
        }
        outcome
    }

    /// Queries the promoted server: out of recovery, and the user checks.
    async fn query(&self, port: u16) -> Result<Vec<String>> {
        let client = self.conn.on("127.0.0.1", port).connect().await?;
        let explain = |e: tokio_postgres::Error| {
            Error::restore("postgres", format!("querying the recovered server: {e}"))
        };
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_database WHERE datallowconn)",
                &[],
            )
            .await
            .map_err(explain)?;
        let (in_recovery, databases): (bool, i64) = (row.get(0), row.get(1));
        if in_recovery {
            return Err(Error::restore(
                "postgres",
                "the recovered server is still in recovery",
            ));
        }
        let mut lines = vec![format!(
            "the recovered server accepts writes and holds {databases} databases"
        )];
        let expect = crate::checks::Expectations {
            user_checks: &self.checks,
            ..Default::default()
        };
        let outcome = crate::checks::check_restored_with(&client, &expect)
            .await
            .map_err(explain)?;
        if !outcome.problems.is_empty() {
            return Err(Error::restore(
                "postgres",
                format!(
                    "checks failed on the recovered server: {}",
                    outcome.problems.join("; ")
                ),
            ));
        }
        lines.extend(outcome.passed);
        if let Some(probe) = &self.probe {
            if !crate::probe::holds_probe(&client, probe)
                .await
                .map_err(explain)?
            {
                return Err(Error::restore(
                    "postgres",
                    format!(
                        "the RPO probe written into the live cluster at {} (token {}) and archived before the drill is not in the recovered cluster: the WAL archive does not bring back what it holds",
                        crate::pitr::exact_time(probe.written_at),
                        probe.token
                    ),
                ));
            }
            lines.push(format!(
                "RPO probe: the row written at {} is in the recovered cluster",
                crate::pitr::exact_time(probe.written_at)
            ));
        }
        Ok(lines)
    }
}

#[async_trait]
impl Verify for RecoveryDrill {
    async fn verify(&self, backup: &BackupReader, level: VerifyLevel) -> Result<VerifyReport> {
        let base = BaseVerifier::new();
        if level < VerifyLevel::Restore || child::running_as_root_async().await {
            let mut report = base.verify(backup, level).await?;
            if level == VerifyLevel::Restore {
                report.passed.push(
                    "note: running as root, where PostgreSQL will not start: the base backup was checked with pg_verifybackup but not recovered; run the drill as the postgres user to measure a real recovery".into(),
                );
                if self.probe.is_some() {
                    report.add_problem(
                        dr_core::ProblemKind::TestRestore,
                        "the RPO probe could not be looked for without a recovery (running as root): the RPO is not measured; run the drill as the postgres user",
                    );
                }
            }
            return Ok(report);
        }
        let mut report = base.verify(backup, VerifyLevel::Checksums).await?;
        if report.is_ok() {
            report.level_requested = level;
            match self.recover().await {
                Ok(lines) => {
                    report.passed.extend(lines);
                    report.level_performed = VerifyLevel::Restore;
                }
                Err(e) => {
                    report.add_problem(
                        dr_core::ProblemKind::TestRestore,
                        format!("recovery drill failed: {e}"),
                    );
                }
            }
        }
        Ok(report)
    }
}

/// A port on 127.0.0.1 nobody listens on right now.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port for the scratch server", e))
}

/// Stops the scratch server, if it runs (fast shutdown, waiting for it).
async fn stop(data_dir: &Path, version: i64) {
    if !child::exists(&data_dir.join("postmaster.pid")).await {
        return;
    }
    let pg_ctl: PathBuf = child::server_binary_async("pg_ctl", version).await;
    let stopped = tokio::process::Command::new(pg_ctl)
        .args(["stop", "-m", "fast", "-w", "-D"])
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    if !stopped.is_ok_and(|s| s.success()) {
        tracing::warn!(dir = %data_dir.display(), "could not stop the drill's scratch server");
    }
}
