//! The writing half of a replay: keys from a logical record stream or an RDB's entries,
//! sent in pipelined batches of `RESTORE ... REPLACE`, every reply counted.

use dr_core::{BackupReader, Error, Result};
use tokio::sync::mpsc;

use crate::backup::RDB_ARTIFACT;
use crate::logical::{KEYS_ARTIFACT, KeyReader, KeyRecord};
use crate::rdb::{dump_payload, read_rdb};
use crate::resp::RespClient;
use crate::restore::detail;

const BATCH: usize = 500;

/// A key to restore: TTL relative (logical) or absolute (RDB), as RESTORE takes them.
pub(crate) struct Pending {
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

/// Batches of pipelined RESTOREs with the count of every outcome: after a failure,
/// `written + refused + unknown` is every key sent.
pub(crate) struct Replay<'a> {
    client: &'a mut RespClient,
    db: Option<u32>,
    batch: Vec<Pending>,
    /// Keys the server answered OK.
    pub(crate) written: u64,
    /// Keys the server refused (error replies).
    pub(crate) refused: u64,
    /// Keys sent whose replies were lost with the connection.
    pub(crate) unknown: u64,
    /// The first refusal or the lost connection, worded for the error.
    pub(crate) failure: Option<String>,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(client: &'a mut RespClient) -> Self {
        Replay {
            client,
            db: None,
            batch: Vec::with_capacity(BATCH),
            written: 0,
            refused: 0,
            unknown: 0,
            failure: None,
        }
    }

    async fn push(&mut self, pending: Pending) -> Result<()> {
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
        let (replies, lost) = self.client.pipeline_partial(&commands).await;
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

    fn fail(&mut self, failure: String) -> Error {
        self.failure = Some(failure.clone());
        Error::Restore(failure)
    }
}

pub(crate) async fn replay_logical(backup: &BackupReader, replay: &mut Replay<'_>) -> Result<u64> {
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
pub(crate) async fn replay_rdb(backup: &BackupReader, replay: &mut Replay<'_>) -> Result<u64> {
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
