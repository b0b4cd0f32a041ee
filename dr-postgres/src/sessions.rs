//! Other sessions in the way of a restore: the sessions connected to a database a swap
//! renames away, and the sessions holding locks an in-place restore waits for.

use std::time::{Duration, Instant};

use dr_core::{Error, Result};
use tokio_postgres::Client;

use crate::conn::{PgConnection, quote_ident};
use crate::dbprops::DatabaseProperties;

/// One backend, as `pg_stat_activity` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pid: i32,
    user: String,
    application: String,
    client: String,
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (user {}, application {:?}, from {})",
            self.pid, self.user, self.application, self.client
        )
    }
}

fn list(sessions: &[Session]) -> String {
    sessions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

async fn connected(admin: &Client, conn: &PgConnection, db: &str) -> Result<Vec<Session>> {
    let rows = admin
        .query(
            "SELECT pid, coalesce(usename::text, '?'), coalesce(application_name, ''), \
             coalesce(host(client_addr), 'the local socket') FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY pid",
            &[&db],
        )
        .await
        .map_err(|e| conn.explain("listing the sessions on", &e))?;
    Ok(rows
        .iter()
        .map(|r| Session {
            pid: r.get(0),
            user: r.get(1),
            application: r.get(2),
            client: r.get(3),
        })
        .collect())
}

/// Closes `db` to new sessions and waits up to `wait` for the connected ones to leave;
/// with `force` ends them instead. On timeout, `db` is opened again and the error names
/// every session still connected.
///
/// # Errors
/// [`Error::TargetInUse`] when sessions remain after `wait`; connection errors.
pub(crate) async fn empty_database(
    admin: &Client,
    conn: &PgConnection,
    db: &str,
    wait: Duration,
    force: bool,
) -> Result<()> {
    let quoted = quote_ident(db);
    let explain =
        |e: tokio_postgres::Error| conn.explain("closing a database to new sessions on", &e);
    admin
        .batch_execute(&format!("ALTER DATABASE {quoted} ALLOW_CONNECTIONS false"))
        .await
        .map_err(explain)?;
    let started = Instant::now();
    let mut last_said = None::<Instant>;
    loop {
        let sessions = connected(admin, conn, db).await?;
        if sessions.is_empty() {
            return Ok(());
        }
        if force {
            tracing::warn!(
                "--force: ending the sessions connected to {db}: {}",
                list(&sessions)
            );
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&db],
                )
                .await
                .map_err(|e| conn.explain("ending sessions on", &e))?;
        } else if started.elapsed() >= wait {
            let reopened = admin
                .batch_execute(&format!("ALTER DATABASE {quoted} ALLOW_CONNECTIONS true"))
                .await;
            if let Err(e) = reopened {
                tracing::warn!(database = db, error = %e, "could not open the database to new sessions again");
            }
            return Err(Error::TargetInUse {
                target: format!("database {db}"),
                holder_pid: sessions.first().and_then(|s| u32::try_from(s.pid).ok()),
                holder: format!(
                    "{} session(s) still connected to {db} after {} s: {}",
                    sessions.len(),
                    wait.as_secs(),
                    list(&sessions)
                ),
                hint: format!(
                    "{db} was not replaced. Ask them to disconnect, wait longer (--wait), or end them with --force"
                ),
            });
        } else if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            tracing::warn!(
                "waiting (at most {} s in all) for the sessions connected to {db} to leave (new ones are refused): {}",
                wait.as_secs(),
                list(&sessions)
            );
            last_said = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a backend with `application_name` waits for: each ungranted lock with its relation
/// and the sessions that block it.
pub(crate) async fn lock_waits(admin: &Client, application: &str) -> Vec<String> {
    let rows = admin
        .query(
            "SELECT l.mode, coalesce((SELECT n.nspname || '.' || c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = l.relation), l.locktype), b.pid, \
             coalesce(b.usename::text, '?'), coalesce(b.application_name, ''), \
             coalesce(host(b.client_addr), 'the local socket') \
             FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted \
             JOIN pg_stat_activity b ON b.pid = ANY (pg_blocking_pids(a.pid)) \
             WHERE a.application_name = $1 ORDER BY b.pid",
            &[&application],
        )
        .await;
    let Ok(rows) = rows else {
        return Vec::new();
    };
    rows.iter()
        .map(|r| {
            let holder = Session {
                pid: r.get(2),
                user: r.get(3),
                application: r.get(4),
                client: r.get(5),
            };
            format!(
                "{} on {} held by {holder}",
                r.get::<_, String>(0),
                r.get::<_, String>(1)
            )
        })
        .collect()
}

/// Swaps `restored` in as `original`, keeping the original as `<original>_pre_restore_<stamp>`,
/// once the sessions on the original have left (`wait`), or ended with `force`.
pub(crate) async fn swap(
    admin: &Client,
    conn: &PgConnection,
    (original, restored): (&str, &str),
    stamp: &str,
    (wait, force): (Duration, bool),
) -> Result<Option<String>> {
    let explain = |e: tokio_postgres::Error| conn.explain("swapping databases on", &e);
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&original])
        .await
        .map_err(explain)?
        .is_some();
    let kept = format!("{original}_pre_restore_{stamp}");
    if exists {
        let (orig, keep) = (quote_ident(original), quote_ident(&kept));
        empty_database(admin, conn, original, wait, force).await?;
        admin
            .batch_execute(&format!("ALTER DATABASE {orig} RENAME TO {keep}"))
            .await
            .map_err(explain)?;
        admin
            .batch_execute(&format!("ALTER DATABASE {keep} ALLOW_CONNECTIONS true"))
            .await
            .map_err(explain)?;
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(restored),
            quote_ident(original)
        ))
        .await
        .map_err(explain)?;
    Ok(exists.then_some(kept))
}

/// An in-place restore cannot change the encoding or locale of the live database: say so
/// when they differ from the backup's.
pub(crate) async fn warn_on_other_locale(admin: &Client, props: &DatabaseProperties, name: &str) {
    let row = admin
        .query_one(
            "SELECT pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text, \
             datlocprovider::text, daticulocale::text FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await;
    let Ok(row) = row else { return };
    let live = (
        row.get::<_, String>(0),
        row.get::<_, String>(1),
        row.get::<_, String>(2),
        row.get::<_, String>(3),
        row.get::<_, Option<String>>(4),
    );
    let recorded = (
        props.encoding.clone(),
        props.collate.clone(),
        props.ctype.clone(),
        props.locale_provider.clone(),
        props.icu_locale.clone(),
    );
    if live != recorded {
        tracing::warn!(
            "database {name} keeps its encoding and locale {live:?}, the backup's were {recorded:?}: an in-place restore cannot change them (restore into a new database, the default or --swap, to get them)"
        );
    }
}

/// Gives the restored database `name` the recorded properties; roles the server lacks are
/// warned about (the restore goes on).
pub(crate) async fn apply_properties(
    admin: &Client,
    conn: &PgConnection,
    props: &DatabaseProperties,
    name: &str,
) -> Result<()> {
    for note in props.apply(admin, conn, name).await? {
        tracing::warn!("{note}");
    }
    Ok(())
}
