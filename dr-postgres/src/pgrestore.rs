//! Running `pg_restore` on a backup's dump: errors that say what to do, and for in-place
//! restores a lock wait that gives up after a stated time, naming what it waited for.

use std::process::Stdio;
use std::time::{Duration, Instant};

use dr_core::{BackupReader, Error, Result};
use tokio_postgres::Client;

use crate::backup::DUMP_ARTIFACT;
use crate::child;
use crate::conn::PgConnection;
use crate::sessions::lock_waits;

/// Streams the dump into `pg_restore --exit-on-error` on stdin.
pub(crate) async fn run_pg_restore(
    target: &PgConnection,
    backup: &BackupReader,
    extra: &[&str],
) -> Result<()> {
    run_pg_restore_with(target, backup, extra, target.command("pg_restore"))
        .await
        .map_err(explain_missing_role)
}

/// pg_restore that gives up waiting for a lock after `wait` (dr cancels its statement: the
/// archive's own `SET lock_timeout = 0` overrides any setting), saying meanwhile which locks
/// it waits for (which relation, held by which session) and, after giving up, which.
pub(crate) async fn run_pg_restore_waiting(
    target: &PgConnection,
    backup: &BackupReader,
    extra: &[&str],
    (admin, application, wait): (&Client, &str, Duration),
) -> Result<()> {
    let mut command = target.command("pg_restore");
    command.env("PGAPPNAME", application);
    let restoring = run_pg_restore_with(target, backup, extra, command);
    tokio::pin!(restoring);
    let mut seen: Vec<String> = Vec::new();
    let mut waiting_since = None::<Instant>;
    let mut gave_up = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let result = loop {
        tokio::select! {
            result = &mut restoring => break result,
            _ = tick.tick() => {
                let waits = lock_waits(admin, application).await;
                if waits.is_empty() {
                    waiting_since = None;
                    continue;
                }
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if waits != seen {
                    tracing::warn!(
                        "the restore waits (at most {} s) for: {}",
                        wait.as_secs(),
                        waits.join("; ")
                    );
                    seen = waits;
                }
                if since.elapsed() >= wait && !gave_up {
                    gave_up = true;
                    let cancelled = admin
                        .execute(
                            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                            &[&application],
                        )
                        .await;
                    if let Err(e) = cancelled {
                        tracing::warn!(error = %e, "could not cancel the waiting restore");
                    }
                }
            }
        }
    };
    result.map_err(|e| match e {
        e @ (Error::Tool { .. } | Error::Backend { .. }) if gave_up => Error::backend(
            "postgres",
            "restore",
            format!(
                "lock timeout: gave up after waiting {} s for: {} ({}); end that session, wait longer with --wait, or retry when it is done",
                wait.as_secs(),
                seen.join("; "),
                e.detail()
            ),
        )
        .retryable()
        .caused_by(e),
        e => explain_missing_role(e),
    })
}

/// pg_restore failing on a role the server lacks: say how to create the backup's roles.
fn explain_missing_role(e: Error) -> Error {
    let text = e.to_string();
    if !(text.contains("role \"") && text.contains("does not exist")) {
        return e;
    }
    e.with_hint(
        " (the backup's roles are not on this server: create them first with `dr restore SOURCE --globals`, with --server URL for another server)",
    )
}

async fn run_pg_restore_with(
    target: &PgConnection,
    backup: &BackupReader,
    extra: &[&str],
    mut command: tokio::process::Command,
) -> Result<()> {
    command
        .args([
            "--no-password",
            "--exit-on-error",
            "--dbname",
            target.database(),
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut running = child::spawn(command, "pg_restore")?;
    let Some(mut stdin) = running.child.stdin.take() else {
        return Err(running
            .abort(Error::internal(
                "starting pg_restore",
                "pg_restore has no stdin",
            ))
            .await);
    };
    let fed = backup.copy_artifact(DUMP_ARTIFACT, &mut stdin).await;
    drop(stdin);
    match fed {
        Ok(_) => running.finish().await.map(|_| ()),
        // pg_restore stopping early (an error) closes its stdin: report its own message.
        Err(Error::Io { .. }) => running.finish().await.map(|_| ()),
        Err(e) => Err(running.abort(e).await),
    }
}
