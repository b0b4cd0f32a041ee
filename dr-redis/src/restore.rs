//! The RDB file placed into a data directory: staged beside the target with
//! [`dr_core::swap`] and checked while it is written (every part's SHA-256, every opcode,
//! CRC64); then the server is stopped by the command the user configures, the file gets the
//! owner, group, mode and extended attributes of the `dump.rdb` it replaces (or, with none,
//! the owner and group of its directory, mode 0600), the previous file is kept as
//! `<name>.pre-restore-<time>[-N]`, and the server is started. Nothing of the target is
//! touched before the whole file was checked. A server that keeps running would save over
//! the restored file, so when the source's URL is known the restore is refused while the
//! server there answers and saves to the target: before anything is written when no
//! `stop_command` is set, and after the `stop_command` ran ([`crate::live`]; `--force`
//! skips the check). Keys replayed into a running server are in [`crate::replay`].

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dr_core::Refusal;
use dr_core::swap::{Attributes, Inherit, Staging};
use dr_core::{BackupReader, Error, Restore, RestoreOptions, RestoreReport, Result, async_trait};
use tokio::io::AsyncWriteExt;

use crate::backup::{RDB_ARTIFACT, RDB_KIND};
use crate::connection::RedisConnection;
use crate::live;
use crate::rdb::read_rdb;

/// Restores an RDB backup as the `dump.rdb` of a (stopped) server.
#[derive(Debug, Clone)]
pub struct RedisFileTarget {
    rdb_path: PathBuf,
    stop_command: Option<String>,
    start_command: Option<String>,
    server: Option<RedisConnection>,
}

impl RedisFileTarget {
    /// Restores to `rdb_path` (e.g. `/var/lib/redis/dump.rdb`).
    pub fn new(rdb_path: impl Into<PathBuf>) -> Self {
        RedisFileTarget {
            rdb_path: rdb_path.into(),
            stop_command: None,
            start_command: None,
            server: None,
        }
    }

    /// The server that saves to `rdb_path` (the source's URL): the restore is refused while
    /// it answers and saves to the target (it would overwrite the restored file), unless
    /// `--force`. Without it, nothing is checked.
    pub fn with_server(mut self, server: Option<RedisConnection>) -> Self {
        self.server = server;
        self
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
            return Err(Error::refused(
                Refusal::WrongKind,
                format!(
                    "backup {} is a {} backup: a logical backup is restored into a running server (RESTORE), not as a file",
                    backup.id(),
                    backup.manifest().kind
                ),
            ));
        }
        let target = opts.target.clone().unwrap_or_else(|| self.rdb_path.clone());
        let server = self.server.as_ref().filter(|_| !opts.force);
        if let (Some(conn), None) = (server, &self.stop_command) {
            live::refuse_if_running(conn, &target, &self.rdb_path).await?;
        }
        let staged_at = target.clone();
        let staging = tokio::task::spawn_blocking(move || Staging::file(&staged_at))
            .await
            .map_err(|e| Error::internal("staging the restored RDB", e))??;
        let summary = match stage(backup, staging.path()).await {
            Ok(summary) => summary,
            Err(e) => {
                return Err(match e {
                    e @ (Error::InvalidData { .. } | Error::Backend { .. }) => {
                        Error::ChecksFailed {
                            subject: format!("the RDB of backup {}", backup.id()),
                            problems: e.detail(),
                        }
                    }
                    other => other,
                });
            }
        };
        run_hook(self.stop_command.as_deref(), "stop_command").await?;
        if let (Some(conn), Some(stop)) = (server, &self.stop_command) {
            live::refuse_if_still_running(conn, &target, &self.rdb_path, stop).await?;
        }
        let swapped = tokio::task::spawn_blocking(move || {
            let inherit = attributes_for(staging.target())?;
            staging.commit(&inherit)
        })
        .await
        .map_err(|e| Error::internal("swapping the restored RDB in", e))??;
        let previous = swapped.previous.map(|p| p.display().to_string());
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

/// What the restored file inherits: the replaced `dump.rdb`'s attributes; with none (an empty
/// machine), as root, the owner and group of its directory (`/var/lib/redis` is the server's)
/// with mode 0600, so the server can read it; otherwise the restoring user's, mode 0600.
fn attributes_for(target: &Path) -> Result<Inherit> {
    if std::fs::symlink_metadata(target).is_ok() {
        return Ok(Inherit::Replaced);
    }
    let dir = target.parent().unwrap_or(Path::new("/"));
    let meta = std::fs::metadata(dir)
        .map_err(|e| Error::io(format!("reading the owner of {}", dir.display()), e))?;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Ok(Inherit::Staged);
    }
    Ok(Inherit::Set(Attributes {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: 0o600,
        xattrs: Vec::new(),
    }))
}

/// Writes the RDB to `staged` while the RDB reader checks the same bytes (one pass, no
/// second read of the file); fsyncs it.
async fn stage(backup: &BackupReader, staged: &Path) -> Result<crate::rdb::RdbSummary> {
    let io = |e| Error::io(format!("writing {}", staged.display()), e);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(staged)
        .await
        .map_err(io)?;
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
        .map_err(|e| Error::internal("checking the RDB", e))?;
    copied?;
    summary
}

/// Parses a whole RDB file: magic, every opcode, CRC64.
///
/// # Errors
/// [`Error::InvalidData`] with the offset of the damage.
pub async fn check_file(path: &Path) -> Result<crate::rdb::RdbSummary> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        read_rdb(std::io::BufReader::with_capacity(1 << 20, file), None)
    })
    .await
    .map_err(|e| Error::internal("checking the RDB", e))?
}

async fn run_hook(command: Option<&str>, name: &str) -> Result<()> {
    let Some(command) = command else {
        return Ok(());
    };
    let status = tokio::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .await
        .map_err(|e| Error::io(format!("running {name} ({command})"), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::tool(format!("{name} ({command})"), status, ""))
    }
}

pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// An error's message without the "failed during backup" wording of [`Error::Backend`], for
/// restore and verify messages (a Redis reply, a damaged RDB).
pub(crate) fn detail(e: &Error) -> String {
    e.detail()
}

/// [`Error::Backend`] (the Redis client's errors) as a restore error.
pub(crate) fn in_restore(e: Error) -> Error {
    match e {
        Error::Backend { message, cause, .. } => Error::Restore {
            system: "redis",
            message,
            cause,
        },
        other => other,
    }
}
