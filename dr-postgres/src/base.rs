//! Physical base backups: `pg_basebackup --format=tar --pgdata=- --wal-method=fetch` streamed
//! from its stdout into the pipeline, with the WAL positions it reports.

use std::process::Stdio;

use chrono::{DateTime, Utc};
use dr_core::{Backup, BackupWriter, Error, Result, SourceInfo, async_trait};
use serde::{Deserialize, Serialize};

use crate::backup::stream_child;
use crate::child;
use crate::conn::PgConnection;
use crate::lsn::{Lsn, Segment};

/// The manifest kind of a base backup.
pub const BASE_KIND: &str = "postgres.base";
/// The artifact holding the data directory as a tar (with the WAL to make it consistent).
pub const BASE_ARTIFACT: &str = "base.tar";

/// What a base backup records in its manifest (`source_info`), read back for PITR.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseBackupFacts {
    /// `server_version` of the cluster.
    pub server_version: String,
    /// `server_version_num`, e.g. 150014.
    pub server_version_num: i64,
    /// The cluster's system identifier (as text: it does not fit JSON numbers).
    pub system_identifier: String,
    /// `wal_segment_size` in bytes.
    pub wal_segment_size: u64,
    /// The timeline the backup started on.
    pub timeline: u32,
    /// Where replay must start (the backup's checkpoint redo point).
    pub start_lsn: Lsn,
    /// Where the backup becomes consistent: recovery must reach this position.
    pub stop_lsn: Lsn,
    /// The first WAL file needed.
    pub start_wal_file: String,
    /// The WAL file holding the stop position.
    pub stop_wal_file: String,
    /// When pg_basebackup started.
    pub start_time: DateTime<Utc>,
    /// When it finished: every recovery target must be later than this.
    pub stop_time: DateTime<Utc>,
    /// The label given to `BASE_BACKUP` (`dr <backup id>`).
    pub label: String,
    /// `pg_basebackup --version`.
    pub pg_basebackup_version: String,
}

impl BaseBackupFacts {
    /// Reads the facts back from a manifest's `source_info`.
    ///
    /// # Errors
    /// [`Error::BadManifest`] when the manifest is not a base backup's.
    pub fn from_info(info: &SourceInfo, backup_id: &str) -> Result<Self> {
        let value = serde_json::to_value(info).map_err(|e| Error::Usage(e.to_string()))?;
        serde_json::from_value(value).map_err(|e| Error::BadManifest {
            key: backup_id.to_owned(),
            detail: format!("not a PostgreSQL base backup: {e}"),
        })
    }

    fn into_info(self) -> Result<SourceInfo> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => Ok(map.into_iter().collect()),
            Ok(_) => Err(Error::Usage("facts are not an object".into())),
            Err(e) => Err(Error::Usage(e.to_string())),
        }
    }
}

/// A running cluster to back up physically (the whole cluster, every database).
///
/// Needs a role with `REPLICATION` and a `replication` line in `pg_hba.conf` for it. The WAL
/// needed to make the copy consistent travels inside the tar, so each base backup restores
/// on its own; point-in-time recovery past its end needs the WAL archive
/// ([`crate::WalArchive`]). Clusters with extra tablespaces are refused by pg_basebackup when
/// writing to a stream; give them their own backup.
#[derive(Debug, Clone)]
pub struct PostgresBaseSource {
    conn: PgConnection,
    fast_checkpoint: bool,
}

impl PostgresBaseSource {
    /// A base backup through `conn`, starting with a fast checkpoint.
    pub fn new(conn: PgConnection) -> Self {
        PostgresBaseSource {
            conn,
            fast_checkpoint: true,
        }
    }

    /// `false` spreads the starting checkpoint over `checkpoint_completion_target` (less I/O
    /// at once, but the backup may wait minutes before the first byte).
    pub fn with_fast_checkpoint(mut self, fast: bool) -> Self {
        self.fast_checkpoint = fast;
        self
    }
}

