//! Point-in-time restore: a base backup unpacked into a new data directory, recovery
//! configured to fetch WAL through `dr wal-fetch`, and optionally the server started and
//! watched until it has promoted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dr_core::Refusal;
use dr_core::{Error, Repository, Result};
use serde::Serialize;
use tokio::process::Command;

use crate::base::BASE_ARTIFACT;
use crate::pitr::{PitrPlan, RecoveryStop, RecoveryTarget};

/// How to restore and recover.
#[derive(Debug, Clone)]
pub struct PitrOptions {
    /// The new data directory: must not exist or be empty. The old one is never touched.
    pub data_dir: PathBuf,
    /// The `restore_command` recovery runs, e.g. `dr --config /etc/dr.toml wal-fetch --source db %f %p`.
    pub restore_command: String,
    /// Keep the backup's archiving settings (the restored server becomes the new primary and
    /// archives its new timeline); `false` turns `archive_mode` off (drills, inspections).
    pub keep_archiving: bool,
    /// Start the server on this port on 127.0.0.1 and wait until it has promoted.
    pub start_on_port: Option<u16>,
}

/// What a point-in-time restore did.
#[derive(Debug, Clone, Serialize)]
pub struct PitrReport {
    /// The plan that was carried out.
    pub plan: PitrPlan,
    /// The new data directory.
    pub data_dir: PathBuf,
    /// Plain bytes unpacked from the base backup.
    pub restored_bytes: u64,
    /// Whether the server was started and has promoted.
    pub promoted: bool,
    /// What PostgreSQL said about where recovery stopped (from its log).
    pub recovery_stopped: Option<String>,
    /// The server log of the recovery, when started.
    pub log_file: Option<PathBuf>,
    /// Wall time, restore and recovery.
    pub elapsed_ms: u64,
}

/// Restores `plan` into `options.data_dir`; on any failure before the server starts, the
/// new directory is removed again.
///
/// # Errors
/// A non-empty target, a damaged backup, I/O errors; a recovery that fails or stops early.
pub async fn restore_pitr(
    repo: &Repository,
    plan: PitrPlan,
    options: &PitrOptions,
) -> Result<PitrReport> {
    let started = Instant::now();
    let dir = &options.data_dir;
    let created = prepare_target(dir).await?;
    let marker = dir.join(IN_PROGRESS);
    let unpacked = async {
        tokio::fs::write(&marker, "a dr restore is writing this directory\n")
            .await
            .map_err(|e| Error::io(format!("writing {}", marker.display()), e))?;
        let bytes = unpack_base(repo, &plan.source, &plan.base_backup, dir).await?;
        let settings = recovery_settings(&plan.target, plan.stop, options);
        let at = dir.to_path_buf();
        tokio::task::spawn_blocking(move || write_recovery_config(&at, &settings))
            .await
            .map_err(|e| Error::internal("writing the recovery settings", e))??;
        tokio::fs::remove_file(&marker)
            .await
            .map_err(|e| Error::io(format!("removing {}", marker.display()), e))?;
        Ok::<_, Error>(bytes)
    }
    .await;
    let restored_bytes = match unpacked {
        Ok(bytes) => bytes,
        Err(e) => {
            if created {
                let _ = tokio::fs::remove_dir_all(dir).await;
            } else {
                let _ = empty_dir(dir).await;
            }
            return Err(e);
        }
    };
    let mut report = PitrReport {
        data_dir: dir.clone(),
        restored_bytes,
        promoted: false,
        recovery_stopped: None,
        log_file: None,
        elapsed_ms: 0,
        plan,
    };
    if let Some(port) = options.start_on_port {
        let log = start_and_wait(dir, port, report.plan.base.server_version_num).await?;
        report.promoted = true;
        report.recovery_stopped = recovery_summary(&log);
        report.log_file = Some(dir.join(LOG_FILE));
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

/// Present in a data directory while dr writes it: a restore killed midway leaves it behind,
/// so the half-written copy is recognised (`recovery.signal` is written only at the end).
const IN_PROGRESS: &str = ".dr-restore-in-progress";

/// Creates the target (mode 0700); `true` when it did not exist.
async fn prepare_target(dir: &Path) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e| Error::io(format!("preparing {}", dir.display()), e);
    let created = match tokio::fs::read_dir(dir).await {
        Ok(mut entries) => {
            if crate::child::exists(&dir.join(IN_PROGRESS)).await {
                return Err(Error::TargetExists {
                    target: dir.display().to_string(),
                    found: format!("holds an interrupted restore (it has {IN_PROGRESS})"),
                    hint: "it is incomplete and must not be started; delete the directory and run the restore again".into(),
                });
            }
            if entries.next_entry().await.map_err(io)?.is_some() {
                return Err(Error::TargetExists {
                    target: dir.display().to_string(),
                    found: "is not empty".into(),
                    hint: "a point-in-time restore goes into a new data directory (the current one is never touched)".into(),
                });
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
            true
        }
        Err(e) => return Err(io(e)),
    };
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(io)?;
    Ok(created)
}

async fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        if entry.file_type().await?.is_dir() {
            tokio::fs::remove_dir_all(entry.path()).await?;
        } else {
            tokio::fs::remove_file(entry.path()).await?;
        }
    }
    Ok(())
}

