//! Backups: the RDB a server sends a replica (`PSYNC ? -1`, disk or diskless), streamed into
//! the pipeline and checked on the way by the RDB reader; or, where SYNC is not allowed, a
//! logical record stream from SCAN + DUMP + PTTL.

use std::collections::BTreeMap;

use bytes::Bytes;
use dr_core::{ArtifactWriter, Backup, BackupWriter, Error, Result, SourceInfo, async_trait};
use tokio::io::AsyncWriteExt;

use crate::connection::RedisConnection;
use crate::logical;
use crate::rdb::{RdbSummary, read_rdb};
use crate::replication::ReplicationStream;
use crate::stream::ChannelReader;

/// The artifact holding the RDB.
pub const RDB_ARTIFACT: &str = "dump.rdb";
/// The manifest kind of RDB backups.
pub const RDB_KIND: &str = "redis.rdb";
/// The manifest kind of logical backups.
pub const LOGICAL_KIND: &str = "redis.logical";

/// How a Redis server is backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// The RDB over the replication protocol: one consistent snapshot (the server forks).
    #[default]
    Rdb,
    /// SCAN + DUMP + PTTL: for managed servers that refuse SYNC; each key is consistent on
    /// its own, the whole is not one point in time.
    Logical,
}

/// A Redis server to back up (every database).
#[derive(Debug, Clone)]
pub struct RedisSource {
    conn: RedisConnection,
    mode: RedisMode,
}

impl RedisSource {
    /// An RDB backup of the server at `conn`.
    pub fn new(conn: RedisConnection) -> Self {
        RedisSource {
            conn,
            mode: RedisMode::Rdb,
        }
    }

    /// Chooses the mode.
    pub fn with_mode(mut self, mode: RedisMode) -> Self {
        self.mode = mode;
        self
    }
}

#[async_trait]
impl Backup for RedisSource {
    fn kind(&self) -> &'static str {
        match self.mode {
            RedisMode::Rdb => RDB_KIND,
            RedisMode::Logical => LOGICAL_KIND,
        }
    }

    async fn backup(&self, out: &mut BackupWriter) -> Result<SourceInfo> {
        let mut client = self.conn.connect().await?;
        let server = client.info("server").await?;
        let version = field(&server, "redis_version").unwrap_or_default();
        let mut info = match self.mode {
            RedisMode::Rdb => {
                drop(client);
                rdb_backup(ReplicationStream::open(&self.conn).await?, out).await?
            }
            RedisMode::Logical => logical::backup(&mut client, out).await?,
        };
        info.insert("redis_version".into(), version.into());
        Ok(info)
    }
}

