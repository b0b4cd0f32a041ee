//! Restores: (a) the RDB file placed into a data directory (written beside, checked, the
//! previous file kept, the server stopped and started by commands the user configures);
//! (b) keys replayed into a running server with pipelined `RESTORE ... REPLACE`, from a
//! logical backup or from the entries of an RDB backup turned into DUMP payloads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dr_core::{BackupReader, Error, Restore, RestoreOptions, RestoreReport, Result, async_trait};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::backup::{LOGICAL_KIND, RDB_ARTIFACT, RDB_KIND};
use crate::logical::{KEYS_ARTIFACT, KeyReader, KeyRecord};
use crate::rdb::{dump_payload, read_rdb};
use crate::resp::{RedisConnection, RespClient};

const BATCH: usize = 500;

/// Restores an RDB backup as the `dump.rdb` of a (stopped) server.
#[derive(Debug, Clone)]
pub struct RedisFileTarget {
    rdb_path: PathBuf,
    stop_command: Option<String>,
    start_command: Option<String>,
}

impl RedisFileTarget {
    /// Restores to `rdb_path` (e.g. `/var/lib/redis/dump.rdb`).
    pub fn new(rdb_path: impl Into<PathBuf>) -> Self {
        RedisFileTarget {
            rdb_path: rdb_path.into(),
            stop_command: None,
            start_command: None,
        }
    }

    /// Shell commands run before the file is swapped in (stop the server, so it does not
    /// overwrite the file on shutdown) and after (start it, so it loads the file).
    pub fn with_commands(mut self, stop: Option<String>, start: Option<String>) -> Self {
        self.stop_command = stop;
        self.start_command = start;
        self
    }
}

#[async_trait]
impl Restore for RedisFileTarget {
    async fn restore(&self, backup: &BackupReader, opts: &RestoreOptions) -> Result<RestoreReport> {
        let started = Instant::now();
        if backup.manifest().kind != RDB_KIND {
            return Err(Error::Refused(format!(
                "backup {} is a {} backup: a logical backup is restored into a running server (RESTORE), not as a file",
                backup.id(),
                backup.manifest().kind
            )));
        }
        let target = opts.target.clone().unwrap_or_else(|| self.rdb_path.clone());
        let staged = dr_core::sibling_path(&target, ".dr-partial");
        let summary = match stage(backup, &staged).await {
            Ok(summary) => summary,
            Err(e) => {
                let _ = tokio::fs::remove_file(&staged).await;
                return Err(e);
            }
        };
        run_hook(self.stop_command.as_deref(), "stop_command").await?;
        let kept = dr_core::sibling_path(
            &target,
            &format!(
                ".pre-restore-{}",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ),
        );
        let previous = match tokio::fs::rename(&target, &kept).await {
            Ok(()) => Some(kept.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("keeping {}", target.display()), e)),
        };
        tokio::fs::rename(&staged, &target).await.map_err(|e| {
            Error::io(
                format!("moving the restored RDB to {}", target.display()),
                e,
            )
        })?;
        run_hook(self.start_command.as_deref(), "start_command").await?;
        let mut report = RestoreReport::default();
        report.backup_id = backup.id().to_owned();
        report.target = format!("{} ({} keys)", target.display(), summary.total_keys());
        report.previous_kept_at = previous;
        report.restored_bytes = summary.bytes;
        report.elapsed_ms = elapsed_ms(started);
        Ok(report)
    }
}

