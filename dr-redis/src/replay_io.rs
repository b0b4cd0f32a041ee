//! The writing half of a replay: Functions libraries (`FUNCTION LOAD REPLACE`, before the
//! keys) and keys from a logical record stream or an RDB's entries, sent in pipelined
//! batches of `RESTORE ... ABSTTL REPLACE` with the absolute expiry time recorded at backup,
//! every reply counted. Keys whose expiry time passed since the backup are not sent: they
//! are counted as expired.

use std::time::Instant;

use dr_core::{BackupReader, Error, Result};
use tokio::sync::mpsc;

use crate::backup::RDB_ARTIFACT;
use crate::client::RedisClient;
use crate::logical::{KEYS_ARTIFACT, KeyReader, KeyRecord, Record};
use crate::rdb::{RdbItem, dump_payload, read_rdb_items};
use crate::restore::detail;

const BATCH: usize = 500;

/// A key to restore, with its absolute expiry time in Unix ms.
pub(crate) struct Pending {
    db: u32,
    key: Vec<u8>,
    expires_at_ms: Option<i64>,
    payload: Vec<u8>,
}

/// What a backup hands the replay, in order.
enum Item {
    Library(Vec<u8>),
    Key(Pending),
}

/// Batches of pipelined RESTOREs with the count of every outcome: after a failure,
/// `written + refused + unknown` is every key sent.
pub(crate) struct Replay<'a> {
    client: &'a mut RedisClient,
    db: Option<u32>,
    batch: Vec<Pending>,
    /// The target server's clock (Unix ms) when the replay started, and when that was here.
    clock: (i64, Instant),
    /// Keys the server answered OK.
    pub(crate) written: u64,
    /// Keys not sent because their expiry time had passed.
    pub(crate) expired: u64,
    /// Functions libraries loaded.
    pub(crate) libraries: u64,
    /// Keys the server refused (error replies).
    pub(crate) refused: u64,
    /// Keys sent whose replies were lost with the connection.
    pub(crate) unknown: u64,
    /// The first refusal or the lost connection, worded for the error.
    pub(crate) failure: Option<String>,
}

impl<'a> Replay<'a> {
    /// A replay into `client`, whose clock reads `server_now_ms` (Unix ms, from `TIME`).
    pub(crate) fn new(client: &'a mut RedisClient, server_now_ms: i64) -> Self {
        Replay {
            client,
            db: None,
            batch: Vec::with_capacity(BATCH),
            clock: (server_now_ms, Instant::now()),
            written: 0,
            expired: 0,
            libraries: 0,
            refused: 0,
            unknown: 0,
            failure: None,
        }
    }

