//! The RPO probe of a recovery drill: a row written into the live cluster at a known time,
//! its WAL segment switched and archived, then looked for in the recovered cluster. It checks
//! the drill's RPO independently of dr's own reading of the archive: a row the archive is
//! said to hold must really come back.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dr_core::{Error, Result};
use tokio_postgres::Client;

use crate::conn::PgConnection;

/// The table the probe rows go into (in the database of the source's connection).
pub const PROBE_TABLE: &str = "dr_probe";

/// A probe row written before a drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Its unique token.
    pub token: String,
    /// When it was written (the server's clock, before its commit).
    pub written_at: DateTime<Utc>,
}

/// Writes a probe row into the live cluster of `conn`, switches to a new WAL segment and
/// waits up to `wait` until the segment holding the row is archived. Rows older than 30 days
/// are removed.
///
/// # Errors
/// Connection and SQL errors (the user needs to create tables and run `pg_switch_wal()`),
/// and a segment not archived in time.
pub async fn write_probe(conn: &PgConnection, wait: Duration) -> Result<Probe> {
    let client = conn.connect().await?;
    let explain = |e: tokio_postgres::Error| conn.explain("writing the RPO probe on", &e);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (token text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             DELETE FROM {PROBE_TABLE} WHERE written_at < now() - interval '30 days'"
        ))
        .await
        .map_err(explain)?;
    let token = format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id()
    );
    let row = client
        .query_one(
            &format!(
                "INSERT INTO {PROBE_TABLE} (token) VALUES ($1) \
                 RETURNING to_char(written_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            ),
            &[&token],
        )
        .await
        .map_err(explain)?;
    let written_text: String = row.get(0);
    let written_at = DateTime::parse_from_rfc3339(&written_text)
        .map_err(|e| Error::invalid_data("RPO probe time", format!("{written_text:?}: {e}")))?
        .with_timezone(&Utc);
    let segment: String = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .await
        .map_err(explain)?
        .get(0);
    client
        .batch_execute("SELECT pg_switch_wal()")
        .await
        .map_err(explain)?;
    wait_archived(&client, &segment, wait)
        .await
        .map_err(|e| match e {
            Some(e) => explain(e),
            None => Error::backend(
                "postgres",
                "archiving the RPO probe",
                format!(
                    "the RPO probe's WAL segment {segment} was not archived within {} s: is archive_command failing? (pg_stat_archiver)",
                    wait.as_secs()
                ),
            )
            .retryable(),
        })?;
    Ok(Probe { token, written_at })
}

/// Waits until a plain segment at or past `segment` is archived.
async fn wait_archived(
    client: &Client,
    segment: &str,
    wait: Duration,
) -> std::result::Result<(), Option<tokio_postgres::Error>> {
    let deadline = Instant::now() + wait;
    loop {
        let last: String = client
            .query_one(
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
                &[],
            )
            .await
            .map_err(Some)?
            .get(0);
        // A `.backup` or `.history` file may be named after an older segment: only a plain
        // segment name says ours is archived.
        if last.len() == 24 && last.get(8..) >= segment.get(8..) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the recovered cluster holds the probe row.
pub(crate) async fn holds_probe(
    client: &Client,
    probe: &Probe,
) -> std::result::Result<bool, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&PROBE_TABLE])
        .await?
        .get(0);
    if !exists {
        return Ok(false);
    }
    let found: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {PROBE_TABLE} WHERE token = $1"),
            &[&probe.token],
        )
        .await?
        .get(0);
    Ok(found == 1)
}