/// Writes the RDB to `staged` while the RDB reader checks the same bytes (one pass, no
/// second read of the file); fsyncs it.
async fn stage(backup: &BackupReader, staged: &Path) -> Result<crate::rdb::RdbSummary> {
    let io = |e| Error::io(format!("writing {}", staged.display()), e);
    let mut file = tokio::fs::File::create(staged).await.map_err(io)?;
    let mut artifact = backup.artifact(RDB_ARTIFACT)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(16);
    let checker = tokio::task::spawn_blocking(move || {
        read_rdb(
            std::io::BufReader::new(crate::stream::ChannelReader::new(rx)),
            None,
        )
    });
    let copied = async {
        while let Some(chunk) = artifact.next_chunk().await? {
            file.write_all(&chunk).await.map_err(io)?;
            if tx.send(chunk).is_err() {
                break; // The checker found damage; it says where.
            }
        }
        drop(tx);
        file.flush().await.and(file.sync_all().await).map_err(io)
    }
    .await;
    let summary = checker
        .await
        .map_err(|e| Error::Restore(format!("RDB check failed: {e}")))?;
    copied?;
    summary
}

/// Parses a whole RDB file: magic, every opcode, CRC64.
///
/// # Errors
/// [`Error::Source`] with the offset of the damage.
pub async fn check_file(path: &Path) -> Result<crate::rdb::RdbSummary> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        read_rdb(std::io::BufReader::with_capacity(1 << 20, file), None)
    })
    .await
    .map_err(|e| Error::Source(format!("RDB check failed: {e}")))?
}

async fn run_hook(command: Option<&str>, name: &str) -> Result<()> {
    let Some(command) = command else {
        return Ok(());
    };
    let status = tokio::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .await
        .map_err(|e| Error::Restore(format!("cannot run {name} ({command}): {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Restore(format!(
            "{name} ({command}) failed: {status}"
        )))
    }
}

/// Replays a backup's keys into a running server with `RESTORE ... REPLACE`.
#[derive(Debug, Clone)]
pub struct RedisReplayTarget {
    conn: RedisConnection,
}

impl RedisReplayTarget {
    /// Replays into the server at `conn`.
    pub fn new(conn: RedisConnection) -> Self {
        RedisReplayTarget { conn }
    }
}

#[async_trait]
impl Restore for RedisReplayTarget {
    async fn restore(&self, backup: &BackupReader, opts: &RestoreOptions) -> Result<RestoreReport> {
        let started = Instant::now();
        let mut client = self.conn.connect().await?;
        let existing: u64 = crate::backup::keyspace(&client.info("keyspace").await?)
            .values()
            .map(|(keys, _)| keys)
            .sum();
        if existing > 0 && !opts.force {
            return Err(Error::Refused(format!(
                "{} already holds {existing} keys: restoring replaces the keys of the backup and keeps the others; pass --force to do it anyway, or restore into an empty server",
                self.conn
            )));
        }
        let mut replay = Replay::new(&mut client);
        let bytes = match backup.manifest().kind.as_str() {
            RDB_KIND => replay_rdb(backup, &mut replay).await?,
            LOGICAL_KIND => replay_logical(backup, &mut replay).await?,
            other => return Err(Error::Refused(format!("{other} is not a Redis backup"))),
        };
        let mut report = RestoreReport::default();
        report.backup_id = backup.id().to_owned();
        report.target = format!("{} ({} keys)", self.conn, replay.restored);
        report.restored_bytes = bytes;
        report.elapsed_ms = elapsed_ms(started);
        Ok(report)
    }
}

/// A key to restore: TTL relative (logical) or absolute (RDB), as RESTORE takes them.
struct Pending {
    db: u32,
    key: Vec<u8>,
    ttl: Ttl,
    payload: Vec<u8>,
}

enum Ttl {
    None,
    Relative(i64),
    Absolute(i64),
}

/// Batches of pipelined RESTOREs, counting what succeeded.
struct Replay<'a> {
    client: &'a mut RespClient,
    db: Option<u32>,
    batch: Vec<Pending>,
    restored: u64,
}

impl<'a> Replay<'a> {
    fn new(client: &'a mut RespClient) -> Self {
        Replay {
            client,
            db: None,
            batch: Vec::with_capacity(BATCH),
            restored: 0,
        }
    }