fn field(info: &[(String, String)], name: &str) -> Option<String> {
    info.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// How the server announced the RDB payload.
enum Payload {
    Sized(u64),
    Diskless([u8; 40]),
}

async fn rdb_backup(mut client: ReplicationStream, out: &mut BackupWriter) -> Result<SourceInfo> {
    client
        .command(&["REPLCONF", "capa", "eof", "capa", "psync2"])
        .await?;
    // Redis 7: no replication backlog is kept for us (redis-cli --rdb does the same).
    if let Err(e) = client.command(&["REPLCONF", "rdb-only", "1"]).await {
        tracing::debug!(error = %e, "server does not know rdb-only; continuing");
    }
    client.send(&["PSYNC", "?", "-1"]).await?;
    let (replid, offset) = full_resync(&mut client).await?;
    let payload = payload_header(&mut client).await?;
    let mut writer = out.artifact(RDB_ARTIFACT)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(16);
    let checker = tokio::task::spawn_blocking(move || {
        read_rdb(std::io::BufReader::new(ChannelReader::new(rx)), None)
    });
    let copied = copy_payload(&mut client, payload, &mut writer, tx).await;
    let summary = checker
        .await
        .map_err(|e| Error::internal("checking the RDB", e))?;
    copied?;
    let summary: RdbSummary = summary?;
    writer.finish().await?;
    let mut info = SourceInfo::new();
    info.insert("mode".into(), "rdb".into());
    info.insert("replid".into(), replid.into());
    info.insert("replication_offset".into(), offset.into());
    info.insert(
        "rdb".into(),
        serde_json::to_value(&summary).unwrap_or_default(),
    );
    Ok(info)
}

/// Waits for `+FULLRESYNC <replid> <offset>` (newlines before it are keep-alives).
async fn full_resync(client: &mut ReplicationStream) -> Result<(String, u64)> {
    loop {
        let line = client.read_line().await?;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("+FULLRESYNC ") {
            let mut parts = rest.split_whitespace();
            let replid = parts.next().unwrap_or_default().to_owned();
            let offset = parts.next().and_then(|o| o.parse().ok()).unwrap_or(0);
            return Ok((replid, offset));
        }
        return Err(Error::backend(
            "redis",
            "backup",
            format!(
                "Redis refused to send its RDB ({line}): replication commands may be disabled (managed services): use mode = \"logical\""
            ),
        ));
    }
}

async fn payload_header(client: &mut ReplicationStream) -> Result<Payload> {
    loop {
        let line = client.read_line().await?;
        if line.is_empty() {
            continue;
        }
        if let Some(mark) = line.strip_prefix("$EOF:") {
            let mark: [u8; 40] = mark.as_bytes().try_into().map_err(|_| {
                Error::backend(
                    "redis",
                    "backup",
                    format!("bad diskless RDB header {line:?}"),
                )
            })?;
            return Ok(Payload::Diskless(mark));
        }
        if let Some(len) = line.strip_prefix('$').and_then(|l| l.parse().ok()) {
            return Ok(Payload::Sized(len));
        }
        return Err(Error::backend(
            "redis",
            "backup",
            format!("unexpected reply before the RDB: {line:?}"),
        ));
    }
}

/// Copies the payload into the artifact and to the checker, at the speed the server sends.
async fn copy_payload(
    client: &mut ReplicationStream,
    payload: Payload,
    writer: &mut ArtifactWriter,
    checker: std::sync::mpsc::SyncSender<Bytes>,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut held: Vec<u8> = Vec::new();
    let mut remaining = match payload {
        Payload::Sized(n) => n,
        Payload::Diskless(_) => u64::MAX,
    };
    let send = |bytes: &[u8]| checker.send(Bytes::copy_from_slice(bytes)).is_ok();
    while remaining > 0 {
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = client.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(Error::backend(
                "redis",
                "backup",
                "Redis closed the connection before the RDB was complete",
            )
            .retryable());
        }
        let chunk = match payload {
            Payload::Sized(_) => {
                remaining -= n as u64;
                &buf[..n]
            }
            Payload::Diskless(mark) => {
                // Hold back the last 40 bytes: they may be the end mark.
                held.extend_from_slice(&buf[..n]);
                let window = held.len().saturating_sub(n + 40);
                if let Some(at) = held[window..].windows(40).position(|w| w == mark) {
                    // Anything after the mark is the replication stream: not ours.
                    held.truncate(window + at);
                    remaining = 0;
                }
                let keep = if remaining == 0 {
                    0
                } else {
                    40.min(held.len())
                };
                let ready = held.len() - keep;
                writer
                    .write_all(&held[..ready])
                    .await
                    .map_err(|e| Error::from_io("writing the RDB", e))?;
                if !send(&held[..ready]) {
                    return Ok(());
                }
                held.drain(..ready);
                continue;
            }
        };
        writer
            .write_all(chunk)
            .await
            .map_err(|e| Error::from_io("writing the RDB", e))?;
        if !send(chunk) {
            // The checker stopped: it found damage, which it reports.
            return Ok(());
        }
    }
    Ok(())
}

/// Per-database counts from `INFO keyspace` (`db0:keys=3,expires=1,avg_ttl=0`).
pub(crate) fn keyspace(info: &[(String, String)]) -> BTreeMap<u32, (u64, u64)> {
    info.iter()
        .filter_map(|(k, v)| {
            let db = k.strip_prefix("db")?.parse().ok()?;
            let mut keys = 0;
            let mut expires = 0;
            for pair in v.split(',') {
                match pair.split_once('=') {
                    Some(("keys", n)) => keys = n.parse().ok()?,
                    Some(("expires", n)) => expires = n.parse().ok()?,
                    _ => {}
                }
            }
            Some((db, (keys, expires)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_lines_are_read() {
        let info = vec![
            ("db0".to_owned(), "keys=3,expires=1,avg_ttl=0".to_owned()),
            ("db12".to_owned(), "keys=7,expires=0,avg_ttl=0".to_owned()),
            ("redis_version".to_owned(), "7.0.15".to_owned()),
        ];
        let counts = keyspace(&info);
        assert_eq!(counts[&0], (3, 1));
        assert_eq!(counts[&12], (7, 0));
        assert_eq!(counts.len(), 2);
    }
}