/// Streams the base backup's tar into `dir`; entries that would land outside it are refused.
async fn unpack_base(repo: &Repository, source: &str, backup_id: &str, dir: &Path) -> Result<u64> {
    let selector = dr_core::BackupSelector::Id(backup_id.to_owned());
    let reader = repo.open_backup(source, &selector).await?;
    let mut unpacker = dr_core::untar::Unpacker::new(dir);
    read_base_tar(&reader, move |mut entry| unpacker.unpack(&mut entry)).await
}

/// Reads the base backup's tar entry by entry on a blocking thread, then drains the stream
/// so that every part's checksum is verified; returns the plain bytes read.
pub(crate) async fn read_base_tar<F>(reader: &dr_core::BackupReader, mut visit: F) -> Result<u64>
where
    F: FnMut(
            tar::Entry<'_, tokio_util::io::SyncIoBridge<CountingReader<dr_core::ArtifactReader>>>,
        ) -> Result<()>
        + Send
        + 'static,
{
    let counted = CountingReader::new(reader.artifact(BASE_ARTIFACT)?);
    let bytes = counted.counter();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(counted, handle);
        let mut archive = tar::Archive::new(bridge);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(false);
        for entry in archive.entries().map_err(unpack_error)? {
            visit(entry.map_err(unpack_error)?)?;
        }
        let mut rest = archive.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink()).map_err(unpack_error)?;
        Ok(())
    })
    .await
    .map_err(|e| Error::Usage(format!("tar reader task failed: {e}")))??;
    Ok(bytes.load(std::sync::atomic::Ordering::Relaxed))
}

/// Turns an I/O error from the tar stream back into dr's typed error when it is one.
fn unpack_error(e: std::io::Error) -> Error {
    Error::from_io("unpacking the base backup", e)
}

/// The recovery settings appended to `postgresql.auto.conf` (read last, so they win).
fn recovery_settings(target: &RecoveryTarget, stop: RecoveryStop, options: &PitrOptions) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut text = format!(
        "\n# Added by dr for point-in-time recovery ({target}).\nrestore_command = {}\nrecovery_target_timeline = 'latest'\n",
        quote(&options.restore_command)
    );
    let stop_setting = match stop {
        RecoveryStop::EndOfArchive => None,
        RecoveryStop::Time(t) => Some(format!(
            "recovery_target_time = {}",
            quote(&t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        )),
        RecoveryStop::AfterLsn(l) => {
            Some(format!("recovery_target_lsn = {}", quote(&l.to_string())))
        }
        RecoveryStop::Immediate => Some("recovery_target = 'immediate'".to_owned()),
    };
    if let Some(setting) = stop_setting {
        // Inclusive: a transaction at exactly the target time (or at the position) is in.
        text += &format!(
            "{setting}\nrecovery_target_inclusive = on\nrecovery_target_action = 'promote'\n"
        );
    }
    if !options.keep_archiving {
        text += "archive_mode = off\n";
    }
    text
}

