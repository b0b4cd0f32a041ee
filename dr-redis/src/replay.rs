//! Keys replayed into a running server. Nothing is written before the whole backup was read
//! and checked (every part's stored and plain SHA-256, the RDB or record stream parsed to its
//! end, the key counts compared with the recorded ones: one streaming pass, memory bounded
//! by a few parts). With `--force` over existing keys a safety backup of the target is taken
//! into the repository first (label `pre-restore`). Then pipelined `RESTORE ... REPLACE`; a
//! failure part of the way says how many keys were written, how many not, and how to finish
//! or undo.

use std::time::Instant;

use dr_core::Refusal;
use dr_core::{
    BackupOptions, BackupReader, Error, Manifest, Repository, Restore, RestoreOptions,
    RestoreReport, Result, async_trait,
};

use crate::backup::{LOGICAL_KIND, RDB_KIND, RedisMode, RedisSource, keyspace};
use crate::client::RedisClient;
use crate::connection::RedisConnection;
use crate::replay_io::{Replay, replay_logical, replay_rdb};
use crate::restore::{detail, elapsed_ms, in_restore};

/// The label of the safety backup taken before `--force` replaces keys.
pub const PRE_RESTORE_LABEL: &str = "pre-restore";

/// Replays a backup's keys into a running server with `RESTORE ... REPLACE`.
#[derive(Debug, Clone)]
pub struct RedisReplayTarget {
    conn: RedisConnection,
    safety: Option<(Repository, String)>,
    checked: bool,
}

impl RedisReplayTarget {
    /// Replays into the server at `conn`.
    pub fn new(conn: RedisConnection) -> Self {
        RedisReplayTarget {
            conn,
            safety: None,
            checked: false,
        }
    }

    /// Before `--force` replaces the keys of a server that holds some, backs the server up
    /// into `repo` as source `source` with label `pre-restore`, so its previous data stays
    /// restorable. Without it, a forced restore keeps no copy of what it replaces.
    pub fn with_safety_backup(mut self, repo: Repository, source: impl Into<String>) -> Self {
        self.safety = Some((repo, source.into()));
        self
    }

    /// Skips the full read before the first write: the caller has just checked every part.
    pub(crate) fn already_checked(mut self) -> Self {
        self.checked = true;
        self
    }
}

#[async_trait]
impl Restore for RedisReplayTarget {
    async fn restore(&self, backup: &BackupReader, opts: &RestoreOptions) -> Result<RestoreReport> {
        let started = Instant::now();
        let mut client = self.conn.connect().await.map_err(in_restore)?;
        let existing = key_count(&mut client).await?;
        let libraries = crate::logical::function_libraries(&mut client)
            .await
            .map_err(in_restore)?
            .len() as u64;
        if existing + libraries > 0 && !opts.force {
            return Err(Error::TargetExists {
                target: self.conn.to_string(),
                found: format!("already holds {existing} keys and {libraries} Functions libraries"),
                hint: "restoring replaces the keys and libraries of the backup and keeps the others; pass --force to do it anyway (a safety backup of it is taken first), or restore into an empty server".into(),
            });
        }
        let total = if self.checked {
            crate::verify::recorded_counts(backup)
                .values()
                .map(|c| c.keys)
                .sum()
        } else {
            self.check_whole(backup).await?
        };
        let safety = match existing + libraries {
            0 => None,
            _ => self.safety_backup(existing).await?,
        };
        let now_ms = server_time_ms(&mut client).await?;
        let mut replay = Replay::new(&mut client, now_ms);
        let replayed = match backup.manifest().kind.as_str() {
            RDB_KIND => replay_rdb(backup, &mut replay).await,
            LOGICAL_KIND => replay_logical(backup, &mut replay).await,
            other => {
                return Err(Error::refused(
                    Refusal::WrongKind,
                    format!("{other} is not a Redis backup"),
                ));
            }
        };
        let bytes = match replayed {
            Ok(bytes) => bytes,
            Err(e) => {
                let stopped = Stopped {
                    backup: backup.id(),
                    total,
                    existing,
                    libraries,
                    safety: safety.as_ref(),
                };
                return Err(self.stopped(&stopped, &replay, &e));
            }
        };
        let mut report = RestoreReport::default();
        report.backup_id = backup.id().to_owned();
        report.target = format!(
            "{} ({} keys, {} Functions libraries{})",
            self.conn,
            replay.written,
            replay.libraries,
            expired_note(replay.expired)
        );
        if replay.expired > 0 {
            tracing::info!(
                expired = replay.expired,
                "keys had expired since the backup and were not restored"
            );
        }
        report.safety_backup_id = safety.as_ref().map(|m| m.id.clone());
        report.previous_kept_at = safety.map(|m| {
            format!(
                "safety backup {id} of {source} (label {PRE_RESTORE_LABEL}; to go back: FLUSHALL and FUNCTION FLUSH on {conn}, then dr restore {source} {id} --server {conn})",
                id = m.id,
                source = m.source,
                conn = self.conn
            )
        });
        let written = (replay.written, replay.libraries);
        if existing + libraries > 0 {
            report.notes.extend(kept_note(&mut client, written).await);
        }
        report.restored_bytes = bytes;
        report.elapsed_ms = elapsed_ms(started);
        Ok(report)
    }
}