#[async_trait]
impl Backup for PostgresBaseSource {
    fn kind(&self) -> &'static str {
        BASE_KIND
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let (tool_major, tool_version) = child::major_version("pg_basebackup").await?;
        let cluster = cluster_facts(&self.conn).await?;
        if i64::from(tool_major) < cluster.version_num / 10000 {
            return Err(Error::backend(
                "postgres",
                "backup",
                format!(
                    "pg_basebackup {tool_major} cannot back up PostgreSQL {}: install postgresql-client-{}",
                    cluster.version,
                    cluster.version_num / 10000
                ),
            ));
        }
        let label = format!("dr {}", out.id());
        let start_time = Utc::now();
        let mut command = self.conn.command("pg_basebackup");
        command
            .args([
                "--format=tar",
                "--pgdata=-",
                "--wal-method=fetch",
                "--verbose",
            ])
            .args(["--no-password", "--label", &label])
            .arg(if self.fast_checkpoint {
                "--checkpoint=fast"
            } else {
                "--checkpoint=spread"
            })
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let stderr = stream_child(command, "pg_basebackup", BASE_ARTIFACT, out).await?;
        let stop_time = Utc::now();
        let positions = WalPositions::from_stderr(&stderr)?;
        let size = cluster.wal_segment_size;
        BaseBackupFacts {
            server_version: cluster.version,
            server_version_num: cluster.version_num,
            system_identifier: cluster.system_identifier,
            wal_segment_size: size,
            timeline: positions.timeline,
            start_lsn: positions.start,
            stop_lsn: positions.stop,
            start_wal_file: Segment::containing(positions.timeline, positions.start, size)
                .file_name(size),
            stop_wal_file: Segment::containing(positions.timeline, positions.stop, size)
                .file_name(size),
            start_time,
            stop_time,
            label,
            pg_basebackup_version: tool_version,
        }
        .into_info()
    }
}

struct ClusterFacts {
    version: String,
    version_num: i64,
    system_identifier: String,
    wal_segment_size: u64,
}

async fn cluster_facts(conn: &PgConnection) -> Result<ClusterFacts> {
    let client = conn.connect().await?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int8, \
             (SELECT system_identifier::text FROM pg_control_system()), \
             (SELECT setting::int8 * CASE unit WHEN '8kB' THEN 8192 WHEN 'MB' THEN 1048576 ELSE 1 END \
                FROM pg_settings WHERE name = 'wal_segment_size')",
            &[],
        )
        .await
        .map_err(|e| conn.explain("reading the cluster's facts from", &e))?;
    Ok(ClusterFacts {
        version: row.get(0),
        version_num: row.get(1),
        system_identifier: row.get(2),
        wal_segment_size: u64::try_from(row.get::<_, i64>(3)).unwrap_or(16 << 20),
    })
}

/// The positions `pg_basebackup --verbose` reports on stderr.
#[derive(Debug, PartialEq)]
struct WalPositions {
    start: Lsn,
    timeline: u32,
    stop: Lsn,
}

impl WalPositions {
    fn from_stderr(stderr: &str) -> Result<Self> {
        let after = |marker: &str| {
            stderr
                .lines()
                .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.trim().to_owned()))
        };
        let missing = || {
            Error::backend(
                "postgres",
                "backup",
                format!("pg_basebackup did not report its WAL positions: {stderr}"),
            )
        };
        let start_line = after("write-ahead log start point:").ok_or_else(missing)?;
        let (start, timeline) = start_line.split_once(" on timeline ").ok_or_else(missing)?;
        Ok(WalPositions {
            start: start.parse()?,
            timeline: timeline.trim().parse().map_err(|_| missing())?,
            stop: after("write-ahead log end point:")
                .ok_or_else(missing)?
                .parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_read_from_verbose_output() {
        let stderr = "pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
            pg_basebackup: checkpoint completed\n\
            pg_basebackup: write-ahead log start point: 0/2000028 on timeline 3\n\
            pg_basebackup: write-ahead log end point: 1/2000100\n\
            pg_basebackup: base backup completed";
        let positions = WalPositions::from_stderr(stderr).unwrap();
        assert_eq!(
            positions,
            WalPositions {
                start: "0/2000028".parse().unwrap(),
                timeline: 3,
                stop: "1/2000100".parse().unwrap(),
            }
        );
        assert!(WalPositions::from_stderr("pg_basebackup: base backup completed").is_err());
    }
}