/// Writes `settings` (from [`recovery_settings`]) into `dir` (blocking: call it on a
/// blocking thread).
fn write_recovery_config(dir: &Path, settings: &str) -> Result<()> {
    use std::io::Write;
    let io = |what: &str, e| Error::io(format!("writing {what} in {}", dir.display()), e);
    // Debian keeps postgresql.conf in /etc: the copy has none, and postgres needs one.
    let conf = dir.join("postgresql.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            "# Created by dr: the backed-up cluster kept its configuration elsewhere.\n",
        )
        .map_err(|e| io("postgresql.conf", e))?;
    }
    let mut auto = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgresql.auto.conf"))
        .map_err(|e| io("postgresql.auto.conf", e))?;
    auto.write_all(settings.as_bytes())
        .map_err(|e| io("postgresql.auto.conf", e))?;
    std::fs::write(dir.join("recovery.signal"), "").map_err(|e| io("recovery.signal", e))
}

/// The server log written by a recovery dr started.
pub const LOG_FILE: &str = "dr-recovery.log";

/// Starts PostgreSQL on the restored directory and waits until recovery has ended and the
/// server promoted (`recovery.signal` removed); returns the log.
async fn start_and_wait(dir: &Path, port: u16, version_num: i64) -> Result<String> {
    if crate::child::running_as_root_async().await {
        return Err(Error::refused(
            Refusal::Unsupported,
            "PostgreSQL refuses to run as root: run this restore as the postgres user (sudo -u postgres dr restore ...), or leave out --start and start the server yourself",
        ));
    }
    let log = dir.join(LOG_FILE);
    let pg_ctl = crate::child::server_binary_async("pg_ctl", version_num).await;
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {}",
        dir.display()
    );
    let mut command = Command::new(&pg_ctl);
    command
        .arg("start")
        .arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(&log)
        .args(["-o", &options, "-W"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    crate::child::spawn(command, "pg_ctl")?.finish().await?;
    let signal = dir.join("recovery.signal");
    let pid_file = dir.join("postmaster.pid");
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = tokio::fs::read_to_string(&log).await.unwrap_or_default();
        // Give the postmaster a moment to write its pid file before judging it gone.
        let gone =
            !crate::child::exists(&pid_file).await && started.elapsed() > Duration::from_secs(5);
        if gone || text.contains("FATAL:") && text.contains("database system is shut down") {
            return Err(recovery_failed(dir, &log, &text));
        }
        if text.contains("database system is ready to accept connections")
            && !crate::child::exists(&signal).await
        {
            return Ok(text);
        }
    }
}

/// Why recovery failed, in words, with the end of the server log.
fn recovery_failed(dir: &Path, log: &Path, text: &str) -> Error {
    let advice = if text.contains("recovery ended before configured recovery target was reached") {
        format!(
            "the WAL replayed ended before the target: the archive holds less than its records said. Remove {} and restore to an earlier --at (`dr list` shows how far the archive reaches, to the microsecond), or wait until newer WAL is archived. ",
            dir.display()
        )
    } else {
        format!(
            "the server stopped. The restored files and the recovery settings are in {}: fix the cause shown below and start PostgreSQL on it yourself, or remove it and restore again. ",
            dir.display()
        )
    };
    Error::restore(
        "postgres",
        format!(
            "recovery stopped with an error: {advice}The server log ({}) ends with:\n{}",
            log.display(),
            tail(text, 12)
        ),
    )
}