    /// The target server's clock now, in Unix ms.
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.clock.1.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.clock.0.saturating_add(elapsed)
    }

    async fn push(&mut self, pending: Pending) -> Result<()> {
        if pending.expires_at_ms.is_some_and(|at| at <= self.now_ms()) {
            self.expired += 1;
            return Ok(());
        }
        if self.batch.last().is_some_and(|p| p.db != pending.db) || self.batch.len() >= BATCH {
            self.flush().await?;
        }
        self.batch.push(pending);
        Ok(())
    }

    /// Sends the batch; stops (with `failure` set) if any key of it was not written.
    async fn flush(&mut self) -> Result<()> {
        let Some(db) = self.batch.first().map(|p| p.db) else {
            return Ok(());
        };
        if self.db != Some(db) {
            let selected = self
                .client
                .command(&[b"SELECT", db.to_string().as_bytes()])
                .await;
            if let Err(e) = selected {
                return Err(self.fail(format!("SELECT {db} failed: {}", detail(&e))));
            }
            self.db = Some(db);
        }
        let ttls: Vec<String> = self
            .batch
            .iter()
            .map(|p| p.expires_at_ms.unwrap_or(0).to_string())
            .collect();
        let commands: Vec<Vec<&[u8]>> = self
            .batch
            .iter()
            .zip(&ttls)
            .map(|(p, ttl)| {
                let mut c: Vec<&[u8]> =
                    vec![b"RESTORE", &p.key, ttl.as_bytes(), &p.payload, b"REPLACE"];
                if p.expires_at_ms.is_some() {
                    c.push(b"ABSTTL");
                }
                c
            })
            .collect();
        let (replies, lost) = match self.client.pipeline(&commands).await {
            Ok(replies) => (replies, None),
            // Lost with the connection: none of the replies is known.
            Err(e) => (Vec::new(), Some(e)),
        };
        let mut first_refusal = None;
        for (reply, pending) in replies.iter().zip(&self.batch) {
            match reply {
                Ok(_) => self.written += 1,
                Err(e) => {
                    self.refused += 1;
                    first_refusal.get_or_insert_with(|| {
                        format!(
                            "RESTORE of key {:?} in db {} failed: {}",
                            String::from_utf8_lossy(&pending.key),
                            pending.db,
                            detail(e)
                        )
                    });
                }
            }
        }
        self.unknown += (self.batch.len() - replies.len()) as u64;
        self.batch.clear();
        match (first_refusal, lost) {
            (None, None) => Ok(()),
            (Some(refusal), None) => Err(self.fail(refusal)),
            (None, Some(lost)) => Err(self.fail(detail(&lost))),
            (Some(refusal), Some(lost)) => {
                Err(self.fail(format!("{refusal}; then {}", detail(&lost))))
            }
        }
    }

    /// Loads a Functions library (replacing one of the same name), after the keys sent so far.
    async fn load_library(&mut self, code: &[u8]) -> Result<()> {
        self.flush().await?;
        match self
            .client
            .command(&[b"FUNCTION", b"LOAD", b"REPLACE", code])
            .await
        {
            Ok(_) => {
                self.libraries += 1;
                Ok(())
            }
            Err(e) => Err(self.fail(format!(
                "FUNCTION LOAD of the library {:?} failed: {}",
                library_name(code),
                detail(&e)
            ))),
        }
    }

    async fn take(&mut self, item: Item) -> Result<()> {
        match item {
            Item::Library(code) => self.load_library(&code).await,
            Item::Key(pending) => self.push(pending).await,
        }
    }

    fn fail(&mut self, failure: String) -> Error {
        self.failure = Some(failure.clone());
        Error::restore("redis", failure)
    }
}

/// The `name=` of a library's `#!lua name=<name>` first line, for messages.
fn library_name(code: &[u8]) -> String {
    let first = code.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("name="))
        .unwrap_or("?")
        .to_owned()
}

pub(crate) async fn replay_logical(backup: &BackupReader, replay: &mut Replay<'_>) -> Result<u64> {
    let started_ms = backup.manifest().started_at.timestamp_millis();
    let mut reader = KeyReader::new(backup.artifact(KEYS_ARTIFACT)?, started_ms).await?;
    let mut bytes = 0u64;
    while let Some(record) = reader.next_record().await? {
        let item = match record {
            Record::Library(code) => {
                bytes += code.len() as u64;
                Item::Library(code)
            }
            Record::Key(KeyRecord {
                db,
                key,
                expires_at_ms,
                payload,
            }) => {
                bytes += payload.len() as u64;
                Item::Key(Pending {
                    db,
                    key,
                    expires_at_ms,
                    payload,
                })
            }
        };
        replay.take(item).await?;
    }
    replay.flush().await?;
    Ok(bytes)
}

/// Parses the RDB on a blocking thread and replays its libraries and entries as they come.
pub(crate) async fn replay_rdb(backup: &BackupReader, replay: &mut Replay<'_>) -> Result<u64> {
    let artifact = backup.artifact(RDB_ARTIFACT)?;
    let (tx, mut rx) = mpsc::channel::<Item>(BATCH * 2);
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
        let mut send = |item: RdbItem<'_>| {
            let item = match item {
                RdbItem::Function(code) => Item::Library(code.to_vec()),
                RdbItem::Key(entry) => Item::Key(Pending {
                    db: entry.db,
                    key: entry.key.to_vec(),
                    expires_at_ms: entry.expire_ms,
                    payload: dump_payload(entry.serialized, version),
                }),
            };
            tx.blocking_send(item)
                .map_err(|_| Error::restore("redis", "the restore stopped"))
        };
        read_rdb_items(std::io::Read::chain(&magic[..], reader), Some(&mut send))
    });
    while let Some(item) = rx.recv().await {
        replay.take(item).await?;
    }
    let summary = parser
        .await
        .map_err(|e| Error::internal("reading the RDB", e))??;
    replay.flush().await?;
    Ok(summary.bytes)
}