/// What a failed replay's message needs besides the replay's own counts.
struct Stopped<'a> {
    backup: &'a str,
    total: u64,
    existing: u64,
    libraries: u64,
    safety: Option<&'a Manifest>,
}

impl RedisReplayTarget {
    /// Reads the whole backup once (parts checked, contents parsed, counts compared) and
    /// returns how many keys it holds; damage is [`Error::ChecksFailed`] naming the object.
    async fn check_whole(&self, backup: &BackupReader) -> Result<u64> {
        let refused = |problems: String| Error::ChecksFailed {
            subject: format!(
                "backup {} (read in full before any key is written to {})",
                backup.id(),
                self.conn
            ),
            problems,
        };
        let counts = match crate::verify::parsed_counts(backup).await {
            Ok(counts) => counts,
            Err(
                e @ (Error::CorruptPart { .. }
                | Error::DamagedPart { .. }
                | Error::MissingObject { .. }
                | Error::InvalidData { .. }
                | Error::Backend { .. }),
            ) => return Err(refused(detail(&e))),
            Err(e) => return Err(e),
        };
        let recorded = crate::verify::recorded_counts(backup);
        if !recorded.is_empty() {
            let problems = crate::verify::mismatches("the backup", &recorded, &counts, false);
            if !problems.is_empty() {
                return Err(refused(problems.join("; ")));
            }
        }
        Ok(counts.values().map(|c| c.keys).sum())
    }

    /// Backs the target up into the repository (RDB, or logical if it refuses SYNC).
    async fn safety_backup(&self, existing: u64) -> Result<Option<Manifest>> {
        let Some((repo, source)) = &self.safety else {
            tracing::warn!(server = %self.conn, existing, "--force without a safety backup: the replaced keys are not kept");
            return Ok(None);
        };
        let mut options = BackupOptions::default();
        options.labels = vec![PRE_RESTORE_LABEL.to_owned()];
        let rdb = RedisSource::new(self.conn.clone());
        let taken = match repo.backup(source, &rdb, &options).await {
            Ok(manifest) => manifest,
            Err(e) => {
                tracing::warn!(error = %e, "RDB safety backup failed; taking a logical one");
                let logical = RedisSource::new(self.conn.clone()).with_mode(RedisMode::Logical);
                repo.backup(source, &logical, &options).await.map_err(|e| {
                    Error::restore("redis", format!(
                        "could not take a safety backup of the {existing} keys {} holds ({}); nothing was written",
                        self.conn,
                        detail(&e)
                    ))
                })?
            }
        };
        tracing::info!(id = %taken.id, server = %self.conn, "safety backup taken");
        Ok(Some(taken))
    }