/// The log lines saying where recovery stopped.
fn recovery_summary(log: &str) -> Option<String> {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("recovery stopping")
                || l.contains("last completed transaction")
                || l.contains("selected new timeline ID")
                || l.contains("redo done at")
        })
        .map(|l| l.split_once("LOG:").map_or(l, |(_, m)| m).trim())
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Counts the bytes read through it.
pub(crate) struct CountingReader<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R> CountingReader<R> {
    fn new(inner: R) -> Self {
        CountingReader {
            inner,
            count: std::sync::Arc::default(),
        }
    }

    fn counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.count.clone()
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingReader<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.count
            .fetch_add(read, std::sync::atomic::Ordering::Relaxed);
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> PitrOptions {
        PitrOptions {
            data_dir: PathBuf::from("/nonexistent"),
            restore_command: "dr --config '/etc/dr.toml' wal-fetch %f %p".into(),
            keep_archiving: false,
            start_on_port: None,
        }
    }

    #[test]
    fn recovery_settings_quote_and_name_the_target() {
        let target: RecoveryTarget = "2026-11-23T12:30:00.25Z".parse().unwrap();
        let RecoveryTarget::Time(t) = target else {
            unreachable!()
        };
        let text = recovery_settings(&target, RecoveryStop::Time(t), &options());
        assert!(text.contains("restore_command = 'dr --config ''/etc/dr.toml'' wal-fetch %f %p'"));
        assert!(text.contains("recovery_target_time = '2026-11-23 12:30:00.250000+00'"));
        assert!(text.contains("recovery_target_action = 'promote'"));
        assert!(text.contains("recovery_target_inclusive = on"));
        assert!(text.contains("archive_mode = off"));
        let lsn: RecoveryTarget = "0/5000028".parse().unwrap();
        let after = RecoveryStop::AfterLsn("0/5000028".parse().unwrap());
        assert!(
            recovery_settings(&lsn, after, &options())
                .contains("recovery_target_lsn = '0/5000028'")
        );
        let immediate = recovery_settings(&target, RecoveryStop::Immediate, &options());
        assert!(immediate.contains("recovery_target = 'immediate'"));
        let latest = recovery_settings(
            &RecoveryTarget::Latest,
            RecoveryStop::EndOfArchive,
            &options(),
        );
        assert!(
            !latest.contains("recovery_target_time =") && !latest.contains("recovery_target_lsn")
        );
    }

    #[test]
    fn a_recovery_short_of_its_target_says_what_to_do() {
        let log = "LOG:  redo done at 0/3D00F500\nFATAL:  recovery ended before configured recovery target was reached\nLOG:  database system is shut down\n";
        let err = recovery_failed(
            Path::new("/srv/new"),
            Path::new("/srv/new/dr-recovery.log"),
            log,
        )
        .to_string();
        assert!(
            err.contains("earlier --at") && err.contains("Remove /srv/new"),
            "{err}"
        );
        assert!(
            err.contains("recovery ended before configured recovery target"),
            "{err}"
        );
        let other = recovery_failed(
            Path::new("/srv/new"),
            Path::new("/l"),
            "FATAL:  could not create any TCP/IP sockets",
        )
        .to_string();
        assert!(other.contains("start PostgreSQL on it yourself"), "{other}");
    }

    #[tokio::test]
    async fn a_non_empty_target_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("PG_VERSION"), "15").unwrap();
        let err = prepare_target(dir.path()).await.unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert!(dir.path().join("PG_VERSION").exists());
        let fresh = dir.path().join("new");
        assert!(prepare_target(&fresh).await.unwrap());
        std::fs::write(fresh.join(IN_PROGRESS), "").unwrap();
        let err = prepare_target(&fresh).await.unwrap_err();
        assert!(err.to_string().contains("interrupted restore"), "{err}");
    }
}