    async fn push(&mut self, pending: Pending) -> Result<()> {
        if self.batch.last().is_some_and(|p| p.db != pending.db) || self.batch.len() >= BATCH {
            self.flush().await?;
        }
        self.batch.push(pending);
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let Some(db) = self.batch.first().map(|p| p.db) else {
            return Ok(());
        };
        if self.db != Some(db) {
            self.client
                .command(&[b"SELECT", db.to_string().as_bytes()])
                .await?;
            self.db = Some(db);
        }
        let ttls: Vec<String> = self
            .batch
            .iter()
            .map(|p| match p.ttl {
                Ttl::None => "0".to_owned(),
                Ttl::Relative(ms) | Ttl::Absolute(ms) => ms.to_string(),
            })
            .collect();
        let commands: Vec<Vec<&[u8]>> = self
            .batch
            .iter()
            .zip(&ttls)
            .map(|(p, ttl)| {
                let mut c: Vec<&[u8]> =
                    vec![b"RESTORE", &p.key, ttl.as_bytes(), &p.payload, b"REPLACE"];
                if matches!(p.ttl, Ttl::Absolute(_)) {
                    c.push(b"ABSTTL");
                }
                c
            })
            .collect();
        let replies = self.client.pipeline(&commands).await?;
        for (reply, pending) in replies.into_iter().zip(&self.batch) {
            if let Err(e) = reply {
                return Err(Error::Restore(format!(
                    "{} keys restored, then RESTORE of key {:?} in db {} failed: {e}",
                    self.restored,
                    String::from_utf8_lossy(&pending.key),
                    pending.db
                )));
            }
            self.restored += 1;
        }
        self.batch.clear();
        Ok(())
    }
}

async fn replay_logical(backup: &BackupReader, replay: &mut Replay<'_>) -> Result<u64> {
    let mut reader = KeyReader::new(backup.artifact(KEYS_ARTIFACT)?).await?;
    let mut bytes = 0u64;
    while let Some(KeyRecord {
        db,
        key,
        pttl_ms,
        payload,
    }) = reader.next().await?
    {
        bytes += payload.len() as u64;
        let ttl = pttl_ms.map_or(Ttl::None, |ms| Ttl::Relative(ms.max(1)));
        replay
            .push(Pending {
                db,
                key,
                ttl,
                payload,
            })
            .await?;
    }
    replay.flush().await?;
    Ok(bytes)
}

/// Parses the RDB on a blocking thread and replays its entries as they come.
async fn replay_rdb(backup: &BackupReader, replay: &mut Replay<'_>) -> Result<u64> {
    let artifact = backup.artifact(RDB_ARTIFACT)?;
    let (tx, mut rx) = mpsc::channel::<Pending>(BATCH * 2);
    let handle = tokio::runtime::Handle::current();
    let parser = tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(artifact, handle);
        let mut reader = std::io::BufReader::with_capacity(1 << 20, bridge);
        let mut magic = [0u8; 9];
        std::io::Read::read_exact(&mut reader, &mut magic)
            .map_err(|e| Error::from_io("reading the RDB", e))?;
        // DUMP payloads carry the RDB version their encoding belongs to.
        let version: u16 = std::str::from_utf8(&magic[5..])
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut send = |entry: crate::rdb::RdbEntry<'_>| {
            let pending = Pending {
                db: entry.db,
                key: entry.key.to_vec(),
                ttl: entry.expire_ms.map_or(Ttl::None, Ttl::Absolute),
                payload: dump_payload(entry.serialized, version),
            };
            tx.blocking_send(pending)
                .map_err(|_| Error::Restore("the restore stopped".into()))
        };
        read_rdb(std::io::Read::chain(&magic[..], reader), Some(&mut send))
    });
    while let Some(pending) = rx.recv().await {
        replay.push(pending).await?;
    }
    let summary = parser
        .await
        .map_err(|e| Error::Restore(format!("RDB reader failed: {e}")))??;
    replay.flush().await?;
    Ok(summary.bytes)
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