    /// The error of a replay that stopped part of the way: counts, cause, finish, undo.
    fn stopped(&self, at: &Stopped<'_>, replay: &Replay<'_>, e: &Error) -> Error {
        let conn = &self.conn;
        let cause = replay.failure.clone().unwrap_or_else(|| detail(e));
        let not_written = at
            .total
            .saturating_sub(replay.written + replay.unknown + replay.expired)
            .max(replay.refused);
        let unknown = match replay.unknown {
            0 => String::new(),
            n => format!(
                "; {n} more were sent as the connection was lost and may or may not have been written"
            ),
        };
        let undo = match (at.existing + at.libraries, at.safety) {
            (_, Some(m)) => format!(
                "empty it (FLUSHALL and FUNCTION FLUSH on {conn}) and restore its safety backup: dr restore {} {} --server {conn}",
                m.source, m.id
            ),
            (0, None) => format!(
                "empty it (FLUSHALL and FUNCTION FLUSH on {conn}): it held no keys and no Functions libraries before"
            ),
            (_, None) => format!(
                "no safety backup was taken of the {} keys and {} Functions libraries it held before (none configured)",
                at.existing, at.libraries
            ),
        };
        let expired = expired_note(replay.expired);
        Error::restore(
            "redis",
            format!(
                "stopped part of the way: {} of the {} keys of backup {} were written to {conn}, {not_written} were not{unknown}{expired}. Cause: {cause}. To finish, fix the cause and run the same restore again with --force (RESTORE ... REPLACE rewrites the keys already written). To undo, {undo}",
                replay.written, at.total, at.backup
            ),
        )
    }
}

/// `; N keys had expired since the backup and were not restored`, or nothing.
fn expired_note(expired: u64) -> String {
    match expired {
        0 => String::new(),
        1 => "; 1 key had expired since the backup and was not restored".to_owned(),
        n => format!("; {n} keys had expired since the backup and were not restored"),
    }
}

/// After a replay over existing keys: how many keys and libraries the target holds that the
/// restore did not write (they are not in the backup, so they were kept), in words.
async fn kept_note(client: &mut RedisClient, (written, loaded): (u64, u64)) -> Option<String> {
    let keys = key_count(client).await.ok()?.saturating_sub(written);
    let libraries = crate::logical::function_libraries(client).await.ok()?.len() as u64;
    let libraries = libraries.saturating_sub(loaded);
    if keys + libraries == 0 {
        return None;
    }
    let count = |n: u64, one: &str, many: &str| match n {
        0 => None,
        1 => Some(format!("1 {one}")),
        n => Some(format!("{n} {many}")),
    };
    let what: Vec<String> = [
        count(keys, "key", "keys"),
        count(libraries, "Functions library", "Functions libraries"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (was, it) = match keys + libraries {
        1 => ("was", "it is"),
        _ => ("were", "they are"),
    };
    Some(format!(
        "{} not in the backup {was} left as {it} on the target: FLUSHALL and FUNCTION FLUSH before restoring to get exactly the backup",
        what.join(" and ")
    ))
}

/// The server's clock (`TIME`) in Unix ms: expiry times are compared with it.
async fn server_time_ms(client: &mut RedisClient) -> Result<i64> {
    let reply = client.command(&[b"TIME"]).await.map_err(in_restore)?;
    crate::logical::server_time_ms(&reply)
        .ok_or_else(|| Error::restore("redis", format!("unexpected TIME reply {reply:?}")))
}

/// Keys in every database of the server.
async fn key_count(client: &mut RedisClient) -> Result<u64> {
    let info = client.info("keyspace").await.map_err(in_restore)?;
    Ok(keyspace(&info).values().map(|(keys, _)| keys).sum())
}
